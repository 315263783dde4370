// Signed URLs: minting, parsing and verifying the tokens of routes with [vhost.route.token_auth],
// and finding a token in a request (query parameter, cookie, leading path segment). Pure
// functions over their arguments (the key secrets come from the config snapshot); thread-safe.
//
// A token is two base64url parts (RFC 4648 §5, no padding) joined by a dot:
//
//   <payload>.<mac>
//   payload = base64url("1|<expires>|<key id>|<client>|<prefix>")
//   mac     = base64url(HMAC-SHA256(key, "streamedge-token-v1." + <payload>))   (32 bytes)
//
// `1` is the format version; <expires> the last valid second (Unix time, decimal); <key id> the
// key's id ([A-Za-z0-9_-], up to 32; empty: the verifier tries each key of the route); <client>
// empty (any client) or the one address or network the token is for, in canonical text
// ("203.0.113.7", "2001:db8::/64"); <prefix> the path prefix the token opens (normalised path,
// starting with "/", compared byte for byte with the request's normalised path, so
// "/live/ch1/" opens that directory and "/live/ch1" also "/live/ch10/..."). Only base64url
// characters and '.' appear in a token: it fits a query value, a cookie and a path segment as is.
//
// Verification order (the first failure is the reason): missing → malformed (anything that is
// not exactly the form above: bad base64url, wrong lengths, version, non-canonical fields) →
// unknown_key (the token names a key id the route does not have) → bad_signature (checked with
// CRYPTO_memcmp, before any claim is believed) → expired → wrong_prefix → wrong_client.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "conf/config.h"

namespace streamedge::proxy {

enum class TokenVerdict : uint8_t {
  kOk,
  kMissing,       // no token where the route accepts one
  kMalformed,     // not a token of this format
  kBadSignature,  // the MAC does not match any candidate key (tampered, or another key)
  kExpired,       // past its expiry
  kWrongPrefix,   // the request path is outside the token's prefix
  kWrongClient,   // bound to another client address (or unbound where binding is required)
  kUnknownKey,    // names a key id the route does not have
  kCount,
};
inline constexpr size_t kTokenVerdicts = static_cast<size_t>(TokenVerdict::kCount);
// "ok", "missing", "malformed", "bad_signature", "expired", "wrong_prefix", "wrong_client",
// "unknown_key" (the metric's `reason` label and the security log's).
const char* tokenVerdictName(TokenVerdict verdict);

inline constexpr size_t kMaxTokenBytes = 2048;

// What a token says, as views into the token and the decoded payload (parseToken's `scratch`).
struct TokenClaims {
  int64_t expires_unix = 0;
  std::string_view key_id;
  std::string_view client;       // "" or canonical "addr" / "addr/len"
  std::string_view prefix;
  std::string_view signed_part;  // the <payload> text the MAC covers (a view into the token)
  std::string_view mac;          // 32 bytes (a view into scratch)
};

// Splits and decodes `token` strictly (see above) into `claims`. False for anything malformed.
// Does not check the MAC.
bool parseToken(std::string_view token, std::string& scratch, TokenClaims& claims);

struct MintRequest {
  std::string prefix;       // normalised path prefix, starting with "/"
  int64_t expires_unix = 0;
  std::string key_id;       // "" or an id of the route's keys
  std::string client;       // "" or an IP address, optionally "/len" (canonicalised here)
};

// Fills `token`; false with `error` set when a field is unusable (the prefix is not a
// normalised absolute path, a bad key id or client address, a secret that is not 32 bytes).
bool mintToken(const MintRequest& request, std::string_view secret, std::string& token,
               std::string& error);

// The canonical text of an address or network ("2001:DB8::1/64" → "2001:db8::/64", host bits
// cleared, "/32" and "/128" left out). False when `text` is not an IP address [/len].
bool canonicalClient(std::string_view text, std::string& out);

struct TokenCheck {
  std::string_view path;             // the request's normalised path (token segment stripped)
  const sockaddr* client = nullptr;  // the connection's peer (null: unknown, fails a binding)
  int64_t now_unix = 0;
};

// Verifies `token` (empty: missing) against the route's keys and the request. `scratch` is
// reused capacity. On kOk, kExpired, kWrongPrefix and kWrongClient `key_id` is the token's key
// id (a view into `token`'s decoded payload in `scratch`; empty when it names none).
TokenVerdict verifyToken(std::string_view token, const conf::TokenAuthConfig& auth,
                         const TokenCheck& check, std::string& scratch,
                         std::string_view* key_id = nullptr);

// --- Finding the token in a request --------------------------------------------------------

// The value of query parameter `name` (exact name) in `query` (without '?'), %-decoded into
// `out`. Returns 0 when absent, 1 when found, -1 when ambiguous or undecodable (present twice,
// a bad %-escape): a malformed token.
int queryToken(std::string_view query, std::string_view name, std::string& out);

// The value of cookie `name` in one Cookie field value ("a=1; token=x"; RFC 6265 §4.2.1, a
// quoted value unquoted). Returns 0 absent, 1 found, -1 present twice.
int cookieToken(std::string_view cookie_field, std::string_view name, std::string_view& out);

// "/<segment>/<token>/rest..." → token and "/rest..." (views into `path`). False when `path`
// does not start with that segment pair followed by '/' (a path token always has a rest).
bool splitPathToken(std::string_view path, std::string_view segment, std::string_view& token,
                    std::string_view& rest);

// `query` without every parameter named exactly `name` (the order of the others kept).
std::string removeQueryParam(std::string_view query, std::string_view name);

// One Cookie field value without the cookie `name` ("" when nothing else is left).
std::string removeCookie(std::string_view cookie_field, std::string_view name);

}  // namespace streamedge::proxy
