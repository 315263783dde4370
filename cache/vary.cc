#include "cache/vary.h"

#define XXH_STATIC_LINKING_ONLY  // XXH3_state_t on the stack: no allocation per key
#include <xxhash.h>

#include <algorithm>
#include <array>
#include <cstdint>

#include "conf/http_token.h"

namespace streamedge::cache {
namespace {

using conf::isToken;

bool isOws(char c) { return c == ' ' || c == '\t'; }

char asciiLower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string_view trimOws(std::string_view s) {
  while (!s.empty() && isOws(s.front())) s.remove_prefix(1);
  while (!s.empty() && isOws(s.back())) s.remove_suffix(1);
  return s;
}

bool equalsLower(std::string_view s, std::string_view lower) {
  if (s.size() != lower.size()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (asciiLower(s[i]) != lower[i]) return false;
  }
  return true;
}

std::string toLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = asciiLower(c);
  return out;
}

// Calls fn(member) for each comma-separated member of a list (RFC 9110 §5.6.1), commas inside
// quoted strings (§5.6.4, with quoted-pair escapes) not counting as separators.
template <typename Fn>
void forEachMember(std::string_view list, Fn&& fn) {
  size_t start = 0;
  bool quoted = false;
  for (size_t i = 0; i < list.size(); ++i) {
    const char c = list[i];
    if (quoted) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        quoted = false;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      fn(trimOws(list.substr(start, i - start)));
      start = i + 1;
    }
  }
  if (start <= list.size()) fn(trimOws(list.substr(std::min(start, list.size()))));
}

// RFC 9110 §12.4.2: qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ), in
// thousandths. False for anything else.
bool parseQvalue(std::string_view s, int& out) {
  if (s.empty() || (s[0] != '0' && s[0] != '1')) return false;
  int value = (s[0] - '0') * 1000;
  if (s.size() == 1) {
    out = value;
    return true;
  }
  if (s[1] != '.' || s.size() > 5) return false;
  int scale = 100;
  for (size_t i = 2; i < s.size(); ++i, scale /= 10) {
    if (s[i] < '0' || s[i] > '9') return false;
    value += (s[i] - '0') * scale;
  }
  if (value > 1000) return false;
  out = value;
  return true;
}

// Splits "token *( OWS ";" OWS param )" into the token and its weight (the q parameter, 1000
// without one). False when the member is malformed (a bad q value included).
bool memberWeight(std::string_view member, std::string_view& token, int& q) {
  q = 1000;
  const size_t semi = member.find(';');
  token = trimOws(member.substr(0, semi));
  if (semi == std::string_view::npos) return true;
  std::string_view params = member.substr(semi + 1);
  for (;;) {
    const size_t next = params.find(';');
    const std::string_view param = trimOws(params.substr(0, next));
    const size_t eq = param.find('=');
    if (eq != std::string_view::npos && equalsLower(trimOws(param.substr(0, eq)), "q")) {
      if (!parseQvalue(trimOws(param.substr(eq + 1)), q)) return false;
    }
    if (next == std::string_view::npos) return true;
    params.remove_prefix(next + 1);
  }
}

// Whitespace runs outside quoted strings become one SP; none around commas or at the ends.
void collapseWhitespace(std::string_view in, std::string& out) {
  out.clear();
  bool quoted = false;
  bool space = false;
  for (size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (quoted) {
      out.push_back(c);
      if (c == '\\' && i + 1 < in.size()) {
        out.push_back(in[++i]);
      } else if (c == '"') {
        quoted = false;
      }
      continue;
    }
    if (isOws(c)) {
      space = true;
      continue;
    }
    if (space && c != ',' && !out.empty() && out.back() != ',') out.push_back(' ');
    space = false;
    out.push_back(c);
    if (c == '"') quoted = true;
  }
}

void normalizeAcceptEncoding(std::string_view value, std::string& out) {
  int gzip = -1, br = -1, any = -1;  // weights in thousandths, -1: not named
  forEachMember(value, [&](std::string_view member) {
    std::string_view coding;
    int q = 0;
    if (member.empty() || !memberWeight(member, coding, q) || !isToken(coding)) return;
    int* slot = nullptr;
    if (equalsLower(coding, "gzip") || equalsLower(coding, "x-gzip")) {
      slot = &gzip;  // RFC 9110 §8.4.1.3: x-gzip is gzip
    } else if (equalsLower(coding, "br")) {
      slot = &br;
    } else if (coding == "*") {
      slot = &any;
    }
    if (slot && *slot < 0) *slot = q;  // the first mention counts
  });
  // §12.5.3: "*" matches any coding not named elsewhere in the field.
  const bool accepts_br = br >= 0 ? br > 0 : any > 0;
  const bool accepts_gzip = gzip >= 0 ? gzip > 0 : any > 0;
  if (accepts_br && accepts_gzip) {
    out = "br, gzip";
  } else if (accepts_br) {
    out = "br";
  } else if (accepts_gzip) {
    out = "gzip";
  } else {
    out = "identity";
  }
}

// RFC 4647 §2.1 language-range: "*" or 1*8ALPHA *("-" 1*8alphanum).
bool isLanguageRange(std::string_view s) {
  if (s == "*") return true;
  size_t run = 0;
  bool first = true;
  for (size_t i = 0; i <= s.size(); ++i) {
    if (i == s.size() || s[i] == '-') {
      if (run == 0 || run > 8) return false;
      run = 0;
      first = false;
      continue;
    }
    const char c = asciiLower(s[i]);
    const bool alpha = c >= 'a' && c <= 'z';
    if (!(alpha || (!first && c >= '0' && c <= '9'))) return false;
    ++run;
  }
  return true;
}

void normalizeAcceptLanguage(std::string_view value, std::string& out) {
  struct Range {
    std::string tag;
    int q;
  };
  std::vector<Range> ranges;
  forEachMember(value, [&](std::string_view member) {
    std::string_view tag;
    int q = 0;
    if (member.empty() || !memberWeight(member, tag, q) || q == 0 || !isLanguageRange(tag)) return;
    std::string lower = toLower(tag);
    for (const Range& r : ranges) {
      if (r.tag == lower) return;  // the first mention counts
    }
    ranges.push_back({std::move(lower), q});
  });
  std::stable_sort(ranges.begin(), ranges.end(),
                   [](const Range& a, const Range& b) { return a.q > b.q; });
  out.clear();
  for (const Range& r : ranges) {
    if (!out.empty()) out += ", ";
    out += r.tag;
    if (r.q < 1000) {
      char q[8] = {';', 'q', '=', '0', '.', static_cast<char>('0' + r.q / 100),
                   static_cast<char>('0' + r.q / 10 % 10), static_cast<char>('0' + r.q % 10)};
      size_t len = sizeof q;
      while (q[len - 1] == '0') --len;  // q > 0, so a non-zero digit stops this
      out.append(q, len);
    }
  }
}

// RFC 6454 §6.2 serialisation: scheme "://" host [ ":" port ]. Scheme and host are
// case-insensitive; a browser never sends the default port, a hand-made client might.
void normalizeOrigin(std::string_view value, std::string& out) {
  collapseWhitespace(value, out);
  const size_t sep = out.find("://");
  if (sep == std::string::npos || sep == 0 ||
      out.find_first_of(" ,/?#", sep + 3) != std::string::npos) {
    return;  // "null", a list, or not an origin: only the whitespace rules apply
  }
  for (char& c : out) c = asciiLower(c);
  const std::string_view scheme(out.data(), sep);
  const size_t bracket = out.rfind(']');
  const size_t colon = out.rfind(':');
  if (colon > sep && (bracket == std::string::npos || colon > bracket)) {
    const std::string_view port = std::string_view(out).substr(colon + 1);
    if ((scheme == "http" && port == "80") || (scheme == "https" && port == "443")) {
      out.resize(colon);
    }
  }
}

void hashBytes(XXH3_state_t& state, std::string_view bytes) {
  // Length-prefixed (8 bytes, little endian), as in makeKey: no boundary ambiguity.
  std::array<unsigned char, 8> len{};
  const uint64_t n = bytes.size();
  for (size_t i = 0; i < len.size(); ++i) len[i] = static_cast<unsigned char>(n >> (8 * i));
  XXH3_128bits_update(&state, len.data(), len.size());
  XXH3_128bits_update(&state, bytes.data(), bytes.size());
}

}  // namespace

VarySpec parseVary(std::string_view value) {
  VarySpec spec;
  bool any = false;
  forEachMember(value, [&](std::string_view member) {
    if (any || member.empty()) return;
    if (member == "*" || !isToken(member)) {  // ("*" is a token character)
      any = true;
      return;
    }
    std::string name = toLower(member);
    if (std::find(spec.names.begin(), spec.names.end(), name) == spec.names.end()) {
      spec.names.push_back(std::move(name));
    }
    if (spec.names.size() > kMaxVaryFields) any = true;
  });
  if (any) {
    spec.kind = VarySpec::Kind::kAny;
    spec.names.clear();
  } else if (!spec.names.empty()) {
    spec.kind = VarySpec::Kind::kFields;
    std::sort(spec.names.begin(), spec.names.end());
  }
  return spec;
}

VarySpec varyOf(const ResponseHead& head) {
  std::string joined;
  bool found = false;
  for (const auto& [name, value] : head.headers) {
    if (!equalsIgnoreCase(name, "Vary")) continue;
    if (found) joined += ", ";
    joined += value;
    found = true;
  }
  return found ? parseVary(joined) : VarySpec{};
}

FieldLineList::FieldLineList(const std::vector<std::pair<std::string, std::string>>& fields) {
  lines_.reserve(fields.size());
  for (const auto& [name, value] : fields) lines_.push_back({name, value});
}

bool normalizeField(std::string_view name, std::span<const FieldLine> lines, std::string& out) {
  // Lines joined with ", " (RFC 9110 §5.3). A thread-local buffer: warm hits of varying URLs
  // allocate nothing here.
  thread_local std::string joined;
  joined.clear();
  bool found = false;
  for (const FieldLine& line : lines) {
    if (!equalsIgnoreCase(line.name, name)) continue;
    found = true;
    const std::string_view value = trimOws(line.value);
    if (value.empty()) continue;  // an empty line adds no member
    if (!joined.empty()) joined += ", ";
    joined += value;
  }
  if (equalsIgnoreCase(name, "Accept-Encoding")) {
    normalizeAcceptEncoding(joined, out);  // absent: identity (§12.5.3: any is acceptable)
    return true;
  }
  if (!found) {
    out.clear();
    return false;
  }
  if (equalsIgnoreCase(name, "Accept-Language")) {
    normalizeAcceptLanguage(joined, out);
  } else if (equalsIgnoreCase(name, "Origin")) {
    normalizeOrigin(joined, out);
  } else {
    collapseWhitespace(joined, out);
  }
  return true;
}

CacheKey variantKey(const CacheKey& primary, const VaryNames& names,
                    const RequestFieldSource& request) {
  XXH3_state_t state;
  XXH3_INITSTATE(&state);
  XXH3_128bits_reset(&state);
  static constexpr char kDomain[] = "streamedge-variant-v1";
  XXH3_128bits_update(&state, kDomain, sizeof(kDomain) - 1);
  std::array<unsigned char, 16> base{};
  for (size_t i = 0; i < 8; ++i) {
    base[i] = static_cast<unsigned char>(primary.hi >> (8 * i));
    base[8 + i] = static_cast<unsigned char>(primary.lo >> (8 * i));
  }
  XXH3_128bits_update(&state, base.data(), base.size());
  const std::span<const FieldLine> lines = request.fieldLines();
  thread_local std::string value;
  for (const std::string& name : names) {
    hashBytes(state, name);
    const unsigned char present = normalizeField(name, lines, value) ? 1 : 0;
    XXH3_128bits_update(&state, &present, 1);
    if (present) hashBytes(state, value);
  }
  const XXH128_hash_t h = XXH3_128bits_digest(&state);
  return CacheKey{h.high64, h.low64};
}

bool isVarySetField(std::string_view name, const VaryNames* vary) {
  for (std::string_view n : kNormalizedFields) {
    if (equalsIgnoreCase(n, name)) return true;
  }
  if (!vary) return false;
  return std::any_of(vary->begin(), vary->end(),
                     [&](const std::string& n) { return equalsIgnoreCase(n, name); });
}

void setVaryFields(std::vector<std::pair<std::string, std::string>>& forward,
                   std::span<const FieldLine> viewer, const VaryNames* vary) {
  auto set = [&](std::string_view name) {
    std::erase_if(forward, [&](const auto& f) { return equalsIgnoreCase(f.first, name); });
    std::string value;
    if (!normalizeField(name, viewer, value)) return;
    std::string spelling(name);
    for (const FieldLine& line : viewer) {
      if (equalsIgnoreCase(line.name, name)) {
        spelling.assign(line.name);
        break;
      }
    }
    forward.emplace_back(std::move(spelling), std::move(value));
  };
  for (std::string_view name : kNormalizedFields) set(name);
  if (!vary) return;
  for (const std::string& name : *vary) {
    const bool done = std::any_of(std::begin(kNormalizedFields), std::end(kNormalizedFields),
                                  [&](std::string_view n) { return equalsIgnoreCase(n, name); });
    if (!done) set(name);
  }
}

}  // namespace streamedge::cache
