#include "proxy/url_token.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <cstring>
#include <random>
#include <string>

namespace streamedge::proxy {
namespace {

constexpr int64_t kNow = 1'700'000'000;

std::string secretOf(char c) { return std::string(32, c); }

// A sockaddr for an IPv4 or IPv6 literal.
struct Addr {
  sockaddr_storage ss{};
  explicit Addr(const char* text) {
    auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
    if (inet_pton(AF_INET, text, &v4->sin_addr) == 1) {
      v4->sin_family = AF_INET;
    } else if (inet_pton(AF_INET6, text, &v6->sin6_addr) == 1) {
      v6->sin6_family = AF_INET6;
    } else {
      ADD_FAILURE() << "bad address " << text;
    }
  }
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&ss); }
};

conf::TokenAuthConfig authWith(std::initializer_list<std::pair<std::string, std::string>> keys) {
  conf::TokenAuthConfig auth;
  auth.enabled = true;
  for (const auto& [id, secret] : keys) auth.keys.push_back({id, "", secret});
  return auth;
}

std::string mint(const std::string& prefix, int64_t expires, const std::string& secret,
                 const std::string& key_id = "", const std::string& client = "") {
  MintRequest r;
  r.prefix = prefix;
  r.expires_unix = expires;
  r.key_id = key_id;
  r.client = client;
  std::string token, error;
  EXPECT_TRUE(mintToken(r, secret, token, error)) << error;
  return token;
}

TokenVerdict verify(const std::string& token, const conf::TokenAuthConfig& auth,
                    std::string_view path, int64_t now = kNow, const sockaddr* client = nullptr) {
  std::string scratch;
  TokenCheck check;
  check.path = path;
  check.now_unix = now;
  check.client = client;
  return verifyToken(token, auth, check, scratch);
}

// base64url without padding, for building tampered payloads in the tests.
std::string b64(std::string_view in) {
  static const char* a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    const uint32_t v = uint8_t(in[i]) << 16 | uint8_t(in[i + 1]) << 8 | uint8_t(in[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out += a[v >> s & 63];
  }
  if (in.size() - i == 1) {
    const uint32_t v = uint8_t(in[i]) << 16;
    out += a[v >> 18 & 63];
    out += a[v >> 12 & 63];
  } else if (in.size() - i == 2) {
    const uint32_t v = uint8_t(in[i]) << 16 | uint8_t(in[i + 1]) << 8;
    out += a[v >> 18 & 63];
    out += a[v >> 12 & 63];
    out += a[v >> 6 & 63];
  }
  return out;
}

// The token's MAC part with another payload in front.
std::string withPayload(const std::string& token, const std::string& payload) {
  return b64(payload) + token.substr(token.find('.'));
}

TEST(UrlToken, MintedTokenVerifiesForPathsUnderItsPrefix) {
  const auto auth = authWith({{"", secretOf('a')}});
  const std::string token = mint("/live/ch1/", kNow + 60, secretOf('a'));
  EXPECT_EQ(token.find_first_not_of(
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."),
            std::string::npos)
      << token;
  EXPECT_EQ(verify(token, auth, "/live/ch1/index.m3u8"), TokenVerdict::kOk);
  EXPECT_EQ(verify(token, auth, "/live/ch1/720p/seg_1.ts"), TokenVerdict::kOk);
  EXPECT_EQ(verify(token, auth, "/live/ch1/"), TokenVerdict::kOk);
}

TEST(UrlToken, PayloadIsTheDocumentedText) {
  const std::string token = mint("/vod/a%7Cb/", 1234567890, secretOf('a'), "k1", "203.0.113.7");
  std::string scratch;
  TokenClaims claims;
  ASSERT_TRUE(parseToken(token, scratch, claims));
  EXPECT_EQ(claims.expires_unix, 1234567890);
  EXPECT_EQ(claims.key_id, "k1");
  EXPECT_EQ(claims.client, "203.0.113.7");
  EXPECT_EQ(claims.prefix, "/vod/a%7Cb/");
  EXPECT_EQ(token.substr(0, token.find('.')), b64("1|1234567890|k1|203.0.113.7|/vod/a%7Cb/"));
  // The prefix is the last field: a '|' in it (never in a normalised path) still parses.
  ASSERT_TRUE(parseToken(withPayload(token, "1|1|||/a|b"), scratch, claims));
  EXPECT_EQ(claims.prefix, "/a|b");
  EXPECT_EQ(token.size() - token.find('.') - 1, 43u);  // 32 bytes of HMAC-SHA256
}

TEST(UrlToken, ExpiresAfterItsLastSecond) {
  const auto auth = authWith({{"", secretOf('a')}});
  const std::string token = mint("/", kNow + 10, secretOf('a'));
  EXPECT_EQ(verify(token, auth, "/x", kNow + 10), TokenVerdict::kOk);
  EXPECT_EQ(verify(token, auth, "/x", kNow + 11), TokenVerdict::kExpired);
  EXPECT_EQ(verify(token, auth, "/x", kNow + 86400), TokenVerdict::kExpired);
}

TEST(UrlToken, PathOutsideThePrefixIsRefused) {
  const auto auth = authWith({{"", secretOf('a')}});
  const std::string token = mint("/live/ch1/", kNow + 60, secretOf('a'));
  EXPECT_EQ(verify(token, auth, "/live/ch2/index.m3u8"), TokenVerdict::kWrongPrefix);
  EXPECT_EQ(verify(token, auth, "/live/ch1"), TokenVerdict::kWrongPrefix);
  EXPECT_EQ(verify(token, auth, "/"), TokenVerdict::kWrongPrefix);
  EXPECT_EQ(verify(token, auth, "/LIVE/ch1/x"), TokenVerdict::kWrongPrefix);
  // A prefix without the trailing slash opens every path that starts with it (documented).
  const std::string loose = mint("/live/ch1", kNow + 60, secretOf('a'));
  EXPECT_EQ(verify(loose, auth, "/live/ch10/x"), TokenVerdict::kOk);
}

TEST(UrlToken, MintRefusesPrefixesThatAreNotNormalised) {
  MintRequest r;
  r.expires_unix = kNow;
  std::string token, error;
  for (const char* bad : {"live/", "/live/../vod/", "/a//b", "/a b", "", "/%41"}) {
    r.prefix = bad;
    EXPECT_FALSE(mintToken(r, secretOf('a'), token, error)) << bad;
  }
  r.prefix = "/ok/";
  EXPECT_FALSE(mintToken(r, std::string(16, 'a'), token, error)) << "a 16-byte key";
  r.key_id = "bad id";
  EXPECT_FALSE(mintToken(r, secretOf('a'), token, error));
  r.key_id = "";
  r.client = "not-an-address";
  EXPECT_FALSE(mintToken(r, secretOf('a'), token, error));
}

TEST(UrlToken, KeyRotationAcceptsEveryConfiguredKey) {
  const auto both = authWith({{"old", secretOf('o')}, {"new", secretOf('n')}});
  const std::string by_old = mint("/", kNow + 60, secretOf('o'), "old");
  const std::string by_new = mint("/", kNow + 60, secretOf('n'), "new");
  EXPECT_EQ(verify(by_old, both, "/x"), TokenVerdict::kOk);
  EXPECT_EQ(verify(by_new, both, "/x"), TokenVerdict::kOk);
  // Without a key id every key of the route is tried.
  EXPECT_EQ(verify(mint("/", kNow + 60, secretOf('o')), both, "/x"), TokenVerdict::kOk);
  EXPECT_EQ(verify(mint("/", kNow + 60, secretOf('n')), both, "/x"), TokenVerdict::kOk);
  EXPECT_EQ(verify(mint("/", kNow + 60, secretOf('z')), both, "/x"), TokenVerdict::kBadSignature);
  // A key id names one key: another key's signature under that name is bad.
  EXPECT_EQ(verify(mint("/", kNow + 60, secretOf('n'), "old"), both, "/x"),
            TokenVerdict::kBadSignature);
  EXPECT_EQ(verify(mint("/", kNow + 60, secretOf('o'), "gone"), both, "/x"),
            TokenVerdict::kUnknownKey);
  // The old key retired: its tokens stop working, the new ones go on.
  const auto after = authWith({{"new", secretOf('n')}});
  EXPECT_EQ(verify(by_old, after, "/x"), TokenVerdict::kUnknownKey);
  EXPECT_EQ(verify(by_new, after, "/x"), TokenVerdict::kOk);
  // The key id is reported once the signature is good.
  std::string scratch;
  std::string_view id;
  TokenCheck check;
  check.path = "/x";
  check.now_unix = kNow;
  EXPECT_EQ(verifyToken(by_new, both, check, scratch, &id), TokenVerdict::kOk);
  EXPECT_EQ(id, "new");
}

TEST(UrlToken, TamperingWithAnyClaimBreaksTheSignature) {
  const auto auth = authWith({{"k1", secretOf('a')}, {"k2", secretOf('b')}});
  const std::string token = mint("/live/ch1/", kNow + 60, secretOf('a'), "k1", "203.0.113.7");
  const Addr client("203.0.113.7");
  ASSERT_EQ(verify(token, auth, "/live/ch1/x", kNow, client.get()), TokenVerdict::kOk);
  // Each field changed, the MAC kept.
  EXPECT_EQ(verify(withPayload(token, "1|1700009999|k1|203.0.113.7|/live/ch1/"), auth,
                   "/live/ch1/x", kNow, client.get()),
            TokenVerdict::kBadSignature)
      << "expiry";
  EXPECT_EQ(verify(withPayload(token, "1|1700000060|k1|203.0.113.7|/live/"), auth, "/live/ch1/x",
                   kNow, client.get()),
            TokenVerdict::kBadSignature)
      << "prefix";
  EXPECT_EQ(verify(withPayload(token, "1|1700000060|k1||/live/ch1/"), auth, "/live/ch1/x", kNow,
                   client.get()),
            TokenVerdict::kBadSignature)
      << "client removed";
  EXPECT_EQ(verify(withPayload(token, "1|1700000060|k1|203.0.113.8|/live/ch1/"), auth,
                   "/live/ch1/x", kNow, client.get()),
            TokenVerdict::kBadSignature)
      << "client changed";
  EXPECT_EQ(verify(withPayload(token, "1|1700000060|k2|203.0.113.7|/live/ch1/"), auth,
                   "/live/ch1/x", kNow, client.get()),
            TokenVerdict::kBadSignature)
      << "key id";
  EXPECT_EQ(verify(withPayload(token, "1|1700000060||203.0.113.7|/live/ch1/"), auth,
                   "/live/ch1/x", kNow, client.get()),
            TokenVerdict::kBadSignature)
      << "key id removed";
  EXPECT_EQ(verify(withPayload(token, "2|1700000060|k1|203.0.113.7|/live/ch1/"), auth,
                   "/live/ch1/x", kNow, client.get()),
            TokenVerdict::kMalformed)
      << "version";
}

TEST(UrlToken, EveryCharacterOfTheTokenIsCovered) {
  // Any one character replaced, anywhere (payload, dot, MAC): never accepted. The comparison
  // of the MAC (CRYPTO_memcmp) looks at every byte: a difference in the first and in the last
  // byte is found alike.
  const auto auth = authWith({{"", secretOf('a')}});
  const std::string token = mint("/p/", kNow + 60, secretOf('a'), "", "10.0.0.0/8");
  const Addr client("10.1.2.3");
  ASSERT_EQ(verify(token, auth, "/p/x", kNow, client.get()), TokenVerdict::kOk);
  for (size_t i = 0; i < token.size(); ++i) {
    for (const char c : {'A', 'f', '0', '_', '-', '.'}) {
      if (token[i] == c) continue;
      std::string t = token;
      t[i] = c;
      const TokenVerdict v = verify(t, auth, "/p/x", kNow, client.get());
      EXPECT_TRUE(v == TokenVerdict::kBadSignature || v == TokenVerdict::kMalformed)
          << "position " << i << " → " << tokenVerdictName(v);
    }
  }
}

TEST(UrlToken, ClientBindingToAnAddressOrANetwork) {
  const auto auth = authWith({{"", secretOf('a')}});
  const std::string one = mint("/", kNow + 60, secretOf('a'), "", "203.0.113.7");
  EXPECT_EQ(verify(one, auth, "/x", kNow, Addr("203.0.113.7").get()), TokenVerdict::kOk);
  EXPECT_EQ(verify(one, auth, "/x", kNow, Addr("203.0.113.8").get()), TokenVerdict::kWrongClient);
  EXPECT_EQ(verify(one, auth, "/x", kNow, Addr("::ffff:203.0.113.7").get()), TokenVerdict::kOk);
  EXPECT_EQ(verify(one, auth, "/x", kNow, Addr("2001:db8::1").get()), TokenVerdict::kWrongClient);
  EXPECT_EQ(verify(one, auth, "/x", kNow, nullptr), TokenVerdict::kWrongClient);

  const std::string net6 = mint("/", kNow + 60, secretOf('a'), "", "2001:DB8:1:2::77/64");
  std::string scratch;
  TokenClaims claims;
  ASSERT_TRUE(parseToken(net6, scratch, claims));
  EXPECT_EQ(claims.client, "2001:db8:1:2::/64");
  EXPECT_EQ(verify(net6, auth, "/x", kNow, Addr("2001:db8:1:2:aaaa::1").get()), TokenVerdict::kOk);
  EXPECT_EQ(verify(net6, auth, "/x", kNow, Addr("2001:db8:1:3::1").get()),
            TokenVerdict::kWrongClient);
  EXPECT_EQ(verify(net6, auth, "/x", kNow, Addr("203.0.113.7").get()), TokenVerdict::kWrongClient);

  const std::string net4 = mint("/", kNow + 60, secretOf('a'), "", "198.51.100.200/25");
  EXPECT_EQ(verify(net4, auth, "/x", kNow, Addr("198.51.100.129").get()), TokenVerdict::kOk);
  EXPECT_EQ(verify(net4, auth, "/x", kNow, Addr("198.51.100.127").get()),
            TokenVerdict::kWrongClient);

  // An unbound token where the route requires a binding.
  auto strict = auth;
  strict.require_client = true;
  const std::string unbound = mint("/", kNow + 60, secretOf('a'));
  EXPECT_EQ(verify(unbound, auth, "/x", kNow, Addr("203.0.113.7").get()), TokenVerdict::kOk);
  EXPECT_EQ(verify(unbound, strict, "/x", kNow, Addr("203.0.113.7").get()),
            TokenVerdict::kWrongClient);
  EXPECT_EQ(verify(one, strict, "/x", kNow, Addr("203.0.113.7").get()), TokenVerdict::kOk);
}

TEST(UrlToken, CanonicalClientText) {
  std::string out;
  ASSERT_TRUE(canonicalClient("203.0.113.7/32", out));
  EXPECT_EQ(out, "203.0.113.7");
  ASSERT_TRUE(canonicalClient("203.0.113.7/24", out));
  EXPECT_EQ(out, "203.0.113.0/24");
  ASSERT_TRUE(canonicalClient("2001:0DB8::0001", out));
  EXPECT_EQ(out, "2001:db8::1");
  ASSERT_TRUE(canonicalClient("::/0", out));
  EXPECT_EQ(out, "::/0");
  for (const char* bad : {"", "1.2.3", "1.2.3.4/33", "::1/129", "1.2.3.4/", "1.2.3.4/08",
                          "example.com", "1.2.3.4/-1", " 1.2.3.4"}) {
    EXPECT_FALSE(canonicalClient(bad, out)) << bad;
  }
}

TEST(UrlToken, MissingAndMalformedTokens) {
  const auto auth = authWith({{"", secretOf('a')}});
  EXPECT_EQ(verify("", auth, "/x"), TokenVerdict::kMissing);
  const std::string good = mint("/", kNow + 60, secretOf('a'));
  const std::string mac = good.substr(good.find('.'));
  for (const std::string& bad : std::vector<std::string>{
           ".", "abc", "abc.", ".abc", "a.b.c", good + "=", good + ".", "=" + good,
           good.substr(0, good.size() - 1),  // MAC one character short
           good + "A",                       // one character long
           b64("1|1700000060|||/") + ".AAAA",  // MAC too short
           withPayload(good, "1|1700000060||/"),                  // four fields
           withPayload(good, "1|01700000060|||/"),                // leading zero
           withPayload(good, "1||||/"),                           // no expiry
           withPayload(good, "1|-5|||/"),                         // negative
           withPayload(good, "1|99999999999999|||/"),             // beyond year 9999
           withPayload(good, "1|1700000060|k y||/"),              // bad key id
           withPayload(good, "1|1700000060|" + std::string(33, 'k') + "||/"),
           withPayload(good, "1|1700000060||203.0.113.7/32|/"),   // not canonical
           withPayload(good, "1|1700000060||nonsense|/"),
           withPayload(good, "1|1700000060|||live/"),             // prefix without '/'
           withPayload(good, "1|1700000060|||"),                  // empty prefix
           withPayload(good, std::string("1|1700000060|||/a\nb")),  // control character
           withPayload(good, "1|1700000060|||/" + std::string(1100, 'a')),
           std::string(3000, 'A') + mac,  // too long
       }) {
    EXPECT_EQ(verify(bad, auth, "/x"), TokenVerdict::kMalformed) << bad;
  }
  // Non-canonical base64url: the last character's unused bits set.
  std::string odd = good;
  const size_t last = odd.size() - 1;  // 43 characters for 32 bytes: the last has 2 unused bits
  odd[last] = odd[last] == 'A' ? 'B' : 'A';
  const TokenVerdict v = verify(odd, auth, "/x");
  EXPECT_TRUE(v == TokenVerdict::kMalformed || v == TokenVerdict::kBadSignature);
}

TEST(UrlToken, GarbageIsNeverAccepted) {
  // Bounded: 20000 random strings and 20000 mutations of a valid token.
  const auto auth = authWith({{"", secretOf('a')}, {"k", secretOf('b')}});
  const std::string good = mint("/", kNow + 60, secretOf('a'));
  std::mt19937 rng(12345);
  std::string scratch;
  TokenCheck check;
  check.path = "/x";
  check.now_unix = kNow;
  const std::string alphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.|=%/ \x01\xff";
  for (int i = 0; i < 20000; ++i) {
    std::string s(rng() % 200, '\0');
    for (char& c : s) c = (i % 2) ? alphabet[rng() % alphabet.size()] : static_cast<char>(rng());
    EXPECT_NE(verifyToken(s, auth, check, scratch), TokenVerdict::kOk) << s;
  }
  for (int i = 0; i < 20000; ++i) {
    std::string s = good;
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits; ++e) {
      const size_t at = rng() % s.size();
      switch (rng() % 3) {
        case 0: s[at] = alphabet[rng() % alphabet.size()]; break;
        case 1: s.erase(at, 1); break;
        default: s.insert(at, 1, alphabet[rng() % alphabet.size()]); break;
      }
    }
    if (s == good) continue;
    EXPECT_NE(verifyToken(s, auth, check, scratch), TokenVerdict::kOk) << s;
  }
}

TEST(UrlToken, VerdictNamesAreTheMetricLabels) {
  EXPECT_STREQ(tokenVerdictName(TokenVerdict::kOk), "ok");
  EXPECT_STREQ(tokenVerdictName(TokenVerdict::kMissing), "missing");
  EXPECT_STREQ(tokenVerdictName(TokenVerdict::kMalformed), "malformed");
  EXPECT_STREQ(tokenVerdictName(TokenVerdict::kBadSignature), "bad_signature");
  EXPECT_STREQ(tokenVerdictName(TokenVerdict::kExpired), "expired");
  EXPECT_STREQ(tokenVerdictName(TokenVerdict::kWrongPrefix), "wrong_prefix");
  EXPECT_STREQ(tokenVerdictName(TokenVerdict::kWrongClient), "wrong_client");
  EXPECT_STREQ(tokenVerdictName(TokenVerdict::kUnknownKey), "unknown_key");
}

TEST(UrlToken, QueryParameter) {
  std::string v;
  EXPECT_EQ(queryToken("a=1&token=abc.def&b=2", "token", v), 1);
  EXPECT_EQ(v, "abc.def");
  EXPECT_EQ(queryToken("token=ab%2Ecd", "token", v), 1);
  EXPECT_EQ(v, "ab.cd");
  EXPECT_EQ(queryToken("a=1&b=2", "token", v), 0);
  EXPECT_EQ(queryToken("", "token", v), 0);
  EXPECT_EQ(queryToken("Token=x&tokens=y&xtoken=z", "token", v), 0);
  EXPECT_EQ(queryToken("token=a&token=b", "token", v), -1);
  EXPECT_EQ(queryToken("token=a%zz", "token", v), -1);
  EXPECT_EQ(queryToken("token=a%2", "token", v), -1);
  EXPECT_EQ(queryToken("token", "token", v), 1);
  EXPECT_EQ(v, "");
  EXPECT_EQ(queryToken("st=x", "st", v), 1);
  EXPECT_EQ(v, "x");
}

TEST(UrlToken, Cookie) {
  std::string_view v;
  EXPECT_EQ(cookieToken("a=1; token=xyz; b=2", "token", v), 1);
  EXPECT_EQ(v, "xyz");
  EXPECT_EQ(cookieToken("token=\"q.r\"", "token", v), 1);
  EXPECT_EQ(v, "q.r");
  EXPECT_EQ(cookieToken("a=1;token=z", "token", v), 1);
  EXPECT_EQ(v, "z");
  EXPECT_EQ(cookieToken("a=1; tokenx=2; xtoken=3", "token", v), 0);
  EXPECT_EQ(cookieToken("", "token", v), 0);
  EXPECT_EQ(cookieToken("token=1; token=2", "token", v), -1);
}

TEST(UrlToken, PathSegment) {
  std::string_view token, rest;
  ASSERT_TRUE(splitPathToken("/t/abc.def/live/index.m3u8", "t", token, rest));
  EXPECT_EQ(token, "abc.def");
  EXPECT_EQ(rest, "/live/index.m3u8");
  ASSERT_TRUE(splitPathToken("/auth/x/y", "auth", token, rest));
  EXPECT_EQ(token, "x");
  EXPECT_EQ(rest, "/y");
  ASSERT_TRUE(splitPathToken("/t/x/", "t", token, rest));
  EXPECT_EQ(rest, "/");
  EXPECT_FALSE(splitPathToken("/t/abc", "t", token, rest));  // no rest
  EXPECT_FALSE(splitPathToken("/t//live/x", "t", token, rest));
  EXPECT_FALSE(splitPathToken("/tt/abc/live", "t", token, rest));
  EXPECT_FALSE(splitPathToken("/live/t/abc/x", "t", token, rest));
  EXPECT_FALSE(splitPathToken("/t", "t", token, rest));
  EXPECT_FALSE(splitPathToken("", "t", token, rest));
}

TEST(UrlToken, RemovingTheTokenKeepsEverythingElse) {
  EXPECT_EQ(removeQueryParam("a=1&token=x&b=2&token=y", "token"), "a=1&b=2");
  EXPECT_EQ(removeQueryParam("token=x", "token"), "");
  EXPECT_EQ(removeQueryParam("a=1&&b", "token"), "a=1&b");
  EXPECT_EQ(removeQueryParam("tokenx=1", "token"), "tokenx=1");
  EXPECT_EQ(removeCookie("a=1; token=x; b=2", "token"), "a=1; b=2");
  EXPECT_EQ(removeCookie("token=x", "token"), "");
  EXPECT_EQ(removeCookie("a=1;token=x", "token"), "a=1");
}

}  // namespace
}  // namespace streamedge::proxy
