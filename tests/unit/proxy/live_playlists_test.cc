#include "proxy/live_playlists.h"

#include <gtest/gtest.h>

#include <chrono>

namespace streamedge::proxy {
namespace {

using namespace std::chrono_literals;

TEST(WithoutDeliveryDirectives, CutsTheDirectivesFilterQueryPutsLast) {
  EXPECT_EQ(withoutDeliveryDirectives(""), "");
  EXPECT_EQ(withoutDeliveryDirectives("_HLS_msn=5"), "");
  EXPECT_EQ(withoutDeliveryDirectives("_HLS_msn=5&_HLS_part=2"), "");
  EXPECT_EQ(withoutDeliveryDirectives("v=2&_HLS_msn=5&_HLS_part=2"), "v=2");
  EXPECT_EQ(withoutDeliveryDirectives("v=2&a=b&_HLS_skip=YES"), "v=2&a=b");
  EXPECT_EQ(withoutDeliveryDirectives("v=2"), "v=2");
  // A kept parameter that only starts like a directive stays.
  EXPECT_EQ(withoutDeliveryDirectives("_HLS_msnx=1&_HLS_msn=3"), "_HLS_msnx=1");
}

class LivePlaylistsTest : public ::testing::Test {
 protected:
  // A complete stored object under `path`, answered now.
  cache::ObjectRef store(const std::string& path) {
    cache::LookupResult r = cache_.lookup(cache::makeKey("v", path, ""));
    EXPECT_EQ(r.kind, cache::LookupResult::Kind::kMiss);
    auto head = std::make_shared<cache::ResponseHead>();
    head->status = 200;
    head->content_length = 1;
    head->buildWire();
    cache::Freshness f;
    f.response_time = clock_.wallNow();
    f.lifetime = conf::Seconds(12);
    r.fill.publishHead(head, f, true, true);
    r.fill.append(reinterpret_cast<const uint8_t*>("x"), 1);
    EXPECT_TRUE(r.fill.finish());
    return r.object;
  }
  static streaming::PlaylistSummary at(uint64_t next_msn, uint64_t parts) {
    streaming::PlaylistSummary s;
    s.target_duration_s = 2;
    s.part_target_s = 0.5;
    s.next_msn = next_msn;
    s.has_segments = true;
    s.trailing_parts = parts;
    return s;
  }

  ManualClock clock_;
  cache::Cache cache_{[] {
                        conf::RamCacheConfig c;
                        c.size_bytes = 1 << 20;
                        c.max_object_bytes = 1 << 20;
                        return c;
                      }(),
                      clock_};
  LivePlaylists live_;
  const cache::CacheKey url_ = cache::makeKey("v", "/ll/a/index.m3u8", "");
};

TEST_F(LivePlaylistsTest, KeepsTheObjectThatShowsTheStreamFurthest) {
  EXPECT_FALSE(live_.find(url_));
  cache::ObjectRef plain = store("/plain");
  live_.record(url_, *plain, at(10, 1));
  cache::ObjectRef blocking = store("/blocking");
  live_.record(url_, *blocking, at(10, 3));
  ASSERT_TRUE(live_.find(url_));
  EXPECT_EQ(live_.find(url_)->object, blocking.get());
  EXPECT_EQ(live_.find(url_)->object_key, blocking->key());
  // An older view of the stream (a lagging data center's plain playlist) does not replace it.
  cache::ObjectRef older = store("/older");
  live_.record(url_, *older, at(10, 2));
  EXPECT_EQ(live_.find(url_)->object, blocking.get());
  EXPECT_EQ(live_.find(url_)->summary.trailing_parts, 3u);
  // ...unless the entry is older than a target duration (the stream restarted).
  clock_.advance(3s);
  cache::ObjectRef restarted = store("/restarted");
  live_.record(url_, *restarted, at(0, 1));
  EXPECT_EQ(live_.find(url_)->object, restarted.get());
  EXPECT_EQ(live_.size(), 1u);
}

TEST_F(LivePlaylistsTest, StaysBounded) {
  cache::ObjectRef object = store("/one");
  for (uint64_t i = 0; i < LivePlaylists::kMaxEntries * 2; ++i) {
    live_.record(cache::makeKey("v", "/u" + std::to_string(i), ""), *object, at(1, 0));
  }
  EXPECT_LE(live_.size(), LivePlaylists::kMaxEntries);
  EXPECT_GT(live_.size(), LivePlaylists::kMaxEntries / 2);
}

}  // namespace
}  // namespace streamedge::proxy
