#include "streaming/ll_hls.h"

#include <algorithm>
#include <cmath>

#include "streaming/text.h"

namespace streamedge::streaming {

namespace {

Status badRequest(const char* detail) { return Status(Code::kInvalid, Source::kDownstream, detail); }

}  // namespace

std::string DeliveryDirectives::canonical() const {
  std::string out;
  if (msn) out += "_HLS_msn=" + std::to_string(*msn);
  if (part) out += (out.empty() ? "" : "&") + std::string("_HLS_part=") + std::to_string(*part);
  if (skip != Skip::kNone) {
    out += (out.empty() ? "" : "&") + std::string("_HLS_skip=") + (skip == Skip::kYes ? "YES" : "v2");
  }
  return out;
}

Result<DeliveryDirectives> parseDeliveryDirectives(std::string_view query) {
  if (!query.empty() && query.front() == '?') query.remove_prefix(1);
  DeliveryDirectives d;
  bool seen_skip = false;
  size_t pos = 0;
  while (pos <= query.size()) {
    size_t amp = query.find('&', pos);
    if (amp == std::string_view::npos) amp = query.size();
    const std::string_view param = query.substr(pos, amp - pos);
    pos = amp + 1;
    if (param.substr(0, 5) != "_HLS_") continue;
    const size_t eq = param.find('=');
    const std::string_view name = param.substr(0, eq);
    const std::string_view value = eq == std::string_view::npos ? std::string_view() : param.substr(eq + 1);
    if (name == "_HLS_msn" || name == "_HLS_part") {
      std::optional<uint64_t>& slot = name == "_HLS_msn" ? d.msn : d.part;
      if (slot) return badRequest("repeated LL-HLS delivery directive");
      uint64_t v = 0;
      if (!parseDecimalInteger(value, v)) return badRequest("LL-HLS _HLS_msn/_HLS_part is not a decimal integer");
      slot = v;
    } else if (name == "_HLS_skip") {
      if (seen_skip) return badRequest("repeated LL-HLS delivery directive");
      seen_skip = true;
      if (value == "YES") {
        d.skip = DeliveryDirectives::Skip::kYes;
      } else if (value == "v2") {
        d.skip = DeliveryDirectives::Skip::kV2;
      } else {
        return badRequest("LL-HLS _HLS_skip is not YES or v2");
      }
    }
    // Other _HLS_ names are reserved for later versions of the protocol: ignored here, kept or
    // dropped by the route's key policy like any parameter.
  }
  if (d.part && !d.msn) return badRequest("LL-HLS _HLS_part without _HLS_msn");
  return d;
}

PlaylistSummary summarizePlaylist(const HlsMediaPlaylist& playlist) {
  PlaylistSummary s;
  s.live = playlist.live();
  s.target_duration_s = playlist.target_duration_s;
  s.part_target_s = playlist.part_target_s;
  s.next_msn = playlist.nextMsn();
  s.has_segments = !playlist.segments.empty();
  s.last_segment_parts = s.has_segments ? playlist.segments.back().parts.size() : 0;
  s.trailing_parts = playlist.trailing_parts.size();
  return s;
}

bool PlaylistSummary::contains(uint64_t msn, std::optional<uint64_t> part) const {
  // A whole segment: it, or a later one, is complete.
  if (has_segments && next_msn > 0 && msn <= next_msn - 1) return true;
  if (!part) return false;
  // A partial segment of the segment being produced.
  return msn == next_msn && *part < trailing_parts;
}

BlockingDecision decideBlockingReload(const PlaylistSummary& newest, const DeliveryDirectives& d) {
  BlockingDecision out;
  if (!d.msn) return out;
  const uint64_t msn = *d.msn;
  // An ended stream will not grow: whatever it has is the answer.
  if (!newest.live || newest.contains(msn, d.part)) return out;

  // rfc8216bis §6.2.5.2: more than two segments past the newest complete one, or a part more
  // than the Part Limit past the newest part: Bad Request.
  const uint64_t next = newest.next_msn;  // the segment being produced
  const uint64_t newest_complete_plus_limit = next - 1 + kSegmentLimit;  // next ≥ media_sequence ≥ 0
  if (next == 0 ? msn > kSegmentLimit - 1 : msn > newest_complete_plus_limit) {
    out.action = BlockingAction::kBadRequest;
    return out;
  }
  if (d.part) {
    // Parts per segment: from the part target when given, else from the newest segment's parts.
    uint64_t per_segment = 0;
    if (newest.part_target_s && *newest.part_target_s > 0) {
      per_segment = static_cast<uint64_t>(
          std::ceil(static_cast<double>(newest.target_duration_s) / *newest.part_target_s));
    }
    if (per_segment == 0) per_segment = newest.last_segment_parts;
    per_segment = std::clamp<uint64_t>(per_segment, 1, 1000);
    // Positions counted in parts; the newest part is the last trailing one (or the last part of
    // the newest complete segment when none trails).
    using Wide = unsigned __int128;
    const Wide newest_pos = static_cast<Wide>(next) * per_segment + newest.trailing_parts;
    const Wide asked_pos = static_cast<Wide>(msn) * per_segment + *d.part + 1;
    if (asked_pos > newest_pos + kPartLimit) {
      out.action = BlockingAction::kBadRequest;
      return out;
    }
  }
  out.action = BlockingAction::kHold;
  out.hold_limit = holdLimit(newest);
  return out;
}

Millis holdLimit(const PlaylistSummary& newest) {
  const int64_t target_ms = static_cast<int64_t>(std::min<uint64_t>(newest.target_duration_s, 3600)) * 1000;
  return Millis(std::max<int64_t>(1000, 3 * target_ms));
}

}  // namespace streamedge::streaming
