// Privacy with the real binary (2 workers), the origin simulator and an SSD store:
// - tenant isolation: two vhosts share a path whose bodies differ at the origin; each always
//   gets its own object, during a herd on both at once, as hits, and from the SSD after a
//   restart;
// - retention: objects of a vhost with retention = "2s" leave both tiers by themselves (the
//   sweep, counted per vhost and tier), the next request is a miss, also after a restart, while
//   another vhost's objects stay hits;
// - log retention: old rotated access-log files are deleted at start and on SIGUSR1, never the
//   live file, young rotations or other files.
#include <fcntl.h>
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <fstream>
#include <string>
#include <thread>

#include "tests/scenario/scenario_env.h"
#include "tests/support/herd.h"

namespace streamedge::scenario {
namespace {

using namespace std::chrono_literals;

class PrivacyScenarioTest : public ScenarioTest {
 protected:
  void SetUp() override {
    std::string error;
    sim_ = testsupport::startOriginSim({"--name", "dc-a"}, &error);
    ASSERT_TRUE(sim_) << error;
    dir_.emplace("streamedge-privacy");
    store_ = dir_->file("store");
    access_log_ = dir_->file("access.log");
  }

  // Vhost "tv" (tv.example) fetches from the simulator under /obj/tv, "radio" (radio.example)
  // under /obj/radio: the same viewer path has different bodies at the origin.
  std::string config(const std::string& tv_extra = "", const std::string& top_extra = "") const {
    const std::string sim = "http://127.0.0.1:" + std::to_string(simPort());
    return "[server]\nworkers = 2\n\n"
           "[admin]\naddress = \"127.0.0.1:0\"\n\n"
           "[[listener]]\naddress = \"127.0.0.1:0\"\n\n"
           "[cache.ram]\nsize = \"64MiB\"\n\n"
           "[cache.ssd]\npath = \"" + store_ +
           "\"\nsize = \"16MiB\"\nregion_size = \"1MiB\"\nencrypt = false\nadmission = \"fill\"\n\n"
           "[log]\naccess_log = \"" + access_log_ + "\"\n\n" + top_extra + "\n"
           "[[origin_group]]\nname = \"tv\"\n"
           "  [[origin_group.origin]]\n  url = \"" + sim + "/obj/tv\"\n  dc = \"dc-a\"\n\n"
           "[[origin_group]]\nname = \"radio\"\n"
           "  [[origin_group.origin]]\n  url = \"" + sim + "/obj/radio\"\n  dc = \"dc-a\"\n\n"
           "[[vhost]]\nname = \"tv\"\nhostnames = [\"tv.example\"]\n" + tv_extra +
           "  [[vhost.route]]\n  prefix = \"/\"\n  origin_group = \"tv\"\n\n"
           "[[vhost]]\nname = \"radio\"\nhostnames = [\"radio.example\"]\n"
           "  [[vhost.route]]\n  prefix = \"/\"\n  origin_group = \"radio\"\n";
  }

  void startProxy(const std::string& text) {
    proxy_.reset();
    std::string error;
    proxy_ = testsupport::startStreamedge(text, &error);
    ASSERT_TRUE(proxy_) << error;
    std::string status;
    for (int attempt = 0; attempt < 200; ++attempt) {  // ≤ 10 s for the index rebuild
      status = testsupport::httpGet(proxy_->admin_port, "/status").body;
      if (status.find("\"rebuilding\":false") != std::string::npos) return;
      std::this_thread::sleep_for(50ms);
    }
    FAIL() << "the SSD index was not rebuilt within 10 s: " << status;
  }

  std::string metrics() { return testsupport::httpGet(proxy_->admin_port, "/metrics").body; }
  HttpResponse getOn(const std::string& host, const std::string& target) {
    return get(target, {{"Host", host}});
  }
  // Waits (≤ 10 s) until the SSD index holds at least `n` objects.
  bool waitForSsdObjects(double n) {
    double on_ssd = 0;
    for (int i = 0; i < 100 && on_ssd < n; ++i) {
      on_ssd = metricValue(metrics(), "streamedge_cache_objects", "tier=\"ssd\"");
      if (on_ssd < n) std::this_thread::sleep_for(100ms);
    }
    return on_ssd >= n;
  }
  double expired(const std::string& vhost, const std::string& tier) {
    return sample(metrics(), "streamedge_retention_expired_objects_total{vhost=\"" + vhost +
                                 "\",tier=\"" + tier + "\"}")
        .value_or(0);
  }

  std::string store_;
};

TEST_F(PrivacyScenarioTest, TwoVhostsSharingAPathNeverShareAnObject) {
  ASSERT_NO_FATAL_FAILURE(startProxy(config()));
  const std::string path = "/iso/seg_1.ts";
  const std::string target = path + "?size=30000&delay_ms=300";  // both fills overlap
  const std::string tv_body = testsupport::simBody("/obj/tv" + path, 30000);
  const std::string radio_body = testsupport::simBody("/obj/radio" + path, 30000);
  ASSERT_TRUE(tv_body != radio_body);

  // A herd on both vhosts at once: every viewer gets its own vhost's bytes.
  auto herdOn = [&](const std::string& host, const std::string& origin_path) {
    testsupport::HerdOptions o;
    o.port = port();
    o.target = target;
    o.host_header = host;
    o.clients = 20;
    o.timeout = 20s;
    o.expect_body_path = origin_path;
    o.expect_body_size = 30000;
    return testsupport::runHerd(o);
  };
  testsupport::HerdResult tv_herd, radio_herd;
  std::thread tv_thread([&] { tv_herd = herdOn("tv.example", "/obj/tv" + path); });
  std::thread radio_thread([&] { radio_herd = herdOn("radio.example", "/obj/radio" + path); });
  tv_thread.join();
  radio_thread.join();
  EXPECT_EQ(tv_herd.ok, 20) << tv_herd.firstError();
  EXPECT_EQ(radio_herd.ok, 20) << radio_herd.firstError();
  EXPECT_EQ(originCount("/obj/tv" + path), 1);  // one fill per vhost, coalesced
  EXPECT_EQ(originCount("/obj/radio" + path), 1);

  // Hits on both workers (fresh connections), each its own.
  for (int i = 0; i < 4; ++i) {
    HttpResponse tv = getOn("tv.example", target);
    HttpResponse radio = getOn("radio.example", target);
    EXPECT_EQ(tv.header("X-Cache"), "HIT");
    EXPECT_EQ(radio.header("X-Cache"), "HIT");
    EXPECT_TRUE(tv.body == tv_body) << tv.body.substr(0, 60);
    EXPECT_TRUE(radio.body == radio_body) << radio.body.substr(0, 60);
  }

  // From the SSD after a restart (RAM is empty then): still each its own.
  ASSERT_TRUE(waitForSsdObjects(2)) << proxyLog();
  std::this_thread::sleep_for(1500ms);  // the idle sync puts the open region on the device
  ASSERT_EQ(proxy_->process.stop(15s), 0) << proxyLog();
  ASSERT_NO_FATAL_FAILURE(startProxy(config()));
  HttpResponse radio = getOn("radio.example", target);  // radio first this time
  HttpResponse tv = getOn("tv.example", target);
  EXPECT_EQ(radio.header("X-Cache"), "HIT") << proxyLog();
  EXPECT_EQ(tv.header("X-Cache"), "HIT");
  EXPECT_TRUE(radio.body == radio_body) << radio.body.substr(0, 60);
  EXPECT_TRUE(tv.body == tv_body) << tv.body.substr(0, 60);
  EXPECT_EQ(originCount("/obj/tv" + path), 1);
  EXPECT_EQ(originCount("/obj/radio" + path), 1);
}

TEST_F(PrivacyScenarioTest, ObjectsPastTheirVhostsRetentionLeaveBothTiersByThemselves) {
  ASSERT_NO_FATAL_FAILURE(startProxy(config("retention = \"2s\"\n")));
  // Fresh for an hour and usable stale for a day: only retention can remove them.
  const std::string target =
      "/ret/a.ts?size=5000&cc=max-age%3D3600,stale-while-revalidate%3D86400,stale-if-error%3D86400";
  ASSERT_EQ(getOn("tv.example", target).header("X-Cache"), "MISS");
  ASSERT_EQ(getOn("radio.example", target).header("X-Cache"), "MISS");
  EXPECT_EQ(getOn("tv.example", target).header("X-Cache"), "HIT");
  ASSERT_TRUE(waitForSsdObjects(2)) << proxyLog();

  // Nobody asks: the sweep removes tv's object from RAM and the SSD within a few seconds.
  bool gone = false;
  for (int i = 0; i < 100 && !gone; ++i) {  // ≤ 10 s
    gone = expired("tv", "ram") >= 1 && expired("tv", "ssd") >= 1;
    if (!gone) std::this_thread::sleep_for(100ms);
  }
  ASSERT_TRUE(gone) << metrics();
  EXPECT_EQ(expired("radio", "ram") + expired("radio", "ssd"), 0);
  const long tv_fetches = originCount("/obj/tv/ret/a.ts");
  EXPECT_EQ(getOn("tv.example", target).header("X-Cache"), "MISS");
  EXPECT_EQ(originCount("/obj/tv/ret/a.ts"), tv_fetches + 1);
  EXPECT_EQ(getOn("radio.example", target).header("X-Cache"), "HIT");

  // The new copy is on the SSD; stopped, and started again after its retention passed: it is
  // not served from the SSD.
  ASSERT_TRUE(waitForSsdObjects(2)) << proxyLog();
  std::this_thread::sleep_for(1500ms);
  ASSERT_EQ(proxy_->process.stop(15s), 0) << proxyLog();
  std::this_thread::sleep_for(2500ms);
  ASSERT_NO_FATAL_FAILURE(startProxy(config("retention = \"2s\"\n")));
  EXPECT_EQ(getOn("tv.example", target).header("X-Cache"), "MISS") << proxyLog();
  EXPECT_EQ(originCount("/obj/tv/ret/a.ts"), tv_fetches + 2);
  EXPECT_EQ(getOn("radio.example", target).header("X-Cache"), "HIT");
}

TEST_F(PrivacyScenarioTest, AReloadThatSetsRetentionAppliesToStoredObjects) {
  ASSERT_NO_FATAL_FAILURE(startProxy(config()));
  const std::string target = "/ret/reload.ts?size=3000&cc=max-age%3D3600";
  ASSERT_EQ(getOn("tv.example", target).header("X-Cache"), "MISS");
  std::this_thread::sleep_for(1200ms);
  EXPECT_EQ(getOn("tv.example", target).header("X-Cache"), "HIT");
  ASSERT_TRUE(proxy_->rewriteConfig(config("retention = \"1s\"\n")));
  const size_t from = proxy_->process.logSize();
  ASSERT_TRUE(proxy_->process.signal(SIGHUP));
  ASSERT_TRUE(proxy_->process.waitForLine("reloaded", 10s, from)) << proxyLog();
  EXPECT_EQ(getOn("tv.example", target).header("X-Cache"), "MISS");
}

void writeWithAge(const std::string& path, std::chrono::seconds age) {
  { std::ofstream(path) << "{\"old\":1}\n"; }
  const auto t = std::chrono::system_clock::now() - age;
  const auto s = std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
  timespec times[2] = {{static_cast<time_t>(s), 0}, {static_cast<time_t>(s), 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), times, 0), 0);
}

bool fileExists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

TEST_F(PrivacyScenarioTest, OldRotatedLogsAreDeletedAtStartAndOnSigusr1) {
  ASSERT_NO_FATAL_FAILURE(writeWithAge(access_log_ + ".1", 30min));
  ASSERT_NO_FATAL_FAILURE(writeWithAge(access_log_ + ".2.gz", 3h));
  ASSERT_NO_FATAL_FAILURE(writeWithAge(access_log_ + "-20240101", 48h));
  ASSERT_NO_FATAL_FAILURE(writeWithAge(dir_->file("unrelated.log.1"), 48h));
  ASSERT_NO_FATAL_FAILURE(startProxy(config("", "[privacy]\nlog_retention = \"1h\"\n")));
  EXPECT_TRUE(fileExists(access_log_ + ".1"));  // younger than an hour
  EXPECT_FALSE(fileExists(access_log_ + ".2.gz"));
  EXPECT_FALSE(fileExists(access_log_ + "-20240101"));
  EXPECT_TRUE(fileExists(dir_->file("unrelated.log.1")));
  EXPECT_EQ(sample(metrics(), "streamedge_log_files_removed_total{log=\"access\"}").value_or(-1), 2);

  // logrotate moved the live file away long ago; the edge is told to reopen.
  ASSERT_EQ(getOn("tv.example", "/log/x.ts?size=10").status, 200);
  ASSERT_NO_FATAL_FAILURE(writeWithAge(access_log_ + ".3", 5h));
  const size_t from = proxy_->process.logSize();
  ASSERT_TRUE(proxy_->process.signal(SIGUSR1));
  ASSERT_TRUE(proxy_->process.waitForLine("access log reopened", 10s, from)) << proxyLog();
  bool removed = false;
  for (int i = 0; i < 50 && !removed; ++i) {  // ≤ 5 s
    removed = !fileExists(access_log_ + ".3");
    if (!removed) std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(removed);
  EXPECT_TRUE(fileExists(access_log_));  // never the live file
  EXPECT_TRUE(fileExists(access_log_ + ".1"));
  EXPECT_EQ(sample(metrics(), "streamedge_log_files_removed_total{log=\"access\"}").value_or(-1), 3);
}

}  // namespace
}  // namespace streamedge::scenario
