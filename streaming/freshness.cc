#include "streaming/freshness.h"

#include <algorithm>
#include <cmath>
#include <variant>

#include "streaming/dash_mpd.h"
#include "streaming/hls_playlist.h"

namespace streamedge::streaming {

namespace {

using conf::Seconds;

// Whole seconds, at least one (a lifetime of 0 would stop coalescing altogether), at most a year.
Seconds atLeastOneSecond(double s) {
  if (!(s >= 1)) return Seconds(1);
  return Seconds(static_cast<int64_t>(std::min(std::floor(s), 366.0 * 86400)));
}

bool looksLikeXml(std::string_view body) {
  if (body.substr(0, 3) == "\xEF\xBB\xBF") body.remove_prefix(3);  // a UTF-8 BOM
  const size_t first = body.find_first_not_of(" \t\r\n");
  return first != std::string_view::npos && body[first] == '<';
}

}  // namespace

std::optional<cache::StreamLifetime> streamLifetime(std::string_view body, bool blocking_request,
                                                    const conf::CachePolicy& policy) {
  if (looksLikeHls(body)) {
    Result<HlsPlaylist> parsed = parseHlsPlaylist(body);
    if (!parsed.isOk()) return std::nullopt;
    return streamLifetime(parsed.value(), blocking_request, policy);
  }
  if (looksLikeXml(body)) {
    Result<DashMpd> parsed = parseDashMpd(body);
    if (!parsed.isOk()) return std::nullopt;
    return streamLifetime(parsed.value(), policy);
  }
  return std::nullopt;
}

std::optional<cache::StreamLifetime> streamLifetime(const DashMpd& mpd,
                                                    const conf::CachePolicy& policy) {
  if (!mpd.dynamic) return cache::StreamLifetime{policy.ended_playlist_ttl, false, "mpd-static"};
  const std::optional<double> mup = mpd.minimum_update_period_s;
  if (!mup || *mup <= 0) return std::nullopt;
  return cache::StreamLifetime{atLeastOneSecond(*mup), false, "mpd-dynamic"};
}

std::optional<cache::StreamLifetime> streamLifetime(const HlsPlaylist& playlist, bool blocking_request,
                                                    const conf::CachePolicy& policy) {
  const auto* media = std::get_if<HlsMediaPlaylist>(&playlist);
  if (!media) return std::nullopt;  // a master playlist: the route default
  if (!media->live()) return cache::StreamLifetime{policy.ended_playlist_ttl, false, "hls-ended"};
  if (media->target_duration_s == 0) return std::nullopt;
  const double target = static_cast<double>(std::min<uint64_t>(media->target_duration_s, 86400));
  if (blocking_request) {
    return cache::StreamLifetime{atLeastOneSecond(6 * target), false, "hls-blocking"};
  }
  if (media->part_target_s) {
    return cache::StreamLifetime{atLeastOneSecond(*media->part_target_s / 2), true, "hls-live-parts"};
  }
  return cache::StreamLifetime{atLeastOneSecond(target / 2), true, "hls-live"};
}

}  // namespace streamedge::streaming
