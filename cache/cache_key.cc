#include "cache/cache_key.h"

#define XXH_STATIC_LINKING_ONLY  // XXH3_state_t on the stack: no allocation per key
#include <xxhash.h>

#include <array>

namespace streamedge::cache {
namespace {

constexpr char kHexUpper[] = "0123456789ABCDEF";
constexpr char kHexLower[] = "0123456789abcdef";

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

char asciiLower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// RFC 3986 §2.3 unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~"
bool isUnreserved(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

// RFC 3986 §3.3 pchar minus pct-encoded: unreserved / sub-delims / ":" / "@"
bool isLiteralPchar(unsigned char c) {
  if (isUnreserved(c)) return true;
  switch (c) {
    case '!': case '$': case '&': case '\'': case '(': case ')': case '*': case '+': case ',':
    case ';': case '=': case ':': case '@':
      return true;
    default:
      return false;
  }
}

void appendPercentEncoded(std::string& out, unsigned char c) {
  out.push_back('%');
  out.push_back(kHexUpper[c >> 4]);
  out.push_back(kHexUpper[c & 0xF]);
}

// Compares a (possibly percent-encoded) query parameter name with a configured name. Decoding
// while comparing means "%43MCD" cannot smuggle a CMCD parameter into the key or the log.
bool paramNameMatches(std::string_view encoded, std::string_view want, bool ignore_case) {
  size_t j = 0;
  for (size_t i = 0; i < encoded.size(); ++i, ++j) {
    char c = encoded[i];
    if (c == '%' && i + 2 < encoded.size()) {
      int h = hexValue(encoded[i + 1]);
      int l = hexValue(encoded[i + 2]);
      if (h >= 0 && l >= 0) {
        c = static_cast<char>(h * 16 + l);
        i += 2;
      }
    }
    if (j >= want.size()) return false;
    char w = want[j];
    if (ignore_case ? asciiLower(c) != asciiLower(w) : c != w) return false;
  }
  return j == want.size();
}

bool inList(std::string_view name, const std::vector<std::string>& list, bool ignore_case) {
  for (const std::string& entry : list) {
    if (paramNameMatches(name, entry, ignore_case)) return true;
  }
  return false;
}

void hashField(XXH3_state_t& state, std::string_view field) {
  // Length-prefixed (8 bytes, little endian): no byte sequence of one field can be mistaken
  // for a field boundary, so ("ab", "/c") and ("a", "b/c") never collide by construction.
  std::array<unsigned char, 8> len{};
  uint64_t n = field.size();
  for (size_t i = 0; i < len.size(); ++i) len[i] = static_cast<unsigned char>(n >> (8 * i));
  XXH3_128bits_update(&state, len.data(), len.size());
  XXH3_128bits_update(&state, field.data(), field.size());
}

}  // namespace

std::string CacheKey::toHex() const {
  std::string out(32, '0');
  for (int i = 0; i < 16; ++i) {
    out[static_cast<size_t>(i)] = kHexLower[(hi >> (60 - 4 * i)) & 0xF];
    out[static_cast<size_t>(16 + i)] = kHexLower[(lo >> (60 - 4 * i)) & 0xF];
  }
  return out;
}

bool normalizePath(std::string_view path, std::string& out) {
  out.clear();
  if (path.empty() || path[0] != '/') return false;
  out.reserve(path.size());

  // One pass, segment by segment. `out` holds "/seg1/seg2" without a trailing slash while
  // running; each segment is written (percent-normalised) and then inspected, so "." and ".."
  // are recognised after decoding ("%2e%2E" is ".."): RFC 3986 §6.2.2 applies the
  // percent-encoding normalisation (§6.2.2.2) before the dot-segment removal (§6.2.2.3), and an
  // origin that decodes before resolving would otherwise see a traversal we did not.
  // Empty segments ("//") are dropped: runs of "/" collapse, as most origins treat them.
  size_t i = 1;
  bool trailing_slash = false;
  for (;;) {
    const size_t seg_start = out.size();
    out.push_back('/');
    while (i < path.size() && path[i] != '/') {
      const unsigned char c = static_cast<unsigned char>(path[i]);
      if (c == '%') {
        if (i + 2 >= path.size()) return false;
        const int h = hexValue(path[i + 1]);
        const int l = hexValue(path[i + 2]);
        if (h < 0 || l < 0) return false;
        const unsigned char decoded = static_cast<unsigned char>(h * 16 + l);
        // "%2F" would make "a%2Fb" and "a/b" two names for what many origins treat as one
        // object; "%00" truncates names in C-based origins. Neither has a legitimate use here.
        if (decoded == 0 || decoded == '/') return false;
        if (isUnreserved(decoded)) {
          out.push_back(static_cast<char>(decoded));  // §6.2.2.2: decode unreserved
        } else {
          appendPercentEncoded(out, decoded);  // §6.2.2.1: upper-case hex digits
        }
        i += 3;
        continue;
      }
      // Controls, space, and the query/fragment delimiters cannot appear in a path.
      if (c <= 0x20 || c == 0x7F || c == '?' || c == '#') return false;
      if (isLiteralPchar(c)) {
        out.push_back(static_cast<char>(c));
      } else {
        // Bytes not allowed literally in a URI path (non-ASCII, '"', '<', '\\', '^', '{', ...):
        // encode them so that the raw and the encoded spelling share one key.
        appendPercentEncoded(out, c);
      }
      ++i;
    }
    const std::string_view seg(out.data() + seg_start + 1, out.size() - seg_start - 1);
    if (seg.empty() || seg == ".") {
      out.resize(seg_start);
      trailing_slash = true;
    } else if (seg == "..") {
      out.resize(seg_start);
      if (out.empty()) return false;  // ".." above the root: refuse rather than clamp
      out.resize(out.rfind('/'));
      trailing_slash = true;  // "/a/b/.." is "/a/" (§5.2.4)
    } else {
      trailing_slash = false;
    }
    if (i >= path.size()) break;
    ++i;  // the '/'
  }
  if (out.empty()) {
    out.push_back('/');
  } else if (trailing_slash) {
    out.push_back('/');  // "/dir/" and "/dir" are different resources
  }
  return true;
}

std::string filterQuery(std::string_view query, const conf::KeyPolicy& policy) {
  std::string out;
  if (!query.empty() && query.front() == '?') query.remove_prefix(1);
  // LL-HLS delivery directives, in their canonical order (see kLlHlsDirectives).
  std::array<std::string_view, kLlHlsDirectives.size()> directives{};
  // Parameters are NOT sorted: origins (and signed-URL schemes) may give order a meaning, so
  // "?a=1&b=2" and "?b=2&a=1" are different objects. Only empty parts ("a=1&&b=2") go away.
  size_t pos = 0;
  while (pos <= query.size()) {
    size_t amp = query.find('&', pos);
    if (amp == std::string_view::npos) amp = query.size();
    const std::string_view part = query.substr(pos, amp - pos);
    pos = amp + 1;
    if (part.empty()) continue;
    const std::string_view name = part.substr(0, part.find('='));
    if (inList(name, policy.drop_params, /*ignore_case=*/true)) continue;
    bool directive = false;
    for (size_t i = 0; i < kLlHlsDirectives.size(); ++i) {
      if (name != kLlHlsDirectives[i]) continue;
      // The first occurrence counts (a repeated one is refused before keying, see
      // streaming/ll_hls.h).
      if (directives[i].empty()) directives[i] = part;
      directive = true;
    }
    if (directive || policy.ignore_query) continue;
    if (!policy.keep_params.empty() && !inList(name, policy.keep_params, /*ignore_case=*/false)) {
      continue;
    }
    if (!out.empty()) out.push_back('&');
    out.append(part);
  }
  for (std::string_view d : directives) {
    if (d.empty()) continue;
    if (!out.empty()) out.push_back('&');
    const size_t eq = d.find('=');
    std::string_view value = eq == std::string_view::npos ? std::string_view() : d.substr(eq + 1);
    // Decimal values without leading zeros: "_HLS_msn=007" and "_HLS_msn=7" ask the same.
    if (value.size() > 1 && value.find_first_not_of("0123456789") == std::string_view::npos) {
      const size_t nonzero = value.find_first_not_of('0');
      out.append(d.substr(0, eq + 1));
      out.append(nonzero == std::string_view::npos ? std::string_view("0") : value.substr(nonzero));
    } else {
      out.append(d);
    }
  }
  return out;
}

CacheKey makeKey(std::string_view vhost, std::string_view normalized_path,
                 std::string_view filtered_query) {
  XXH3_state_t state;
  XXH3_INITSTATE(&state);
  XXH3_128bits_reset(&state);
  // A version tag: keys persist on SSD across restarts, so a change of this scheme must
  // change every key rather than alias old entries.
  static constexpr char kDomain[] = "streamedge-key-v1";
  XXH3_128bits_update(&state, kDomain, sizeof(kDomain) - 1);
  hashField(state, vhost);
  hashField(state, normalized_path);
  hashField(state, filtered_query);
  const XXH128_hash_t h = XXH3_128bits_digest(&state);
  return CacheKey{h.high64, h.low64};
}

}  // namespace streamedge::cache
