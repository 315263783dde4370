#include "tests/support/origin_sim.h"
#include "tests/support/origin_sim_media.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <xxhash.h>

#include <linux/sockios.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <mutex>
#include <optional>
#include <set>
#include <utility>
#include <vector>

namespace streamedge::testsupport {

// ---------------------------------------------------------------------------------------------
// Deterministic bodies

std::string simBody(std::string_view path, size_t size) {
  std::string out;
  out.reserve(size);
  out.append("SIMDATA:");
  out.append(path);
  out.push_back(':');
  if (out.size() >= size) {
    out.resize(size);
    return out;
  }
  // splitmix64: fast, good enough, and trivially reproducible in any language a test might use.
  uint64_t state = XXH64(path.data(), path.size(), 0);
  while (out.size() < size) {
    state += 0x9E3779B97F4A7C15ull;
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    const size_t n = std::min<size_t>(8, size - out.size());
    for (size_t i = 0; i < n; ++i) out.push_back(static_cast<char>((z >> (8 * i)) & 0xff));
  }
  return out;
}

std::string simBodySlice(std::string_view path, size_t size, size_t offset, size_t n) {
  std::string out;
  if (offset >= size) return out;
  n = std::min(n, size - offset);
  out.reserve(n);
  const size_t prefix = 8 + path.size() + 1;  // "SIMDATA:" path ":"
  size_t i = offset;
  for (; i < offset + n && i < prefix; ++i) {
    out.push_back(i < 8 ? "SIMDATA:"[i] : i < 8 + path.size() ? path[i - 8] : ':');
  }
  // Word w of the splitmix64 stream is a function of the seed and w alone: seek straight to it.
  const uint64_t seed = XXH64(path.data(), path.size(), 0);
  while (i < offset + n) {
    const size_t j = i - prefix;
    uint64_t z = seed + (j / 8 + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    for (size_t b = j % 8; b < 8 && i < offset + n; ++b, ++i) {
      out.push_back(static_cast<char>((z >> (8 * b)) & 0xff));
    }
  }
  return out;
}

namespace {

std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

std::string simEtag(std::string_view path, size_t size) {
  return "\"" + hex64(XXH64(path.data(), path.size(), static_cast<uint64_t>(size))) + "\"";
}

// ---------------------------------------------------------------------------------------------
// Command line

std::string originSimUsage() {
  return "usage: origin_sim [--listen HOST:PORT] [--name NAME] [--segment-size BYTES]\n"
         "                  [--target-duration S] [--part-ms MS] [--window N]\n"
         "                  [--playlist-cache-control V]\n"
         "                  [--segment-cache-control V] [--tls-cert PEM --tls-key PEM]\n"
         "                  [--media-dir DIR]\n"
         "  --media-dir DIR: serve real media made by ffmpeg as the live HLS and DASH segments:\n"
         "    DIR/hls/seg_<k>.ts, DIR/dash/<rep>/init.mp4 and DIR/dash/<rep>/seg_<k>.m4s\n"
         "    (k = 0..M-1, each segment --target-duration long); live segment N is file\n"
         "    (N - N0) mod M, N0 the oldest segment of the first live window; the MPD and the\n"
         "    master playlist take their codecs from the init segments\n";
}

namespace {

bool parseSize(std::string_view s, uint64_t* out) {
  if (s.empty() || s.size() > 19) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  *out = v;
  return true;
}

}  // namespace

bool parseOriginSimArgs(int argc, char** argv, OriginSimOptions* options, std::string* error) {
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    std::string value;
    bool has_value = false;
    if (auto eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_value = true;
    }
    auto need = [&]() -> bool {
      if (has_value) return true;
      if (i + 1 >= argc) {
        *error = "missing value for " + arg;
        return false;
      }
      value = argv[++i];
      return true;
    };
    uint64_t n = 0;
    if (arg == "--listen") {
      if (!need()) return false;
      options->listen = value;
    } else if (arg == "--name") {
      if (!need()) return false;
      options->name = value;
    } else if (arg == "--segment-size") {
      if (!need()) return false;
      if (!parseSize(value, &n)) {
        *error = "bad --segment-size: " + value;
        return false;
      }
      options->segment_size = n;
    } else if (arg == "--target-duration") {
      if (!need()) return false;
      if (!parseSize(value, &n) || n == 0 || n > 3600) {
        *error = "bad --target-duration: " + value;
        return false;
      }
      options->target_duration_s = static_cast<int>(n);
    } else if (arg == "--part-ms") {
      if (!need()) return false;
      if (!parseSize(value, &n) || n < 50 || n > 10000) {
        *error = "bad --part-ms: " + value;
        return false;
      }
      options->part_ms = static_cast<int>(n);
    } else if (arg == "--window") {
      if (!need()) return false;
      if (!parseSize(value, &n) || n == 0 || n > 10000) {
        *error = "bad --window: " + value;
        return false;
      }
      options->window = static_cast<int>(n);
    } else if (arg == "--playlist-cache-control") {
      if (!need()) return false;
      options->playlist_cache_control = value;
    } else if (arg == "--segment-cache-control") {
      if (!need()) return false;
      options->segment_cache_control = value;
    } else if (arg == "--tls-cert") {
      if (!need()) return false;
      options->tls_cert = value;
    } else if (arg == "--tls-key") {
      if (!need()) return false;
      options->tls_key = value;
    } else if (arg == "--media-dir") {
      if (!need()) return false;
      options->media_dir = value;
    } else {
      *error = "unknown argument: " + arg;
      return false;
    }
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Server

namespace {

using BodyPtr = std::shared_ptr<const std::string>;
using Clock = std::chrono::steady_clock;

constexpr size_t kMaxHeadBytes = 64 * 1024;
constexpr uint64_t kMaxObjectSize = 1ull << 32;  // 4 GiB: the sim keeps bodies in memory
constexpr size_t kLongExtraBytes = 100;
constexpr int kRateTickMs = 10;
constexpr size_t kBodyCacheBytes = 256u << 20;
// Generated bodies bigger than this are made slice by slice as they are sent (a 1 GiB answer to
// ten viewers must not cost the simulator 10 GiB).
constexpr size_t kLazyBodyBytes = 64u << 20;
constexpr size_t kLazySliceBytes = 1u << 20;
constexpr int kVodSegments = 10;
constexpr size_t kInitSegmentSize = 1000;
// --media-dir: a DASH segment up to this many segment durations early is held until it exists;
// earlier, 404.
constexpr int64_t kMediaHoldSegments = 4;

// kNoStore: the content changed and may no longer be stored (a withdrawn or now private
// title): a new ETag, so no conditional request matches, and Cache-Control: no-store.
// Mid-body faults (for resume tests): kReset sends `after` body bytes (default half) then RST;
// kStall sends `after` bytes (default half) then keeps the connection open, silent; kSlow sends
// `after` bytes (default half) at once and the rest at `rate` bytes/s (default 1024). kEtag serves
// other validators (ETag and Last-Modified) for the same bytes, as a data center holding another
// version; kNoRanges answers a Range request with the whole 200, as an origin without range
// support.
enum class Fault { kNone, k500, k503, kHang, kReset, kShort, kLong, kNoStore, kStall, kSlow, kEtag, kNoRanges, kDelay };

// An armed fault and its parameters.
struct FaultSpec {
  Fault mode = Fault::kNone;
  std::optional<uint64_t> after;    // body bytes before the fault (reset, stall, slow)
  uint64_t rate = 1024;             // slow: bytes per second after `after`
  bool preconditions = true;        // false: If-Match / If-Unmodified-Since are ignored
};

// The changed validators of Fault::kEtag.
constexpr std::string_view kChangedLastModified = "Tue, 02 Jan 2024 00:00:00 GMT";

std::optional<Fault> parseFault(std::string_view s) {
  if (s == "stall") return Fault::kStall;
  if (s == "slow") return Fault::kSlow;
  if (s == "etag") return Fault::kEtag;
  if (s == "noranges") return Fault::kNoRanges;
  if (s == "500") return Fault::k500;
  if (s == "503") return Fault::k503;
  if (s == "hang") return Fault::kHang;
  if (s == "delay") return Fault::kDelay;
  if (s == "reset") return Fault::kReset;
  if (s == "short") return Fault::kShort;
  if (s == "long") return Fault::kLong;
  if (s == "nostore") return Fault::kNoStore;
  if (s == "off" || s == "none" || s.empty()) return Fault::kNone;
  return std::nullopt;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percentDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      int hi = hexValue(s[i + 1]);
      int lo = hexValue(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(s[i] == '+' ? ' ' : s[i]);
  }
  return out;
}

std::string httpDate(time_t t) {
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return buf;
}

std::optional<time_t> parseHttpDate(std::string_view s) {
  std::string str(trim(s));
  struct tm tm;
  std::memset(&tm, 0, sizeof tm);
  const char* end = strptime(str.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (end == nullptr || *end != '\0') return std::nullopt;
  return timegm(&tm);
}

constexpr uint64_t kMaxPlaylistWindow = 100000;
constexpr uint64_t kMaxMpdPeriods = 10000;


std::string isoDate(time_t t) {
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

const char* reasonPhrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 416: return "Range Not Satisfiable";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Status";
  }
}

// RFC 9110 §6.4.1: no content in 1xx, 204 and 304 responses.
bool statusHasBody(int status) { return status >= 200 && status != 204 && status != 304; }

bool hasToken(std::string_view list, std::string_view token) {
  size_t pos = 0;
  while (pos <= list.size()) {
    size_t comma = list.find(',', pos);
    if (comma == std::string_view::npos) comma = list.size();
    if (lower(trim(list.substr(pos, comma - pos))) == token) return true;
    pos = comma + 1;
  }
  return false;
}

// Splits "seg_<n><suffix>" into n. Returns false when the name has another shape.
bool segmentNumber(std::string_view name, std::string_view suffix, uint64_t* n) {
  if (name.size() <= 4 + suffix.size() || name.substr(0, 4) != "seg_") return false;
  if (name.substr(name.size() - suffix.size()) != suffix) return false;
  return parseSize(name.substr(4, name.size() - 4 - suffix.size()), n);
}

bool isSimpleName(std::string_view s) {
  if (s.empty() || s == "." || s == "..") return false;
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.')) return false;
  }
  return true;
}

std::vector<std::string_view> splitPath(std::string_view path) {
  std::vector<std::string_view> parts;
  size_t pos = 1;
  while (pos <= path.size()) {
    size_t slash = path.find('/', pos);
    if (slash == std::string_view::npos) slash = path.size();
    parts.push_back(path.substr(pos, slash - pos));
    pos = slash + 1;
  }
  return parts;
}

std::string jsonEscape(std::string_view s) {
  std::string out;
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (u < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", u);
      out.append(buf);
    } else {
      out.push_back(c);
    }
  }
  return out;
}

struct Request {
  std::string method;
  std::string target;
  std::string path;
  int minor = 1;
  std::vector<std::pair<std::string, std::string>> headers;  // names lowercased
  std::vector<std::pair<std::string, std::string>> params;   // decoded query parameters

  const std::string* header(std::string_view name) const {
    for (const auto& [k, v] : headers)
      if (k == name) return &v;
    return nullptr;
  }
  const std::string* param(std::string_view name) const {
    for (const auto& [k, v] : params)
      if (k == name) return &v;
    return nullptr;
  }
  bool paramIs(std::string_view name, std::string_view value) const {
    const std::string* p = param(name);
    return p != nullptr && *p == value;
  }
};

// What the simulator will put on the wire for one request.
struct Plan {
  std::string head;
  BodyPtr body;               // the representation (or its selected range source)
  std::string lazy_path;      // lazy_size > 0: the body is simBody(lazy_path, lazy_size), made
  size_t lazy_size = 0;       // as it is sent (body is empty then)
  size_t offset = 0;          // first body byte to send
  size_t send_bytes = 0;      // how many body bytes to send (less than framed for short/reset)
  bool chunked = false;
  bool terminate_chunked = false;  // send the last-chunk after the data
  size_t extra_bytes = 0;     // fault=long: bytes beyond the framing
  enum class End { kKeepAlive, kClose, kReset, kStall } end = End::kKeepAlive;
  uint64_t rate = 0;          // bytes per second; 0 = as fast as possible
  size_t burst = 0;           // with rate: these bytes go at once, the rest at the rate
  int delay_ms = 0;
  bool hang = false;
};

// A resolved simulated resource before knobs, conditionals and framing.
struct Resource {
  int status = 200;
  std::string content_type;
  std::optional<std::string> cache_control;
  BodyPtr body;
  std::string lazy_path;  // see Plan
  size_t lazy_size = 0;
  std::string etag;
  std::optional<std::string> last_modified;
  // Being encoded (LL-HLS part or segment in progress, chunked LL-DASH segment): sent chunked,
  // `encoded` bytes at once, the rest at `encode_rate` bytes/s, so the last byte leaves when
  // the media would be complete.
  uint64_t encode_rate = 0;
  size_t encoded = 0;
};

// ---------------------------------------------------------------------------------------------
// Low latency: the clock of the media being made (see origin_sim.h).

int64_t wallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct LlClock {
  int64_t t_ms = 0;    // segment duration
  int64_t p_ms = 0;    // part duration
  int64_t pps = 1;     // parts per segment (the last one shorter when P does not divide T)
  int64_t now = 0;
  int64_t cur = 0;     // the segment being made
  int64_t done = 0;    // parts of `cur` complete
  int64_t partStart(int64_t s, int64_t i) const { return s * t_ms + i * p_ms; }
  int64_t partEnd(int64_t s, int64_t i) const { return std::min(s * t_ms + (i + 1) * p_ms, (s + 1) * t_ms); }
};

LlClock llClock(const OriginSimOptions& o, int64_t now_ms) {
  LlClock c;
  c.t_ms = static_cast<int64_t>(o.target_duration_s) * 1000;
  c.p_ms = std::min<int64_t>(std::max(o.part_ms, 1), c.t_ms);
  c.pps = (c.t_ms + c.p_ms - 1) / c.p_ms;
  c.now = now_ms;
  c.cur = now_ms / c.t_ms;
  c.done = std::min(c.pps, (now_ms - c.cur * c.t_ms) / c.p_ms);
  return c;
}

// The LL-HLS delivery directives of a request: ok=false for a bad request (rfc8216bis §6.2.5.2).
struct LlDirectives {
  bool ok = true;
  std::optional<int64_t> msn, part;
  bool skip = false;
};

LlDirectives llDirectives(const Request& req) {
  LlDirectives d;
  auto number = [&](const char* name, std::optional<int64_t>& out) {
    const std::string* v = req.param(name);
    if (!v) return;
    uint64_t n = 0;
    if (!parseSize(*v, &n) || n > (1ull << 53)) {
      d.ok = false;
      return;
    }
    out = static_cast<int64_t>(n);
  };
  number("_HLS_msn", d.msn);
  number("_HLS_part", d.part);
  if (const std::string* s = req.param("_HLS_skip")) {
    if (*s == "YES" || *s == "v2") {
      d.skip = true;
    } else {
      d.ok = false;
    }
  }
  if (d.part && !d.msn) d.ok = false;
  return d;
}

// When the segment (part) a blocking request names is complete, in wall-clock ms; nullopt for
// a request to refuse at once (too far ahead).
std::optional<int64_t> llReadyAt(const LlClock& c, const LlDirectives& d) {
  if (!d.msn) return c.now;
  const int64_t msn = *d.msn;
  if (msn > (c.cur - 1) + 2) return std::nullopt;
  if (!d.part) return (msn + 1) * c.t_ms;
  const int64_t newest_pos = c.cur * c.pps + c.done;
  const int64_t asked_pos = msn * c.pps + *d.part + 1;
  if (asked_pos > newest_pos + 3) return std::nullopt;
  return msn * c.t_ms + std::min<int64_t>(*d.part + 1, c.pps) * c.p_ms;
}

std::string seconds3(int64_t ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", static_cast<double>(ms) / 1000.0);
  return buf;
}

std::string llPlaylist(const LlClock& c, int64_t window, bool skip) {
  const int64_t first = std::max<int64_t>(0, c.cur - window);
  // Delta update: segments that ended more than CAN-SKIP-UNTIL (6 T) before the live edge.
  const int64_t skipped = skip ? std::max<int64_t>(0, (c.cur - 7) - first + 1) : 0;
  std::string t = "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:" + std::to_string(c.t_ms / 1000) +
                  "\n#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=" + seconds3(3 * c.p_ms) +
                  ",CAN-SKIP-UNTIL=" + seconds3(6 * c.t_ms) + "\n#EXT-X-PART-INF:PART-TARGET=" +
                  seconds3(c.p_ms) + "\n#EXT-X-MEDIA-SEQUENCE:" + std::to_string(first) +
                  "\n#EXT-X-MAP:URI=\"init.mp4\"\n";
  if (skipped > 0) t += "#EXT-X-SKIP:SKIPPED-SEGMENTS=" + std::to_string(skipped) + "\n";
  auto parts = [&](int64_t s, int64_t count) {
    for (int64_t i = 0; i < count; ++i) {
      t += "#EXT-X-PART:DURATION=" + seconds3(c.partEnd(s, i) - c.partStart(s, i)) + ",URI=\"part_" +
           std::to_string(s) + "_" + std::to_string(i) + ".m4s\"" + (i == 0 ? ",INDEPENDENT=YES" : "") + "\n";
    }
  };
  for (int64_t s = first + skipped; s < c.cur; ++s) {
    if (s >= c.cur - 3) parts(s, c.pps);
    t += "#EXTINF:" + seconds3(c.t_ms) + ",\nseg_" + std::to_string(s) + ".m4s\n";
  }
  parts(c.cur, c.done);
  if (c.done < c.pps) {
    t += "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part_" + std::to_string(c.cur) + "_" +
         std::to_string(c.done) + ".m4s\"\n";
  }
  return t;
}

// "part_<s>_<i>.m4s"
bool partNumbers(std::string_view name, uint64_t* s, uint64_t* i) {
  if (name.substr(0, 5) != "part_" || name.size() < 10 || name.substr(name.size() - 4) != ".m4s") return false;
  const std::string_view mid = name.substr(5, name.size() - 9);
  const size_t us = mid.find('_');
  return us != std::string_view::npos && parseSize(mid.substr(0, us), s) && parseSize(mid.substr(us + 1), i);
}

}  // namespace

std::string simMultiPeriodMpd(int64_t now_s, int target_s, int periods) {
  // Each period: 60 s of content (an ad break between programmes, as server-side ad insertion
  // makes them), a video set of five renditions, two audio languages and subtitles, every set
  // with an explicit SegmentTimeline whose durations wobble a little (as encoders make them),
  // so that the text is as repetitive as a real one and no more.
  constexpr int kPeriodSeconds = 60;
  constexpr uint32_t kTimescale = 90000;
  const int64_t first_period = now_s / kPeriodSeconds - periods + 1;
  std::string t;
  t.reserve(static_cast<size_t>(periods) * 8400 + 1024);
  t += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
       "<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" xmlns:cenc=\"urn:mpeg:cenc:2013\" "
       "profiles=\"urn:mpeg:dash:profile:isoff-live:2011\" type=\"dynamic\" availabilityStartTime=\"";
  t += isoDate(static_cast<time_t>(kSimDashEpochSeconds));
  t += "\" publishTime=\"" + isoDate(static_cast<time_t>(now_s)) + "\" minimumUpdatePeriod=\"PT" +
       std::to_string(target_s) + "S\" minBufferTime=\"PT" + std::to_string(2 * target_s) +
       "S\" timeShiftBufferDepth=\"PT" + std::to_string(periods * kPeriodSeconds) +
       "S\" suggestedPresentationDelay=\"PT" + std::to_string(3 * target_s) + "S\">\n";
  struct Rendition { const char* id; int bandwidth, width, height; const char* codecs; };
  static constexpr Rendition kVideo[] = {
      {"1080p", 6000000, 1920, 1080, "avc1.640028"}, {"720p", 3000000, 1280, 720, "avc1.64001f"},
      {"540p", 1800000, 960, 540, "avc1.64001f"},    {"360p", 800000, 640, 360, "avc1.64001e"},
      {"240p", 400000, 426, 240, "avc1.640015"}};
  uint64_t wobble = 0x9E3779B97F4A7C15ull;
  auto timeline = [&](int64_t start_s, uint32_t nominal) {
    std::string out = "        <SegmentTimeline>\n";
    uint64_t time = static_cast<uint64_t>(start_s) * kTimescale;
    for (int s = 0; s < kPeriodSeconds / target_s; ++s) {
      wobble = wobble * 6364136223846793005ull + 1442695040888963407ull;
      const uint32_t d = nominal - 1800 + static_cast<uint32_t>((wobble >> 33) % 3) * 1800;
      out += "          <S t=\"" + std::to_string(time) + "\" d=\"" + std::to_string(d) + "\"/>\n";
      time += d;
    }
    return out + "        </SegmentTimeline>\n";
  };
  for (int p = 0; p < periods; ++p) {
    const int64_t period = first_period + p;
    const int64_t start_s = period * kPeriodSeconds - kSimDashEpochSeconds % kPeriodSeconds;
    const std::string id = std::to_string(period);
    t += "  <Period id=\"p" + id + "\" start=\"PT" + std::to_string(start_s) + "S\">\n";
    t += "    <AdaptationSet id=\"1\" contentType=\"video\" mimeType=\"video/mp4\" "
         "segmentAlignment=\"true\" startWithSAP=\"1\" maxWidth=\"1920\" maxHeight=\"1080\" "
         "frameRate=\"30\">\n"
         "      <ContentProtection schemeIdUri=\"urn:mpeg:dash:mp4protection:2011\" value=\"cenc\" "
         "cenc:default_KID=\"" + hex64(static_cast<uint64_t>(period) * 0x2545F4914F6CDD1Dull) +
         "-0000-4000-8000-000000000000\"/>\n"
         "      <SegmentTemplate timescale=\"90000\" media=\"p" + id +
         "/$RepresentationID$/seg_$Time$.m4s\" initialization=\"p" + id +
         "/$RepresentationID$/init.mp4\">\n";
    t += timeline(start_s, static_cast<uint32_t>(target_s) * kTimescale);
    t += "      </SegmentTemplate>\n";
    for (const Rendition& r : kVideo) {
      t += std::string("      <Representation id=\"") + r.id + "\" bandwidth=\"" +
           std::to_string(r.bandwidth) + "\" width=\"" + std::to_string(r.width) +
           "\" height=\"" + std::to_string(r.height) + "\" codecs=\"" + r.codecs + "\"/>\n";
    }
    t += "    </AdaptationSet>\n";
    for (const char* lang : {"en", "fr"}) {
      t += std::string("    <AdaptationSet id=\"") + (lang[0] == 'e' ? "2" : "3") +
           "\" contentType=\"audio\" mimeType=\"audio/mp4\" lang=\"" + lang +
           "\" segmentAlignment=\"true\">\n"
           "      <SegmentTemplate timescale=\"90000\" media=\"p" + id +
           "/$RepresentationID$/seg_$Time$.m4s\" initialization=\"p" + id +
           "/$RepresentationID$/init.mp4\">\n";
      t += timeline(start_s, static_cast<uint32_t>(target_s) * kTimescale);
      t += std::string("      </SegmentTemplate>\n      <Representation id=\"audio_") + lang +
           "\" bandwidth=\"128000\" codecs=\"mp4a.40.2\" audioSamplingRate=\"48000\">\n"
           "        <AudioChannelConfiguration schemeIdUri=\"urn:mpeg:dash:23003:3:audio_channel_configuration:2011\" value=\"2\"/>\n"
           "      </Representation>\n    </AdaptationSet>\n";
    }
    t += "    <AdaptationSet id=\"4\" contentType=\"text\" mimeType=\"application/mp4\" lang=\"en\">\n"
         "      <Role schemeIdUri=\"urn:mpeg:dash:role:2011\" value=\"subtitle\"/>\n"
         "      <SegmentTemplate timescale=\"90000\" media=\"p" + id +
         "/$RepresentationID$/seg_$Time$.m4s\" initialization=\"p" + id +
         "/$RepresentationID$/init.mp4\">\n";
    t += timeline(start_s, static_cast<uint32_t>(target_s) * kTimescale);
    t += "      </SegmentTemplate>\n      <Representation id=\"sub_en\" bandwidth=\"2000\" codecs=\"stpp\"/>\n"
         "    </AdaptationSet>\n  </Period>\n";
  }
  t += "</MPD>\n";
  return t;
}



namespace {

struct Conn {
  enum class State { kHead, kReqBody, kDelay, kSending, kHang, kDraining };

  OriginSim::Impl* sim = nullptr;
  bufferevent* bev = nullptr;
  event* timer = nullptr;
  State state = State::kHead;
  Request req;
  uint64_t req_body_left = 0;
  Plan plan;
  size_t sent = 0;
  Clock::time_point send_start;
  bool peer_eof = false;
  int reset_polls = 0;
  bool active = false;  // a (non-control) request is being answered
  bool replan = false;  // kDelay: a held blocking reload; dispatch again when the timer fires
};

}  // namespace

struct OriginSim::Impl {
  explicit Impl(OriginSimOptions o) : options(std::move(o)) {}
  ~Impl();

  // ---- const after construction
  OriginSimOptions options;

  // ---- set by bind(), then const
  std::unique_ptr<MediaSet> media;  // --media-dir
  int64_t media_start_s = 0;        // the Unix time bind() loaded it: fixes N0

  // ---- loop-owned
  event_base* base = nullptr;
  evconnlistener* listener = nullptr;
  SSL_CTX* tls_ctx = nullptr;  // set: connections speak TLS
  event* stop_event = nullptr;
  event* sigterm_event = nullptr;
  event* sigint_event = nullptr;
  int stop_pipe[2] = {-1, -1};
  std::set<Conn*> conns;
  struct ArmedFault {
    std::string path;
    FaultSpec spec;
    uint64_t remaining = 1;
  };
  std::vector<ArmedFault> path_faults;
  FaultSpec global_fault;
  std::map<std::pair<std::string, size_t>, BodyPtr> body_cache;
  size_t body_cache_bytes = 0;
  // Concurrency as the origin sees it (GET /_sim/stats): open connections and requests being
  // answered (from the parsed head to the last body byte queued), now and at most.
  int open_conns = 0;
  int max_open_conns = 0;
  int active_requests = 0;
  int max_active_requests = 0;
  void requestDone(Conn* c);
  // --media-dir: when /dash/<rep>/seg_<N>.m4s is complete (ms of the Unix clock); nullopt for
  // other paths, without media, or for a segment more than kMediaHoldSegments ahead (a 404).
  std::optional<int64_t> mediaDashReadyMs(const std::string& path) const;

  // ---- guarded by mu
  mutable std::mutex mu;
  std::map<std::string, SimCounts> counts;
  // Range requests by path: "<Range>|<If-Match>|<If-Unmodified-Since>" each, in arrival order.
  std::map<std::string, std::vector<std::string>> ranges;

  bool bind(std::string* error, uint16_t* port);
  void requestStop();

  // Connection handling.
  void accept(evutil_socket_t fd);
  void processInput(Conn* c);
  bool parseHead(Conn* c, std::string_view head);
  void dispatch(Conn* c);
  void startPlan(Conn* c);
  void sendSlice(Conn* c, size_t n);
  void bodyQueued(Conn* c);
  void rateTick(Conn* c);
  void onWritten(Conn* c);
  void lazyTick(Conn* c);
  void onEvent(Conn* c, short what);
  void tryReset(Conn* c);
  void closeConn(Conn* c, bool rst);
  void simpleResponse(Conn* c, int status, std::string_view content_type, std::string body,
                      bool close);

  // Content.
  void control(Conn* c);
  Plan contentPlan(const Request& req);
  std::optional<Resource> resolve(const Request& req, size_t size);
  BodyPtr generatedBody(const std::string& path, size_t size);
  void count(const std::string& path, bool not_modified);
  FaultSpec takeFault(const std::string& path);
};

namespace {

void readCb(bufferevent*, void* arg) {
  auto* c = static_cast<Conn*>(arg);
  c->sim->processInput(c);
}

void writeCb(bufferevent*, void* arg) {
  auto* c = static_cast<Conn*>(arg);
  c->sim->onWritten(c);
}

void eventCb(bufferevent*, short what, void* arg) {
  auto* c = static_cast<Conn*>(arg);
  c->sim->onEvent(c, what);
}

void timerCb(evutil_socket_t, short, void* arg) {
  auto* c = static_cast<Conn*>(arg);
  OriginSim::Impl* sim = c->sim;
  switch (c->state) {
    case Conn::State::kDelay:
      if (c->replan) {
        c->replan = false;
        sim->dispatch(c);
      } else {
        sim->startPlan(c);
      }
      break;
    case Conn::State::kSending:
      sim->rateTick(c);
      break;
    case Conn::State::kDraining:
      sim->tryReset(c);
      return;  // c may be gone
    default:
      return;
  }
  // The response may have completed on a keep-alive connection with a pipelined request queued.
  if (sim->conns.count(c) != 0 && c->state == Conn::State::kHead) sim->processInput(c);
}

void acceptCb(evconnlistener*, evutil_socket_t fd, sockaddr*, int, void* arg) {
  static_cast<OriginSim::Impl*>(arg)->accept(fd);
}

void stopCb(evutil_socket_t fd, short, void* arg) {
  char buf[16];
  while (read(fd, buf, sizeof buf) > 0) {
  }
  event_base_loopbreak(static_cast<event_base*>(arg));
}

void releaseBody(const void*, size_t, void* extra) { delete static_cast<BodyPtr*>(extra); }

// "127.0.0.1:PORT", "[::1]:PORT" or "localhost:PORT"; port 0 is allowed (the kernel picks one),
// which evutil_parse_sockaddr_port refuses.
bool parseListenAddress(const std::string& listen, sockaddr_storage* ss, int* len) {
  std::memset(ss, 0, sizeof *ss);
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos) return false;
  std::string host = listen.substr(0, colon);
  uint64_t port = 0;
  if (!parseSize(std::string_view(listen).substr(colon + 1), &port) || port > 65535) return false;
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host == "localhost") host = "127.0.0.1";
  if (host.empty() || host == "*") host = "0.0.0.0";
  auto* v4 = reinterpret_cast<sockaddr_in*>(ss);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    *len = sizeof(sockaddr_in);
    return true;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(ss);
  if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    *len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

}  // namespace

OriginSim::Impl::~Impl() {
  for (Conn* c : conns) {
    if (c->timer != nullptr) event_free(c->timer);
    bufferevent_free(c->bev);
    delete c;
  }
  conns.clear();
  if (listener != nullptr) evconnlistener_free(listener);
  if (tls_ctx != nullptr) SSL_CTX_free(tls_ctx);
  if (stop_event != nullptr) event_free(stop_event);
  if (sigterm_event != nullptr) event_free(sigterm_event);
  if (sigint_event != nullptr) event_free(sigint_event);
  if (base != nullptr) event_base_free(base);
  for (int fd : stop_pipe)
    if (fd >= 0) close(fd);
}

bool OriginSim::Impl::bind(std::string* error, uint16_t* port) {
  // Writes to a peer that went away must be errors, not a process-wide SIGPIPE.
  std::signal(SIGPIPE, SIG_IGN);
  sockaddr_storage ss;
  int len = 0;
  if (!parseListenAddress(options.listen, &ss, &len)) {
    *error = "bad listen address: " + options.listen;
    return false;
  }
  if (!options.media_dir.empty()) {
    media = MediaSet::load(options.media_dir, options.target_duration_s, error);
    if (!media) return false;
    media_start_s = static_cast<int64_t>(time(nullptr));
  }
  base = event_base_new();
  if (base == nullptr) {
    *error = "event_base_new failed";
    return false;
  }
  if (!options.tls_cert.empty()) {
    tls_ctx = SSL_CTX_new(TLS_server_method());
    if (tls_ctx == nullptr || SSL_CTX_use_certificate_chain_file(tls_ctx, options.tls_cert.c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(tls_ctx, options.tls_key.c_str(), SSL_FILETYPE_PEM) != 1) {
      *error = "cannot load --tls-cert/--tls-key";
      return false;
    }
    SSL_CTX_set_min_proto_version(tls_ctx, TLS1_2_VERSION);
  }
  listener = evconnlistener_new_bind(base, acceptCb, this, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                     1024, reinterpret_cast<sockaddr*>(&ss), len);
  if (listener == nullptr) {
    *error = "cannot listen on " + options.listen + ": " + std::strerror(errno);
    return false;
  }
  sockaddr_storage bound;
  socklen_t blen = sizeof bound;
  if (getsockname(evconnlistener_get_fd(listener), reinterpret_cast<sockaddr*>(&bound), &blen) != 0) {
    *error = std::string("getsockname: ") + std::strerror(errno);
    return false;
  }
  *port = bound.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                                      : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  if (pipe2(stop_pipe, O_NONBLOCK | O_CLOEXEC) != 0) {
    *error = std::string("pipe2: ") + std::strerror(errno);
    return false;
  }
  stop_event = event_new(base, stop_pipe[0], EV_READ | EV_PERSIST, stopCb, base);
  event_add(stop_event, nullptr);
  return true;
}

void OriginSim::Impl::requestStop() {
  if (stop_pipe[1] >= 0) {
    char b = 1;
    ssize_t r = write(stop_pipe[1], &b, 1);
    (void)r;  // a full pipe already holds a stop request
  }
}

void OriginSim::Impl::accept(evutil_socket_t fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  auto* c = new Conn;
  c->sim = this;
  if (tls_ctx != nullptr) {
    SSL* ssl = SSL_new(tls_ctx);
    c->bev = bufferevent_openssl_socket_new(base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (c->bev != nullptr) {
      bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
    } else {
      SSL_free(ssl);
    }
  } else {
    c->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
  }
  if (c->bev == nullptr) {
    close(fd);
    delete c;
    return;
  }
  c->timer = evtimer_new(base, timerCb, c);
  conns.insert(c);
  max_open_conns = std::max(max_open_conns, ++open_conns);
  bufferevent_setcb(c->bev, readCb, writeCb, eventCb, c);
  bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

void OriginSim::Impl::closeConn(Conn* c, bool rst) {
  if (rst) {
    // RFC 9293 §3.6: SO_LINGER {1, 0} makes close() send RST instead of FIN.
    linger lg{1, 0};
    setsockopt(bufferevent_getfd(c->bev), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  }
  conns.erase(c);
  --open_conns;
  requestDone(c);
  if (c->timer != nullptr) event_free(c->timer);
  bufferevent_free(c->bev);
  delete c;
}

void OriginSim::Impl::onEvent(Conn* c, short what) {
  if ((what & BEV_EVENT_ERROR) != 0) {
    closeConn(c, false);
    return;
  }
  if ((what & BEV_EVENT_EOF) != 0) {
    c->peer_eof = true;
    switch (c->state) {
      case Conn::State::kHead:
      case Conn::State::kReqBody:
      case Conn::State::kHang:
        closeConn(c, false);
        return;
      default:
        // A client that half-closed after its request still gets the response.
        if (c->plan.end == Plan::End::kKeepAlive) c->plan.end = Plan::End::kClose;
        return;
    }
  }
}

void OriginSim::Impl::onWritten(Conn* c) {
  if (c->state == Conn::State::kSending && c->plan.lazy_size > 0 && c->plan.rate == 0) {
    lazyTick(c);
    if (conns.count(c) != 0 && c->state == Conn::State::kHead) processInput(c);  // pipelined
    return;
  }
  if (c->state != Conn::State::kDraining) return;
  if (evbuffer_get_length(bufferevent_get_output(c->bev)) != 0) return;
  if (c->plan.end == Plan::End::kReset) {
    tryReset(c);
  } else {
    closeConn(c, false);
  }
}

// Resets once the kernel has no unacknowledged bytes left, so the peer really received the part
// of the body we meant to send before the RST (an RST discards the sender's queue).
void OriginSim::Impl::tryReset(Conn* c) {
  int outq = 0;
  if (ioctl(bufferevent_getfd(c->bev), SIOCOUTQ, &outq) == 0 && outq > 0 && c->reset_polls < 400) {
    ++c->reset_polls;
    timeval tv{0, 5000};
    evtimer_add(c->timer, &tv);
    return;
  }
  closeConn(c, true);
}

void OriginSim::Impl::processInput(Conn* c) {
  evbuffer* in = bufferevent_get_input(c->bev);
  // Bounded: each round consumes a request head or body bytes, or stops.
  for (int round = 0; round < 100000; ++round) {
    if (c->state == Conn::State::kReqBody) {
      size_t n = std::min<uint64_t>(c->req_body_left, evbuffer_get_length(in));
      evbuffer_drain(in, n);
      c->req_body_left -= n;
      if (c->req_body_left != 0) return;
      dispatch(c);
      if (conns.count(c) == 0) return;
      continue;
    }
    if (c->state != Conn::State::kHead) return;
    // RFC 9112 §2.2: ignore at least one empty line before a request-line.
    for (int i = 0; i < 8; ++i) {
      unsigned char two[2];
      if (evbuffer_copyout(in, two, 2) == 2 && two[0] == '\r' && two[1] == '\n') {
        evbuffer_drain(in, 2);
      } else {
        break;
      }
    }
    evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, nullptr);
    if (end.pos < 0) {
      if (evbuffer_get_length(in) > kMaxHeadBytes) {
        simpleResponse(c, 431, "text/plain", "request head too large\n", true);
      }
      return;
    }
    const size_t head_len = static_cast<size_t>(end.pos) + 4;
    if (head_len > kMaxHeadBytes) {
      simpleResponse(c, 431, "text/plain", "request head too large\n", true);
      return;
    }
    std::string head(head_len, '\0');
    evbuffer_remove(in, head.data(), head_len);
    c->req = Request{};
    c->plan = Plan{};
    c->sent = 0;
    if (!parseHead(c, head)) return;  // answered 400/501 and draining
    if (c->req_body_left != 0) {
      c->state = Conn::State::kReqBody;
      continue;
    }
    dispatch(c);
    if (conns.count(c) == 0) return;
  }
}

bool OriginSim::Impl::parseHead(Conn* c, std::string_view head) {
  Request& r = c->req;
  size_t eol = head.find("\r\n");
  std::string_view line = head.substr(0, eol);
  size_t sp1 = line.find(' ');
  size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp1 == std::string_view::npos || sp2 == std::string_view::npos) {
    simpleResponse(c, 400, "text/plain", "bad request line\n", true);
    return false;
  }
  r.method = std::string(line.substr(0, sp1));
  r.target = std::string(line.substr(sp1 + 1, sp2 - sp1 - 1));
  std::string_view version = line.substr(sp2 + 1);
  if (version == "HTTP/1.1") {
    r.minor = 1;
  } else if (version == "HTTP/1.0") {
    r.minor = 0;
  } else {
    simpleResponse(c, 400, "text/plain", "bad HTTP version\n", true);
    return false;
  }
  size_t pos = eol + 2;
  while (pos < head.size()) {
    size_t next = head.find("\r\n", pos);
    if (next == std::string_view::npos || next == pos) break;
    std::string_view field = head.substr(pos, next - pos);
    pos = next + 2;
    size_t colon = field.find(':');
    if (colon == std::string_view::npos || colon == 0 || field[0] == ' ' || field[0] == '\t') {
      simpleResponse(c, 400, "text/plain", "bad header field\n", true);
      return false;
    }
    r.headers.emplace_back(lower(field.substr(0, colon)), std::string(trim(field.substr(colon + 1))));
  }
  // Absolute-form targets (RFC 9112 §3.2.2) are reduced to their path and query.
  std::string_view target = r.target;
  if (target.rfind("http://", 0) == 0 || target.rfind("https://", 0) == 0) {
    size_t slash = target.find('/', target.find("//") + 2);
    target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
  }
  size_t q = target.find('?');
  r.path = std::string(target.substr(0, q));
  if (r.path.empty() || r.path[0] != '/') {
    simpleResponse(c, 400, "text/plain", "bad request target\n", true);
    return false;
  }
  if (q != std::string_view::npos) {
    std::string_view query = target.substr(q + 1);
    size_t p = 0;
    while (p <= query.size()) {
      size_t amp = query.find('&', p);
      if (amp == std::string_view::npos) amp = query.size();
      std::string_view kv = query.substr(p, amp - p);
      if (!kv.empty()) {
        size_t eq = kv.find('=');
        if (eq == std::string_view::npos) {
          r.params.emplace_back(percentDecode(kv), "");
        } else {
          r.params.emplace_back(percentDecode(kv.substr(0, eq)), percentDecode(kv.substr(eq + 1)));
        }
      }
      p = amp + 1;
    }
  }
  if (r.header("transfer-encoding") != nullptr) {
    simpleResponse(c, 501, "text/plain", "request bodies with Transfer-Encoding are not supported\n", true);
    return false;
  }
  if (const std::string* cl = r.header("content-length")) {
    uint64_t n = 0;
    if (!parseSize(*cl, &n)) {
      simpleResponse(c, 400, "text/plain", "bad Content-Length\n", true);
      return false;
    }
    c->req_body_left = n;
  }
  return true;
}

void OriginSim::Impl::simpleResponse(Conn* c, int status, std::string_view content_type,
                                     std::string body, bool close) {
  const bool keep = !close && !c->peer_eof &&
                    (c->req.minor == 1 ? !(c->req.header("connection") && hasToken(*c->req.header("connection"), "close"))
                                       : (c->req.header("connection") && hasToken(*c->req.header("connection"), "keep-alive")));
  std::string head = "HTTP/1.1 " + std::to_string(status) + " " + reasonPhrase(status) + "\r\n";
  head += "Date: " + httpDate(time(nullptr)) + "\r\n";
  head += "Server: origin_sim\r\n";
  head += "X-Origin: " + options.name + "\r\n";
  head += "Cache-Control: no-store\r\n";
  head += "Content-Type: " + std::string(content_type) + "\r\n";
  head += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  if (!keep) {
    head += "Connection: close\r\n";
  } else if (c->req.minor == 0) {
    head += "Connection: keep-alive\r\n";
  }
  head += "\r\n";
  evbuffer* out = bufferevent_get_output(c->bev);
  evbuffer_add(out, head.data(), head.size());
  if (c->req.method != "HEAD") evbuffer_add(out, body.data(), body.size());
  if (keep) {
    c->state = Conn::State::kHead;
    requestDone(c);
  } else {
    c->plan.end = Plan::End::kClose;
    c->state = Conn::State::kDraining;
    bufferevent_disable(c->bev, EV_READ);
  }
}

void OriginSim::Impl::requestDone(Conn* c) {
  if (!c->active) return;
  c->active = false;
  --active_requests;
}

void OriginSim::Impl::dispatch(Conn* c) {
  if (c->req.path.rfind("/_sim/", 0) == 0) {
    control(c);
    return;
  }
  if (!c->active) {
    c->active = true;
    max_active_requests = std::max(max_active_requests, ++active_requests);
  }
  // An LL-HLS blocking reload is held until its segment or part exists (then planned afresh).
  const auto parts = splitPath(c->req.path);
  if (parts.size() == 3 && parts[0] == "ll" && parts[2] == "index.m3u8") {
    const LlDirectives d = llDirectives(c->req);
    const LlClock clock = llClock(options, wallMs());
    if (d.ok) {
      if (const std::optional<int64_t> ready = llReadyAt(clock, d); ready && *ready > clock.now) {
        const int64_t wait = *ready - clock.now + 2;  // a little late rather than early
        c->state = Conn::State::kDelay;
        c->replan = true;
        timeval tv{static_cast<time_t>(wait / 1000), static_cast<suseconds_t>((wait % 1000) * 1000)};
        evtimer_add(c->timer, &tv);
        return;
      }
    }
  }
  // --media-dir: a DASH segment asked for before it is complete is held until it is (ffmpeg's
  // DASH demuxer asks for the next $Number$ at once rather than waiting for it to exist).
  if (const std::optional<int64_t> ready = mediaDashReadyMs(c->req.path); ready && *ready > wallMs()) {
    const int64_t wait = *ready - wallMs() + 2;
    c->state = Conn::State::kDelay;
    c->replan = true;
    timeval tv{static_cast<time_t>(wait / 1000), static_cast<suseconds_t>((wait % 1000) * 1000)};
    evtimer_add(c->timer, &tv);
    return;
  }
  c->plan = contentPlan(c->req);
  if (c->plan.delay_ms > 0) {
    c->state = Conn::State::kDelay;
    timeval tv{c->plan.delay_ms / 1000, (c->plan.delay_ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
    return;
  }
  startPlan(c);
}

void OriginSim::Impl::startPlan(Conn* c) {
  Plan& p = c->plan;
  if (c->peer_eof && p.end == Plan::End::kKeepAlive) p.end = Plan::End::kClose;
  if (p.hang) {
    c->state = Conn::State::kHang;
    return;
  }
  evbuffer* out = bufferevent_get_output(c->bev);
  evbuffer_add(out, p.head.data(), p.head.size());
  c->sent = 0;
  if (p.rate > 0 && p.send_bytes > 0) {
    c->state = Conn::State::kSending;
    c->send_start = Clock::now();
    rateTick(c);
    return;
  }
  if (p.lazy_size > 0 && p.send_bytes > 0) {
    c->state = Conn::State::kSending;  // onWritten sends the next slice as the socket drains
    lazyTick(c);
    return;
  }
  sendSlice(c, p.send_bytes);
  bodyQueued(c);
}

void OriginSim::Impl::lazyTick(Conn* c) {
  Plan& p = c->plan;
  if (evbuffer_get_length(bufferevent_get_output(c->bev)) < kLazySliceBytes) {
    sendSlice(c, kLazySliceBytes);
  }
  if (c->sent >= p.send_bytes) bodyQueued(c);
}

void OriginSim::Impl::sendSlice(Conn* c, size_t n) {
  Plan& p = c->plan;
  n = std::min(n, p.send_bytes - c->sent);
  if (n == 0) return;
  evbuffer* out = bufferevent_get_output(c->bev);
  if (p.chunked) {
    char size_line[32];
    int len = std::snprintf(size_line, sizeof size_line, "%zx\r\n", n);
    evbuffer_add(out, size_line, static_cast<size_t>(len));
  }
  if (p.lazy_size > 0) {
    const std::string slice = simBodySlice(p.lazy_path, p.lazy_size, p.offset + c->sent, n);
    evbuffer_add(out, slice.data(), slice.size());
  } else {
    evbuffer_add_reference(out, p.body->data() + p.offset + c->sent, n, releaseBody,
                           new BodyPtr(p.body));
  }
  if (p.chunked) evbuffer_add(out, "\r\n", 2);
  c->sent += n;
}

void OriginSim::Impl::rateTick(Conn* c) {
  Plan& p = c->plan;
  const double elapsed_s = std::chrono::duration<double>(Clock::now() - c->send_start).count();
  // Allowed so far: one tick's worth up front, then the rate times the elapsed time.
  const double tick_bytes = std::max(1.0, static_cast<double>(p.rate) * kRateTickMs / 1000.0);
  const double allowed = static_cast<double>(p.burst) + tick_bytes + static_cast<double>(p.rate) * elapsed_s;
  const size_t target = static_cast<size_t>(std::min<double>(allowed, static_cast<double>(p.send_bytes)));
  if (target > c->sent) sendSlice(c, target - c->sent);
  if (c->sent >= p.send_bytes) {
    bodyQueued(c);
    return;
  }
  timeval tv{0, kRateTickMs * 1000};
  evtimer_add(c->timer, &tv);
}

void OriginSim::Impl::bodyQueued(Conn* c) {
  Plan& p = c->plan;
  evbuffer* out = bufferevent_get_output(c->bev);
  if (p.terminate_chunked) evbuffer_add(out, "0\r\n\r\n", 5);
  if (p.extra_bytes > 0) {
    std::string extra(p.extra_bytes, 'X');
    evbuffer_add(out, extra.data(), extra.size());
  }
  if (c->peer_eof && p.end == Plan::End::kKeepAlive) p.end = Plan::End::kClose;
  if (p.end == Plan::End::kKeepAlive) {
    c->state = Conn::State::kHead;
    requestDone(c);
    return;
  }
  if (p.end == Plan::End::kStall) {
    // The queued part still goes out; then silence until the peer gives up.
    c->state = Conn::State::kHang;  // an EOF from the peer closes it (onEvent)
    return;
  }
  c->state = Conn::State::kDraining;
  bufferevent_disable(c->bev, EV_READ);
  if (evbuffer_get_length(out) == 0) onWritten(c);
}

void OriginSim::Impl::count(const std::string& path, bool not_modified) {
  std::lock_guard<std::mutex> lock(mu);
  SimCounts& sc = counts[path];
  if (not_modified) {
    ++sc.not_modified;
  } else {
    ++sc.total;
  }
}

FaultSpec OriginSim::Impl::takeFault(const std::string& path) {
  if (global_fault.mode != Fault::kNone) return global_fault;
  for (auto it = path_faults.begin(); it != path_faults.end(); ++it) {
    if (it->path != path) continue;
    FaultSpec f = it->spec;
    if (--it->remaining == 0) path_faults.erase(it);
    return f;
  }
  return FaultSpec{};
}

BodyPtr OriginSim::Impl::generatedBody(const std::string& path, size_t size) {
  auto key = std::make_pair(path, size);
  if (auto it = body_cache.find(key); it != body_cache.end()) return it->second;
  auto body = std::make_shared<const std::string>(simBody(path, size));
  if (size <= kBodyCacheBytes / 4) {
    if (body_cache_bytes + size > kBodyCacheBytes) {
      body_cache.clear();
      body_cache_bytes = 0;
    }
    body_cache.emplace(key, body);
    body_cache_bytes += size;
  }
  return body;
}

std::optional<Resource> OriginSim::Impl::resolve(const Request& req, size_t size) {
  const std::string& path = req.path;
  const int target = options.target_duration_s;
  const time_t now = time(nullptr);
  const int64_t current = static_cast<int64_t>(now) / target;  // newest live segment number
  auto playlist = [&](std::string text, std::string content_type, time_t modified) {
    Resource r;
    r.content_type = std::move(content_type);
    if (!options.playlist_cache_control.empty()) r.cache_control = options.playlist_cache_control;
    r.etag = "\"" + hex64(XXH64(text.data(), text.size(), 0)) + "\"";
    r.last_modified = httpDate(modified);
    r.body = std::make_shared<const std::string>(std::move(text));
    return r;
  };
  auto generated = [&](std::string content_type, size_t bytes) {
    Resource r;
    r.content_type = std::move(content_type);
    if (!options.segment_cache_control.empty()) r.cache_control = options.segment_cache_control;
    r.etag = simEtag(path, bytes);
    r.last_modified = std::string(kSimLastModified);
    if (bytes > kLazyBodyBytes) {
      r.lazy_path = path;
      r.lazy_size = bytes;
    } else {
      r.body = generatedBody(path, bytes);
    }
    return r;
  };
  const auto parts = splitPath(path);
  uint64_t n = 0;
  // --media-dir: real media on the live clock; N0 (the live segment that is file 0) is the
  // oldest segment of the first window, in HLS and in DASH numbering (origin_sim_media.h).
  const int64_t hls_n0 = media_start_s / target - options.window + 1;
  const int64_t dash_n0 = (media_start_s - kSimDashEpochSeconds) / target - options.window + 1;
  auto mediaFile = [&](std::string content_type, BodyPtr body) -> std::optional<Resource> {
    if (!body) return std::nullopt;
    Resource r;
    r.content_type = std::move(content_type);
    if (!options.segment_cache_control.empty()) r.cache_control = options.segment_cache_control;
    r.etag = "\"" + hex64(XXH64(body->data(), body->size(), 0)) + "\"";
    r.last_modified = std::string(kSimLastModified);
    r.body = std::move(body);
    return r;
  };

  if (path == "/healthz" || path == "/health") {
    Resource r;
    r.content_type = "text/plain";
    r.cache_control = "no-store";
    r.body = std::make_shared<const std::string>("ok\n");
    r.etag = "\"health\"";
    return r;
  }
  if (parts.size() >= 2 && parts[0] == "obj") {
    return generated("application/octet-stream", size);
  }
  if (path == "/live/master.m3u8" && media) {
    return playlist(media->hlsMasterPlaylist(), "application/vnd.apple.mpegurl",
                    static_cast<time_t>(kSimDashEpochSeconds));
  }
  if (path == "/live/master.m3u8") {
    std::string t =
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=2500000,RESOLUTION=1280x720,CODECS=\"avc1.64001f,mp4a.40.2\"\n"
        "720p/index.m3u8\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360,CODECS=\"avc1.64001e,mp4a.40.2\"\n"
        "360p/index.m3u8\n";
    return playlist(std::move(t), "application/vnd.apple.mpegurl", static_cast<time_t>(kSimDashEpochSeconds));
  }
  if (parts.size() == 3 && parts[0] == "live" && isSimpleName(parts[1])) {
    if (parts[2] == "index.m3u8") {
      int window = options.window;
      // ?window=N: a longer live window (a DVR playlist of N segments).
      if (const std::string* w = req.param("window"); w && parseSize(*w, &n) && n >= 1) {
        window = static_cast<int>(std::min<uint64_t>(n, kMaxPlaylistWindow));
      }
      const int64_t first = current - window + 1;
      if (media) {
        return playlist(media->hlsMediaPlaylist(first, current, hls_n0, target), "application/vnd.apple.mpegurl",
                        static_cast<time_t>(current * target));
      }
      std::string t = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:" + std::to_string(target) +
                      "\n#EXT-X-MEDIA-SEQUENCE:" + std::to_string(first) + "\n";
      for (int64_t s = first; s <= current; ++s) {
        t += "#EXTINF:" + std::to_string(target) + ".000,\nseg_" + std::to_string(s) + ".ts\n";
      }
      return playlist(std::move(t), "application/vnd.apple.mpegurl", static_cast<time_t>(current * target));
    }
    if (segmentNumber(parts[2], ".ts", &n) && media) {
      return mediaFile("video/mp2t", media->ts(static_cast<int64_t>(n) - hls_n0));
    }
    if (segmentNumber(parts[2], ".ts", &n)) return generated("video/mp2t", size);
    return std::nullopt;
  }
  if (path == "/dash/manifest.mpd" && req.param("periods") != nullptr) {
    if (!parseSize(*req.param("periods"), &n) || n < 1) return std::nullopt;
    const int periods = static_cast<int>(std::min<uint64_t>(n, kMaxMpdPeriods));
    return playlist(simMultiPeriodMpd(current * target, target, periods), "application/dash+xml",
                    static_cast<time_t>(current * target));
  }
  if (path == "/dash/manifest.mpd") {
    const time_t publish = static_cast<time_t>(current * target);
    const std::string dur = "PT" + std::to_string(target) + "S";
    std::string t =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" profiles=\"urn:mpeg:dash:profile:isoff-live:2011\" "
        "type=\"dynamic\" availabilityStartTime=\"" + isoDate(static_cast<time_t>(kSimDashEpochSeconds)) +
        "\" publishTime=\"" + isoDate(publish) + "\" minimumUpdatePeriod=\"" + dur +
        "\" minBufferTime=\"PT" + std::to_string(2 * target) + "S\" timeShiftBufferDepth=\"PT" +
        std::to_string(options.window * target) + "S\" suggestedPresentationDelay=\"PT" +
        std::to_string(3 * target) + "S\">\n"
        "  <Period id=\"1\" start=\"PT0S\">\n";
    t += media ? media->dashAdaptationSets(target) :
        "    <AdaptationSet mimeType=\"video/mp4\" segmentAlignment=\"true\" startWithSAP=\"1\">\n"
        "      <SegmentTemplate timescale=\"1\" duration=\"" + std::to_string(target) +
        "\" startNumber=\"1\" media=\"$RepresentationID$/seg_$Number$.m4s\" "
        "initialization=\"$RepresentationID$/init.mp4\"/>\n"
        "      <Representation id=\"720p\" bandwidth=\"2500000\" width=\"1280\" height=\"720\" codecs=\"avc1.64001f\"/>\n"
        "      <Representation id=\"360p\" bandwidth=\"800000\" width=\"640\" height=\"360\" codecs=\"avc1.64001e\"/>\n"
        "    </AdaptationSet>\n";
    t += "  </Period>\n"
        "</MPD>\n";
    return playlist(std::move(t), "application/dash+xml", publish);
  }
  if (parts.size() == 3 && parts[0] == "dash" && isSimpleName(parts[1]) && media) {
    const MediaSet::Track* track = media->dashTrack(parts[1]);
    if (track == nullptr) return std::nullopt;
    const std::string type = track->info.video ? "video" : "audio";
    if (parts[2] == "init.mp4") return mediaFile(type + "/mp4", track->init);
    if (segmentNumber(parts[2], ".m4s", &n) && mediaDashReadyMs(path)) {
      return mediaFile(type + "/iso.segment", media->dashSegment(*track, static_cast<int64_t>(n) - dash_n0));
    }
    return std::nullopt;
  }
  if (parts.size() == 3 && parts[0] == "dash" && isSimpleName(parts[1])) {
    if (parts[2] == "init.mp4") {
      return generated("video/mp4", req.param("size") != nullptr ? size : kInitSegmentSize);
    }
    if (segmentNumber(parts[2], ".m4s", &n)) return generated("video/iso.segment", size);
    return std::nullopt;
  }
  // Media that is being made: complete → whole; being made → sent as it is "encoded"; later → 404.
  auto encoded = [&](std::string content_type, size_t bytes, int64_t start_ms, int64_t end_ms,
                     int64_t now_ms) -> std::optional<Resource> {
    if (now_ms < start_ms) return std::nullopt;
    Resource r = generated(std::move(content_type), bytes);
    if (now_ms < end_ms && bytes > 0) {
      const int64_t left_ms = end_ms - now_ms;
      r.encoded = static_cast<size_t>(static_cast<double>(bytes) * static_cast<double>(now_ms - start_ms) /
                                      static_cast<double>(end_ms - start_ms));
      r.encode_rate = std::max<uint64_t>(1, (bytes - r.encoded) * 1000 / static_cast<uint64_t>(left_ms));
    }
    return r;
  };
  if (parts.size() == 3 && (parts[0] == "ll" || parts[0] == "lldash") && isSimpleName(parts[1])) {
    const LlClock c = llClock(options, wallMs());
    uint64_t s = 0, i = 0;
    if (parts[2] == "init.mp4") {
      return generated("video/mp4", req.param("size") != nullptr ? size : kInitSegmentSize);
    }
    if (segmentNumber(parts[2], ".m4s", &s) && s < (1ull << 40)) {
      const int64_t start = static_cast<int64_t>(s) * c.t_ms;
      return encoded("video/iso.segment", size, start, start + c.t_ms, c.now);
    }
    if (parts[0] == "ll" && partNumbers(parts[2], &s, &i) && s < (1ull << 40) &&
        static_cast<int64_t>(i) < c.pps) {
      const size_t part_size = std::max<size_t>(1, size / static_cast<size_t>(c.pps));
      return encoded("video/iso.segment", part_size, c.partStart(static_cast<int64_t>(s), static_cast<int64_t>(i)),
                     c.partEnd(static_cast<int64_t>(s), static_cast<int64_t>(i)), c.now);
    }
    if (parts[0] == "ll" && parts[2] == "index.m3u8") {
      const LlDirectives d = llDirectives(req);
      if (!d.ok || !llReadyAt(c, d)) {
        Resource r;
        r.status = 400;
        r.content_type = "text/plain";
        r.body = std::make_shared<const std::string>("bad LL-HLS delivery directive\n");
        return r;
      }
      int64_t window = 2 * options.window;
      if (const std::string* w = req.param("window"); w && parseSize(*w, &n) && n >= 1) {
        window = static_cast<int64_t>(std::min<uint64_t>(n, kMaxPlaylistWindow));
      }
      return playlist(llPlaylist(c, window, d.skip), "application/vnd.apple.mpegurl",
                      static_cast<time_t>(c.now / 1000));
    }
    return std::nullopt;
  }
  if (path == "/lldash/manifest.mpd") {
    const LlClock c = llClock(options, wallMs());
    const std::string t_ms = std::to_string(c.t_ms);
    std::string t =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" profiles=\"urn:mpeg:dash:profile:isoff-live:2011\" "
        "type=\"dynamic\" availabilityStartTime=\"1970-01-01T00:00:00Z\" publishTime=\"" +
        isoDate(static_cast<time_t>(c.now / 1000)) + "\" minimumUpdatePeriod=\"PT" +
        std::to_string(options.target_duration_s) + "S\" minBufferTime=\"PT1S\" timeShiftBufferDepth=\"PT" +
        std::to_string(options.window * options.target_duration_s) + "S\">\n"
        "  <Period id=\"1\" start=\"PT0S\">\n"
        "    <AdaptationSet mimeType=\"video/mp4\" segmentAlignment=\"true\" startWithSAP=\"1\">\n"
        "      <SegmentTemplate timescale=\"1000\" duration=\"" + t_ms + "\" startNumber=\"0\" "
        "availabilityTimeOffset=\"" + seconds3(c.t_ms - c.p_ms) + "\" availabilityTimeComplete=\"false\" "
        "media=\"$RepresentationID$/seg_$Number$.m4s\" initialization=\"$RepresentationID$/init.mp4\"/>\n"
        "      <Representation id=\"720p\" bandwidth=\"2500000\" width=\"1280\" height=\"720\" codecs=\"avc1.64001f\"/>\n"
        "      <Representation id=\"360p\" bandwidth=\"800000\" width=\"640\" height=\"360\" codecs=\"avc1.64001e\"/>\n"
        "    </AdaptationSet>\n"
        "  </Period>\n"
        "</MPD>\n";
    return playlist(std::move(t), "application/dash+xml", static_cast<time_t>(c.now / 1000));
  }
  if (parts.size() == 3 && parts[0] == "vod" && isSimpleName(parts[1])) {
    if (parts[2] == "index.m3u8") {
      std::string t = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-TARGETDURATION:" +
                      std::to_string(target) + "\n#EXT-X-MEDIA-SEQUENCE:0\n";
      for (int s = 0; s < kVodSegments; ++s) {
        t += "#EXTINF:" + std::to_string(target) + ".000,\nseg_" + std::to_string(s) + ".ts\n";
      }
      t += "#EXT-X-ENDLIST\n";
      Resource r = playlist(std::move(t), "application/vnd.apple.mpegurl", static_cast<time_t>(kSimDashEpochSeconds));
      r.last_modified = std::string(kSimLastModified);
      return r;
    }
    if (segmentNumber(parts[2], ".ts", &n) && n < static_cast<uint64_t>(kVodSegments)) {
      return generated("video/mp2t", size);
    }
    return std::nullopt;
  }
  return std::nullopt;
}

std::optional<int64_t> OriginSim::Impl::mediaDashReadyMs(const std::string& path) const {
  const auto parts = splitPath(path);
  uint64_t n = 0;
  if (!media || parts.size() != 3 || parts[0] != "dash" || !segmentNumber(parts[2], ".m4s", &n) || n >= (1ull << 40)) {
    return std::nullopt;
  }
  const int64_t t_ms = int64_t{options.target_duration_s} * 1000;
  const int64_t ready = kSimDashEpochSeconds * 1000 + static_cast<int64_t>(n) * t_ms;
  if (ready - wallMs() > kMediaHoldSegments * t_ms) return std::nullopt;
  return ready;
}

Plan OriginSim::Impl::contentPlan(const Request& req) {
  Plan p;
  const bool head_method = req.method == "HEAD";
  uint64_t v = 0;
  if (const std::string* s = req.param("delay_ms"); s && parseSize(*s, &v)) p.delay_ms = static_cast<int>(std::min<uint64_t>(v, 3600000));
  if (const std::string* s = req.param("rate"); s && parseSize(*s, &v)) p.rate = v;

  count(req.path, false);
  FaultSpec spec = takeFault(req.path);
  if (spec.mode == Fault::kNone) {
    if (const std::string* f = req.param("fault")) spec.mode = parseFault(*f).value_or(Fault::kNone);
    if (const std::string* a = req.param("fault_after"); a && parseSize(*a, &v)) spec.after = v;
    if (const std::string* r = req.param("fault_rate"); r && parseSize(*r, &v) && v > 0) spec.rate = v;
  }
  const Fault fault = spec.mode;
  if (const std::string* range = req.header("range")) {
    const std::string* im = req.header("if-match");
    const std::string* ius = req.header("if-unmodified-since");
    std::lock_guard<std::mutex> lock(mu);
    ranges[req.path].push_back(*range + "|" + (im ? *im : "") + "|" + (ius ? *ius : ""));
  }

  const std::string* conn_hdr = req.header("connection");
  bool keep_alive = req.minor == 1 ? !(conn_hdr && hasToken(*conn_hdr, "close"))
                                   : (conn_hdr && hasToken(*conn_hdr, "keep-alive"));

  size_t size = options.segment_size;
  if (const std::string* s = req.param("size"); s && parseSize(*s, &v)) size = static_cast<size_t>(std::min(v, kMaxObjectSize));

  Resource res;
  if (fault == Fault::k500 || fault == Fault::k503) {
    const int status = fault == Fault::k500 ? 500 : 503;
    res.status = status;
    res.content_type = "text/plain";
    res.body = std::make_shared<const std::string>("origin_sim " + options.name + ": simulated " +
                                                   std::to_string(status) + "\n");
  } else if (req.method != "GET" && req.method != "HEAD") {
    res.status = 405;
    res.content_type = "text/plain";
    res.body = std::make_shared<const std::string>("method not allowed\n");
  } else if (auto r = resolve(req, size)) {
    res = std::move(*r);
  } else {
    res.status = 404;
    res.content_type = "text/plain";
    res.body = std::make_shared<const std::string>("not found: " + req.path + "\n");
  }
  const bool generated_status = res.status == 200;
  if (res.status == 200 && req.paramIs("echo", "1")) {
    // The request's header fields as received, one "name: value" line each (names lowercased):
    // lets a test see what a proxy forwarded.
    std::string text;
    for (const auto& [name, value] : req.headers) text += name + ": " + value + "\n";
    res.body = std::make_shared<const std::string>(std::move(text));
    res.content_type = "text/plain";
    res.etag.clear();
    res.last_modified.reset();
  }

  if (res.status == 200 && req.paramIs("vary_body", "1")) {
    // A body that depends on the request fields `vary` names, one "name: value" line each
    // (names lowercased as listed, "(absent)" for a field the request lacks; several lines of
    // a field joined with ", "): lets a test tell the variants apart and see what the origin
    // was asked with. Its ETag follows the text.
    std::string text;
    const std::string* vary = req.param("vary");
    std::string_view list = vary ? std::string_view(*vary) : std::string_view();
    size_t pos = 0;
    while (pos <= list.size()) {
      size_t comma = list.find(',', pos);
      if (comma == std::string_view::npos) comma = list.size();
      const std::string name = lower(trim(list.substr(pos, comma - pos)));
      pos = comma + 1;
      if (name.empty()) continue;
      std::string value;
      bool found = false;
      for (const auto& [k, v] : req.headers) {
        if (k != name) continue;
        if (found) value += ", ";
        value += v;
        found = true;
      }
      text += name + ": " + (found ? value : std::string("(absent)")) + "\n";
    }
    res.etag = "\"" + hex64(XXH64(text.data(), text.size(), 0)) + "\"";
    res.body = std::make_shared<const std::string>(std::move(text));
    res.content_type = "text/plain";
  }

  // Per-request knobs.
  if (const std::string* s = req.param("status"); s && parseSize(*s, &v) && v >= 100 && v <= 999) res.status = static_cast<int>(v);
  if (const std::string* cc = req.param("cc")) {
    if (cc->empty()) {
      res.cache_control.reset();
    } else {
      res.cache_control = *cc;
    }
  }
  if (req.paramIs("etag", "0")) res.etag.clear();
  if (fault == Fault::kNoStore) {
    res.cache_control = "no-store";
    if (!res.etag.empty()) res.etag = "\"withdrawn\"";
  }
  if (req.paramIs("lm", "0")) res.last_modified.reset();
  if (fault == Fault::kEtag) {
    if (!res.etag.empty()) res.etag = "\"changed-" + options.name + "-" + res.etag.substr(1);
    if (res.last_modified) res.last_modified = std::string(kChangedLastModified);
  }
  const bool being_encoded = res.status == 200 && res.encode_rate > 0;
  const bool chunked_requested = req.paramIs("chunked", "1") || being_encoded;
  const bool ranges_off = req.paramIs("ranges", "0") || fault == Fault::kNoRanges || being_encoded;

  std::vector<std::string> extra_headers;
  if (req.paramIs("set_cookie", "1")) extra_headers.push_back("Set-Cookie: sim=" + options.name + "; Path=/");
  if (const std::string* vary = req.param("vary"); vary && !vary->empty()) extra_headers.push_back("Vary: " + *vary);
  // hdr=Name:value (repeatable): any response field, e.g. targeted cache control. A name that is
  // not a token or a value with CR, LF or NUL is ignored (the simulator never writes a broken head).
  for (const auto& [key, value] : req.params) {
    if (key != "hdr") continue;
    const size_t colon = value.find(':');
    if (colon == std::string::npos || colon == 0) continue;
    const std::string_view name = std::string_view(value).substr(0, colon);
    const std::string_view field_value = trim(std::string_view(value).substr(colon + 1));
    const bool name_ok = std::all_of(name.begin(), name.end(), [](char ch) {
      return std::isalnum(static_cast<unsigned char>(ch)) ||
             std::string_view("!#$%&'*+-.^_`|~").find(ch) != std::string_view::npos;
    });
    if (!name_ok || field_value.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos) continue;
    extra_headers.push_back(std::string(name) + ": " + std::string(field_value));
  }
  if (const std::string* loc = req.param("location"); loc && !loc->empty()) extra_headers.push_back("Location: " + *loc);
  if (const std::string* cl = req.param("content_location"); cl && !cl->empty()) extra_headers.push_back("Content-Location: " + *cl);
  // ce=<coding>: labels the body with a Content-Encoding (the bytes are not changed), as an
  // origin that encoded its answer itself.
  if (const std::string* ce = req.param("ce"); ce && !ce->empty()) extra_headers.push_back("Content-Encoding: " + *ce);

  int status = res.status;
  size_t offset = 0;
  size_t length = res.lazy_size > 0 ? res.lazy_size : res.body ? res.body->size() : 0;
  std::string content_range;

  // RFC 9110 §13.2.2: If-Match first, If-Unmodified-Since only without it (§13.1.1, §13.1.4);
  // a false one is a 412 whatever else the request says.
  if (generated_status && status == 200 && spec.preconditions) {
    bool failed = false;
    if (const std::string* im = req.header("if-match")) {
      failed = true;
      std::string_view list = *im;
      if (trim(list) == "*") failed = false;
      size_t pos = 0;
      while (failed && pos <= list.size()) {
        size_t comma = list.find(',', pos);
        if (comma == std::string_view::npos) comma = list.size();
        const std::string_view tag = trim(list.substr(pos, comma - pos));
        // Strong comparison (§8.8.3.2): a weak tag never matches.
        if (!res.etag.empty() && tag.rfind("W/", 0) != 0 && tag == res.etag) failed = false;
        pos = comma + 1;
      }
    } else if (const std::string* ius = req.header("if-unmodified-since")) {
      auto since = parseHttpDate(*ius);
      auto modified = res.last_modified ? parseHttpDate(*res.last_modified) : std::nullopt;
      // §13.1.4: an invalid date is ignored; no Last-Modified cannot be shown unmodified.
      if (since) failed = !modified || *modified > *since;
    }
    if (failed) {
      status = 412;
      res.content_type = "text/plain";
      res.body = std::make_shared<const std::string>("precondition failed\n");
      res.lazy_size = 0;
      res.lazy_path.clear();
      length = res.body->size();
    }
  }

  // RFC 9110 §13.2.2: If-None-Match first; If-Modified-Since only without it. Only for a 200.
  if (generated_status && status == 200) {
    bool not_modified = false;
    if (const std::string* inm = req.header("if-none-match")) {
      if (!res.etag.empty()) {
        std::string_view list = *inm;
        if (trim(list) == "*") not_modified = true;
        size_t pos = 0;
        while (!not_modified && pos <= list.size()) {
          size_t comma = list.find(',', pos);
          if (comma == std::string_view::npos) comma = list.size();
          std::string_view tag = trim(list.substr(pos, comma - pos));
          if (tag.rfind("W/", 0) == 0) tag.remove_prefix(2);  // §8.8.3.2 weak comparison
          if (tag == res.etag) not_modified = true;
          pos = comma + 1;
        }
      }
    } else if (const std::string* ims = req.header("if-modified-since")) {
      auto since = parseHttpDate(*ims);
      auto modified = res.last_modified ? parseHttpDate(*res.last_modified) : std::nullopt;
      if (since && modified && *modified <= *since) not_modified = true;
    }
    if (not_modified) {
      status = 304;
      count(req.path, true);
    }
  }

  // RFC 9110 §14.2: a single byte range of a 200 GET; If-Range must match the validator.
  const std::string* range = req.header("range");
  if (status == 200 && generated_status && range != nullptr && !head_method && !ranges_off) {
    bool honour = true;
    if (const std::string* if_range = req.header("if-range")) {
      honour = (!res.etag.empty() && *if_range == res.etag) ||
               (res.last_modified && *if_range == *res.last_modified);
    }
    std::string_view r = trim(*range);
    if (honour && r.rfind("bytes=", 0) == 0 && r.find(',') == std::string_view::npos) {
      r.remove_prefix(6);
      size_t dash = r.find('-');
      uint64_t a = 0, b = 0;
      bool ok = dash != std::string_view::npos;
      bool has_a = ok && dash > 0 && parseSize(trim(r.substr(0, dash)), &a);
      bool has_b = ok && dash + 1 < r.size() && parseSize(trim(r.substr(dash + 1)), &b);
      const uint64_t total = length;
      if (ok && has_a) {
        if (a >= total) {
          status = 416;
          content_range = "bytes */" + std::to_string(total);
        } else {
          uint64_t last = has_b ? std::min(b, total - 1) : total - 1;
          if (!has_b || b >= a) {
            status = 206;
            offset = a;
            length = last - a + 1;
            content_range = "bytes " + std::to_string(a) + "-" + std::to_string(last) + "/" + std::to_string(total);
          }
        }
      } else if (ok && !has_a && has_b && dash == 0) {
        if (b == 0 || total == 0) {
          status = 416;
          content_range = "bytes */" + std::to_string(total);
        } else {
          uint64_t n = std::min(b, total);
          status = 206;
          offset = total - n;
          length = n;
          content_range = "bytes " + std::to_string(offset) + "-" + std::to_string(total - 1) + "/" + std::to_string(total);
        }
      }
    }
    if (status == 416) length = 0;
  }

  const bool has_body = statusHasBody(status);
  // A chunked response to an HTTP/1.0 client is close-delimited instead (RFC 9112 §6.1).
  const bool chunked = chunked_requested && has_body && req.minor == 1;
  const bool close_delimited = chunked_requested && has_body && req.minor == 0;
  if (close_delimited) keep_alive = false;
  if (fault == Fault::kHang || fault == Fault::kReset || fault == Fault::kShort || fault == Fault::kLong ||
      fault == Fault::kStall) {
    keep_alive = false;
  }

  std::string& h = p.head;
  h = "HTTP/1.1 " + std::to_string(status) + " " + reasonPhrase(status) + "\r\n";
  h += "Date: " + httpDate(time(nullptr)) + "\r\n";
  h += "Server: origin_sim\r\n";
  h += "X-Origin: " + options.name + "\r\n";
  if (status != 304 && !res.content_type.empty()) h += "Content-Type: " + res.content_type + "\r\n";
  if (res.cache_control) h += "Cache-Control: " + *res.cache_control + "\r\n";
  if (!res.etag.empty()) h += "ETag: " + res.etag + "\r\n";
  if (res.last_modified) h += "Last-Modified: " + *res.last_modified + "\r\n";
  for (const std::string& e : extra_headers) h += e + "\r\n";
  if (generated_status && status != 412 && !chunked_requested && !ranges_off) h += "Accept-Ranges: bytes\r\n";
  if (!content_range.empty()) h += "Content-Range: " + content_range + "\r\n";
  if (has_body) {
    if (chunked) {
      h += "Transfer-Encoding: chunked\r\n";
    } else if (!close_delimited) {
      h += "Content-Length: " + std::to_string(length) + "\r\n";
    }
  }
  if (!keep_alive) {
    h += "Connection: close\r\n";
  } else if (req.minor == 0) {
    h += "Connection: keep-alive\r\n";
  }
  h += "\r\n";

  p.body = res.body;
  p.lazy_path = res.lazy_path;
  p.lazy_size = res.lazy_size;
  p.offset = offset;
  p.chunked = chunked;
  p.send_bytes = (has_body && !head_method) ? length : 0;
  p.terminate_chunked = chunked && !head_method;
  p.end = keep_alive ? Plan::End::kKeepAlive : Plan::End::kClose;
  switch (fault) {
    case Fault::kHang:
      p.hang = true;
      break;
    case Fault::kDelay:  // the head after `after` ms (default 1000): one slow data center
      p.delay_ms = static_cast<int>(std::min<uint64_t>(spec.after.value_or(1000), 3600000));
      break;
    case Fault::kReset:
      p.send_bytes = spec.after ? std::min<uint64_t>(*spec.after, p.send_bytes) : p.send_bytes / 2;
      p.terminate_chunked = false;
      p.end = Plan::End::kReset;
      break;
    case Fault::kStall:
      p.send_bytes = spec.after ? std::min<uint64_t>(*spec.after, p.send_bytes) : p.send_bytes / 2;
      p.terminate_chunked = false;
      p.end = Plan::End::kStall;
      break;
    case Fault::kSlow:
      p.burst = spec.after ? std::min<uint64_t>(*spec.after, p.send_bytes) : p.send_bytes / 2;
      p.rate = spec.rate;
      break;
    case Fault::kShort:
      p.send_bytes /= 2;
      p.terminate_chunked = false;
      break;
    case Fault::kLong:
      p.extra_bytes = kLongExtraBytes;
      break;
    default:
      break;
  }
  if (being_encoded && fault == Fault::kNone && p.rate == 0) {
    p.rate = res.encode_rate;
    p.burst = std::min(res.encoded, p.send_bytes);
  }
  if (!p.body) p.body = std::make_shared<const std::string>();
  return p;
}

void OriginSim::Impl::control(Conn* c) {
  const Request& r = c->req;
  const std::string& path = r.path;
  const bool kind_304 = r.paramIs("kind", "304");
  if (path == "/_sim/count") {
    const std::string* p = r.param("path");
    if (p == nullptr) {
      simpleResponse(c, 400, "text/plain", "missing path\n", false);
      return;
    }
    uint64_t n = 0;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (auto it = counts.find(*p); it != counts.end()) n = kind_304 ? it->second.not_modified : it->second.total;
    }
    simpleResponse(c, 200, "text/plain", std::to_string(n) + "\n", false);
    return;
  }
  if (path == "/_sim/counts") {
    std::string json = "{";
    {
      std::lock_guard<std::mutex> lock(mu);
      bool first = true;
      for (const auto& [k, sc] : counts) {
        const uint64_t n = kind_304 ? sc.not_modified : sc.total;
        if (kind_304 && n == 0) continue;
        if (!first) json += ",";
        first = false;
        json += "\"" + jsonEscape(k) + "\":" + std::to_string(n);
      }
    }
    json += "}\n";
    simpleResponse(c, 200, "application/json", std::move(json), false);
    return;
  }
  if (path == "/_sim/stats") {
    // This control connection is not counted as a request, but it is an open connection.
    std::string json = "{\"connections\":" + std::to_string(open_conns) +
                       ",\"max_connections\":" + std::to_string(max_open_conns) +
                       ",\"active_requests\":" + std::to_string(active_requests) +
                       ",\"max_active_requests\":" + std::to_string(max_active_requests) + "}\n";
    if (r.paramIs("reset", "1")) {
      max_open_conns = open_conns;
      max_active_requests = active_requests;
    }
    simpleResponse(c, 200, "application/json", std::move(json), false);
    return;
  }
  if (path == "/_sim/reset") {
    {
      std::lock_guard<std::mutex> lock(mu);
      counts.clear();
      ranges.clear();
    }
    if (r.paramIs("faults", "1")) {
      path_faults.clear();
      global_fault = FaultSpec{};
    }
    simpleResponse(c, 200, "text/plain", "ok\n", false);
    return;
  }
  if (path == "/_sim/ranges") {
    const std::string* p = r.param("path");
    if (p == nullptr) {
      simpleResponse(c, 400, "text/plain", "missing path\n", false);
      return;
    }
    std::string text;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (auto it = ranges.find(*p); it != ranges.end()) {
        for (const std::string& line : it->second) text += line + "\n";
      }
    }
    simpleResponse(c, 200, "text/plain", std::move(text), false);
    return;
  }
  if (path == "/_sim/fault") {
    const std::string* mode = r.param("mode");
    std::optional<Fault> f = parseFault(mode ? *mode : "");
    if (mode == nullptr || !f) {
      simpleResponse(c, 400, "text/plain",
                     "mode must be 500|503|hang|delay|reset|short|long|nostore|stall|slow|etag|noranges|off\n", false);
      return;
    }
    FaultSpec spec;
    spec.mode = *f;
    uint64_t v = 0;
    if (const std::string* a = r.param("after")) {
      if (!parseSize(*a, &v)) {
        simpleResponse(c, 400, "text/plain", "bad after\n", false);
        return;
      }
      spec.after = v;
    }
    if (const std::string* rt = r.param("rate")) {
      if (!parseSize(*rt, &v) || v == 0) {
        simpleResponse(c, 400, "text/plain", "bad rate\n", false);
        return;
      }
      spec.rate = v;
    }
    if (r.paramIs("preconditions", "0")) spec.preconditions = false;
    const std::string* p = r.param("path");
    if (r.paramIs("all", "1")) {
      global_fault = spec;
    } else if (p != nullptr) {
      std::erase_if(path_faults, [&](const auto& e) { return e.path == *p; });
      uint64_t n = 1;
      if (const std::string* cnt = r.param("count"); cnt && !parseSize(*cnt, &n)) {
        simpleResponse(c, 400, "text/plain", "bad count\n", false);
        return;
      }
      if (*f != Fault::kNone && n > 0) path_faults.push_back({*p, spec, n});
    } else if (*f == Fault::kNone) {
      path_faults.clear();
      global_fault = FaultSpec{};
    } else {
      simpleResponse(c, 400, "text/plain", "need path=... or all=1\n", false);
      return;
    }
    simpleResponse(c, 200, "text/plain", "ok\n", false);
    return;
  }
  simpleResponse(c, 404, "text/plain", "unknown control endpoint\n", false);
}

// ---------------------------------------------------------------------------------------------

OriginSim::OriginSim(OriginSimOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}

OriginSim::~OriginSim() {
  stop();
  impl_.reset();
}

bool OriginSim::bind(std::string* error) { return impl_->bind(error, &port_); }

namespace {
void signalCb(evutil_socket_t, short, void* arg) { event_base_loopbreak(static_cast<event_base*>(arg)); }
}  // namespace

int OriginSim::run(bool handle_signals) {
  if (impl_->base == nullptr) return 1;
  if (handle_signals) {
    impl_->sigterm_event = evsignal_new(impl_->base, SIGTERM, signalCb, impl_->base);
    impl_->sigint_event = evsignal_new(impl_->base, SIGINT, signalCb, impl_->base);
    event_add(impl_->sigterm_event, nullptr);
    event_add(impl_->sigint_event, nullptr);
  }
  return event_base_dispatch(impl_->base) < 0 ? 1 : 0;
}

bool OriginSim::startThread(std::string* error) {
  if (!bind(error)) return false;
  thread_ = std::thread([this] { run(false); });
  return true;
}

void OriginSim::stop() {
  if (impl_) impl_->requestStop();
  if (thread_.joinable()) thread_.join();
}

SimCounts OriginSim::counts(const std::string& path) const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  auto it = impl_->counts.find(path);
  return it == impl_->counts.end() ? SimCounts{} : it->second;
}

std::map<std::string, SimCounts> OriginSim::allCounts() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->counts;
}

}  // namespace streamedge::testsupport
