// libFuzzer target: the signed-URL token parser and verifier, and the helpers that find a token
// in a query, a Cookie field and a path. Whatever the input: no crash, no read out of bounds,
// and no input is accepted as a token unless its MAC was made with the key (the fuzzer does not
// know the key, so kOk must never happen), and parseToken accepts only what mintToken could
// have made (re-minting the parsed claims with the key gives the same payload part).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "proxy/url_token.h"

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

const std::string kSecret(32, 'k');

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace streamedge::proxy;
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  std::string scratch;
  TokenClaims claims;
  if (parseToken(text, scratch, claims)) {
    check(!claims.prefix.empty() && claims.prefix.front() == '/');
    check(claims.mac.size() == 32);
    // Canonical: minting the same claims gives the same payload part, byte for byte.
    MintRequest again;
    again.prefix = std::string(claims.prefix);
    again.expires_unix = claims.expires_unix;
    again.key_id = std::string(claims.key_id);
    again.client = std::string(claims.client);
    std::string token, error;
    if (mintToken(again, kSecret, token, error)) {
      check(token.substr(0, token.find('.')) == claims.signed_part);
    }
  }

  streamedge::conf::TokenAuthConfig auth;
  auth.enabled = true;
  auth.keys.push_back({"", "", kSecret});
  auth.keys.push_back({"k2", "", std::string(32, 'x')});
  TokenCheck tc;
  tc.path = "/live/ch1/index.m3u8";
  tc.now_unix = 1'700'000'000;
  std::string_view key_id;
  check(verifyToken(text, auth, tc, scratch, &key_id) != TokenVerdict::kOk);

  std::string value;
  (void)queryToken(text, "token", value);
  std::string_view cookie;
  (void)cookieToken(text, "token", cookie);
  std::string_view token, rest;
  if (splitPathToken(text, "t", token, rest)) {
    check(!token.empty() && !rest.empty() && rest.front() == '/');
    check(token.find('/') == std::string_view::npos);
  }
  const std::string q = removeQueryParam(text, "token");
  check(q.size() <= text.size());
  std::string out;
  check(queryToken(q, "token", out) == 0);
  const std::string c = removeCookie(text, "token");
  std::string_view none;
  check(cookieToken(c, "token", none) == 0);
  return 0;
}
