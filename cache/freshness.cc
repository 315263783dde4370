#include "cache/freshness.h"

#include <time.h>

#include <algorithm>
#include <array>
#include <cstdio>

#include "conf/http_token.h"

namespace streamedge::cache {
namespace {

using conf::isTchar;

using std::chrono::floor;

// RFC 9111 §1.2.2: a delta-seconds too large to represent is taken as 2^31.
constexpr int64_t kMaxDeltaSeconds = int64_t{1} << 31;

bool isOws(char c) { return c == ' ' || c == '\t'; }
bool isDigit(char c) { return c >= '0' && c <= '9'; }

std::string_view trimOws(std::string_view s) {
  while (!s.empty() && isOws(s.front())) s.remove_prefix(1);
  while (!s.empty() && isOws(s.back())) s.remove_suffix(1);
  return s;
}

// delta-seconds = 1*DIGIT (RFC 9111 §1.2.2). `quoted`: the text is the inside of a
// quoted-string, where a quoted-pair ("\5") stands for its second character.
std::optional<Seconds> parseDeltaSeconds(std::string_view text, bool quoted) {
  int64_t value = 0;
  size_t digits = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (quoted && c == '\\' && i + 1 < text.size()) c = text[++i];
    if (!isDigit(c)) return std::nullopt;
    ++digits;
    if (value < kMaxDeltaSeconds) value = value * 10 + (c - '0');
  }
  if (digits == 0) return std::nullopt;
  return Seconds(std::min(value, kMaxDeltaSeconds));
}

// Applies one directive. `well_formed` is false when the element did not follow the §5.2
// grammar (a stray character, an unterminated quoted-string, an empty argument).
void applyDirective(CacheControl& cc, std::string_view name, bool well_formed, bool has_arg,
                    std::string_view arg, bool quoted) {
  // Restrictive directives are honoured whatever follows them: ignoring a malformed "private"
  // would store what the origin meant to keep out of shared caches. The qualified forms
  // (private="Set-Cookie", no-cache="Set-Cookie") restrict only the named fields in RFC 9111
  // §5.2.2.4/§5.2.2.7; we have no per-field handling, so they act as the unqualified form.
  if (equalsIgnoreCase(name, "no-store")) { cc.no_store = true; return; }
  if (equalsIgnoreCase(name, "private")) { cc.is_private = true; return; }
  if (equalsIgnoreCase(name, "no-cache")) { cc.no_cache = true; return; }
  if (equalsIgnoreCase(name, "must-revalidate")) { cc.must_revalidate = true; return; }
  if (equalsIgnoreCase(name, "proxy-revalidate")) { cc.proxy_revalidate = true; return; }
  if (!well_formed) return;

  // Directives without an argument: with one they are invalid, hence absent.
  if (equalsIgnoreCase(name, "public")) { if (!has_arg) cc.is_public = true; return; }
  if (equalsIgnoreCase(name, "immutable")) { if (!has_arg) cc.immutable = true; return; }
  if (equalsIgnoreCase(name, "only-if-cached")) { if (!has_arg) cc.only_if_cached = true; return; }

  // delta-seconds directives; RFC 9111 §5.2 asks recipients to accept the quoted form too.
  // A repeated directive keeps its first occurrence (§4.2.1 allows first-wins).
  std::optional<Seconds>* slot = nullptr;
  if (equalsIgnoreCase(name, "max-age")) slot = &cc.max_age;
  else if (equalsIgnoreCase(name, "s-maxage")) slot = &cc.s_maxage;
  else if (equalsIgnoreCase(name, "stale-while-revalidate")) slot = &cc.stale_while_revalidate;
  else if (equalsIgnoreCase(name, "stale-if-error")) slot = &cc.stale_if_error;
  if (slot == nullptr || !has_arg || slot->has_value()) return;  // unknown: ignored (§5.2.3)
  *slot = parseDeltaSeconds(arg, quoted);
}

// --- HTTP dates (RFC 9110 §5.6.7) ---

constexpr std::array<std::string_view, 7> kDayNames = {"Sun", "Mon", "Tue", "Wed",
                                                       "Thu", "Fri", "Sat"};
constexpr std::array<std::string_view, 7> kLongDayNames = {
    "Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"};
constexpr std::array<std::string_view, 12> kMonthNames = {
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

template <size_t N>
bool isOneOf(std::string_view s, const std::array<std::string_view, N>& names) {
  return std::find(names.begin(), names.end(), s) != names.end();  // case-sensitive (§5.6.7)
}

int monthIndex(std::string_view s) {
  for (size_t i = 0; i < kMonthNames.size(); ++i) {
    if (kMonthNames[i] == s) return static_cast<int>(i);
  }
  return -1;
}

// `count` decimal digits at `pos`, or -1.
int digitsAt(std::string_view s, size_t pos, size_t count) {
  if (pos + count > s.size()) return -1;
  int v = 0;
  for (size_t i = 0; i < count; ++i) {
    if (!isDigit(s[pos + i])) return -1;
    v = v * 10 + (s[pos + i] - '0');
  }
  return v;
}

// "HH:MM:SS" at `pos`.
bool timeAt(std::string_view s, size_t pos, int& h, int& m, int& sec) {
  if (pos + 8 > s.size() || s[pos + 2] != ':' || s[pos + 5] != ':') return false;
  h = digitsAt(s, pos, 2);
  m = digitsAt(s, pos + 3, 2);
  sec = digitsAt(s, pos + 6, 2);
  return h >= 0 && h <= 23 && m >= 0 && m <= 59 && sec >= 0 && sec <= 60;  // 60: leap second
}

bool isLeapYear(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int daysInMonth(int year, int month0) {
  static constexpr std::array<int, 12> kDays = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return month0 == 1 && isLeapYear(year) ? 29 : kDays[static_cast<size_t>(month0)];
}

std::optional<WallTime> toWallTime(int year, int month0, int day, int h, int m, int s) {
  // WallTime counts nanoseconds in 64 bits (1677..2262): a far-future date (an Expires in 3000
  // meaning "never") is clamped to the start of 2200 instead of overflowing; a date before 1900
  // is no real HTTP date.
  if (year < 1900) return std::nullopt;
  if (year > 2200) {
    year = 2200;
    month0 = 0;
    day = 1;
    h = m = s = 0;
  }
  if (month0 < 0 || day < 1 || day > daysInMonth(year, month0)) return std::nullopt;
  struct tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = month0;
  tm.tm_mday = day;
  tm.tm_hour = h;
  tm.tm_min = m;
  tm.tm_sec = s;
  const time_t t = timegm(&tm);  // UTC, no time zone or locale involved
  return WallTime(std::chrono::seconds(static_cast<int64_t>(t)));
}

// RFC 9110 §5.6.7: a two-digit year more than 50 years in the future is the most recent past
// year with those digits.
int expandTwoDigitYear(int yy) {
  const time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  struct tm now_tm{};
  gmtime_r(&now, &now_tm);
  const int current = now_tm.tm_year + 1900;
  int year = current - current % 100 + yy;
  if (year > current + 50) year -= 100;
  return year;
}

// IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT"
std::optional<WallTime> parseImfFixdate(std::string_view t) {
  if (t.size() != 29 || t[3] != ',' || t[4] != ' ' || t[7] != ' ' || t[11] != ' ' ||
      t[16] != ' ' || t[25] != ' ' || t.substr(26) != "GMT" || !isOneOf(t.substr(0, 3), kDayNames)) {
    return std::nullopt;
  }
  const int day = digitsAt(t, 5, 2);
  const int month = monthIndex(t.substr(8, 3));
  const int year = digitsAt(t, 12, 4);
  int h, m, s;
  if (day < 0 || year < 0 || !timeAt(t, 17, h, m, s)) return std::nullopt;
  return toWallTime(year, month, day, h, m, s);
}

// rfc850-date: "Sunday, 06-Nov-94 08:49:37 GMT"
std::optional<WallTime> parseRfc850(std::string_view t) {
  const size_t comma = t.find(',');
  if (comma == std::string_view::npos || !isOneOf(t.substr(0, comma), kLongDayNames)) {
    return std::nullopt;
  }
  const std::string_view r = t.substr(comma + 1);  // " 06-Nov-94 08:49:37 GMT"
  if (r.size() != 23 || r[0] != ' ' || r[3] != '-' || r[7] != '-' || r[10] != ' ' ||
      r[19] != ' ' || r.substr(20) != "GMT") {
    return std::nullopt;
  }
  const int day = digitsAt(r, 1, 2);
  const int month = monthIndex(r.substr(4, 3));
  const int yy = digitsAt(r, 8, 2);
  int h, m, s;
  if (day < 0 || yy < 0 || !timeAt(r, 11, h, m, s)) return std::nullopt;
  return toWallTime(expandTwoDigitYear(yy), month, day, h, m, s);
}

// asctime-date: "Sun Nov  6 08:49:37 1994"
std::optional<WallTime> parseAsctime(std::string_view t) {
  if (t.size() != 24 || t[3] != ' ' || t[7] != ' ' || t[10] != ' ' || t[19] != ' ' ||
      !isOneOf(t.substr(0, 3), kDayNames)) {
    return std::nullopt;
  }
  const int month = monthIndex(t.substr(4, 3));
  int day = -1;
  if (t[8] == ' ') {
    day = digitsAt(t, 9, 1);
  } else {
    day = digitsAt(t, 8, 2);
  }
  const int year = digitsAt(t, 20, 4);
  int h, m, s;
  if (day < 0 || year < 0 || !timeAt(t, 11, h, m, s)) return std::nullopt;
  return toWallTime(year, month, day, h, m, s);
}

// --- content kinds ---

// Live playlists change every target duration; the rest of a stream's files never change once
// published, so they get the long segment default. ".key" (HLS AES keys) is left as kOther on
// purpose: key servers rotate and authorise keys, so they get the short default_ttl.
constexpr std::array<std::string_view, 3> kPlaylistExtensions = {"m3u8", "m3u", "mpd"};
constexpr std::array<std::string_view, 22> kSegmentExtensions = {
    "ts",   "m4s",  "mp4",  "m4a",    "m4v", "fmp4", "cmfv", "cmfa", "cmft", "aac",  "ac3",
    "ec3",  "mp3",  "webm", "vtt",    "webvtt", "ttml", "jpg",  "jpeg", "png",  "webp", "avif"};

bool isStatusCacheableByDefault(int status) {
  // RFC 9110 §15.1 "heuristically cacheable" statuses. 206 is excluded (we store whole
  // objects only, see decideStore).
  switch (status) {
    case 200: case 203: case 204: case 300: case 301: case 308: case 404: case 405: case 410:
    case 414: case 501:
      return true;
    default:
      return false;
  }
}

bool hasVaryStar(const ResponseHead& head) {
  for (const auto& [name, value] : head.headers) {
    if (!equalsIgnoreCase(name, "Vary")) continue;
    std::string_view rest = value;
    while (!rest.empty()) {
      const size_t comma = rest.find(',');
      const std::string_view member = trimOws(rest.substr(0, comma));
      if (member == "*") return true;
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
  return false;
}

Seconds nonNegativeSeconds(WallTime::duration d) {
  return d.count() <= 0 ? Seconds(0) : floor<Seconds>(d);
}

}  // namespace

CacheControl CacheControl::parse(std::string_view v) {
  // Cache-Control = #cache-directive; cache-directive = token [ "=" ( token / quoted-string ) ]
  // (RFC 9111 §5.2). A malformed element is skipped up to the next comma outside quotes, so
  // one bad directive does not hide the ones after it.
  CacheControl cc;
  const size_t n = v.size();
  size_t i = 0;
  while (i < n) {
    while (i < n && (v[i] == ',' || isOws(v[i]))) ++i;
    if (i >= n) break;
    const size_t name_start = i;
    while (i < n && isTchar(v[i])) ++i;
    const std::string_view name = v.substr(name_start, i - name_start);
    bool ok = !name.empty();
    bool has_arg = false;
    bool quoted = false;
    std::string_view arg;
    if (ok && i < n && v[i] == '=') {
      ++i;
      has_arg = true;
      if (i < n && v[i] == '"') {
        ++i;
        const size_t arg_start = i;
        bool closed = false;
        while (i < n) {
          if (v[i] == '\\') {
            i += 2;
            continue;
          }
          if (v[i] == '"') {
            closed = true;
            break;
          }
          ++i;
        }
        if (closed) {
          arg = v.substr(arg_start, i - arg_start);
          quoted = true;
          ++i;  // closing quote
        } else {
          ok = false;
          i = n;
        }
      } else {
        const size_t arg_start = i;
        while (i < n && isTchar(v[i])) ++i;
        arg = v.substr(arg_start, i - arg_start);
        if (arg.empty()) ok = false;
      }
    }
    if (ok) {
      size_t j = i;
      while (j < n && isOws(v[j])) ++j;
      if (j < n && v[j] != ',') ok = false;
      else i = j;
    }
    if (!ok) {
      bool in_quote = false;
      while (i < n) {
        const char c = v[i];
        if (in_quote) {
          if (c == '\\') ++i;
          else if (c == '"') in_quote = false;
        } else if (c == '"') {
          in_quote = true;
        } else if (c == ',') {
          break;
        }
        ++i;
      }
    }
    if (!name.empty()) applyDirective(cc, name, ok, has_arg, arg, quoted);
  }
  return cc;
}

std::optional<WallTime> parseHttpDate(std::string_view text) {
  text = trimOws(text);
  if (text.size() < 4) return std::nullopt;
  if (text[3] == ',') return parseImfFixdate(text);
  if (text[3] == ' ') return parseAsctime(text);
  return parseRfc850(text);
}

std::string formatHttpDate(WallTime t) {
  const time_t secs = static_cast<time_t>(floor<std::chrono::seconds>(t.time_since_epoch()).count());
  struct tm tm{};
  if (gmtime_r(&secs, &tm) == nullptr || tm.tm_wday < 0 || tm.tm_wday > 6 || tm.tm_mon < 0 ||
      tm.tm_mon > 11) {
    return std::string();
  }
  char buf[64];
  const int len = std::snprintf(buf, sizeof(buf), "%.3s, %02d %.3s %04d %02d:%02d:%02d GMT",
                                kDayNames[static_cast<size_t>(tm.tm_wday)].data(), tm.tm_mday,
                                kMonthNames[static_cast<size_t>(tm.tm_mon)].data(),
                                tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
  if (len <= 0) return std::string();
  return std::string(buf, static_cast<size_t>(std::min<int>(len, sizeof(buf) - 1)));
}

ContentKind classifyPath(std::string_view path) {
  path = path.substr(0, path.find_first_of("?#"));
  const size_t slash = path.rfind('/');
  const std::string_view last = slash == std::string_view::npos ? path : path.substr(slash + 1);
  const size_t dot = last.rfind('.');
  if (dot == std::string_view::npos) return ContentKind::kOther;
  const std::string_view ext = last.substr(dot + 1);
  std::array<char, 8> lower{};
  if (ext.empty() || ext.size() > lower.size()) return ContentKind::kOther;
  for (size_t i = 0; i < ext.size(); ++i) {
    const char c = ext[i];
    lower[i] = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  }
  const std::string_view e(lower.data(), ext.size());
  if (isOneOf(e, kPlaylistExtensions)) return ContentKind::kPlaylist;
  if (isOneOf(e, kSegmentExtensions)) return ContentKind::kSegment;
  return ContentKind::kOther;
}

StoreDecision decideStore(int status, bool request_has_authorization, const ResponseHead& head,
                          const CacheControl& cc, const conf::CachePolicy& policy) {
  if (policy.mode == conf::CacheMode::kPass) return {false, "pass"};
  if (cc.no_store) return {false, "no-store"};       // §5.2.2.5
  if (cc.is_private) return {false, "private"};      // §5.2.2.7: we are a shared cache
  // A 206 is a part of an object; we store whole objects and serve ranges from them.
  if (status == 206) return {false, "partial-content"};
  // §3: final statuses only; a 304 updates a stored response (§4.3.4), it is not one.
  if (status < 200 || status > 599 || status == 304) return {false, "status"};
  // §3: other statuses need explicit freshness or "public" (§4.2.2 heuristics apply only to
  // the heuristically cacheable ones, and we use no heuristics anyway).
  // RFC 9213 §2.1: a targeted field replaces Expires as well as Cache-Control.
  const bool explicitly_cacheable = cc.is_public || cc.max_age || cc.s_maxage ||
                                    (!cc.from_targeted_field && head.find("Expires") != nullptr);
  if (!isStatusCacheableByDefault(status) && !explicitly_cacheable) return {false, "status"};
  // §3.5: a response to an authenticated request is stored only if the origin says it may be
  // shared (public, s-maxage, must-revalidate), or the operator says so for this route.
  if (request_has_authorization && !policy.cache_authorized &&
      !(cc.is_public || cc.s_maxage || cc.must_revalidate)) {
    return {false, "authorization"};
  }
  // Set-Cookie is storable per RFC 9111 §7.3, but a cookie meant for one viewer must not be
  // sent to another; only a route that strips it opts in.
  if (!policy.cache_set_cookie && head.find("Set-Cookie") != nullptr) {
    return {false, "set-cookie"};
  }
  // §4.1: "Vary: *" never matches a later request, so storing it is pointless.
  if (hasVaryStar(head)) return {false, "vary-star"};
  return {true, "stored"};
}

Freshness computeFreshness(const ResponseHead& head, const CacheControl& cc,
                           WallTime request_time, WallTime response_time, ContentKind kind,
                           const conf::CachePolicy& policy,
                           std::optional<StreamLifetime> stream) {
  Freshness f;
  f.response_time = response_time;

  // §4.2.3 age calculation. Without a valid Date, the response time stands in for it
  // (RFC 9110 §6.6.1), making the apparent age 0.
  std::optional<WallTime> date;
  if (const std::string* d = head.find("Date")) date = parseHttpDate(*d);
  const WallTime date_value = date.value_or(response_time);
  Seconds age_value(0);
  if (const std::string* a = head.find("Age")) {
    age_value = parseDeltaSeconds(trimOws(*a), /*quoted=*/false).value_or(Seconds(0));
  }
  const Seconds apparent_age = nonNegativeSeconds(response_time - date_value);
  const Seconds response_delay = nonNegativeSeconds(response_time - request_time);
  const Seconds corrected_age_value = age_value + response_delay;
  f.corrected_initial_age = std::max(apparent_age, corrected_age_value);

  // §4.2.1 freshness lifetime, first match wins.
  if (cc.s_maxage) {
    f.lifetime = *cc.s_maxage;
    f.explicit_lifetime = true;
  } else if (cc.max_age) {
    f.lifetime = *cc.max_age;
    f.explicit_lifetime = true;
  } else if (const std::string* e = cc.from_targeted_field ? nullptr : head.find("Expires")) {
    // §5.3: an invalid Expires (e.g. "0") means already expired.
    const std::optional<WallTime> expires = parseHttpDate(*e);
    f.lifetime = expires ? nonNegativeSeconds(*expires - date_value) : Seconds(0);
    f.explicit_lifetime = true;
  } else if (stream) {
    // The stream says how long its text stays true; the route's short default still bounds a
    // live playlist's.
    f.lifetime = stream->bounded_by_route_default ? std::min(policy.playlist_ttl, stream->lifetime)
                                                  : stream->lifetime;
  } else {
    // No heuristic freshness (§4.2.2): the route's default for the content kind replaces it,
    // because an operator knows the stream's cadence better than Last-Modified does.
    switch (kind) {
      case ContentKind::kPlaylist:
        f.lifetime = policy.playlist_ttl;
        break;
      case ContentKind::kSegment:
        f.lifetime = policy.segment_ttl;
        break;
      case ContentKind::kOther:
        f.lifetime = policy.default_ttl;
        break;
    }
  }
  // An origin lifetime longer than the stream's would keep a live playlist behind its edge:
  // the stricter of the two wins.
  if (f.explicit_lifetime && stream) f.lifetime = std::min(f.lifetime, stream->lifetime);

  f.stale_while_revalidate = cc.stale_while_revalidate.value_or(policy.stale_while_revalidate);
  f.stale_if_error = cc.stale_if_error.value_or(
      kind == ContentKind::kPlaylist ? policy.playlist_stale_if_error : policy.stale_if_error);
  // §5.2.2.10: s-maxage implies proxy-revalidate for a shared cache.
  f.must_revalidate = cc.must_revalidate || cc.proxy_revalidate || cc.s_maxage.has_value();
  f.no_cache = cc.no_cache;
  return f;
}

Seconds Freshness::currentAge(WallTime now) const {
  // §4.2.3: current_age = corrected_initial_age + resident_time. A clock stepping backwards
  // never makes an object younger than it arrived.
  return corrected_initial_age + nonNegativeSeconds(now - response_time);
}

bool Freshness::isFresh(WallTime now) const {
  return !no_cache && currentAge(now) < lifetime;
}

// A no-cache object is never served without a successful revalidation, not even stale-if-error:
// RFC 9111 §5.2.2.4 forbids use without validation, and we fail safe rather than read RFC 5861
// as an exception to it. must-revalidate/proxy-revalidate/s-maxage forbid stale use (§4.2.4).
bool Freshness::withinStaleWhileRevalidate(WallTime now) const {
  if (no_cache || must_revalidate) return false;
  const Seconds age = currentAge(now);
  return age >= lifetime && age < lifetime + stale_while_revalidate;
}

bool Freshness::withinStaleIfError(WallTime now) const {
  if (no_cache || must_revalidate) return false;
  const Seconds age = currentAge(now);
  return age >= lifetime && age < lifetime + stale_if_error;
}

}  // namespace streamedge::cache
