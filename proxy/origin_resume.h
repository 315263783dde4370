// Resuming an origin body after the first byte (RFC 9110 §14 ranges, §13.1 preconditions).
//
// When an origin dies mid-body, OriginFetch asks another origin of the group for the rest with
// `Range: bytes=N-` guarded by `If-Match: <strong ETag>` (or `If-Unmodified-Since:
// <Last-Modified>` when the first answer had no strong ETag), and splices the answer onto what
// its observer already has only when this module says the 206 is the same representation: same
// strong ETag (or same Last-Modified), the same Content-Encoding, Content-Range starting at N,
// running to the end, with the complete length the first answer declared. Anything else — a
// 200 (ranges not supported), a 412, other validators, another length — means "abort", never
// two versions in one body. A cluster peer that dies mid-body is continued the same way from
// the route's origin group (OriginClient::continueBody).
//
// Pure functions and plain values; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "proxy/http_parser.h"

namespace streamedge::proxy {

// What a resume must match, taken from the first (200) answer.
struct ResumeValidators {
  std::string strong_etag;              // "" when the answer had none or a weak one
  std::string last_modified;            // "" when absent or not a valid HTTP-date
  std::optional<uint64_t> total_length;  // the Content-Length; unknown for chunked/close bodies
  // The Content-Encoding of the first answer, as sent ("" = identity). A part in another coding
  // is other bytes even under the same Last-Modified (an edge that compresses keeps the date).
  std::string content_encoding;

  // A resume is only possible with a validator to guard it.
  bool usable() const { return !strong_etag.empty() || !last_modified.empty(); }
};

// The validators of a 200 answer's fields (name/value pairs as OriginResponse carries them).
ResumeValidators resumeValidatorsOf(
    const std::vector<std::pair<std::string, std::string>>& headers,
    std::optional<uint64_t> content_length);

// RFC 9110 §8.8.3: an entity-tag that is not weak (no "W/") and is a quoted opaque-tag.
bool isStrongEtag(std::string_view etag);

// The fields a resume request adds: Range: bytes=<offset>- and If-Match (strong ETag) or, only
// without one, If-Unmodified-Since (Last-Modified). Requires validators.usable().
std::vector<std::pair<std::string, std::string>> resumeRequestFields(
    const ResumeValidators& validators, uint64_t offset);

// Request fields a resume request must not carry from the original request: ranges and
// conditionals of its own (ours replace them).
bool isFieldReplacedOnResume(std::string_view name);

// Content-Range (RFC 9110 §14.4) of a 206: "bytes first-last/complete" or "bytes first-last/*".
struct ContentRange {
  uint64_t first = 0;
  uint64_t last = 0;                 // inclusive
  std::optional<uint64_t> complete;  // nullopt for "*"
};
std::optional<ContentRange> parseContentRange(std::string_view value);

// The verdict on the head answering a resume request. The names are the `outcome` label of
// streamedge_origin_resumes_total.
enum class ResumeOutcome {
  kOk,                   // a 206 of the same representation from offset N to its end
  kValidatorMismatch,    // a 206 of another representation, offset or length (or a 416)
  kPreconditionFailed,   // 412: the representation changed on that origin
  kNoRange,              // a 200 (or another 2xx): the origin ignored the range
  kFailed,               // the attempt failed (connection, timeout, 5xx, other status)
  kNotResumable,         // no attempt was possible: no validator, no other origin, deadline
};
inline constexpr size_t kResumeOutcomes = 6;
// "ok", "validator_mismatch", "precondition_failed", "no_range", "failed", "not_resumable".
const char* resumeOutcomeName(ResumeOutcome outcome);

// Checks the head answering a Range request for bytes from `offset` on. kFailed for statuses
// worth trying on another origin (5xx, 404…); every other outcome but kOk ends the fetch. `why`
// (may be null) gets a static reason for the log; `range` (may be null) the 206's Content-Range
// when the outcome is kOk.
ResumeOutcome checkResumeHead(const ResumeValidators& validators, uint64_t offset,
                              const ResponseHeadView& head, const char** why,
                              ContentRange* range = nullptr);

}  // namespace streamedge::proxy
