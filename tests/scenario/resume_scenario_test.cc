// Resume after the first byte, with the real binary and two origin simulators as data centers
// (dc-a primary, dc-b secondary): a primary that resets, stalls or slows to a trickle mid-body is
// replaced by a Range request to dc-b, and every viewer of the fill — the herd included — gets
// the whole body exactly; a dc-b with other validators or without range support makes the fill
// abort (viewers see a cut connection) and nothing is stored. Each test uses its own path.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/scenario/scenario_env.h"
#include "tests/support/herd.h"
#include "tests/support/http_client.h"
#include "tests/support/origin_sim.h"
#include "tests/support/process.h"

namespace streamedge::scenario {
namespace {

using namespace std::chrono_literals;
using testsupport::HttpResponse;

constexpr size_t kMiB = 1024 * 1024;
constexpr size_t kSegment = 4 * kMiB;

std::string resumes(const std::string& outcome, const std::string& to_dc = "dc-b") {
  return "streamedge_origin_resumes_total{group=\"main\",from_dc=\"dc-a\",to_dc=\"" + to_dc +
         "\",outcome=\"" + outcome + "\"}";
}

// "bytes=N-|<If-Match>|<If-Unmodified-Since>" → N, or -1.
long long rangeStart(const std::string& line) {
  if (line.rfind("bytes=", 0) != 0) return -1;
  return std::strtoll(line.c_str() + 6, nullptr, 10);
}

class ResumeScenarioTest : public TwoDcScenarioTest {
 protected:
  HttpResponse get(const std::string& target) {
    return testsupport::httpGet(proxy_->http_port, target, {}, 30s);
  }

  // `clients` viewers at once on `target`; every body must be simBody(path, size).
  testsupport::HerdResult herd(const std::string& path, const std::string& query, int clients) {
    testsupport::HerdOptions options;
    options.port = proxy_->http_port;
    options.target = path + query;
    options.clients = clients;
    options.timeout = 60s;
    options.expect_body_path = path;
    options.expect_body_size = kSegment;
    return testsupport::runHerd(options);
  }
};

TEST_F(ResumeScenarioTest, PrimaryResetAfterOneMegabyteIsResumedForEveryCoalescedViewer) {
  startProxy();
  const std::string path = "/obj/rs/reset.ts";
  // The primary resets after exactly 1 MiB; both send at 8 MB/s so the herd joins the fill.
  ASSERT_TRUE(testsupport::simFaultWith(primary_->port, path, "reset", "after=1048576"));
  const std::string query = "?size=4194304&rate=8000000";
  const testsupport::HerdResult result = herd(path, query, 51);
  ASSERT_EQ(result.ok, 51) << result.firstError() << "\n" << log();
  EXPECT_GE(result.x_cache.count("COALESCED") ? result.x_cache.at("COALESCED") : 0, 1)
      << result.summary();

  EXPECT_EQ(testsupport::simCount(primary_->port, path), 1);
  EXPECT_EQ(testsupport::simCount(secondary_->port, path), 1);
  const std::vector<std::string> ranges = testsupport::simRanges(secondary_->port, path);
  ASSERT_EQ(ranges.size(), 1u);
  EXPECT_EQ(ranges[0], "bytes=1048576-|" + testsupport::simEtag(path, kSegment) + "|");
  EXPECT_TRUE(testsupport::simRanges(primary_->port, path).empty());

  // Stored whole: the next viewer is a hit with the same bytes, no origin asked.
  HttpResponse again = get(path + query);
  ASSERT_TRUE(again.ok()) << again.error;
  EXPECT_EQ(again.header("X-Cache"), "HIT");
  EXPECT_EQ(again.body, testsupport::simBody(path, kSegment));
  EXPECT_EQ(testsupport::simCount(primary_->port, path), 1);

  const std::string m = metrics();
  EXPECT_EQ(sample(m, resumes("ok")), 1.0) << m;
  EXPECT_EQ(sample(m, resumes("validator_mismatch")), std::nullopt);
  const std::string status = testsupport::httpGet(proxy_->admin_port, "/status").body;
  EXPECT_NE(status.find("\"resumes\":{\"ok\":1}"), std::string::npos) << status;
  EXPECT_NE(proxy_->process.log().find("resume of /obj/rs/reset.ts (group main) from a (dc dc-a) "
                                       "to b (dc dc-b) at byte 1048576: ok"),
            std::string::npos)
      << log();
}

TEST_F(ResumeScenarioTest, RateCollapseBelowMinRateIsResumedForEveryCoalescedViewer) {
  TwoDcConfig config;
  config.group_extra = "min_rate = \"64KiB\"\nmin_rate_window = \"1s\"\n";
  startProxy(config);
  const std::string path = "/obj/rs/slow.ts";
  // 1 MiB at once, then 2 KB/s: far below min_rate, yet never a read timeout.
  ASSERT_TRUE(testsupport::simFaultWith(primary_->port, path, "slow", "after=1048576&rate=2000"));
  const auto started = std::chrono::steady_clock::now();
  const testsupport::HerdResult result = herd(path, "?size=4194304", 51);
  ASSERT_EQ(result.ok, 51) << result.firstError() << "\n" << log();
  EXPECT_LT(std::chrono::steady_clock::now() - started, 8s) << "the rate floor, not the read timeout";

  EXPECT_EQ(testsupport::simCount(primary_->port, path), 1);
  const std::vector<std::string> ranges = testsupport::simRanges(secondary_->port, path);
  ASSERT_EQ(ranges.size(), 1u);
  // From exactly the bytes delivered: 1 MiB plus whatever trickled in before the floor tripped.
  const long long start = rangeStart(ranges[0]);
  EXPECT_GE(start, static_cast<long long>(kMiB)) << ranges[0];
  EXPECT_LT(start, static_cast<long long>(kMiB) + 20000) << ranges[0];
  EXPECT_NE(ranges[0].find("|" + testsupport::simEtag(path, kSegment) + "|"), std::string::npos);
  EXPECT_EQ(sample(metrics(), resumes("ok")), 1.0);
  EXPECT_EQ(get(path + "?size=4194304").header("X-Cache"), "HIT");
}

TEST_F(ResumeScenarioTest, StalledPrimaryIsResumedAfterTheReadTimeout) {
  TwoDcConfig config;
  config.primary_extra = "  read_timeout = \"1s\"\n";
  startProxy(config);
  const std::string path = "/obj/rs/stall.ts";
  ASSERT_TRUE(testsupport::simFaultWith(primary_->port, path, "stall", "after=1048576"));
  HttpResponse r = get(path + "?size=4194304");
  ASSERT_TRUE(r.ok()) << r.error << "\n" << log();
  EXPECT_EQ(r.body, testsupport::simBody(path, kSegment));
  const std::vector<std::string> ranges = testsupport::simRanges(secondary_->port, path);
  ASSERT_EQ(ranges.size(), 1u);
  EXPECT_EQ(rangeStart(ranges[0]), static_cast<long long>(kMiB));
}

TEST_F(ResumeScenarioTest, OtherValidatorsAtTheSecondaryAbortTheFillAndStoreNothing) {
  startProxy();
  const std::string path = "/obj/rs/etag.ts";
  ASSERT_TRUE(testsupport::simFaultWith(primary_->port, path, "reset", "after=1048576"));
  // dc-b holds another version and honours If-Match: 412.
  ASSERT_TRUE(testsupport::simFault(secondary_->port, path, "etag"));
  HttpResponse cut = get(path + "?size=4194304");
  EXPECT_EQ(cut.status, 200);
  EXPECT_TRUE(cut.truncated) << "a cut connection, never a short body presented as whole";
  EXPECT_LT(cut.body_bytes, kSegment);
  EXPECT_EQ(cut.body, testsupport::simBody(path, kSegment).substr(0, cut.body_bytes))
      << "the part the viewer got is the first version's";
  EXPECT_EQ(testsupport::simRanges(secondary_->port, path).size(), 1u);
  EXPECT_EQ(sample(metrics(), resumes("precondition_failed")), 1.0);

  // Nothing stored: the next viewer goes to the origin again and gets it whole.
  HttpResponse next = get(path + "?size=4194304");
  ASSERT_TRUE(next.ok()) << next.error;
  EXPECT_EQ(next.header("X-Cache"), "MISS");
  EXPECT_EQ(next.body, testsupport::simBody(path, kSegment));
  EXPECT_EQ(testsupport::simCount(primary_->port, path), 2);
}

TEST_F(ResumeScenarioTest, A206OfAnotherVersionIsNeverSpliced) {
  startProxy();
  const std::string path = "/obj/rs/mismatch.ts";
  ASSERT_TRUE(testsupport::simFaultWith(primary_->port, path, "reset", "after=1048576"));
  // dc-b ignores If-Match and answers a 206 of its own version.
  ASSERT_TRUE(testsupport::simFaultWith(secondary_->port, path, "etag", "preconditions=0"));
  const testsupport::HerdResult result = herd(path, "?size=4194304&rate=8000000", 10);
  EXPECT_EQ(result.ok, 0) << result.summary();
  for (const auto& c : result.results) EXPECT_LT(c.body_bytes, kSegment);
  EXPECT_EQ(sample(metrics(), resumes("validator_mismatch")), 1.0);
  HttpResponse next = get(path + "?size=4194304&rate=8000000");
  ASSERT_TRUE(next.ok()) << next.error;
  EXPECT_EQ(next.header("X-Cache"), "MISS");
  EXPECT_EQ(next.body, testsupport::simBody(path, kSegment));
}

TEST_F(ResumeScenarioTest, SecondaryWithoutRangeSupportAbortsAndStoresNothing) {
  startProxy();
  const std::string path = "/obj/rs/norange.ts";
  ASSERT_TRUE(testsupport::simFaultWith(primary_->port, path, "reset", "after=1048576"));
  ASSERT_TRUE(testsupport::simFault(secondary_->port, path, "noranges"));
  HttpResponse cut = get(path + "?size=4194304");
  EXPECT_TRUE(cut.truncated);
  EXPECT_LT(cut.body_bytes, kSegment);
  EXPECT_EQ(sample(metrics(), resumes("no_range")), 1.0);
  HttpResponse next = get(path + "?size=4194304");
  ASSERT_TRUE(next.ok()) << next.error;
  EXPECT_EQ(next.header("X-Cache"), "MISS");
  EXPECT_EQ(testsupport::simCount(primary_->port, path), 2);
}

TEST_F(ResumeScenarioTest, AnswerWithoutValidatorsIsNotResumed) {
  startProxy();
  const std::string path = "/obj/rs/novalidator.ts";
  ASSERT_TRUE(testsupport::simFaultWith(primary_->port, path, "reset", "after=1048576"));
  HttpResponse cut = get(path + "?size=4194304&etag=0&lm=0");
  EXPECT_TRUE(cut.truncated);
  EXPECT_EQ(testsupport::simCount(secondary_->port, path), 0);
  const std::string m = metrics();
  EXPECT_EQ(sample(m, resumes("not_resumable", "")), 1.0) << m;
}

TEST_F(ResumeScenarioTest, ChunkedOriginalGuardedByLastModifiedIsResumed) {
  startProxy();
  const std::string path = "/obj/rs/chunked.ts";
  ASSERT_TRUE(testsupport::simFaultWith(primary_->port, path, "reset", "after=1048576"));
  // No ETag and no length: Last-Modified guards, the 206's Content-Range tells the total.
  HttpResponse r = get(path + "?size=4194304&chunked=1&etag=0");
  ASSERT_TRUE(r.ok()) << r.error << "\n" << log();
  EXPECT_EQ(r.body, testsupport::simBody(path, kSegment));
  const std::vector<std::string> ranges = testsupport::simRanges(secondary_->port, path);
  ASSERT_EQ(ranges.size(), 1u);
  EXPECT_EQ(ranges[0], "bytes=1048576-||" + std::string(testsupport::kSimLastModified));
  EXPECT_EQ(get(path + "?size=4194304&chunked=1&etag=0").header("X-Cache"), "HIT");
}

TEST_F(ResumeScenarioTest, PassedWindowedAnswerIsResumed) {
  // An uncacheable answer streams through a bounded window (512 KiB here, so the origin is
  // paused and resumed for the reader as it goes); it resumes all the same.
  TwoDcConfig config;
  config.ram_extra = "fill_window = \"512KiB\"\n";
  startProxy(config);
  const std::string path = "/obj/rs/pass.ts";
  ASSERT_TRUE(testsupport::simFaultWith(primary_->port, path, "reset", "after=1048576"));
  testsupport::HttpConnection conn;
  ASSERT_TRUE(conn.connect(proxy_->http_port));
  std::string body;
  conn.setBodySink([&](std::string_view part) {
    body.append(part);
    std::this_thread::sleep_for(1ms);  // a reader a little slower than loopback
  });
  HttpResponse r = conn.request("GET", path + "?size=4194304&cc=no-store", {}, 60s);
  ASSERT_TRUE(r.ok()) << r.error << " after " << r.body_bytes << " bytes\n" << log();
  EXPECT_EQ(r.body_bytes, kSegment);
  EXPECT_EQ(body, testsupport::simBody(path, kSegment));
  const std::vector<std::string> ranges = testsupport::simRanges(secondary_->port, path);
  ASSERT_EQ(ranges.size(), 1u);
  // A paused origin may not have taken all of its 1 MiB before its reset discarded the rest.
  EXPECT_GT(rangeStart(ranges[0]), 0);
  EXPECT_LE(rangeStart(ranges[0]), static_cast<long long>(kMiB));
  EXPECT_EQ(sample(metrics(), resumes("ok")), 1.0);
}

}  // namespace
}  // namespace streamedge::scenario
