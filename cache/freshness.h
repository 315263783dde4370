// Freshness and storability per RFC 9111, with per-route defaults for video (playlists short,
// segments long). Pure functions over parsed values; thread-safe.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "cache/response_head.h"
#include "conf/clock.h"
#include "conf/config.h"

namespace streamedge::cache {

// Cache-Control response/request directives (RFC 9111 §5.2). Unknown directives are ignored;
// a directive with an invalid argument is treated as absent, except the restrictive ones
// (no-store, private, no-cache, must-revalidate, proxy-revalidate), which are always honoured,
// with or without an argument (fail safe: private="Set-Cookie" is private for a shared cache).
// A repeated delta-seconds directive keeps its first valid occurrence; values past 2^31 clamp.
struct CacheControl {
  bool no_store = false;
  bool no_cache = false;   // response: store, but revalidate before every use (§5.2.2.4)
  bool is_private = false; // §5.2.2.7: a shared cache must not store
  bool is_public = false;
  bool must_revalidate = false;
  bool proxy_revalidate = false;
  bool immutable = false;
  bool only_if_cached = false;  // request
  std::optional<conf::Seconds> max_age;
  std::optional<conf::Seconds> s_maxage;
  std::optional<conf::Seconds> stale_while_revalidate;  // RFC 5861
  std::optional<conf::Seconds> stale_if_error;          // RFC 5861
  // The directives came from a targeted field (RFC 9213, see targeted_cache_control.h): then
  // Expires is ignored for this cache, as Cache-Control is (§2.1).
  bool from_targeted_field = false;

  static CacheControl parse(std::string_view value);
};

// RFC 9110 §5.6.7 IMF-fixdate, plus the obsolete RFC 850 and asctime forms on input.
std::optional<WallTime> parseHttpDate(std::string_view text);
std::string formatHttpDate(WallTime t);  // "Sun, 06 Nov 1994 08:49:37 GMT"

enum class ContentKind { kPlaylist, kSegment, kOther };
// By the lower-cased extension of the last path segment (query excluded): .m3u8 .m3u .mpd →
// playlist; .ts .m4s .mp4 .m4a .m4v .fmp4 .cmfv .cmfa .cmft .aac .ac3 .ec3 .mp3 .webm .vtt
// .webvtt .ttml .jpg .jpeg .png .webp .avif → segment; anything else (including .key: HLS keys
// rotate and are authorised, so they get the short default) → other.
ContentKind classifyPath(std::string_view path);

// A lifetime the stream itself implies for a playlist or MPD (streaming/freshness.h reads it
// from the body: half the HLS target duration, six target durations for a blocking reload's
// answer, minimumUpdatePeriod, ...).
struct StreamLifetime {
  conf::Seconds lifetime{0};
  // True: the route's playlist_ttl still bounds it when the origin says nothing (a live
  // playlist); false: it replaces playlist_ttl (an ended playlist, a blocking reload's answer,
  // an MPD's minimumUpdatePeriod), since the stream says how long the text stays true.
  bool bounded_by_route_default = true;
  const char* rule = "";  // static, for logs and tests: "hls-live", "hls-ended", ...
};

struct StoreDecision {
  bool store = false;
  const char* reason = "";  // static, for logs: "no-store", "private", "set-cookie", ...
};

// May a shared cache store this response (RFC 9111 §3)? Statuses cacheable by default or with
// explicit freshness; no-store, private, Set-Cookie (unless policy.cache_set_cookie) and requests
// with Authorization (unless public/s-maxage/must-revalidate, §3.5, or policy.cache_authorized)
// are not stored. Also not stored: a 206, and a Vary: * response. Expires counts as explicit
// freshness unless cc.from_targeted_field.
StoreDecision decideStore(int status, bool request_has_authorization, const ResponseHead& head,
                          const CacheControl& cc, const conf::CachePolicy& policy);

// Everything needed later to decide fresh/stale without reparsing the head.
struct Freshness {
  WallTime response_time{};             // when the response head arrived
  conf::Seconds corrected_initial_age{0};  // RFC 9111 §4.2.3
  conf::Seconds lifetime{0};               // freshness lifetime (§4.2.1)
  conf::Seconds stale_while_revalidate{0};
  conf::Seconds stale_if_error{0};
  bool must_revalidate = false;  // must-revalidate / proxy-revalidate / s-maxage: never serve stale
  bool no_cache = false;         // always revalidate before use
  bool explicit_lifetime = false;  // the origin gave max-age/s-maxage/Expires

  conf::Seconds currentAge(WallTime now) const;  // §4.2.3
  bool isFresh(WallTime now) const;              // !no_cache && age < lifetime
  // Stale but still usable while a revalidation runs (RFC 5861 §3).
  bool withinStaleWhileRevalidate(WallTime now) const;
  // Stale but usable because the origin failed (RFC 5861 §4).
  bool withinStaleIfError(WallTime now) const;
};

// §4.2.1 lifetime: s-maxage, else max-age, else Expires - Date (not when cc.from_targeted_field:
// RFC 9213 §2.1 ignores Expires then); else the route default for the content kind. With a
// `stream` lifetime (playlists and MPDs whose body was read): an explicit lifetime from the
// origin is kept only where it is stricter (the smaller of the two); without one, the stream's
// lifetime is used, bounded by playlist_ttl when it says so. Age: §4.2.3 using the Age and Date
// fields.
Freshness computeFreshness(const ResponseHead& head, const CacheControl& cc,
                           WallTime request_time, WallTime response_time, ContentKind kind,
                           const conf::CachePolicy& policy,
                           std::optional<StreamLifetime> stream = std::nullopt);

}  // namespace streamedge::cache
