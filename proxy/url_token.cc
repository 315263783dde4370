#include "proxy/url_token.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>

#include "cache/cache_key.h"

namespace streamedge::proxy {
namespace {

constexpr std::string_view kMacLabel = "streamedge-token-v1.";
constexpr size_t kMacBytes = 32;
constexpr size_t kMaxKeyId = 32;
constexpr size_t kMaxPrefix = 1024;
// Unix seconds up to year 9999: 12 digits at most.
constexpr int64_t kMaxExpires = 253402300799;

constexpr char kAlphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int b64Value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

void base64urlEncode(std::string_view in, std::string& out) {
  size_t i = 0;
  const auto byte = [&](size_t k) { return static_cast<uint8_t>(in[k]); };
  for (; i + 3 <= in.size(); i += 3) {
    const uint32_t v = byte(i) << 16 | byte(i + 1) << 8 | byte(i + 2);
    out += kAlphabet[v >> 18 & 63];
    out += kAlphabet[v >> 12 & 63];
    out += kAlphabet[v >> 6 & 63];
    out += kAlphabet[v & 63];
  }
  const size_t rest = in.size() - i;
  if (rest == 1) {
    const uint32_t v = byte(i) << 16;
    out += kAlphabet[v >> 18 & 63];
    out += kAlphabet[v >> 12 & 63];
  } else if (rest == 2) {
    const uint32_t v = byte(i) << 16 | byte(i + 1) << 8;
    out += kAlphabet[v >> 18 & 63];
    out += kAlphabet[v >> 12 & 63];
    out += kAlphabet[v >> 6 & 63];
  }
}

// Strict (RFC 4648 §3.5: canonical): no padding, no other characters, unused bits zero.
bool base64urlDecode(std::string_view in, std::string& out) {
  if (in.size() % 4 == 1) return false;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    const int v = b64Value(c);
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return (acc & ((1u << bits) - 1)) == 0;
}

bool isKeyId(std::string_view id) {
  if (id.size() > kMaxKeyId) return false;
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

bool isPrefix(std::string_view p) {
  if (p.empty() || p.front() != '/' || p.size() > kMaxPrefix) return false;
  for (unsigned char c : p) {
    if (c <= 0x20 || c >= 0x7f) return false;
  }
  return true;
}

// An address or network: family, 16 bytes (IPv4 in the first 4), prefix length.
struct Network {
  int family = AF_UNSPEC;
  std::array<uint8_t, 16> bytes{};
  int bits = 0;
};

bool parseNetwork(std::string_view text, Network& net) {
  if (text.empty() || text.size() > 64) return false;
  std::string_view addr = text;
  int bits = -1;
  if (const size_t slash = text.find('/'); slash != std::string_view::npos) {
    addr = text.substr(0, slash);
    const std::string_view len = text.substr(slash + 1);
    if (len.empty() || len.size() > 3 || (len.size() > 1 && len.front() == '0') ||
        len.find_first_not_of("0123456789") != std::string_view::npos) {
      return false;
    }
    const auto [end, ec] = std::from_chars(len.data(), len.data() + len.size(), bits);
    if (ec != std::errc() || end != len.data() + len.size()) return false;
  }
  char buf[72];
  std::memcpy(buf, addr.data(), addr.size());
  buf[addr.size()] = '\0';
  if (inet_pton(AF_INET, buf, net.bytes.data()) == 1) {
    net.family = AF_INET;
    if (bits < 0) bits = 32;
    if (bits > 32) return false;
  } else if (inet_pton(AF_INET6, buf, net.bytes.data()) == 1) {
    net.family = AF_INET6;
    if (bits < 0) bits = 128;
    if (bits > 128) return false;
  } else {
    return false;
  }
  net.bits = bits;
  // Clear the host bits.
  const int total = net.family == AF_INET ? 4 : 16;
  for (int i = 0; i < total; ++i) {
    const int keep = std::clamp(bits - 8 * i, 0, 8);
    net.bytes[static_cast<size_t>(i)] &= static_cast<uint8_t>(0xff00 >> keep);
  }
  return true;
}

std::string formatNetwork(const Network& net) {
  char buf[INET6_ADDRSTRLEN] = "";
  inet_ntop(net.family, net.bytes.data(), buf, sizeof buf);
  std::string out = buf;
  const int full = net.family == AF_INET ? 32 : 128;
  if (net.bits != full) out += "/" + std::to_string(net.bits);
  return out;
}

bool clientMatches(const Network& net, const sockaddr* sa) {
  if (!sa) return false;
  std::array<uint8_t, 16> addr{};
  int family = sa->sa_family;
  if (family == AF_INET) {
    std::memcpy(addr.data(), &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, 4);
  } else if (family == AF_INET6) {
    const auto* a6 = &reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(a6)) {  // ::ffff:a.b.c.d is the IPv4 client it stands for
      family = AF_INET;
      std::memcpy(addr.data(), a6->s6_addr + 12, 4);
    } else {
      std::memcpy(addr.data(), a6->s6_addr, 16);
    }
  } else {
    return false;
  }
  if (family != net.family) return false;
  for (int i = 0; 8 * i < net.bits; ++i) {
    const int keep = std::min(net.bits - 8 * i, 8);
    const auto mask = static_cast<uint8_t>(0xff00 >> keep);
    if ((addr[static_cast<size_t>(i)] & mask) != net.bytes[static_cast<size_t>(i)]) return false;
  }
  return true;
}

// HMAC-SHA256(secret, kMacLabel + signed_part) into `mac`; `buf` is scratch.
bool computeMac(std::string_view secret, std::string_view signed_part, std::string& buf,
                std::array<uint8_t, kMacBytes>& mac) {
  buf.assign(kMacLabel);
  buf.append(signed_part);
  unsigned int len = 0;
  const unsigned char* r =
      HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
           reinterpret_cast<const unsigned char*>(buf.data()), buf.size(), mac.data(), &len);
  return r != nullptr && len == kMacBytes;
}

}  // namespace

const char* tokenVerdictName(TokenVerdict verdict) {
  switch (verdict) {
    case TokenVerdict::kOk: return "ok";
    case TokenVerdict::kMissing: return "missing";
    case TokenVerdict::kMalformed: return "malformed";
    case TokenVerdict::kBadSignature: return "bad_signature";
    case TokenVerdict::kExpired: return "expired";
    case TokenVerdict::kWrongPrefix: return "wrong_prefix";
    case TokenVerdict::kWrongClient: return "wrong_client";
    case TokenVerdict::kUnknownKey: return "unknown_key";
    case TokenVerdict::kCount: break;
  }
  return "unknown";
}

bool canonicalClient(std::string_view text, std::string& out) {
  Network net;
  if (!parseNetwork(text, net)) return false;
  out = formatNetwork(net);
  return true;
}

bool parseToken(std::string_view token, std::string& scratch, TokenClaims& claims) {
  scratch.clear();
  claims = TokenClaims{};
  if (token.empty() || token.size() > kMaxTokenBytes) return false;
  const size_t dot = token.find('.');
  if (dot == std::string_view::npos || dot == 0) return false;
  const std::string_view payload_b64 = token.substr(0, dot);
  const std::string_view mac_b64 = token.substr(dot + 1);
  // The MAC first, at a fixed place, so that views into scratch stay put (no reallocation).
  scratch.reserve(token.size());
  if (!base64urlDecode(mac_b64, scratch) || scratch.size() != kMacBytes) return false;
  if (!base64urlDecode(payload_b64, scratch)) return false;
  const std::string_view payload = std::string_view(scratch).substr(kMacBytes);
  claims.mac = std::string_view(scratch).substr(0, kMacBytes);
  claims.signed_part = payload_b64;

  // "1|<expires>|<key id>|<client>|<prefix>": the prefix is last and may hold '|'.
  std::string_view fields[5];
  std::string_view rest = payload;
  for (int i = 0; i < 4; ++i) {
    const size_t bar = rest.find('|');
    if (bar == std::string_view::npos) return false;
    fields[i] = rest.substr(0, bar);
    rest = rest.substr(bar + 1);
  }
  fields[4] = rest;
  if (fields[0] != "1") return false;
  const std::string_view exp = fields[1];
  if (exp.empty() || exp.size() > 12 || (exp.size() > 1 && exp.front() == '0') ||
      exp.find_first_not_of("0123456789") != std::string_view::npos) {
    return false;
  }
  int64_t expires = 0;
  const auto [end, ec] = std::from_chars(exp.data(), exp.data() + exp.size(), expires);
  if (ec != std::errc() || end != exp.data() + exp.size() || expires > kMaxExpires) return false;
  if (!isKeyId(fields[2])) return false;
  if (!fields[3].empty()) {
    // Canonical only: one token, one text (no "1.2.3.4/32" beside "1.2.3.4").
    Network net;
    if (!parseNetwork(fields[3], net) || formatNetwork(net) != fields[3]) return false;
  }
  if (!isPrefix(fields[4])) return false;
  claims.expires_unix = expires;
  claims.key_id = fields[2];
  claims.client = fields[3];
  claims.prefix = fields[4];
  return true;
}

bool mintToken(const MintRequest& request, std::string_view secret, std::string& token,
               std::string& error) {
  if (secret.size() != 32) {
    error = "the key must be 32 bytes";
    return false;
  }
  if (!isPrefix(request.prefix)) {
    error = "the prefix must be a path starting with \"/\", without spaces or control characters, "
            "at most 1024 bytes";
    return false;
  }
  std::string normalized;
  if (!cache::normalizePath(request.prefix, normalized) || normalized != request.prefix) {
    error = "the prefix must be a normalised path (requests are checked after normalisation)";
    if (!normalized.empty()) error += ": use \"" + normalized + "\"";
    return false;
  }
  if (!isKeyId(request.key_id)) {
    error = "the key id must be at most 32 letters, digits, '-' or '_'";
    return false;
  }
  if (request.expires_unix < 0 || request.expires_unix > kMaxExpires) {
    error = "the expiry is out of range";
    return false;
  }
  std::string client;
  if (!request.client.empty() && !canonicalClient(request.client, client)) {
    error = "the client must be an IPv4 or IPv6 address, optionally with /prefix-length";
    return false;
  }
  std::string payload = "1|" + std::to_string(request.expires_unix) + "|" + request.key_id + "|" +
                        client + "|" + request.prefix;
  token.clear();
  base64urlEncode(payload, token);
  std::array<uint8_t, kMacBytes> mac{};
  std::string buf;
  if (!computeMac(secret, token, buf, mac)) {
    error = "HMAC-SHA256 failed";
    return false;
  }
  token += '.';
  base64urlEncode(std::string_view(reinterpret_cast<const char*>(mac.data()), mac.size()), token);
  OPENSSL_cleanse(mac.data(), mac.size());
  return true;
}

TokenVerdict verifyToken(std::string_view token, const conf::TokenAuthConfig& auth,
                         const TokenCheck& check, std::string& scratch,
                         std::string_view* key_id) {
  if (key_id) *key_id = {};
  if (token.empty()) return TokenVerdict::kMissing;
  TokenClaims claims;
  if (!parseToken(token, scratch, claims)) return TokenVerdict::kMalformed;

  // The MAC before any claim is believed. A token that names its key is checked against that
  // key only; one that names none against each key of the route (a handful at most).
  bool named = false;
  bool verified = false;
  std::array<uint8_t, kMacBytes> mac{};
  std::string buf;
  for (const conf::TokenKeyConfig& key : auth.keys) {
    if (!claims.key_id.empty() && key.id != claims.key_id) continue;
    named = true;
    if (!computeMac(key.secret, claims.signed_part, buf, mac)) continue;
    if (CRYPTO_memcmp(mac.data(), claims.mac.data(), kMacBytes) == 0) {
      verified = true;
      break;
    }
  }
  OPENSSL_cleanse(mac.data(), mac.size());
  if (!named) return TokenVerdict::kUnknownKey;
  if (!verified) return TokenVerdict::kBadSignature;
  if (key_id) *key_id = claims.key_id;

  if (check.now_unix > claims.expires_unix) return TokenVerdict::kExpired;
  if (!check.path.starts_with(claims.prefix)) return TokenVerdict::kWrongPrefix;
  if (claims.client.empty()) {
    if (auth.require_client) return TokenVerdict::kWrongClient;
  } else {
    Network net;
    if (!parseNetwork(claims.client, net) || !clientMatches(net, check.client)) {
      return TokenVerdict::kWrongClient;
    }
  }
  return TokenVerdict::kOk;
}

// --- Finding the token ----------------------------------------------------------------------

namespace {

int hexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool percentDecode(std::string_view in, std::string& out) {
  out.clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out += in[i];
      continue;
    }
    if (i + 2 >= in.size()) return false;
    const int hi = hexDigit(in[i + 1]);
    const int lo = hexDigit(in[i + 2]);
    if (hi < 0 || lo < 0) return false;
    out += static_cast<char>(hi << 4 | lo);
    i += 2;
  }
  return true;
}

// Calls fn(name, value, whole) for each '&'-separated parameter of `query`.
template <class Fn>
void forEachParam(std::string_view query, Fn&& fn) {
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view part = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (part.empty()) continue;
    const size_t eq = part.find('=');
    fn(part.substr(0, eq), eq == std::string_view::npos ? std::string_view() : part.substr(eq + 1),
       part);
  }
}

std::string_view trimSpace(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

template <class Fn>
void forEachCookie(std::string_view field, Fn&& fn) {
  while (!field.empty()) {
    const size_t semi = field.find(';');
    const std::string_view part = trimSpace(field.substr(0, semi));
    field = semi == std::string_view::npos ? std::string_view() : field.substr(semi + 1);
    if (part.empty()) continue;
    const size_t eq = part.find('=');
    if (eq == std::string_view::npos) {
      fn(part, std::string_view(), part);
      continue;
    }
    fn(trimSpace(part.substr(0, eq)), trimSpace(part.substr(eq + 1)), part);
  }
}

}  // namespace

int queryToken(std::string_view query, std::string_view name, std::string& out) {
  int found = 0;
  std::string_view raw;
  forEachParam(query, [&](std::string_view n, std::string_view v, std::string_view) {
    if (n != name) return;
    ++found;
    raw = v;
  });
  if (found == 0) return 0;
  if (found > 1 || raw.size() > kMaxTokenBytes * 3) return -1;
  if (!percentDecode(raw, out)) return -1;
  return 1;
}

int cookieToken(std::string_view cookie_field, std::string_view name, std::string_view& out) {
  int found = 0;
  forEachCookie(cookie_field, [&](std::string_view n, std::string_view v, std::string_view) {
    if (n != name) return;
    ++found;
    // RFC 6265 §4.1.1: cookie-value may be wrapped in DQUOTEs.
    if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
    out = v;
  });
  if (found > 1) return -1;
  return found;
}

bool splitPathToken(std::string_view path, std::string_view segment, std::string_view& token,
                    std::string_view& rest) {
  if (path.size() < segment.size() + 2 || path[0] != '/' ||
      path.substr(1, segment.size()) != segment || path[segment.size() + 1] != '/') {
    return false;
  }
  const std::string_view after = path.substr(segment.size() + 2);
  const size_t slash = after.find('/');
  if (slash == std::string_view::npos || slash == 0) return false;
  token = after.substr(0, slash);
  rest = after.substr(slash);
  return true;
}

std::string removeQueryParam(std::string_view query, std::string_view name) {
  std::string out;
  forEachParam(query, [&](std::string_view n, std::string_view, std::string_view whole) {
    if (n == name) return;
    if (!out.empty()) out += '&';
    out += whole;
  });
  return out;
}

std::string removeCookie(std::string_view cookie_field, std::string_view name) {
  std::string out;
  forEachCookie(cookie_field, [&](std::string_view n, std::string_view, std::string_view whole) {
    if (n == name) return;
    if (!out.empty()) out += "; ";
    out += whole;
  });
  return out;
}

}  // namespace streamedge::proxy
