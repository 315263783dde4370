// libFuzzer target: Range and conditional-request helpers. The first 8 bytes give the
// representation size (small sizes favoured), the rest is the header value. A single range must
// lie inside the representation; the validator helpers must be total and consistent.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "proxy/range.h"

namespace {

using streamedge::proxy::RangeSpec;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 8) return 0;
  uint64_t raw = 0;
  std::memcpy(&raw, data, 8);
  // Mostly small sizes (so ranges hit the edges), sometimes huge ones (overflow paths).
  const uint64_t rep_size = (raw & 1) ? (raw >> 1) : ((raw >> 1) % 4096);
  const std::string_view text(reinterpret_cast<const char*>(data + 8), size - 8);

  const RangeSpec r = streamedge::proxy::parseRange(text, rep_size);
  if (r.kind == RangeSpec::Kind::kSingle) {
    check(r.first <= r.last && r.last < rep_size);
  }
  if (r.kind == RangeSpec::Kind::kSingle || r.kind == RangeSpec::Kind::kUnsatisfiable) {
    // Only a bytes range can be acted upon, and never a list.
    check(text.find(',') == std::string_view::npos && text.find('=') != std::string_view::npos);
  }

  // Split the value in two at the first '|' to get a request validator and a stored one.
  const size_t bar = text.find('|');
  const std::string_view a = text.substr(0, bar);
  const std::string_view b =
      bar == std::string_view::npos ? std::string_view() : text.substr(bar + 1);
  const bool inm = streamedge::proxy::ifNoneMatchMatches(a, b);
  // An entity-tag If-Range that allows the range is a strong match, so the weak comparison of
  // If-None-Match must match as well.
  const size_t start = a.find_first_not_of(" \t");
  const bool etag_form = start != std::string_view::npos && a[start] == '"';
  if (etag_form && streamedge::proxy::ifRangeAllows(a, b, b)) check(inm);
  // "*" matches whatever is stored.
  if (a == "*") check(inm);
  // Any valid date is not modified since itself.
  if (streamedge::proxy::notModifiedSince(a, b)) check(streamedge::proxy::notModifiedSince(b, b));
  return 0;
}
