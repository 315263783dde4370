// ClientMissBudget: token buckets per client and group, IPv6 by /64, bounded memory.
#include "proxy/client_budget.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <gtest/gtest.h>

#include <string>

namespace streamedge::proxy {
namespace {

using namespace std::chrono_literals;

sockaddr_storage v4(const char* text) {
  sockaddr_storage ss{};
  auto* in = reinterpret_cast<sockaddr_in*>(&ss);
  in->sin_family = AF_INET;
  inet_pton(AF_INET, text, &in->sin_addr);
  return ss;
}

sockaddr_storage v6(const char* text) {
  sockaddr_storage ss{};
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
  in6->sin6_family = AF_INET6;
  inet_pton(AF_INET6, text, &in6->sin6_addr);
  return ss;
}

const sockaddr* sa(const sockaddr_storage& ss) { return reinterpret_cast<const sockaddr*>(&ss); }

TEST(ClientMissBudget, ABurstThenTheRate) {
  ClientMissBudget budget;
  const auto t0 = ClientMissBudget::Clock::now();
  const auto a = v4("192.0.2.1");
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(budget.take("main", sa(a), 10, 5, t0)) << i;
  EXPECT_FALSE(budget.take("main", sa(a), 10, 5, t0));
  EXPECT_TRUE(budget.take("main", sa(a), 10, 5, t0 + 100ms));  // one token per 100 ms
  EXPECT_FALSE(budget.take("main", sa(a), 10, 5, t0 + 100ms));
  EXPECT_EQ(budget.rejected().at("main"), 2u);
}

TEST(ClientMissBudget, ClientsAndGroupsHaveTheirOwnBuckets) {
  ClientMissBudget budget;
  const auto t0 = ClientMissBudget::Clock::now();
  const auto a = v4("192.0.2.1");
  const auto b = v4("192.0.2.2");
  EXPECT_TRUE(budget.take("main", sa(a), 1, 1, t0));
  EXPECT_FALSE(budget.take("main", sa(a), 1, 1, t0));
  EXPECT_TRUE(budget.take("main", sa(b), 1, 1, t0));
  EXPECT_TRUE(budget.take("other", sa(a), 1, 1, t0));
}

TEST(ClientMissBudget, AnIpv6ClientIsItsSlash64AndMappedIpv4IsIpv4) {
  ClientMissBudget budget;
  const auto t0 = ClientMissBudget::Clock::now();
  EXPECT_TRUE(budget.take("main", sa(v6("2001:db8:1:2::1")), 1, 1, t0));
  EXPECT_FALSE(budget.take("main", sa(v6("2001:db8:1:2:ffff::9")), 1, 1, t0));  // same /64
  EXPECT_TRUE(budget.take("main", sa(v6("2001:db8:1:3::1")), 1, 1, t0));        // another /64
  EXPECT_TRUE(budget.take("main", sa(v4("198.51.100.7")), 1, 1, t0));
  EXPECT_FALSE(budget.take("main", sa(v6("::ffff:198.51.100.7")), 1, 1, t0));
}

TEST(ClientMissBudget, ZeroRateIsOffAndBurstDefaultsToTheRate) {
  ClientMissBudget budget;
  const auto t0 = ClientMissBudget::Clock::now();
  const auto a = v4("192.0.2.1");
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(budget.take("main", sa(a), 0, 0, t0));
  EXPECT_EQ(budget.tracked(), 0u);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(budget.take("main", sa(a), 3, 0, t0));
  EXPECT_FALSE(budget.take("main", sa(a), 3, 0, t0));
}

TEST(ClientMissBudget, MemoryIsBoundedAndRefilledBucketsMakeRoom) {
  ClientMissBudget budget;
  const auto t0 = ClientMissBudget::Clock::now();
  const size_t cap = ClientMissBudget::kShards * ClientMissBudget::kMaxClientsPerShard;
  // Many more clients than fit, each spending its whole budget at once.
  for (uint32_t i = 0; i < cap * 2; ++i) {
    sockaddr_storage ss{};
    auto* in = reinterpret_cast<sockaddr_in*>(&ss);
    in->sin_family = AF_INET;
    in->sin_addr.s_addr = htonl(0x0A000000u + i);
    budget.take("main", sa(ss), 1, 1, t0);
  }
  EXPECT_LE(budget.tracked(), cap);
  // A second later every bucket has refilled: a new client finds room.
  const auto late = v4("203.0.113.5");
  EXPECT_TRUE(budget.take("main", sa(late), 1, 1, t0 + 2s));
  EXPECT_FALSE(budget.take("main", sa(late), 1, 1, t0 + 2s));  // and is counted
  EXPECT_LE(budget.tracked(), cap);
}

}  // namespace
}  // namespace streamedge::proxy
