// libFuzzer target: the HLS playlist parser, the LL-HLS delivery directives and the blocking
// reload decision. Whatever the bytes, parsing returns a playlist or an error (never a crash,
// never unbounded work), and what it returns is consistent.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <variant>

#include "streaming/freshness.h"
#include "streaming/hls_playlist.h"
#include "streaming/ll_hls.h"

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace streamedge::streaming;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  // The query side: the first line is read as a query string.
  const std::string_view query = text.substr(0, text.find('\n'));
  const auto directives = parseDeliveryDirectives(query);
  if (directives.isOk()) {
    // Canonical form is a fixed point.
    const auto again = parseDeliveryDirectives(directives->canonical());
    check(again.isOk() && again->canonical() == directives->canonical());
    check(!directives->part || directives->msn);
  }

  const auto parsed = parseHlsPlaylist(text);
  if (!parsed.isOk()) return 0;
  check(text.size() <= kMaxPlaylistBytes);
  if (const auto* media = std::get_if<HlsMediaPlaylist>(&parsed.value())) {
    uint64_t msn = media->media_sequence + media->skipped_segments;
    for (const HlsSegment& s : media->segments) check(s.msn == msn++);
    check(media->nextMsn() == msn);
    if (const auto last = media->lastMsn()) check(media->contains(*last, std::nullopt));
    if (directives.isOk() && directives->blocking()) {
      const BlockingDecision d = decideBlockingReload(*media, *directives);
      if (d.action == BlockingAction::kHold) check(d.hold_limit.count() >= 1000);
      if (media->contains(*directives->msn, directives->part)) check(d.action == BlockingAction::kAnswerNow);
    }
    const streamedge::conf::CachePolicy policy;
    const auto lifetime = streamLifetime(text, false, policy);
    if (lifetime) check(lifetime->lifetime.count() >= 1);
  }
  return 0;
}
