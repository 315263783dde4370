// Strict HTTP/1.1 head parser (RFC 9112). See http_parser.h for the refusal rules.
//
// One forward pass over the head: request/status line, then field lines, each checked as it is
// read; the fields that decide framing and routing (Host, Content-Length, Transfer-Encoding,
// Connection, Expect) are interpreted on the spot. Views point into the caller's buffer; nothing
// is allocated. Every refusal carries its own static detail string so a log line says exactly
// which rule a peer broke.
//
// Deliberate strictness beyond the letter of the RFC (an edge cache must not be the lenient hop):
//   - an empty Host, a Host with an empty port ("name:"), IPvFuture and IPv6 zone ids are refused;
//   - Content-Length twice is refused even with identical values (RFC 9110 §8.6 lets a recipient
//     accept "5, 5"; we do not), and Transfer-Encoding twice is refused (it would mean chunked
//     applied twice, or a coding before chunked);
//   - only origin-form targets: "*" (OPTIONS) and absolute-form are answered 400;
//   - at most one empty line before the request line, in practice: findHeadEnd() stops at the
//     first CRLFCRLF, so two or more leading empty lines leave the caller with no request line.
// Deliberate tolerance, because real peers send it and it cannot change framing:
//   - request targets may hold any VCHAR except '#' (players send '|', '{', '"' in queries);
//     percent-escapes are checked by key normalisation, not here;
//   - a status line without the SP before an empty reason ("HTTP/1.1 200\r\n").
#include "proxy/http_parser.h"

#include <array>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace streamedge::proxy {
namespace {

// ---- character classes --------------------------------------------------------------------

enum : uint8_t {
  kClsToken = 1,       // tchar (RFC 9110 §5.6.2)
  kClsValue = 2,       // field-value byte: HTAB, SP, VCHAR, obs-text (RFC 9110 §5.5)
  kClsTarget = 4,      // request-target byte we accept: VCHAR except '#'
  kClsRegName = 8,     // reg-name byte (RFC 3986 §3.2.2) except '%': unreserved / sub-delims
  kClsHex = 16,
  kClsDigit = 32,
};

constexpr std::array<uint8_t, 256> makeClassTable() {
  std::array<uint8_t, 256> t{};
  for (int c = 0; c < 256; ++c) {
    uint8_t v = 0;
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    const bool digit = c >= '0' && c <= '9';
    if (alpha || digit) v |= kClsToken;
    for (char s : std::string_view("!#$%&'*+-.^_`|~")) {
      if (c == static_cast<unsigned char>(s)) v |= kClsToken;
    }
    if (c == '\t' || (c >= 0x20 && c != 0x7F)) v |= kClsValue;
    if (c > 0x20 && c < 0x7F && c != '#') v |= kClsTarget;
    if (alpha || digit) v |= kClsRegName;
    for (char s : std::string_view("-._~!$&'()*+,;=")) {
      if (c == static_cast<unsigned char>(s)) v |= kClsRegName;
    }
    if (digit || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')) v |= kClsHex;
    if (digit) v |= kClsDigit;
    t[static_cast<size_t>(c)] = v;
  }
  return t;
}

constexpr std::array<uint8_t, 256> kClass = makeClassTable();

inline bool is(char c, uint8_t cls) { return (kClass[static_cast<unsigned char>(c)] & cls) != 0; }
inline bool isOws(char c) { return c == ' ' || c == '\t'; }

inline char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c | 0x20) : c; }

// `lit` must be lowercase.
inline bool equalsLower(std::string_view s, std::string_view lit) {
  if (s.size() != lit.size()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (lower(s[i]) != lit[i]) return false;
  }
  return true;
}

inline bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

std::string_view trimOws(std::string_view s) {
  while (!s.empty() && isOws(s.front())) s.remove_prefix(1);
  while (!s.empty() && isOws(s.back())) s.remove_suffix(1);
  return s;
}

// ---- scanners -------------------------------------------------------------------------------

// First byte in [p, end) that is not a field-value byte (HTAB / SP / VCHAR / obs-text), or end.
// The SSE2 path tests 16 bytes at a time for C0 controls and DEL; HTAB is the only control
// allowed, and it is rare, so it is stepped over one at a time.
inline const char* skipFieldValue(const char* p, const char* end) {
#if defined(__SSE2__)
  const __m128i k20 = _mm_set1_epi8(0x20);
  const __m128i kMinus1 = _mm_set1_epi8(-1);
  const __m128i kDel = _mm_set1_epi8(0x7F);
  while (end - p >= 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    // Signed compares: 0x00..0x1F are >= 0 and < 0x20; obs-text (0x80..0xFF) is negative.
    const __m128i ctl = _mm_and_si128(_mm_cmplt_epi8(v, k20), _mm_cmpgt_epi8(v, kMinus1));
    const int mask = _mm_movemask_epi8(_mm_or_si128(ctl, _mm_cmpeq_epi8(v, kDel)));
    if (mask == 0) {
      p += 16;
      continue;
    }
    p += __builtin_ctz(static_cast<unsigned>(mask));
    if (*p != '\t') return p;
    ++p;
  }
#endif
  while (p < end && is(*p, kClsValue)) ++p;
  return p;
}

// First byte in [p, end) that is not an accepted request-target byte (VCHAR except '#'), or end.
inline const char* skipTarget(const char* p, const char* end) {
#if defined(__SSE2__)
  const __m128i k21 = _mm_set1_epi8(0x21);
  const __m128i kDel = _mm_set1_epi8(0x7F);
  const __m128i kHash = _mm_set1_epi8('#');
  while (end - p >= 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    // Signed: bytes below 0x21 and all of 0x80..0xFF compare less than 0x21.
    const __m128i del_or_hash = _mm_or_si128(_mm_cmpeq_epi8(v, kDel), _mm_cmpeq_epi8(v, kHash));
    const __m128i bad = _mm_or_si128(_mm_cmplt_epi8(v, k21), del_or_hash);
    const int mask = _mm_movemask_epi8(bad);
    if (mask != 0) return p + __builtin_ctz(static_cast<unsigned>(mask));
    p += 16;
  }
#endif
  while (p < end && is(*p, kClsTarget)) ++p;
  return p;
}

inline const char* skipToken(const char* p, const char* end) {
  while (p < end && is(*p, kClsToken)) ++p;
  return p;
}

// ---- field semantics ------------------------------------------------------------------------

// Content-Length = 1*DIGIT (RFC 9110 §8.6), no sign, no list, no overflow.
bool parseContentLength(std::string_view v, uint64_t& out) {
  if (v.empty()) return false;
  uint64_t n = 0;
  for (char c : v) {
    if (c < '0' || c > '9') return false;
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (n > (UINT64_MAX - d) / 10) return false;
    n = n * 10 + d;
  }
  out = n;
  return true;
}

// dec-octet "." dec-octet "." dec-octet "." dec-octet, RFC 3986 §3.2.2 (no leading zeros).
bool isIpv4(std::string_view s) {
  int octets = 0;
  size_t i = 0;
  while (true) {
    const size_t start = i;
    unsigned value = 0;
    while (i < s.size() && is(s[i], kClsDigit) && i - start < 3) {
      value = value * 10 + static_cast<unsigned>(s[i] - '0');
      ++i;
    }
    const size_t digits = i - start;
    if (digits == 0 || value > 255 || (digits > 1 && s[start] == '0')) return false;
    ++octets;
    if (i == s.size()) break;
    if (s[i] != '.' || octets == 4) return false;
    ++i;
  }
  return octets == 4;
}

// IPv6address (RFC 3986 §3.2.2): up to eight h16 groups, one "::", optional IPv4 tail.
bool isIpv6(std::string_view s) {
  const size_t n = s.size();
  size_t i = 0;
  int groups = 0;
  bool elided = false;
  if (n >= 2 && s[0] == ':' && s[1] == ':') {
    elided = true;
    i = 2;
    if (i == n) return true;  // "::"
  } else if (n == 0 || s[0] == ':') {
    return false;
  }
  while (true) {
    const size_t start = i;
    while (i < n && is(s[i], kClsHex) && i - start < 5) ++i;
    const size_t digits = i - start;
    if (digits == 0) return false;
    if (i < n && s[i] == '.') {  // ls32 as an IPv4 address: must end the literal
      if (!isIpv4(s.substr(start))) return false;
      groups += 2;
      break;
    }
    if (digits > 4) return false;
    ++groups;
    if (i == n) break;
    if (s[i] != ':') return false;
    ++i;
    if (i < n && s[i] == ':') {
      if (elided) return false;
      elided = true;
      ++i;
      if (i == n) break;
    } else if (i == n) {
      return false;  // trailing single ':'
    }
  }
  return elided ? groups <= 7 : groups == 8;
}

// Host = uri-host [ ":" port ] (RFC 9110 §7.2). See the file comment for what is refused.
const char* checkHost(std::string_view v) {
  if (v.empty()) return "empty Host";
  size_t i = 0;
  if (v[0] == '[') {
    const size_t close = v.find(']');
    if (close == std::string_view::npos) return "Host: unterminated IP literal";
    if (!isIpv6(v.substr(1, close - 1))) return "Host: invalid IPv6 literal";
    i = close + 1;
  } else {
    while (i < v.size() && v[i] != ':') {
      const char c = v[i];
      if (c == '%') {
        if (i + 2 >= v.size() || !is(v[i + 1], kClsHex) || !is(v[i + 2], kClsHex)) {
          return "Host: invalid percent-encoding";
        }
        i += 3;
        continue;
      }
      if (!is(c, kClsRegName)) return "Host: invalid character";
      ++i;
    }
    if (i == 0) return "Host: empty host name";
  }
  if (i == v.size()) return nullptr;
  if (v[i] != ':') return "Host: invalid character after IP literal";
  ++i;
  const size_t digits = v.size() - i;
  if (digits == 0) return "Host: empty port";
  if (digits > 5) return "Host: invalid port";
  unsigned port = 0;
  for (; i < v.size(); ++i) {
    if (!is(v[i], kClsDigit)) return "Host: invalid port";
    port = port * 10 + static_cast<unsigned>(v[i] - '0');
  }
  if (port > 65535) return "Host: invalid port";
  return nullptr;
}

// Connection = #connection-option (RFC 9110 §7.6.1): comma list of tokens, empty elements
// allowed. Sets the close / keep-alive flags; returns false on a non-token element.
bool parseConnection(std::string_view v, bool& close, bool& keep_alive) {
  while (true) {
    const size_t comma = v.find(',');
    const std::string_view item = trimOws(v.substr(0, comma));
    if (!item.empty()) {
      if (!isToken(item)) return false;
      if (equalsLower(item, "close")) close = true;
      if (equalsLower(item, "keep-alive")) keep_alive = true;
    }
    if (comma == std::string_view::npos) return true;
    v.remove_prefix(comma + 1);
  }
}

// ---- the common field-line loop -------------------------------------------------------------

struct Fail {
  int status;
  const char* detail;
};

struct FieldSummary {
  std::string_view host;
  int host_count = 0;
  std::optional<uint64_t> content_length;
  bool transfer_encoding = false;  // present (value checked to be exactly "chunked")
  bool conn_close = false;
  bool conn_keep_alive = false;
  bool expect_continue = false;
};

constexpr Fail kIncomplete{400, "incomplete head"};

// Reads field lines from p up to and including the empty line that ends the head. `p` is left
// just past the final CRLF on success. Returns nullptr on success, else the failure.
// `is_request` selects request-only rules and statuses (responses map everything to 502 later).
inline const Fail* parseFields(const char*& p, const char* end, HeaderField* headers,
                               size_t& count, FieldSummary& sum, bool is_request, Fail& slot) {
  auto fail = [&slot](int status, const char* detail) -> const Fail* {
    slot = Fail{status, detail};
    return &slot;
  };
  count = 0;
  while (true) {
    if (p >= end) return &kIncomplete;
    const char first = *p;
    if (first == '\r') {
      if (p + 1 >= end) return &kIncomplete;
      if (p[1] != '\n') return fail(400, "bare CR at end of head");
      p += 2;
      return nullptr;
    }
    if (first == '\n') return fail(400, "bare LF at end of head");
    // RFC 9112 §5.2: obs-fold; §2.2: whitespace before the first field line. Both refused.
    if (isOws(first)) return fail(400, "obs-fold or whitespace at start of field line");

    const char* name = p;
    p = skipToken(p, end);
    if (p >= end) return &kIncomplete;
    if (*p != ':') {
      if (isOws(*p)) return fail(400, "whitespace between field name and colon");  // §5.1
      if (p == name) return fail(400, "invalid character at start of field name");
      if (*p == '\r' || *p == '\n') return fail(400, "field line without colon");
      return fail(400, "invalid character in field name");
    }
    if (p == name) return fail(400, "empty field name");
    const std::string_view name_view(name, static_cast<size_t>(p - name));
    ++p;
    while (p < end && isOws(*p)) ++p;
    const char* value = p;
    p = skipFieldValue(p, end);
    if (p >= end) return &kIncomplete;
    if (*p != '\r') {
      if (*p == '\n') return fail(400, "bare LF in field line");
      if (*p == '\0') return fail(400, "NUL in field value");
      return fail(400, "control character in field value");
    }
    if (p + 1 >= end) return &kIncomplete;
    if (p[1] != '\n') return fail(400, "bare CR in field line");
    const char* value_end = p;
    while (value_end > value && isOws(value_end[-1])) --value_end;
    p += 2;

    if (count == kMaxHeaderFields) return fail(431, "too many header fields");
    const std::string_view value_view(value, static_cast<size_t>(value_end - value));
    headers[count++] = HeaderField{name_view, value_view};

    // Only the fields that decide routing and framing are interpreted here.
    switch (name_view.size()) {
      case 4:
        if (is_request && equalsLower(name_view, "host")) {
          if (++sum.host_count > 1) return fail(400, "more than one Host");
          if (const char* why = checkHost(value_view)) return fail(400, why);
          sum.host = value_view;
        }
        break;
      case 6:
        if (is_request && equalsLower(name_view, "expect")) {
          if (equalsLower(value_view, "100-continue")) sum.expect_continue = true;
        }
        break;
      case 10:
        if (equalsLower(name_view, "connection")) {
          if (!parseConnection(value_view, sum.conn_close, sum.conn_keep_alive)) {
            return fail(400, "invalid Connection");
          }
        }
        break;
      case 14:
        if (equalsLower(name_view, "content-length")) {
          if (sum.content_length) return fail(400, "more than one Content-Length");
          uint64_t n = 0;
          if (!parseContentLength(value_view, n)) return fail(400, "invalid Content-Length");
          sum.content_length = n;
        }
        break;
      case 17:
        if (equalsLower(name_view, "transfer-encoding")) {
          if (sum.transfer_encoding) return fail(400, "more than one Transfer-Encoding");
          // Exactly "chunked" (case-insensitive, §7): other codings we would have to decode.
          if (!equalsLower(value_view, "chunked")) {
            return fail(501, "Transfer-Encoding other than chunked");
          }
          sum.transfer_encoding = true;
        }
        break;
      default:
        break;
    }
  }
}

// "HTTP/1.0" or "HTTP/1.1" at p (8 bytes available). 0/1 = minor version, -1 = well-formed
// but unsupported (505), -2 = malformed.
inline int parseVersion(const char* p) {
  if (std::memcmp(p, "HTTP/", 5) != 0 || !is(p[5], kClsDigit) || p[6] != '.' ||
      !is(p[7], kClsDigit)) {
    return -2;
  }
  if (p[5] != '1' || (p[7] != '0' && p[7] != '1')) return -1;
  return p[7] - '0';
}

}  // namespace

bool isToken(std::string_view token) {
  if (token.empty()) return false;
  for (char c : token) {
    if (!is(c, kClsToken)) return false;
  }
  return true;
}

size_t findHeadEnd(std::string_view data) {
  const char* p = data.data();
  const char* end = p + data.size();
  while (end - p >= 4) {
    // Jump to the next CR that has room for the whole pattern after it, then compare.
    const void* hit = std::memchr(p, '\r', static_cast<size_t>(end - p) - 3);
    if (hit == nullptr) return 0;
    p = static_cast<const char*>(hit);
    if (p[1] == '\n' && p[2] == '\r' && p[3] == '\n') {
      return static_cast<size_t>(p + 4 - data.data());
    }
    ++p;
  }
  return 0;
}

std::string_view RequestHead::find(std::string_view name, bool* found) const {
  for (size_t i = 0; i < header_count; ++i) {
    if (equalsIgnoreCase(headers[i].name, name)) {
      if (found) *found = true;
      return headers[i].value;
    }
  }
  if (found) *found = false;
  return {};
}

std::string_view ResponseHeadView::find(std::string_view name, bool* found) const {
  for (size_t i = 0; i < header_count; ++i) {
    if (equalsIgnoreCase(headers[i].name, name)) {
      if (found) *found = true;
      return headers[i].value;
    }
  }
  if (found) *found = false;
  return {};
}

bool parseRequestHead(std::string_view data, const RequestLimits& limits, RequestHead& out,
                      ParseError& err) {
  // Never look past max_head_bytes: a head that has not ended by then is too large (431),
  // one that ends inside `data` but before the limit is parsed normally.
  const bool truncated = data.size() > limits.max_head_bytes;
  const char* const begin = data.data();
  const char* const end = begin + (truncated ? limits.max_head_bytes : data.size());
  const char* p = begin;

  auto fail = [&err](int status, const char* detail) {
    err.status = status;
    err.detail = detail;
    return false;
  };
  auto incomplete = [&]() {
    return truncated ? fail(431, "request head too large") : fail(400, "incomplete head");
  };

  // RFC 9112 §2.2: ignore empty lines before the request line (CRLF only; a bare LF is refused).
  while (p < end && *p == '\r') {
    if (p + 1 >= end) return incomplete();
    if (p[1] != '\n') return fail(400, "bare CR before request line");
    p += 2;
  }
  if (p < end && *p == '\n') return fail(400, "bare LF before request line");

  // method SP request-target SP HTTP-version CRLF (RFC 9112 §3)
  const char* method = p;
  p = skipToken(p, end);
  if (p >= end) return incomplete();
  if (*p != ' ') {
    if (p == method) return fail(400, "missing method");
    return fail(400, "invalid character in method");
  }
  if (p == method) return fail(400, "missing method");
  out.method = std::string_view(method, static_cast<size_t>(p - method));
  ++p;

  const char* target = p;
  p = skipTarget(p, end);
  const size_t target_len = static_cast<size_t>(p - target);
  if (target_len > limits.max_uri_bytes) return fail(414, "request target too long");
  if (p >= end) return incomplete();
  if (*p != ' ') {
    if (p == target) return fail(400, "missing request target");
    if (*p == '\r' || *p == '\n') return fail(400, "missing HTTP version");
    if (*p == '#') return fail(400, "fragment in request target");
    return fail(400, "invalid character in request target");
  }
  if (p == target) return fail(400, "missing request target (two spaces)");
  if (*target != '/') {
    // RFC 9112 §3.2: asterisk-form and absolute-form are valid HTTP, but an edge serves only
    // origin-form; authority-form is for CONNECT, which we do not tunnel.
    if (target_len == 1 && *target == '*') return fail(400, "asterisk-form target not supported");
    if (std::memchr(target, ':', target_len) != nullptr) {
      return fail(400, "absolute-form or authority-form target not supported");
    }
    return fail(400, "request target is not origin-form");
  }
  out.target = std::string_view(target, target_len);
  if (const void* q = std::memchr(target, '?', target_len)) {
    const char* qp = static_cast<const char*>(q);
    out.path = std::string_view(target, static_cast<size_t>(qp - target));
    out.query = std::string_view(qp + 1, static_cast<size_t>(p - qp - 1));
    out.has_query = true;
  } else {
    out.path = out.target;
    out.query = {};
    out.has_query = false;
  }
  ++p;

  if (end - p < 10) {
    // Not enough for "HTTP/1.1\r\n": either the caller's head is short, or the line is.
    if (std::memchr(p, '\n', static_cast<size_t>(end - p)) == nullptr) return incomplete();
    return fail(400, "invalid HTTP version");
  }
  const int minor = parseVersion(p);
  if (minor == -2) return fail(400, "invalid HTTP version");
  if (minor == -1) return fail(505, "HTTP version not supported");
  p += 8;
  if (p[0] != '\r') {
    if (p[0] == '\n') return fail(400, "bare LF after request line");
    return fail(400, "junk after HTTP version");
  }
  if (p[1] != '\n') return fail(400, "bare CR after request line");
  p += 2;
  out.version_minor = minor;

  FieldSummary sum;
  Fail slot{400, ""};
  if (const Fail* f = parseFields(p, end, out.headers, out.header_count, sum, true, slot)) {
    if (f == &kIncomplete) return incomplete();
    return fail(f->status, f->detail);
  }

  if (minor == 1 && sum.host_count == 0) return fail(400, "HTTP/1.1 request without Host");
  if (sum.transfer_encoding) {
    // RFC 9112 §6.1: Transfer-Encoding in 1.0 means faulty framing; with Content-Length it is
    // the classic smuggling vector (§6.3 item 3 allows processing it; we refuse).
    if (minor == 0) return fail(400, "Transfer-Encoding in HTTP/1.0 request");
    if (sum.content_length) return fail(400, "both Content-Length and Transfer-Encoding");
  }

  out.host = sum.host;
  out.content_length = sum.content_length;
  out.chunked = sum.transfer_encoding;
  out.keep_alive = !sum.conn_close && (minor == 1 || sum.conn_keep_alive);
  // RFC 9110 §10.1.1: a 100-continue expectation in an HTTP/1.0 request is ignored.
  out.expect_continue = sum.expect_continue && minor == 1;
  out.head_bytes = static_cast<size_t>(p - begin);
  return true;
}

bool parseResponseHead(std::string_view data, ResponseHeadView& out, ParseError& err) {
  const bool truncated = data.size() > kMaxResponseHeadBytes;
  const char* const begin = data.data();
  const char* const end = begin + (truncated ? kMaxResponseHeadBytes : data.size());
  const char* p = begin;

  // Every failure is the origin's fault: 502 to the viewer, never cached.
  auto fail = [&err](const char* detail) {
    err.status = 502;
    err.detail = detail;
    return false;
  };
  auto incomplete = [&]() {
    return fail(truncated ? "response head too large" : "incomplete response head");
  };

  // HTTP-version SP status-code SP [ reason-phrase ] CRLF (RFC 9112 §4)
  if (end - p < 14) {
    if (std::memchr(p, '\n', static_cast<size_t>(end - p)) == nullptr) return incomplete();
    return fail("status line too short");
  }
  const int minor = parseVersion(p);
  if (minor < 0) return fail(minor == -1 ? "unsupported HTTP version" : "invalid HTTP version");
  p += 8;
  if (*p != ' ') return fail("missing SP after HTTP version");
  ++p;
  if (!is(p[0], kClsDigit) || !is(p[1], kClsDigit) || !is(p[2], kClsDigit)) {
    return fail("invalid status code");
  }
  const int status = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
  if (status < 100 || status > 599) return fail("status code out of range");
  p += 3;
  const char* reason = p;
  if (*p == ' ') {
    reason = ++p;
    p = skipFieldValue(p, end);
    if (p >= end) return incomplete();
  }
  if (*p != '\r') {
    if (*p == '\n') return fail("bare LF after status line");
    if (p == reason && is(*p, kClsDigit)) return fail("invalid status code");
    return fail(p == reason ? "missing SP after status code" : "control character in reason");
  }
  if (p + 1 >= end) return incomplete();
  if (p[1] != '\n') return fail("bare CR after status line");
  out.reason = std::string_view(reason, static_cast<size_t>(p - reason));
  p += 2;
  out.status = status;
  out.version_minor = minor;

  FieldSummary sum;
  Fail slot{502, ""};
  if (const Fail* f = parseFields(p, end, out.headers, out.header_count, sum, false, slot)) {
    if (f == &kIncomplete) return incomplete();
    return fail(f->detail);
  }
  if (sum.transfer_encoding) {
    if (minor == 0) return fail("Transfer-Encoding in HTTP/1.0 response");
    if (sum.content_length) return fail("both Content-Length and Transfer-Encoding");
  }
  out.content_length = sum.content_length;
  out.chunked = sum.transfer_encoding;
  out.keep_alive = !sum.conn_close && (minor == 1 || sum.conn_keep_alive);
  out.head_bytes = static_cast<size_t>(p - begin);
  return true;
}

BodyFraming responseFraming(std::string_view request_method, const ResponseHeadView& head) {
  // RFC 9112 §6.3 items 1 and 2 (we never send CONNECT), then 4/5 (chunked), 6 (length), 8.
  // Item 3 (both present) is refused by the parser.
  if (request_method == "HEAD") return BodyFraming::kNone;
  if (head.status < 200 || head.status == 204 || head.status == 304) return BodyFraming::kNone;
  if (head.chunked) return BodyFraming::kChunked;
  if (head.content_length) return BodyFraming::kContentLength;
  return BodyFraming::kUntilClose;
}

bool parseDecimal(std::string_view digits, uint64_t& out) { return parseContentLength(digits, out); }

}  // namespace streamedge::proxy
