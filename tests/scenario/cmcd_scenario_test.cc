// CMCD (CTA-5004) through the real binary: read from the query parameter and the CMCD-* fields,
// never in the key, never sent to the origin by default, never logged; only aggregate metrics.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>

#include "tests/scenario/scenario_env.h"

namespace streamedge::scenario {
namespace {

using namespace std::chrono_literals;

TEST_F(ScenarioTest, CmcdInQueryAndFieldsSharesOneKeyNeverReachesTheOriginAndOnlyCounts) {
  // echo=1: the simulator's body lists the request fields it got.
  const std::string base = "/obj/cmcd/seg.ts?echo=1";
  HttpResponse first = get(base + "&CMCD=br%3D3200%2Cbs%2Cot%3Dv%2Csid%3D%22secret-session-a%22",
                           {{"CMCD-Session", "sid=\"secret-session-b\",cid=\"secret-content\""},
                            {"CMCD-Request", "mtp=25400"}});
  ASSERT_EQ(first.status, 200) << first.error << proxyLog();
  EXPECT_EQ(first.header("X-Cache"), "MISS");
  // The origin saw no CMCD field (and the query it got has no CMCD: the key's query).
  EXPECT_EQ(first.body.find("cmcd"), std::string::npos) << first.body;
  EXPECT_EQ(first.body.find("CMCD"), std::string::npos) << first.body;
  EXPECT_EQ(first.body.find("secret"), std::string::npos) << first.body;

  // Other CMCD, the same object.
  HttpResponse second = get(base + "&cmcd=br%3D800", {{"CMCD-Object", "br=800"}});
  ASSERT_EQ(second.status, 200);
  EXPECT_EQ(second.header("X-Cache"), "HIT");
  HttpResponse third = get(base, {{"CMCD-Status", "bs"}, {"CMCD-Object", "br=12000"}});
  ASSERT_EQ(third.status, 200);
  EXPECT_EQ(third.header("X-Cache"), "HIT");
  EXPECT_EQ(originCount("/obj/cmcd/seg.ts"), 1);
  // An invalid list is ignored, never an error.
  EXPECT_EQ(get(base + "&CMCD=br%3Dabc", {{"CMCD-Object", "br="}}).status, 200);

  // Aggregates only: three requests with valid CMCD, two starving, bitrates 3200, 800, 12000.
  const std::string text = testsupport::httpGet(proxy_->admin_port, "/metrics").body;
  EXPECT_EQ(metricValue(text, "streamedge_cmcd_requests_total"), 3) << text;
  EXPECT_EQ(metricValue(text, "streamedge_cmcd_buffer_starvation_total"), 2);
  EXPECT_EQ(metricValue(text, "streamedge_cmcd_requested_bitrate_kbps_count"), 3);
  EXPECT_EQ(metricValue(text, "streamedge_cmcd_requested_bitrate_kbps_sum"), 16000);
  EXPECT_EQ(metricValue(text, "streamedge_cmcd_requested_bitrate_kbps_bucket", "le=\"800"), 1);
  EXPECT_EQ(metricValue(text, "streamedge_cmcd_requested_bitrate_kbps_bucket", "le=\"3000"), 1);
  EXPECT_EQ(metricValue(text, "streamedge_cmcd_requested_bitrate_kbps_bucket", "le=\"6000"), 2);
  EXPECT_EQ(text.find("secret"), std::string::npos);

  // Nothing of the session or content id in the access log.
  std::string log;
  for (int i = 0; i < 50 && log.find("/obj/cmcd/seg.ts") == std::string::npos; ++i) {
    std::this_thread::sleep_for(100ms);  // workers flush the log every 100 ms
    log = testsupport::readFile(access_log_);
  }
  ASSERT_NE(log.find("/obj/cmcd/seg.ts"), std::string::npos) << log;
  EXPECT_EQ(log.find("secret"), std::string::npos) << log;
  EXPECT_EQ(log.find("sid"), std::string::npos) << log;
  EXPECT_EQ(log.find("CMCD"), std::string::npos) << log;
}

TEST_F(ScenarioTest, CmcdReachesTheOriginOnlyWhenTheRouteForwardsIt) {
  start("  forward_cmcd = true\n");
  HttpResponse r = get("/obj/cmcdfwd/seg.ts?echo=1", {{"CMCD-Object", "br=800"}});
  ASSERT_EQ(r.status, 200) << r.error << proxyLog();
  EXPECT_NE(r.body.find("br=800"), std::string::npos) << r.body;
}

}  // namespace
}  // namespace streamedge::scenario
