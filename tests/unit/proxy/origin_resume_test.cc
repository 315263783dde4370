// Mid-body resume rules: what a first answer offers as validators, what the Range request asks,
// and which 206 may be spliced onto the bytes already delivered (only the same representation,
// from the right offset, to its end).
#include "proxy/origin_resume.h"

#include <gtest/gtest.h>

#include <string>

namespace streamedge::proxy {
namespace {

using Fields = std::vector<std::pair<std::string, std::string>>;

constexpr const char* kEtag = "\"abc123\"";
constexpr const char* kDate = "Mon, 01 Jan 2024 00:00:00 GMT";

// Parses a response head (the text must stay alive while the view is used).
ResponseHeadView parsed(const std::string& text) {
  ResponseHeadView head;
  ParseError err;
  EXPECT_TRUE(parseResponseHead(text, head, err)) << err.detail << "\n" << text;
  return head;
}

ResumeValidators etagAndLength(uint64_t total) {
  ResumeValidators v;
  v.strong_etag = kEtag;
  v.last_modified = kDate;
  v.total_length = total;
  return v;
}

TEST(OriginResume, StrongEtagsAreQuotedAndNotWeak) {
  EXPECT_TRUE(isStrongEtag("\"x\""));
  EXPECT_TRUE(isStrongEtag("\"\""));
  EXPECT_FALSE(isStrongEtag("W/\"x\""));
  EXPECT_FALSE(isStrongEtag("x"));
  EXPECT_FALSE(isStrongEtag("\"x"));
  EXPECT_FALSE(isStrongEtag("\"a\"b\""));
  EXPECT_FALSE(isStrongEtag("\"a b\""));
}

TEST(OriginResume, ValidatorsComeFromStrongEtagAndValidLastModified) {
  ResumeValidators v = resumeValidatorsOf({{"ETag", kEtag}, {"Last-Modified", kDate}}, 4096);
  EXPECT_EQ(v.strong_etag, kEtag);
  EXPECT_EQ(v.last_modified, kDate);
  EXPECT_EQ(v.total_length, 4096u);
  EXPECT_TRUE(v.usable());

  v = resumeValidatorsOf({{"etag", "W/\"weak\""}}, std::nullopt);
  EXPECT_TRUE(v.strong_etag.empty());
  EXPECT_FALSE(v.total_length);
  EXPECT_FALSE(v.usable()) << "a weak ETag cannot guard a splice";

  v = resumeValidatorsOf({{"Last-Modified", "yesterday"}}, 10);
  EXPECT_FALSE(v.usable()) << "an invalid date would be ignored by the other origin";

  v = resumeValidatorsOf({{"Last-Modified", kDate}}, 10);
  EXPECT_TRUE(v.usable());
  EXPECT_TRUE(v.strong_etag.empty());

  v = resumeValidatorsOf({{"ETag", kEtag}, {"ETag", "\"other\""}}, 10);
  EXPECT_FALSE(v.usable()) << "two ETags: which one is the representation's is unknown";
}

TEST(OriginResume, RequestAsksFromTheOffsetGuardedByIfMatchElseIfUnmodifiedSince) {
  ResumeValidators v = etagAndLength(100);
  EXPECT_EQ(resumeRequestFields(v, 1048576),
            (Fields{{"Range", "bytes=1048576-"}, {"If-Match", kEtag}}));
  v.strong_etag.clear();
  EXPECT_EQ(resumeRequestFields(v, 0),
            (Fields{{"Range", "bytes=0-"}, {"If-Unmodified-Since", kDate}}));
  EXPECT_TRUE(isFieldReplacedOnResume("if-none-match"));
  EXPECT_TRUE(isFieldReplacedOnResume("Range"));
  EXPECT_TRUE(isFieldReplacedOnResume("If-Range"));
  EXPECT_FALSE(isFieldReplacedOnResume("Accept-Encoding"));
}

TEST(OriginResume, ContentRangeIsParsedStrictly) {
  std::optional<ContentRange> r = parseContentRange("bytes 100-199/200");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->first, 100u);
  EXPECT_EQ(r->last, 199u);
  EXPECT_EQ(r->complete, 200u);
  r = parseContentRange("bytes 5-9/*");
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->complete);
  EXPECT_TRUE(parseContentRange("Bytes 0-0/1"));
  EXPECT_FALSE(parseContentRange("bytes */200")) << "unsatisfied-range is not a part";
  EXPECT_FALSE(parseContentRange("bytes 10-5/200"));
  EXPECT_FALSE(parseContentRange("bytes 0-200/200")) << "last-pos past the complete length";
  EXPECT_FALSE(parseContentRange("bytes 0-+5/200"));
  EXPECT_FALSE(parseContentRange("items 0-5/200"));
  EXPECT_FALSE(parseContentRange("bytes 0-5"));
  EXPECT_FALSE(parseContentRange("bytes -5/200"));
}

TEST(OriginResume, SameRepresentationFromTheOffsetToTheEndIsAccepted) {
  const std::string text = "HTTP/1.1 206 Partial Content\r\nETag: \"abc123\"\r\n"
                           "Content-Range: bytes 1000-4095/4096\r\nContent-Length: 3096\r\n\r\n";
  const ResponseHeadView head = parsed(text);
  ContentRange range;
  const char* why = nullptr;
  EXPECT_EQ(checkResumeHead(etagAndLength(4096), 1000, head, &why, &range), ResumeOutcome::kOk)
      << why;
  EXPECT_EQ(range.first, 1000u);
  EXPECT_EQ(range.last, 4095u);
}

TEST(OriginResume, ChunkedOriginalAcceptsTheTotalThe206Tells) {
  ResumeValidators v = etagAndLength(0);
  v.total_length.reset();
  const std::string chunked = "HTTP/1.1 206 Partial Content\r\nETag: \"abc123\"\r\n"
                              "Content-Range: bytes 10-99/100\r\nTransfer-Encoding: chunked\r\n\r\n";
  EXPECT_EQ(checkResumeHead(v, 10, parsed(chunked), nullptr), ResumeOutcome::kOk);
  const std::string unknown = "HTTP/1.1 206 Partial Content\r\nETag: \"abc123\"\r\n"
                              "Content-Range: bytes 10-99/*\r\nContent-Length: 90\r\n\r\n";
  EXPECT_EQ(checkResumeHead(v, 10, parsed(unknown), nullptr), ResumeOutcome::kOk);
  // Known on our side, unknown on theirs: cannot be shown to be the same length.
  EXPECT_EQ(checkResumeHead(etagAndLength(100), 10, parsed(unknown), nullptr),
            ResumeOutcome::kValidatorMismatch);
}

TEST(OriginResume, AnythingButTheSameRepresentationIsAMismatch) {
  struct Case {
    const char* name;
    std::string head;
  } cases[] = {
      {"other etag", "HTTP/1.1 206 P\r\nETag: \"zzz\"\r\nContent-Range: bytes 1000-4095/4096\r\n"
                     "Content-Length: 3096\r\n\r\n"},
      {"weak etag", "HTTP/1.1 206 P\r\nETag: W/\"abc123\"\r\nContent-Range: bytes 1000-4095/4096\r\n"
                    "Content-Length: 3096\r\n\r\n"},
      {"no etag", "HTTP/1.1 206 P\r\nContent-Range: bytes 1000-4095/4096\r\nContent-Length: 3096\r\n\r\n"},
      {"other offset", "HTTP/1.1 206 P\r\nETag: \"abc123\"\r\nContent-Range: bytes 999-4095/4096\r\n"
                       "Content-Length: 3097\r\n\r\n"},
      {"other length", "HTTP/1.1 206 P\r\nETag: \"abc123\"\r\nContent-Range: bytes 1000-4999/5000\r\n"
                       "Content-Length: 4000\r\n\r\n"},
      {"not to the end", "HTTP/1.1 206 P\r\nETag: \"abc123\"\r\nContent-Range: bytes 1000-1999/4096\r\n"
                         "Content-Length: 1000\r\n\r\n"},
      {"framing disagrees", "HTTP/1.1 206 P\r\nETag: \"abc123\"\r\nContent-Range: bytes 1000-4095/4096\r\n"
                            "Content-Length: 10\r\n\r\n"},
      {"multipart", "HTTP/1.1 206 P\r\nETag: \"abc123\"\r\n"
                    "Content-Type: multipart/byteranges; boundary=x\r\nContent-Length: 10\r\n\r\n"},
      {"other coding", "HTTP/1.1 206 P\r\nETag: \"abc123\"\r\nContent-Encoding: gzip\r\n"
                       "Content-Range: bytes 1000-4095/4096\r\nContent-Length: 3096\r\n\r\n"},
      {"416", "HTTP/1.1 416 R\r\nContent-Range: bytes */900\r\nContent-Length: 0\r\n\r\n"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const char* why = nullptr;
    EXPECT_EQ(checkResumeHead(etagAndLength(4096), 1000, parsed(c.head), &why),
              ResumeOutcome::kValidatorMismatch);
    EXPECT_NE(why, nullptr);
  }
}

TEST(OriginResume, ThePartMustBeInTheFirstAnswersContentCoding) {
  // An edge that compressed its answer keeps Last-Modified; the origin's part is identity.
  const Fields gzip = {{"Last-Modified", kDate}, {"Content-Encoding", "gzip"}};
  const ResumeValidators v = resumeValidatorsOf(gzip, std::nullopt);
  EXPECT_EQ(v.content_encoding, "gzip");
  const std::string identity = std::string("HTTP/1.1 206 P\r\nLast-Modified: ") + kDate +
                               "\r\nContent-Range: bytes 10-99/100\r\nContent-Length: 90\r\n\r\n";
  const char* why = nullptr;
  EXPECT_EQ(checkResumeHead(v, 10, parsed(identity), &why), ResumeOutcome::kValidatorMismatch);
  EXPECT_STREQ(why, "206 in another content coding");
  const std::string same = std::string("HTTP/1.1 206 P\r\nLast-Modified: ") + kDate +
                           "\r\nContent-Encoding: GZIP\r\nContent-Range: bytes 10-99/100\r\n"
                           "Content-Length: 90\r\n\r\n";
  EXPECT_EQ(checkResumeHead(v, 10, parsed(same), nullptr), ResumeOutcome::kOk);
  // Two coding fields: which list applies is not worth guessing; no resume.
  const Fields two = {{"ETag", kEtag}, {"Content-Encoding", "gzip"}, {"Content-Encoding", "br"}};
  EXPECT_FALSE(resumeValidatorsOf(two, 100).usable());
}

TEST(OriginResume, LastModifiedGuardsWhenThereIsNoStrongEtag) {
  ResumeValidators v;
  v.last_modified = kDate;
  v.total_length = 100;
  const std::string same = std::string("HTTP/1.1 206 P\r\nLast-Modified: ") + kDate +
                           "\r\nContent-Range: bytes 50-99/100\r\nContent-Length: 50\r\n\r\n";
  EXPECT_EQ(checkResumeHead(v, 50, parsed(same), nullptr), ResumeOutcome::kOk);
  const std::string later = "HTTP/1.1 206 P\r\nLast-Modified: Tue, 02 Jan 2024 00:00:00 GMT"
                            "\r\nContent-Range: bytes 50-99/100\r\nContent-Length: 50\r\n\r\n";
  EXPECT_EQ(checkResumeHead(v, 50, parsed(later), nullptr), ResumeOutcome::kValidatorMismatch);
}

TEST(OriginResume, StatusDecidesBetweenAbortAndTryingAnotherOrigin) {
  const ResumeValidators v = etagAndLength(4096);
  const std::string whole = "HTTP/1.1 200 OK\r\nETag: \"abc123\"\r\nContent-Length: 4096\r\n\r\n";
  EXPECT_EQ(checkResumeHead(v, 1000, parsed(whole), nullptr), ResumeOutcome::kNoRange)
      << "the whole representation is never cut to fit";
  const std::string changed = "HTTP/1.1 412 Precondition Failed\r\nContent-Length: 0\r\n\r\n";
  EXPECT_EQ(checkResumeHead(v, 1000, parsed(changed), nullptr), ResumeOutcome::kPreconditionFailed);
  const std::string down = "HTTP/1.1 503 Unavailable\r\nContent-Length: 0\r\n\r\n";
  EXPECT_EQ(checkResumeHead(v, 1000, parsed(down), nullptr), ResumeOutcome::kFailed);
  const std::string missing = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
  EXPECT_EQ(checkResumeHead(v, 1000, parsed(missing), nullptr), ResumeOutcome::kFailed);
}

TEST(OriginResume, OutcomeNamesAreTheMetricLabels) {
  EXPECT_STREQ(resumeOutcomeName(ResumeOutcome::kOk), "ok");
  EXPECT_STREQ(resumeOutcomeName(ResumeOutcome::kValidatorMismatch), "validator_mismatch");
  EXPECT_STREQ(resumeOutcomeName(ResumeOutcome::kPreconditionFailed), "precondition_failed");
  EXPECT_STREQ(resumeOutcomeName(ResumeOutcome::kNoRange), "no_range");
  EXPECT_STREQ(resumeOutcomeName(ResumeOutcome::kFailed), "failed");
  EXPECT_STREQ(resumeOutcomeName(ResumeOutcome::kNotResumable), "not_resumable");
}

}  // namespace
}  // namespace streamedge::proxy
