#include "proxy/shared_state.h"

#include <gtest/gtest.h>

namespace streamedge::proxy {
namespace {

TEST(VhostSlots, SlotsFollowFirstSightAndStayStable) {
  VhostSlots slots;
  EXPECT_EQ(slots.slotFor("live"), 1);
  EXPECT_EQ(slots.slotFor("vod"), 2);
  EXPECT_EQ(slots.slotFor("live"), 1);
  const std::vector<std::string> names = slots.names();
  ASSERT_EQ(names.size(), 3u);
  EXPECT_EQ(names[VhostSlots::kUnrouted], "unrouted");
  EXPECT_EQ(names[1], "live");
  EXPECT_EQ(names[2], "vod");
}

TEST(VhostSlots, NamesPastTheCapShareTheOtherSlot) {
  VhostSlots slots;
  for (size_t i = 1; i < VhostSlots::kOther; ++i) {
    EXPECT_EQ(slots.slotFor("v" + std::to_string(i)), i);
  }
  EXPECT_EQ(slots.slotFor("one-too-many"), VhostSlots::kOther);
  EXPECT_EQ(slots.slotFor("another"), VhostSlots::kOther);
  const std::vector<std::string> names = slots.names();
  ASSERT_EQ(names.size(), kVhostSlots);
  EXPECT_EQ(names[VhostSlots::kOther], "other");
}

TEST(WorkerCounters, VhostSlotFollowsTheConfigSnapshot) {
  VhostSlots registry;
  auto a = std::make_shared<conf::Config>();
  a->vhosts.resize(2);
  a->vhosts[0].name = "live";
  a->vhosts[1].name = "vod";
  auto b = std::make_shared<conf::Config>();  // a reload that reorders and adds
  b->vhosts.resize(3);
  b->vhosts[0].name = "vod";
  b->vhosts[1].name = "new";
  b->vhosts[2].name = "live";
  auto counters = std::make_unique<WorkerCounters>();
  conf::ConfigPtr ca = a;
  conf::ConfigPtr cb = b;
  EXPECT_EQ(counters->vhostSlot(registry, ca, &a->vhosts[1]), 2);
  EXPECT_EQ(counters->vhostSlot(registry, ca, nullptr), VhostSlots::kUnrouted);
  EXPECT_EQ(counters->vhostSlot(registry, cb, &b->vhosts[0]), 2) << "vod keeps its slot";
  EXPECT_EQ(counters->vhostSlot(registry, cb, &b->vhosts[2]), 1) << "live keeps its slot";
  EXPECT_EQ(counters->vhostSlot(registry, cb, &b->vhosts[1]), 3);
}

TEST(WorkerCounters, HandshakesAreCountedByVersionAndResult) {
  auto c = std::make_unique<WorkerCounters>();
  c->recordHandshake("TLSv1.3", HandshakeResult::kOk);
  c->recordHandshake("TLSv1.3", HandshakeResult::kOk);
  c->recordHandshake("TLSv1.2", HandshakeResult::kFailed);
  c->recordHandshake(nullptr, HandshakeResult::kFailed);
  c->recordHandshake("TLSv1.1", HandshakeResult::kFailed);
  auto at = [&](TlsVersionSlot v, HandshakeResult r) {
    return c->tls_handshakes[static_cast<size_t>(v)][static_cast<size_t>(r)].load();
  };
  EXPECT_EQ(at(TlsVersionSlot::kTls13, HandshakeResult::kOk), 2u);
  EXPECT_EQ(at(TlsVersionSlot::kTls12, HandshakeResult::kFailed), 1u);
  EXPECT_EQ(at(TlsVersionSlot::kUnknown, HandshakeResult::kFailed), 1u);
  EXPECT_EQ(at(TlsVersionSlot::kOther, HandshakeResult::kFailed), 1u);
  EXPECT_STREQ(tlsVersionLabel(TlsVersionSlot::kTls13), "1.3");
  EXPECT_STREQ(handshakeResultLabel(HandshakeResult::kFailed), "failed");
}

}  // namespace
}  // namespace streamedge::proxy
