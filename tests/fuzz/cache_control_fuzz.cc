// libFuzzer target: Cache-Control (RFC 9111 §5.2) and targeted cache control (RFC 9213, a
// Structured Field dictionary). The first byte picks which field the rest is sent as, beside a
// fixed Cache-Control. Every delta-seconds stays within [0, 2^31]; a targeted value that parses
// holds only the characters RFC 8941 allows; the field chosen follows the precedence; the
// edge's own fields never reach the wire.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cache/freshness.h"
#include "cache/targeted_cache_control.h"

namespace {

using streamedge::cache::CacheControl;
using streamedge::cache::CacheControlSource;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

void checkBounds(const CacheControl& cc) {
  for (const auto& d : {cc.max_age, cc.s_maxage, cc.stale_while_revalidate, cc.stale_if_error}) {
    if (d) check(d->count() >= 0 && d->count() <= (int64_t{1} << 31));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);

  const CacheControl plain = CacheControl::parse(text);
  checkBounds(plain);
  check(!plain.from_targeted_field);

  const std::optional<CacheControl> targeted = streamedge::cache::parseTargetedCacheControl(text);
  if (targeted) {
    checkBounds(*targeted);
    check(targeted->from_targeted_field);
    for (char c : text) {
      const unsigned char u = static_cast<unsigned char>(c);
      check(c == '\t' || (u >= 0x20 && u <= 0x7e));
    }
  }

  static constexpr std::string_view kNames[] = {"Streamedge-Cache-Control", "CDN-Cache-Control",
                                                "Surrogate-Control", "Cache-Control"};
  const size_t which = data[0] % 4;
  std::vector<std::pair<std::string, std::string>> fields = {
      {"Cache-Control", "max-age=7"}, {std::string(kNames[which]), std::string(text)}};
  streamedge::cache::internEdgeFields(fields, {"Streamedge-Cache-Control", true});
  streamedge::cache::ResponseHead head;
  head.status = 200;
  head.headers = std::move(fields);
  head.buildWire();
  // No line of the wire is an edge field (the value itself may mention the names).
  if (text.find_first_of("\r\n") == std::string_view::npos) {
    const std::string wire = "\n" + head.wire;
    check(wire.find("\nStreamedge-Cache-Control:") == std::string::npos);
    check(wire.find("\nSurrogate-Control:") == std::string::npos);
    check(wire.find("\n:") == std::string::npos);
  }

  const streamedge::cache::SelectedCacheControl s = streamedge::cache::selectCacheControl(head);
  checkBounds(s.cc);
  check(s.cc.from_targeted_field == (s.source != CacheControlSource::kCacheControl));
  if ((which == 0 || which == 1) && targeted) {
    check(s.source == (which == 0 ? CacheControlSource::kOwnTarget
                                  : CacheControlSource::kCdnCacheControl));
  }
  if ((which == 0 || which == 1) && !targeted) {
    check(s.source == CacheControlSource::kCacheControl);
  }
  return 0;
}
