#include "tls/ticket_key_ring.h"

#include <gtest/gtest.h>

#include <cstdio>

#include "tests/unit/tls/tls_test_certs.h"

namespace streamedge::tls {
namespace {

using std::chrono::seconds;

TEST(TicketKeyRing, RotatesOnScheduleKeepingThePreviousKeyForOneMoreRotation) {
  const auto t0 = std::chrono::system_clock::time_point(seconds(1'000'000));
  auto ring = TicketKeyRing::random(seconds(3600), t0);
  const TicketKeyRing::Key first = ring->current(t0 + seconds(10));
  EXPECT_EQ(ring->current(t0 + seconds(3599)).name, first.name);  // not yet due
  const TicketKeyRing::Key second = ring->current(t0 + seconds(3600));
  EXPECT_NE(second.name, first.name);
  TicketKeyRing::Key found;
  bool is_current = true;
  ASSERT_TRUE(ring->find(first.name.data(), t0 + seconds(3700), found, is_current));
  EXPECT_FALSE(is_current);  // opened, and renewed under the current key
  EXPECT_EQ(found.aes, first.aes);
  ASSERT_TRUE(ring->find(second.name.data(), t0 + seconds(3700), found, is_current));
  EXPECT_TRUE(is_current);
  // Two rotations old: forgotten even before the next ticket is issued.
  EXPECT_FALSE(ring->find(first.name.data(), t0 + seconds(7200), found, is_current));
  ring->current(t0 + seconds(7200));
  EXPECT_FALSE(ring->find(first.name.data(), t0 + seconds(7201), found, is_current));
}

TEST(TicketKeyRing, KeyFileGivesEveryServerTheSameKeys) {
  const std::string dir = testing::makeTempDir();
  const std::string path = dir + "/tickets.key";
  std::FILE* f = std::fopen(path.c_str(), "wb");
  for (int i = 0; i < 160; ++i) std::fputc(i, f);
  std::fclose(f);
  std::string error;
  auto a = TicketKeyRing::fromFile(path, error);
  auto b = TicketKeyRing::fromFile(path, error);
  ASSERT_TRUE(a && b) << error;
  const auto now = std::chrono::system_clock::now();
  EXPECT_EQ(a->current(now).name, b->current(now).name);
  EXPECT_EQ(a->current(now).name[0], 0);
  TicketKeyRing::Key k;
  bool is_current = true;
  const unsigned char second_name[16] = {80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95};
  ASSERT_TRUE(a->find(second_name, now, k, is_current));
  EXPECT_FALSE(is_current);
  // File keys never rotate on their own.
  EXPECT_EQ(a->current(now + std::chrono::hours(1000)).name[0], 0);

  f = std::fopen(path.c_str(), "wb");
  std::fputs("short", f);
  std::fclose(f);
  EXPECT_FALSE(TicketKeyRing::fromFile(path, error));
  EXPECT_NE(error.find("multiple of 80 bytes"), std::string::npos) << error;
}

}  // namespace
}  // namespace streamedge::tls
