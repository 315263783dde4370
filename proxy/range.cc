// Range (RFC 9110 §14.1-14.2) and conditional request (§13.1) evaluation against a cached
// representation. Anything we do not understand degrades to the safe answer: a full 200
// (kNone) for Range, "no match" for If-None-Match / If-Modified-Since (full response), and
// "do not apply the range" for If-Range. None of these can make us send wrong bytes.
#include "proxy/range.h"

#include "cache/freshness.h"
#include "proxy/http_parser.h"

namespace streamedge::proxy {
namespace {

inline bool isOws(char c) { return c == ' ' || c == '\t'; }

std::string_view trimOws(std::string_view s) {
  while (!s.empty() && isOws(s.front())) s.remove_prefix(1);
  while (!s.empty() && isOws(s.back())) s.remove_suffix(1);
  return s;
}

// etagc = %x21 / %x23-7E / obs-text (RFC 9110 §8.8.3)
inline bool isEtagc(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u == 0x21 || (u >= 0x23 && u != 0x7F);
}

struct EntityTag {
  bool weak = false;
  std::string_view opaque;  // including the quotes
};

// Parses one entity-tag at the start of `s`; advances `s` past it. False on bad syntax.
bool takeEntityTag(std::string_view& s, EntityTag& tag) {
  tag.weak = false;
  if (s.size() >= 2 && s[0] == 'W' && s[1] == '/') {  // "W/" is case-sensitive
    tag.weak = true;
    s.remove_prefix(2);
  }
  if (s.empty() || s[0] != '"') return false;
  size_t i = 1;
  while (i < s.size() && isEtagc(s[i])) ++i;
  if (i >= s.size() || s[i] != '"') return false;
  tag.opaque = s.substr(0, i + 1);
  s.remove_prefix(i + 1);
  return true;
}

// A whole field value that is exactly one entity-tag.
bool parseSingleEntityTag(std::string_view s, EntityTag& tag) {
  s = trimOws(s);
  return takeEntityTag(s, tag) && s.empty();
}

bool equalsIgnoreCaseAscii(std::string_view a, std::string_view lower_literal) {
  if (a.size() != lower_literal.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char c = a[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c | 0x20);
    if (c != lower_literal[i]) return false;
  }
  return true;
}

}  // namespace

RangeSpec parseRange(std::string_view header, uint64_t size) {
  RangeSpec none;
  std::string_view s = trimOws(header);
  // ranges-specifier = range-unit "=" range-set; range units are case-insensitive (§14.1).
  const size_t eq = s.find('=');
  if (eq == std::string_view::npos || !equalsIgnoreCaseAscii(s.substr(0, eq), "bytes")) {
    return none;
  }
  s.remove_prefix(eq + 1);
  // Any comma is a list: several ranges (or empty list elements) get a full 200 (§14.2 lets a
  // server ignore Range; one 200 is cheaper and safer than multipart/byteranges).
  if (s.find(',') != std::string_view::npos) return none;

  const size_t dash = s.find('-');
  if (dash == std::string_view::npos) return none;
  const std::string_view first_text = s.substr(0, dash);
  const std::string_view last_text = s.substr(dash + 1);

  RangeSpec out;
  if (first_text.empty()) {
    // suffix-range = "-" suffix-length: the last N bytes.
    uint64_t suffix = 0;
    if (!parseDecimal(last_text, suffix)) return none;
    if (suffix == 0) {
      out.kind = RangeSpec::Kind::kUnsatisfiable;  // §14.1.1: a zero suffix is unsatisfiable
      return out;
    }
    // An empty representation has no bytes to send in a 206: answer it whole.
    if (size == 0) return none;
    out.kind = RangeSpec::Kind::kSingle;
    out.first = suffix >= size ? 0 : size - suffix;
    out.last = size - 1;
    return out;
  }

  // int-range = first-pos "-" [ last-pos ]
  uint64_t first = 0;
  if (!parseDecimal(first_text, first)) return none;
  uint64_t last = UINT64_MAX;
  if (!last_text.empty()) {
    if (!parseDecimal(last_text, last)) return none;
    if (last < first) return none;  // invalid range-spec: ignore the field (§14.1.1)
  }
  if (first >= size) {
    out.kind = RangeSpec::Kind::kUnsatisfiable;
    return out;
  }
  out.kind = RangeSpec::Kind::kSingle;
  out.first = first;
  out.last = last >= size ? size - 1 : last;  // clamp a last-pos past the end
  return out;
}

bool ifNoneMatchMatches(std::string_view if_none_match, std::string_view etag) {
  std::string_view s = trimOws(if_none_match);
  if (s == "*") return true;  // any current representation: the object exists
  EntityTag stored;
  if (!parseSingleEntityTag(etag, stored)) return false;

  // #entity-tag: elements separated by commas with OWS; empty elements are allowed (§5.6.1).
  // A syntax error anywhere means no match: the viewer gets a full response.
  bool matched = false;
  while (true) {
    while (!s.empty() && (isOws(s.front()) || s.front() == ',')) s.remove_prefix(1);
    if (s.empty()) return matched;
    EntityTag tag;
    if (!takeEntityTag(s, tag)) return false;
    if (tag.opaque == stored.opaque) matched = true;  // weak comparison (§8.8.3.2)
    while (!s.empty() && isOws(s.front())) s.remove_prefix(1);
    if (!s.empty() && s.front() != ',') return false;
  }
}

bool notModifiedSince(std::string_view if_modified_since, std::string_view last_modified) {
  const auto since = cache::parseHttpDate(trimOws(if_modified_since));
  const auto modified = cache::parseHttpDate(trimOws(last_modified));
  if (!since || !modified) return false;
  // §13.1.3: the condition is false (send 304) when the last modification is not later
  // than the date given.
  return *modified <= *since;
}

bool ifRangeAllows(std::string_view if_range, std::string_view etag,
                   std::string_view last_modified) {
  const std::string_view v = trimOws(if_range);
  if (v.empty()) return false;
  if (v[0] == '"' || (v.size() >= 2 && v[0] == 'W' && v[1] == '/')) {
    // §13.1.5: an entity-tag validator needs a strong match; a weak one never allows.
    EntityTag requested, stored;
    if (!parseSingleEntityTag(v, requested) || requested.weak) return false;
    if (!parseSingleEntityTag(etag, stored) || stored.weak) return false;
    return requested.opaque == stored.opaque;
  }
  // HTTP-date: must equal Last-Modified exactly (same instant; both must be valid dates).
  const auto date = cache::parseHttpDate(v);
  const auto modified = cache::parseHttpDate(trimOws(last_modified));
  return date && modified && *date == *modified;
}

}  // namespace streamedge::proxy
