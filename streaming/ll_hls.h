// Low-Latency HLS delivery directives (draft-pantos-hls-rfc8216bis §6.2.5): the _HLS_msn,
// _HLS_part and _HLS_skip query parameters of a playlist request, their validation, and the
// decision a blocking playlist reload needs: answer from the newest stored playlist at once,
// hold the request until the origin's playlist has the asked segment or part, or refuse it.
//
// The request path calls parseDeliveryDirectives on the raw query of every request for a
// playlist before keying it (an error is a 400 with the status's detail), and, for a blocking
// request (msn present) whose key misses while the plain playlist of the same URL is stored,
// decideBlockingReload on that stored playlist's parsed body. Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "conf/status.h"
#include "conf/units.h"
#include "streaming/hls_playlist.h"

namespace streamedge::streaming {

struct DeliveryDirectives {
  enum class Skip { kNone, kYes, kV2 };  // _HLS_skip=YES (segments) or v2 (and date ranges)
  std::optional<uint64_t> msn;   // _HLS_msn=<M>
  std::optional<uint64_t> part;  // _HLS_part=<P> (only with msn)
  Skip skip = Skip::kNone;

  bool blocking() const { return msn.has_value(); }
  bool any() const { return msn || part || skip != Skip::kNone; }
  // "_HLS_msn=M&_HLS_part=P&_HLS_skip=YES", the parameters present in this order, numbers
  // without leading zeros: the form the cache key and the origin request carry.
  std::string canonical() const;
};

// Reads the directives from a query string (with or without the leading '?'). Other
// parameters are ignored. Errors (kInvalid, source kDownstream; the viewer gets 400, as
// rfc8216bis §6.2.5.2 asks): a directive given twice, a value that is not a decimal-integer
// (msn, part) or not YES/v2 (skip), _HLS_part without _HLS_msn.
Result<DeliveryDirectives> parseDeliveryDirectives(std::string_view query);

// How many partial segments a request may be ahead of the newest one in the playlist before
// it is refused (the "Part Limit" of rfc8216bis §6.2.5.2).
inline constexpr uint64_t kPartLimit = 3;
// How many segments a request may be ahead of the newest complete one (same section: "plus
// two").
inline constexpr uint64_t kSegmentLimit = 2;

enum class BlockingAction {
  kAnswerNow,   // the playlist already has the segment/part (or the stream ended): answer with it
  kHold,        // wait for a newer playlist, at most hold_limit, then 503
  kBadRequest,  // too far ahead of the stream: 400 at once
};

struct BlockingDecision {
  BlockingAction action = BlockingAction::kAnswerNow;
  Millis hold_limit{0};  // kHold: three target durations (at least one second)
};

// What a blocking reload decision needs of a media playlist, without its segments: a few
// numbers, computed once when a playlist is stored (summarizePlaylist) so that a herd of blocking
// requests never parses the stored text again. Plain data; copyable.
struct PlaylistSummary {
  bool live = true;                      // HlsMediaPlaylist::live()
  uint64_t target_duration_s = 0;
  std::optional<double> part_target_s;
  uint64_t next_msn = 0;                 // HlsMediaPlaylist::nextMsn()
  bool has_segments = false;             // lastMsn() is next_msn - 1
  uint64_t last_segment_parts = 0;       // parts listed for the newest complete segment
  uint64_t trailing_parts = 0;           // parts of the segment being produced

  // As HlsMediaPlaylist::contains.
  bool contains(uint64_t msn, std::optional<uint64_t> part) const;
};

PlaylistSummary summarizePlaylist(const HlsMediaPlaylist& playlist);

// How long the edge holds a blocking request for `newest`'s stream before answering 503: three
// target durations, at least one second (rfc8216bis §6.2.5.2 asks clients to retry after that).
Millis holdLimit(const PlaylistSummary& newest);

// Decides for a blocking request (`d.blocking()`) against the newest playlist known.
BlockingDecision decideBlockingReload(const PlaylistSummary& newest, const DeliveryDirectives& d);
inline BlockingDecision decideBlockingReload(const HlsMediaPlaylist& newest, const DeliveryDirectives& d) {
  return decideBlockingReload(summarizePlaylist(newest), d);
}

}  // namespace streamedge::streaming
