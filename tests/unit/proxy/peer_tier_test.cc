// PeerTier's peer request field: what one edge signs the other verifies; any change of method,
// host, target, sender or MAC, a timestamp outside the skew bound, another secret, or a bad
// shape is refused.
#include "proxy/peer_tier.h"

#include <gtest/gtest.h>

#include <string>

namespace streamedge::proxy {
namespace {

conf::ClusterConfig cluster(size_t self, std::string secret = std::string(32, 'k')) {
  conf::ClusterConfig c;
  c.enabled = true;
  c.peers = {"127.0.0.2:8080", "127.0.0.3:8080", "127.0.0.4:8080"};
  c.self_index = self;
  c.self = c.peers[self];
  c.secret = std::move(secret);
  c.max_clock_skew = Millis(30'000);
  return c;
}

TEST(PeerTier, WhatOnePeerSignsAnotherVerifies) {
  auto a = PeerTier::make(cluster(0));
  auto b = PeerTier::make(cluster(1));
  ASSERT_TRUE(a && b);
  const std::string v = a->sign("GET", "cdn.example", "/seg/1.ts?x=1", 1'700'000'000);
  std::string from;
  EXPECT_EQ(b->verify(v, "GET", "cdn.example", "/seg/1.ts?x=1", 1'700'000'010, from),
            PeerVerdict::kOk);
  EXPECT_EQ(from, "127.0.0.2:8080");
  EXPECT_EQ(b->verify(v, "HEAD", "cdn.example", "/seg/1.ts?x=1", 1'700'000'010, from),
            PeerVerdict::kBadMac);
  EXPECT_EQ(b->verify(v, "GET", "other.example", "/seg/1.ts?x=1", 1'700'000'010, from),
            PeerVerdict::kBadMac);
  EXPECT_EQ(b->verify(v, "GET", "cdn.example", "/seg/2.ts?x=1", 1'700'000'010, from),
            PeerVerdict::kBadMac);
  EXPECT_EQ(b->verify(v, "GET", "cdn.example", "/seg/1.ts?x=1", 1'700'000'031, from),
            PeerVerdict::kStale);
  EXPECT_EQ(b->verify(v, "GET", "cdn.example", "/seg/1.ts?x=1", 1'699'999'969, from),
            PeerVerdict::kStale);
  // Another sender claimed with the same MAC.
  std::string forged = v;
  forged.replace(forged.find("127.0.0.2"), 9, "127.0.0.9");
  EXPECT_EQ(b->verify(forged, "GET", "cdn.example", "/seg/1.ts?x=1", 1'700'000'010, from),
            PeerVerdict::kBadMac);
  // Another site's secret.
  auto other = PeerTier::make(cluster(1, std::string(32, 'x')));
  EXPECT_EQ(other->verify(v, "GET", "cdn.example", "/seg/1.ts?x=1", 1'700'000'010, from),
            PeerVerdict::kBadMac);
}

TEST(PeerTier, MalformedFieldsAreRefused) {
  auto b = PeerTier::make(cluster(1));
  std::string from;
  for (const char* v : {"", "v1", "v2; from=a:1; ts=1; mac=AAAA", "v1; from=a:1; ts=x; mac=AAAA",
                        "v1; from=a:1; mac=AAAA", "v1; ts=1; mac=AAAA", "v1; from=a:1; ts=1",
                        "v1; from=a:1; ts=1; mac=AAAA; extra=1", "v1; from=a:1; ts=1; ts=2; mac=A"}) {
    EXPECT_EQ(b->verify(v, "GET", "h", "/", 1, from), PeerVerdict::kMalformed) << v;
  }
  EXPECT_EQ(b->verify("v1; from=a:1; ts=1; mac=AAAA", "GET", "h", "/", 1, from),
            PeerVerdict::kBadMac);
}

TEST(PeerTier, NoClusterNoTier) {
  EXPECT_EQ(PeerTier::make(conf::ClusterConfig{}), nullptr);
}

TEST(PeerTier, CountersOfKeptPeersSurviveAMembershipChange) {
  auto before = PeerTier::make(cluster(0));
  ASSERT_TRUE(before);
  before->count(1, PeerResult::kOk);
  before->count(1, PeerResult::kOk);
  before->count(2, PeerResult::kTimeout);
  EXPECT_EQ(before->requests(1, PeerResult::kOk), 2u);
  EXPECT_EQ(before->requests(2, PeerResult::kTimeout), 1u);
  EXPECT_EQ(before->requests(2, PeerResult::kConnect), 0u);
  // 127.0.0.4 leaves, 127.0.0.5 joins, 127.0.0.3 stays (at another index).
  conf::ClusterConfig c = cluster(0);
  c.peers = {"127.0.0.2:8080", "127.0.0.5:8080", "127.0.0.3:8080"};
  auto after = PeerTier::make(c, before.get());
  ASSERT_TRUE(after);
  EXPECT_EQ(after->address(2), "127.0.0.3:8080");
  EXPECT_EQ(after->requests(2, PeerResult::kOk), 2u);
  EXPECT_EQ(after->requests(1, PeerResult::kOk), 0u);
  EXPECT_EQ(after->requests(1, PeerResult::kTimeout), 0u);
  after->count(2, PeerResult::kError);
  EXPECT_EQ(after->requests(2, PeerResult::kError), 1u);
  EXPECT_STREQ(peerResultName(PeerResult::kServerError), "5xx");
  EXPECT_STREQ(peerResultName(PeerResult::kConnect), "connect");
}

}  // namespace
}  // namespace streamedge::proxy
