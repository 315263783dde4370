// Admin authentication: token hashing and hash parsing, which scope each path needs, and the
// contract of AdminAuth::check (open probes, open without tokens, 401 for no/unknown tokens,
// 403 for a token without the scope, the deprecated clear token with every scope).
#include "proxy/admin_auth.h"

#include <gtest/gtest.h>

#include <string>

namespace streamedge::proxy {
namespace {

using Decision = AdminAuthResult::Decision;

TEST(AdminAuth, HashIsTheSha256HexOfTheToken) {
  // SHA-256("test"), a well-known vector.
  EXPECT_EQ(hashAdminToken("test"),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
  TokenDigest d{};
  EXPECT_TRUE(parseTokenDigest(hashAdminToken("test"), d));
  EXPECT_EQ(d[0], 0x9f);
  EXPECT_EQ(d[31], 0x08);
  EXPECT_TRUE(parseTokenDigest("9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08", d));
  EXPECT_FALSE(parseTokenDigest("9f86", d));
  EXPECT_FALSE(parseTokenDigest(std::string(63, 'a') + "g", d));
  EXPECT_FALSE(parseTokenDigest(std::string(65, 'a'), d));
}

TEST(AdminAuth, ProbesAreOpenAndEveryOtherPathNeedsAScope) {
  EXPECT_FALSE(scopeForPath("/healthz"));
  EXPECT_FALSE(scopeForPath("/readyz"));
  EXPECT_EQ(scopeForPath("/metrics"), conf::kAdminScopeMetrics);
  EXPECT_EQ(scopeForPath("/status"), conf::kAdminScopeStatus);
  EXPECT_EQ(scopeForPath("/purge"), conf::kAdminScopePurge);
  EXPECT_EQ(scopeForPath("/debug/block-worker"), conf::kAdminScopeDebug);
  EXPECT_EQ(scopeForPath("/nothing-here"), conf::kAdminScopeStatus)
      << "unknown paths are not open: no 404s for strangers";
}

conf::AdminConfig twoTokens() {
  conf::AdminConfig c;
  c.tokens.push_back({"prometheus", hashAdminToken("scrape-token"),
                      conf::kAdminScopeMetrics | conf::kAdminScopeStatus});
  c.tokens.push_back({"purger", hashAdminToken("purge-token"), conf::kAdminScopePurge});
  return c;
}

TEST(AdminAuth, ScopesDecideAndNamesAreReported) {
  const AdminAuth auth(twoTokens());
  AdminAuthResult r = auth.check("Bearer purge-token", conf::kAdminScopePurge);
  EXPECT_EQ(r.decision, Decision::kAllowed);
  EXPECT_EQ(r.who, "purger");
  r = auth.check("Bearer scrape-token", conf::kAdminScopePurge);
  EXPECT_EQ(r.decision, Decision::kForbidden);
  EXPECT_EQ(r.httpStatus(), 403);
  EXPECT_EQ(r.who, "prometheus");
  EXPECT_EQ(r.why, "missing scope purge");
  r = auth.check("Bearer scrape-token", conf::kAdminScopeMetrics);
  EXPECT_EQ(r.decision, Decision::kAllowed);
  r = auth.check("bearer  purge-token ", conf::kAdminScopePurge);
  EXPECT_EQ(r.decision, Decision::kAllowed) << "the scheme is case-insensitive (RFC 9110 11.1)";
}

TEST(AdminAuth, MissingUnknownOrMalformedTokensAre401) {
  const AdminAuth auth(twoTokens());
  for (const char* header : {static_cast<const char*>(nullptr), "", "Bearer", "Bearer ",
                             "Basic cHVyZ2VyOnB1cmdlLXRva2Vu", "Bearer purge-token-x",
                             "Bearer PURGE-TOKEN", "purge-token"}) {
    const AdminAuthResult r = auth.check(header, conf::kAdminScopePurge);
    EXPECT_EQ(r.decision, Decision::kUnauthenticated) << (header ? header : "(none)");
    EXPECT_EQ(r.httpStatus(), 401);
    EXPECT_TRUE(r.who.empty());
  }
  // The hash in the config is no token: presenting it gets nowhere.
  EXPECT_EQ(auth.check(("Bearer " + hashAdminToken("purge-token")).c_str(), conf::kAdminScopePurge)
                .decision,
            Decision::kUnauthenticated);
}

TEST(AdminAuth, ProbesNeedNoTokenAndNoTokensMeansOpen) {
  const AdminAuth auth(twoTokens());
  EXPECT_EQ(auth.check(nullptr, std::nullopt).decision, Decision::kAllowed);
  const AdminAuth open{conf::AdminConfig{}};
  EXPECT_TRUE(open.open());
  const AdminAuthResult r = open.check(nullptr, conf::kAdminScopePurge);
  EXPECT_EQ(r.decision, Decision::kAllowed);
  EXPECT_EQ(r.who, "anonymous");
}

TEST(AdminAuth, TheDeprecatedClearTokenHasEveryScope) {
  conf::AdminConfig c;
  c.bearer_token = "legacy";
  const AdminAuth auth(c);
  for (conf::AdminScope s : {conf::kAdminScopeMetrics, conf::kAdminScopeStatus,
                             conf::kAdminScopePurge, conf::kAdminScopeDebug}) {
    const AdminAuthResult r = auth.check("Bearer legacy", s);
    EXPECT_EQ(r.decision, Decision::kAllowed) << scopeName(s);
    EXPECT_EQ(r.who, "bearer_token");
  }
  EXPECT_EQ(auth.check("Bearer legacy2", conf::kAdminScopeMetrics).decision,
            Decision::kUnauthenticated);
}

}  // namespace
}  // namespace streamedge::proxy
