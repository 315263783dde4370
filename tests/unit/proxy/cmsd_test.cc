#include "proxy/cmsd.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <linux/tcp.h>

namespace streamedge::proxy {
namespace {

TEST(Cmsd, DeliveryRateWinsOverTheWindowEstimate) {
  tcp_info info{};
  info.tcpi_rtt = 20000;               // 20 ms
  info.tcpi_snd_cwnd = 10;
  info.tcpi_snd_mss = 1448;
  info.tcpi_delivery_rate = 1250000;   // bytes/s = 10 Mbit/s
  const auto e = estimateFromTcpInfo(info);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->etp_kbps, 10000u);
  EXPECT_EQ(e->rtt_ms, 20u);

  info.tcpi_delivery_rate = 0;  // not measured yet: one window per round trip
  const auto w = estimateFromTcpInfo(info);
  ASSERT_TRUE(w);
  EXPECT_EQ(w->etp_kbps, 10u * 1448u * 50u * 8u / 1000u);  // 14480 bytes per 20 ms
}

TEST(Cmsd, NoEstimateWithoutARoundTrip) {
  tcp_info info{};
  info.tcpi_delivery_rate = 1000;
  EXPECT_FALSE(estimateFromTcpInfo(info));
  EXPECT_FALSE(tcpThroughput(-1));
}

TEST(Cmsd, ObjectTypeOnlyWhereThePathTellsIt) {
  EXPECT_EQ(cmsdObjectType("/live/a/index.m3u8"), "m");
  EXPECT_EQ(cmsdObjectType("/dash/manifest.mpd"), "m");
  EXPECT_EQ(cmsdObjectType("/dash/720p/init.mp4"), "i");
  EXPECT_EQ(cmsdObjectType("/a/seg_1.aac"), "a");
  EXPECT_EQ(cmsdObjectType("/a/seg_1.m4v"), "v");
  EXPECT_EQ(cmsdObjectType("/subs/seg_1.vtt"), "tt");
  EXPECT_EQ(cmsdObjectType("/live/a/seg_1.ts"), "");  // audio, video or both
  EXPECT_EQ(cmsdObjectType("/init/seg_1.ts"), "");    // "init" in a directory says nothing
}

TEST(Cmsd, FieldsLeaveOutWhatTheyCannotSay) {
  std::string out;
  appendCmsdFields("/live/a/seg_1.ts", -1, out);
  EXPECT_EQ(out, "");
  appendCmsdFields("/live/a/index.m3u8", -1, out);
  EXPECT_EQ(out, "CMSD-Static: ot=m\r\n");
}

}  // namespace
}  // namespace streamedge::proxy
