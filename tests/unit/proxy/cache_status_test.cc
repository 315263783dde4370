#include "proxy/cache_status.h"

#include <gtest/gtest.h>

#include <string>

namespace streamedge::proxy {
namespace {

std::string field(const CacheStatusFacts& facts) {
  std::string out;
  appendCacheStatusField(out, kCacheStatusName, describeCacheStatus(facts));
  return out;
}

CacheStatusFacts answered(CacheResult result, int status, bool stored, int64_t ttl) {
  CacheStatusFacts f;
  f.result = result;
  f.origin_status = status;
  f.stored = stored;
  f.ttl_seconds = ttl;
  return f;
}

// ---------------------------------------------------------------- formatting

TEST(CacheStatusField, WritesAnSfListMemberWithParameters) {
  std::string out = "X: y\r\n";
  CacheStatus s;
  s.fwd = CacheFwd::kUriMiss;
  s.fwd_status = 200;
  s.stored = true;
  s.collapsed = true;
  s.ttl_seconds = 60;
  s.detail = "example";
  appendCacheStatusField(out, "streamedge", s);
  EXPECT_EQ(out,
            "X: y\r\nCache-Status: streamedge; fwd=uri-miss; fwd-status=200; stored; collapsed; "
            "ttl=60; detail=example\r\n");
}

TEST(CacheStatusField, HitLeavesOutEverythingAboutForwarding) {
  CacheStatus s;
  s.hit = true;
  s.fwd = CacheFwd::kUriMiss;  // contradictory input: a hit did not go forward
  s.fwd_status = 200;
  s.stored = true;
  s.collapsed = true;
  s.ttl_seconds = 5;
  std::string out;
  appendCacheStatusField(out, "streamedge", s);
  EXPECT_EQ(out, "Cache-Status: streamedge; hit; ttl=5\r\n");
}

TEST(CacheStatusField, NegativeTtlAndIntegerLimits) {
  CacheStatus s;
  s.fwd = CacheFwd::kStale;
  s.ttl_seconds = -42;
  std::string out;
  appendCacheStatusField(out, "streamedge", s);
  EXPECT_EQ(out, "Cache-Status: streamedge; fwd=stale; ttl=-42\r\n");
  out.clear();
  s.ttl_seconds = int64_t{1} << 60;  // past an sf-integer's 15 digits: clamped, still valid
  appendCacheStatusField(out, "streamedge", s);
  EXPECT_EQ(out, "Cache-Status: streamedge; fwd=stale; ttl=999999999999999\r\n");
}

TEST(CacheStatusField, NameAloneWhenNothingHappened) {
  std::string out;
  appendCacheStatusField(out, "streamedge", CacheStatus{});
  EXPECT_EQ(out, "Cache-Status: streamedge\r\n");
}

TEST(CacheStatusField, EveryFwdValueIsAnRfc9211Token) {
  EXPECT_STREQ(cacheFwdToken(CacheFwd::kNone), "");
  EXPECT_STREQ(cacheFwdToken(CacheFwd::kBypass), "bypass");
  EXPECT_STREQ(cacheFwdToken(CacheFwd::kMethod), "method");
  EXPECT_STREQ(cacheFwdToken(CacheFwd::kUriMiss), "uri-miss");
  EXPECT_STREQ(cacheFwdToken(CacheFwd::kVaryMiss), "vary-miss");
  EXPECT_STREQ(cacheFwdToken(CacheFwd::kMiss), "miss");
  EXPECT_STREQ(cacheFwdToken(CacheFwd::kRequest), "request");
  EXPECT_STREQ(cacheFwdToken(CacheFwd::kStale), "stale");
  EXPECT_STREQ(cacheFwdToken(CacheFwd::kPartial), "partial");
}

// ---------------------------------------------------------------- what each answer says

TEST(CacheStatusDescribe, FreshHitSaysHitAndTtl) {
  EXPECT_EQ(field(answered(CacheResult::kHit, 200, true, 57)),
            "Cache-Status: streamedge; hit; ttl=57\r\n");
}

TEST(CacheStatusDescribe, MissSaysWhyStatusStoredAndTtl) {
  EXPECT_EQ(field(answered(CacheResult::kMiss, 200, true, 60)),
            "Cache-Status: streamedge; fwd=uri-miss; fwd-status=200; stored; ttl=60\r\n");
  // Not stored (no-store, too big, an error status): no stored, no ttl.
  EXPECT_EQ(field(answered(CacheResult::kMiss, 503, false, 0)),
            "Cache-Status: streamedge; fwd=uri-miss; fwd-status=503\r\n");
}

TEST(CacheStatusDescribe, CoalescedIsCollapsed) {
  EXPECT_EQ(field(answered(CacheResult::kCoalesced, 200, true, 59)),
            "Cache-Status: streamedge; fwd=uri-miss; fwd-status=200; stored; collapsed; ttl=59\r\n");
}

TEST(CacheStatusDescribe, RevalidationIsFwdStaleWithTheOriginsStatus) {
  CacheStatusFacts f = answered(CacheResult::kMiss, 200, true, 60);
  f.stale_found = true;
  EXPECT_EQ(field(f), "Cache-Status: streamedge; fwd=stale; fwd-status=200; stored; ttl=60\r\n");
  // A 304 refreshed the stored answer: the viewer gets a 200, the origin said 304.
  f.stale_found = false;  // (an SSD copy: the lookup itself did not see it stale)
  f.not_modified = true;
  EXPECT_EQ(field(f), "Cache-Status: streamedge; fwd=stale; fwd-status=304; stored; ttl=60\r\n");
}

TEST(CacheStatusDescribe, ServedStaleIsFwdStaleWithANegativeTtl) {
  CacheStatusFacts f = answered(CacheResult::kStale, 200, true, -3);
  f.stale_found = true;
  EXPECT_EQ(field(f), "Cache-Status: streamedge; fwd=stale; ttl=-3\r\n");
}

TEST(CacheStatusDescribe, PassRouteIsBypassAndOtherMethodsAreMethod) {
  CacheStatusFacts f = answered(CacheResult::kPass, 200, false, 0);
  f.pass_route = true;
  EXPECT_EQ(field(f), "Cache-Status: streamedge; fwd=bypass; fwd-status=200\r\n");
  f.pass_route = false;
  f.other_method = true;
  f.origin_status = 201;
  EXPECT_EQ(field(f), "Cache-Status: streamedge; fwd=method; fwd-status=201\r\n");
}

TEST(CacheStatusDescribe, VaryMissWhenTheLookupSaysSo) {
  CacheStatusFacts f = answered(CacheResult::kMiss, 200, true, 30);
  f.vary_miss = true;
  EXPECT_EQ(field(f), "Cache-Status: streamedge; fwd=vary-miss; fwd-status=200; stored; ttl=30\r\n");
}

TEST(CacheStatusDescribe, FailedFetchSaysOnlyThatItWentForward) {
  CacheStatusFacts f;
  f.result = CacheResult::kCoalesced;
  f.synthesized = true;
  EXPECT_EQ(field(f), "Cache-Status: streamedge; fwd=uri-miss\r\n");
  f.result = CacheResult::kPass;
  f.pass_route = true;
  EXPECT_EQ(field(f), "Cache-Status: streamedge; fwd=bypass\r\n");
}

TEST(CacheStatusDescribe, NoLookupIsTheNameAlone) {
  EXPECT_EQ(field(CacheStatusFacts{}), "Cache-Status: streamedge\r\n");
}

}  // namespace
}  // namespace streamedge::proxy
