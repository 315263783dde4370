// Freshness from the stream: how long a playlist or MPD body stays true, read with the parsers
// of this module. The one place the body-based lifetime rules live (the fill calls it once the
// body is complete; cache::computeFreshness combines it with the origin's headers, the stricter
// winning).
//
//   HLS media playlist, live            half the target duration (at least 1 s), bounded by the
//                                       route's playlist_ttl
//   ... with parts (EXT-X-PART-INF)     half the part target (at least 1 s: lifetimes are whole
//                                       seconds), bounded by playlist_ttl
//   ... answer to a blocking reload     six target durations (rfc8216bis §6.2.5.2: the answer
//       (the request had _HLS_msn)      names a fixed msn/part, so it stays the right answer to
//                                       that request while players still ask it)
//   HLS playlist with EXT-X-ENDLIST     the route's ended_playlist_ttl (default one day)
//     or PLAYLIST-TYPE:VOD
//   HLS master playlist                 nothing (the route's playlist_ttl)
//   MPD type="dynamic"                  minimumUpdatePeriod (at least 1 s); without one, or 0,
//                                       nothing (the route's playlist_ttl)
//   MPD type="static"                   the route's ended_playlist_ttl
//   anything that does not parse        nothing: cached by its headers and the route defaults
//
// Pure; thread-safe.
#pragma once

#include <optional>
#include <string_view>

#include "cache/freshness.h"
#include "conf/config.h"
#include "streaming/dash_mpd.h"
#include "streaming/hls_playlist.h"

namespace streamedge::streaming {

// `blocking_request`: the request carried _HLS_msn (see ll_hls.h).
std::optional<cache::StreamLifetime> streamLifetime(std::string_view body, bool blocking_request,
                                                    const conf::CachePolicy& policy);
// The same for an HLS playlist already parsed (a caller that needs the parse for more).
std::optional<cache::StreamLifetime> streamLifetime(const HlsPlaylist& playlist, bool blocking_request,
                                                    const conf::CachePolicy& policy);
// The same for an MPD already parsed.
std::optional<cache::StreamLifetime> streamLifetime(const DashMpd& mpd,
                                                    const conf::CachePolicy& policy);

}  // namespace streamedge::streaming
