#include "proxy/origin_resume.h"

#include "cache/freshness.h"
#include "cache/response_head.h"

namespace streamedge::proxy {

namespace {

std::string_view trimOws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool startsWithIgnoreCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && cache::equalsIgnoreCase(s.substr(0, prefix.size()), prefix);
}

}  // namespace

bool isStrongEtag(std::string_view etag) {
  // RFC 9110 §8.8.3: entity-tag = [ weak ] opaque-tag; opaque-tag = DQUOTE *etagc DQUOTE.
  if (etag.size() < 2 || etag.front() != '"' || etag.back() != '"') return false;
  for (size_t i = 1; i + 1 < etag.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(etag[i]);
    // etagc = %x21 / %x23-7E / obs-text
    if (c == '"' || c < 0x21 || c == 0x7F) return false;
  }
  return true;
}

ResumeValidators resumeValidatorsOf(
    const std::vector<std::pair<std::string, std::string>>& headers,
    std::optional<uint64_t> content_length) {
  ResumeValidators v;
  v.total_length = content_length;
  int etags = 0;
  int dates = 0;
  int codings = 0;
  for (const auto& [name, value] : headers) {
    if (cache::equalsIgnoreCase(name, "Content-Encoding")) {
      ++codings;
      v.content_encoding = std::string(trimOws(value));
    } else if (cache::equalsIgnoreCase(name, "ETag")) {
      ++etags;
      const std::string_view tag = trimOws(value);
      if (isStrongEtag(tag)) v.strong_etag = std::string(tag);
    } else if (cache::equalsIgnoreCase(name, "Last-Modified")) {
      ++dates;
      const std::string_view date = trimOws(value);
      // An invalid date would be ignored by the other origin (RFC 9110 §13.1.4): no guard.
      if (cache::parseHttpDate(date)) v.last_modified = std::string(date);
    }
  }
  // Two different validators of one kind: which one the representation has is unknown.
  if (etags > 1) v.strong_etag.clear();
  if (dates > 1) v.last_modified.clear();
  if (codings > 1) {  // a list spread over fields: no resume rather than a guess at equality
    v.strong_etag.clear();
    v.last_modified.clear();
  }
  return v;
}

std::vector<std::pair<std::string, std::string>> resumeRequestFields(
    const ResumeValidators& validators, uint64_t offset) {
  std::vector<std::pair<std::string, std::string>> out;
  out.emplace_back("Range", "bytes=" + std::to_string(offset) + "-");
  // RFC 9110 §13.1.1: If-Match uses the strong comparison, so only a strong ETag can guard a
  // splice; If-Unmodified-Since (§13.1.4) is the fallback for answers without one. If-Range
  // would turn a changed representation into a whole 200 that we could not use either; a 412 is
  // the clearer answer.
  if (!validators.strong_etag.empty()) {
    out.emplace_back("If-Match", validators.strong_etag);
  } else {
    out.emplace_back("If-Unmodified-Since", validators.last_modified);
  }
  return out;
}

bool isFieldReplacedOnResume(std::string_view name) {
  static constexpr std::string_view kFields[] = {"Range", "If-Range", "If-Match",
                                                 "If-None-Match", "If-Modified-Since",
                                                 "If-Unmodified-Since"};
  for (std::string_view f : kFields) {
    if (cache::equalsIgnoreCase(name, f)) return true;
  }
  return false;
}

std::optional<ContentRange> parseContentRange(std::string_view value) {
  // Content-Range = range-unit SP ( range-resp / unsatisfied-range )
  // range-resp = incl-range "/" ( complete-length / "*" ); incl-range = first-pos "-" last-pos
  value = trimOws(value);
  if (!startsWithIgnoreCase(value, "bytes ")) return std::nullopt;
  value.remove_prefix(6);
  const size_t dash = value.find('-');
  const size_t slash = value.find('/');
  if (dash == std::string_view::npos || slash == std::string_view::npos || dash > slash) {
    return std::nullopt;
  }
  ContentRange r;
  if (!parseDecimal(value.substr(0, dash), r.first) ||
      !parseDecimal(value.substr(dash + 1, slash - dash - 1), r.last) || r.last < r.first) {
    return std::nullopt;
  }
  const std::string_view complete = value.substr(slash + 1);
  if (complete != "*") {
    uint64_t n = 0;
    // §14.4: a valid incl-range lies within the complete length.
    if (!parseDecimal(complete, n) || r.last >= n) return std::nullopt;
    r.complete = n;
  }
  return r;
}

const char* resumeOutcomeName(ResumeOutcome outcome) {
  switch (outcome) {
    case ResumeOutcome::kOk: return "ok";
    case ResumeOutcome::kValidatorMismatch: return "validator_mismatch";
    case ResumeOutcome::kPreconditionFailed: return "precondition_failed";
    case ResumeOutcome::kNoRange: return "no_range";
    case ResumeOutcome::kFailed: return "failed";
    case ResumeOutcome::kNotResumable: return "not_resumable";
  }
  return "failed";
}

ResumeOutcome checkResumeHead(const ResumeValidators& validators, uint64_t offset,
                              const ResponseHeadView& head, const char** why,
                              ContentRange* range_out) {
  const char* unused = nullptr;
  const char*& reason = why ? *why : unused;
  if (head.status == 412) {
    reason = "the other origin has another representation (412)";
    return ResumeOutcome::kPreconditionFailed;
  }
  if (head.status == 416) {
    reason = "the other origin's representation is shorter (416)";
    return ResumeOutcome::kValidatorMismatch;
  }
  if (head.status >= 200 && head.status < 300 && head.status != 206) {
    // A 200 is the whole representation: the origin cannot (or will not) do ranges. We do not
    // skip its first N bytes: the splice would rest on the validators alone, and an origin that
    // ignores Range may well ignore If-Match too.
    reason = "the other origin ignored the range";
    return ResumeOutcome::kNoRange;
  }
  if (head.status != 206) {
    reason = "the other origin did not answer the range request";
    return ResumeOutcome::kFailed;
  }
  bool found = false;
  const std::string_view content_range = head.find("Content-Range", &found);
  // A multipart/byteranges 206 has no Content-Range field: not what we asked for.
  if (!found) {
    reason = "206 without Content-Range";
    return ResumeOutcome::kValidatorMismatch;
  }
  const std::optional<ContentRange> range = parseContentRange(content_range);
  if (!range) {
    reason = "206 with an invalid Content-Range";
    return ResumeOutcome::kValidatorMismatch;
  }
  if (range->first != offset) {
    reason = "206 starting at another offset";
    return ResumeOutcome::kValidatorMismatch;
  }
  if (validators.total_length) {
    if (range->complete != validators.total_length) {
      reason = "206 of a representation of another length";
      return ResumeOutcome::kValidatorMismatch;
    }
  }
  if (range->complete && range->last + 1 != *range->complete) {
    reason = "206 not running to the end of the representation";
    return ResumeOutcome::kValidatorMismatch;
  }
  if (head.content_length && *head.content_length != range->last - range->first + 1) {
    reason = "206 whose Content-Length disagrees with its Content-Range";
    return ResumeOutcome::kValidatorMismatch;
  }
  // The same coding: bytes N.. of a gzip body do not continue an identity one (RFC 9110 §8.4).
  bool has_coding = false;
  const std::string_view coding = trimOws(head.find("Content-Encoding", &has_coding));
  if (!cache::equalsIgnoreCase(has_coding ? coding : std::string_view(),
                               validators.content_encoding)) {
    reason = "206 in another content coding";
    return ResumeOutcome::kValidatorMismatch;
  }
  // §15.3.7: a 206 carries the validators a 200 would have. Strong comparison (§8.8.3.2).
  if (!validators.strong_etag.empty()) {
    bool has_etag = false;
    const std::string_view etag = trimOws(head.find("ETag", &has_etag));
    if (!has_etag || etag != validators.strong_etag) {
      reason = "206 with another ETag";
      return ResumeOutcome::kValidatorMismatch;
    }
  } else {
    bool has_date = false;
    const std::string_view date = trimOws(head.find("Last-Modified", &has_date));
    if (!has_date || date != validators.last_modified) {
      reason = "206 with another Last-Modified";
      return ResumeOutcome::kValidatorMismatch;
    }
  }
  reason = "";
  if (range_out) *range_out = *range;
  return ResumeOutcome::kOk;
}

}  // namespace streamedge::proxy
