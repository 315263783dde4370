// Prefetch targets of a live HLS media playlist: which objects an edge may fetch before the
// first viewer asks (proxy/prefetch.h starts the fills). The newest complete segments and the
// EXT-X-PRELOAD-HINT part (rfc8216bis §4.4.5.3), each resolved against the playlist's URL (RFC
// 3986 §5.2, without the dot-segment removal, which the caller's path normalisation does).
// Only objects of the playlist's own host qualify: a prefetch never fetches from another
// host. Pure functions; thread-safe.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "streaming/hls_playlist.h"

namespace streamedge::streaming {

// A target: an absolute path (not yet normalised) and its query (without '?', may be empty).
struct PrefetchTarget {
  std::string path;
  std::string query;
  bool operator==(const PrefetchTarget&) const = default;
};

struct PrefetchSelection {
  std::vector<PrefetchTarget> targets;  // newest first, no duplicates
  size_t refused = 0;                   // URIs naming another host or not resolvable
};

// Resolves `uri` (as written in a playlist, or a CMCD nor value) against the playlist or
// request path `base_path` (absolute, no query) served for `host` (the request's Host, port
// included or not). A relative reference is taken from base_path's directory; an absolute
// path as is; an absolute http(s) URL or a network-path reference ("//host/...") only when its
// authority names `host` (compared without port, case-insensitively). Returns false when the
// URI names another host, another scheme, or is empty or carries a fragment-only reference.
bool resolvePrefetchUri(std::string_view uri, std::string_view base_path, std::string_view host,
                        PrefetchTarget& out);

// The objects to prefetch for a live media playlist: its newest `segments` complete segments
// and its part preload hint (a byte-range hint is left out: a range of a resource being
// produced is not an object of its own). A playlist with EXT-X-ENDLIST or of type VOD
// selects nothing: every segment of it is already what viewers have been fetching.
PrefetchSelection selectPrefetchTargets(const HlsMediaPlaylist& playlist,
                                        std::string_view playlist_path, std::string_view host,
                                        size_t segments);

}  // namespace streamedge::streaming
