#include "streaming/prefetch_targets.h"

#include <algorithm>

namespace streamedge::streaming {

namespace {

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

// The host of an authority or a Host field, without userinfo or port ("[v6]" kept whole).
std::string_view hostOf(std::string_view authority) {
  const size_t at = authority.rfind('@');
  if (at != std::string_view::npos) authority.remove_prefix(at + 1);
  if (!authority.empty() && authority.front() == '[') {
    const size_t close = authority.find(']');
    return close == std::string_view::npos ? authority : authority.substr(0, close + 1);
  }
  const size_t colon = authority.find(':');
  return colon == std::string_view::npos ? authority : authority.substr(0, colon);
}

void split(std::string_view path_and_query, PrefetchTarget& out) {
  const size_t q = path_and_query.find('?');
  out.path.assign(path_and_query.substr(0, q));
  out.query.clear();
  if (q != std::string_view::npos) out.query.assign(path_and_query.substr(q + 1));
}

}  // namespace

bool resolvePrefetchUri(std::string_view uri, std::string_view base_path, std::string_view host,
                        PrefetchTarget& out) {
  // The fragment is the client's (RFC 3986 §3.5): never part of a request.
  uri = uri.substr(0, uri.find('#'));
  if (uri.empty() || uri.size() > kMaxUriBytes) return false;
  for (const char c : uri) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return false;
  }
  std::string_view rest;
  const size_t scheme_end = uri.find(':');
  const size_t first_delim = uri.find_first_of("/?");
  if (scheme_end != std::string_view::npos &&
      (first_delim == std::string_view::npos || scheme_end < first_delim)) {
    // An absolute URI (RFC 3986 §4.3): only http(s) of this very host.
    const std::string_view scheme = uri.substr(0, scheme_end);
    if (!equalsIgnoreCase(scheme, "http") && !equalsIgnoreCase(scheme, "https")) return false;
    rest = uri.substr(scheme_end + 1);
    if (rest.substr(0, 2) != "//") return false;
  } else {
    rest = uri;
  }
  if (rest.substr(0, 2) == "//") {
    rest.remove_prefix(2);
    const size_t end = rest.find_first_of("/?");
    const std::string_view authority = rest.substr(0, end);
    if (authority.empty() || !equalsIgnoreCase(hostOf(authority), hostOf(host))) return false;
    rest = end == std::string_view::npos ? std::string_view("/") : rest.substr(end);
    if (rest.front() == '?') {
      split(rest, out);
      out.path = "/";
      return true;
    }
    split(rest, out);
    return true;
  }
  if (rest.front() == '/') {
    split(rest, out);
    return true;
  }
  // A relative reference: merged with the base path's directory (§5.2.3).
  const size_t slash = base_path.rfind('/');
  if (slash == std::string_view::npos) return false;
  std::string merged(base_path.substr(0, slash + 1));
  if (rest.front() == '?') {
    // Only a query: the base document itself with another query.
    merged.assign(base_path);
  }
  merged.append(rest);
  split(merged, out);
  return true;
}

PrefetchSelection selectPrefetchTargets(const HlsMediaPlaylist& playlist,
                                        std::string_view playlist_path, std::string_view host,
                                        size_t segments) {
  PrefetchSelection selection;
  if (!playlist.live()) return selection;
  auto add = [&](std::string_view uri) {
    PrefetchTarget target;
    if (!resolvePrefetchUri(uri, playlist_path, host, target)) {
      ++selection.refused;
      return;
    }
    if (std::find(selection.targets.begin(), selection.targets.end(), target) ==
        selection.targets.end()) {
      selection.targets.push_back(std::move(target));
    }
  };
  // The hinted part first: it is what a low-latency player asks for next.
  for (const HlsPreloadHint& hint : playlist.preload_hints) {
    if (hint.type == HlsPreloadHint::Type::kPart && !hint.byterange_start &&
        !hint.byterange_length) {
      add(hint.uri);
    }
  }
  const size_t n = std::min(segments, playlist.segments.size());
  for (size_t i = 0; i < n; ++i) add(playlist.segments[playlist.segments.size() - 1 - i].uri);
  return selection;
}

}  // namespace streamedge::streaming
