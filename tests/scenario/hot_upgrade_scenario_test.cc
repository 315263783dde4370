// Hot binary upgrade (SIGUSR2) with the real binary, under steady load from keep-alive clients
// and clients that open a new connection per request:
//   - the binary file is replaced (as a package upgrade does) and SIGUSR2 starts the new one
//     from the path: a new pid serves on the same ports, the old one exits 0, no connection is
//     refused and no request fails, and objects stored on the SSD before are SSD hits after,
//     the index loaded from the checkpoint the old process wrote (no scan);
//   - a config that fails validation: the new process exits with the reason, the old one logs
//     it and serves on, its SSD store untouched;
//   - a binary that exits at once, one that never becomes ready (timeout; a second SIGUSR2
//     meanwhile is refused) and one that dies after the store was handed over: the old one
//     serves on each time, and its SSD store is back (warm) after the last.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/scenario/scenario_env.h"

namespace streamedge::scenario {
namespace {

using namespace std::chrono_literals;
using testsupport::simBody;

constexpr size_t kObjectBytes = 100000;
constexpr int kObjects = 30;  // 3 MB against a 1 MiB RAM tier: most of them spill to the SSD

// The integer after `"key":` in a JSON text, or -1.
long long jsonNumber(const std::string& json, const std::string& key) {
  const std::string needle = "\"" + key + "\":";
  const size_t pos = json.find(needle);
  if (pos == std::string::npos) return -1;
  return std::strtoll(json.c_str() + pos + needle.size(), nullptr, 10);
}

bool copyFile(const std::string& from, const std::string& to) {
  const std::string bytes = testsupport::readFile(from);
  return !bytes.empty() && testsupport::writeFile(to, bytes) && ::chmod(to.c_str(), 0755) == 0;
}

// Steady load on one port: keep-alive clients and clients that connect for every request, each
// bounded (20000 requests, 60 s) and stopped by stop(). A keep-alive connection the server
// closed between two requests (no byte of an answer) is what every HTTP client retries on a
// new connection (RFC 9112 §9.3.1): retried once, counted, and only a failure of the retry
// fails. Anything else that is not a whole, byte-exact 200 fails.
class Load {
 public:
  Load(uint16_t port, int keep_alive, int fresh) {
    for (int i = 0; i < keep_alive + fresh; ++i) {
      threads_.emplace_back([this, port, i, keep_alive] { client(port, i, i < keep_alive); });
    }
  }
  ~Load() { stop(); }

  void stop() {
    stop_ = true;
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

  std::atomic<int> ok{0};
  std::atomic<int> failed{0};
  std::atomic<int> refused{0};
  std::atomic<int> retried{0};
  std::string firstError() {
    std::lock_guard<std::mutex> lock(mu_);
    return first_error_;
  }

 private:
  void fail(const std::string& what) {
    if (failed++ == 0) {
      std::lock_guard<std::mutex> lock(mu_);
      first_error_ = what;
    }
  }

  void client(uint16_t port, int index, bool keep_alive) {
    testsupport::HttpConnection conn;
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    for (int i = 0; i < 20000 && !stop_ && std::chrono::steady_clock::now() < deadline; ++i) {
      std::this_thread::sleep_for(2ms);
      if (!keep_alive) conn.close();
      const std::string path = "/obj/hu/load-" + std::to_string(index) + "-" + std::to_string(i % 10);
      for (int attempt = 0; attempt < 2; ++attempt) {
        if (!conn.isOpen() && !conn.connect(port, 2s)) {
          ++refused;
          break;
        }
        const bool reused = keep_alive && attempt == 0;
        const HttpResponse r = conn.request("GET", path + "?size=20000", {}, 10s);
        if (r.ok() && r.status == 200 && r.body == simBody(path, 20000)) {
          ++ok;
          break;
        }
        if (reused && r.status == 0 && r.body_bytes == 0 && !r.truncated && r.closed) {
          ++retried;  // closed between two requests: once more on a new connection
          conn.close();
          continue;
        }
        fail(std::string(keep_alive ? "keep-alive" : "new connection") + " " + path + ": status " +
             std::to_string(r.status) + " " + r.error + (r.truncated ? " truncated" : "") +
             (r.closed ? " closed" : ""));
        conn.close();
        break;
      }
    }
  }

  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::string first_error_;
  std::vector<std::thread> threads_;
};

class HotUpgradeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The new process is a child of the old one; when the old one exits it becomes ours, so
    // that the test can stop it and read its exit status.
    ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    std::string error;
    sim_ = testsupport::startOriginSim({"--name", "dc-a"}, &error);
    ASSERT_TRUE(sim_) << error;
    store_ = dir_.file("store");
    key_ = dir_.file("store.key");
    ASSERT_TRUE(testsupport::writeFile(key_, "00112233445566778899aabbccddeeff"
                                             "0123456789abcdef0123456789abcdef\n"));
  }

  void TearDown() override {
    if (new_pid_ > 0) {
      // The process that took over: a graceful stop must exit 0.
      ::kill(new_pid_, SIGTERM);
      int status = -1;
      const auto deadline = std::chrono::steady_clock::now() + 15s;
      pid_t r = 0;
      while ((r = ::waitpid(new_pid_, &status, WNOHANG)) == 0 &&
             std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(20ms);
      }
      if (r == 0) {
        ::kill(new_pid_, SIGKILL);
        ::waitpid(new_pid_, &status, 0);
        ADD_FAILURE() << "the new process did not stop within 15 s";
      } else {
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
      }
    } else if (proxy_ && proxy_->process.running()) {
      EXPECT_EQ(proxy_->process.stop(15s), 0) << proxy_->process.logTail(80);
    }
    if (proxy_) {
      const std::string log = proxy_->process.log();
      for (const char* bad : {"runtime error", "Sanitizer", "Segmentation"}) {
        EXPECT_EQ(log.find(bad), std::string::npos) << bad << " in the proxy log:\n" << log;
      }
    }
  }

  std::string config(const std::string& server_extra = "", const std::string& access_log = "",
                     const std::string& ssd_extra = "") const {
    std::string c = scenarioConfig(sim_->port, access_log.empty() ? dir_.file("access.log") : access_log,
                                   "", "1MiB",
                                   "drain_timeout = \"5s\"\n" +
                                       (server_extra.find("upgrade_timeout") == std::string::npos
                                            ? std::string("upgrade_timeout = \"20s\"\n")
                                            : std::string()) +
                                       server_extra);
    c += "\n[cache.ssd]\npath = \"" + store_ + "\"\nsize = \"16MiB\"\nregion_size = \"1MiB\"\n"
         "key_file = \"" + key_ + "\"\n" + ssd_extra;
    return c;
  }

  void start(const std::string& text, const std::string& binary = STREAMEDGE_BINARY) {
    std::string error;
    proxy_ = testsupport::startStreamedgeFrom(binary, text, &error);
    ASSERT_TRUE(proxy_) << error;
    ASSERT_TRUE(waitUntilRebuilt());
  }

  bool waitUntilRebuilt() {
    std::string s;
    for (int attempt = 0; attempt < 200; ++attempt) {  // ≤ 10 s
      s = status();
      if (s.find("\"rebuilding\":false") != std::string::npos) return true;
      std::this_thread::sleep_for(50ms);
    }
    ADD_FAILURE() << "the SSD index was not rebuilt within 10 s: " << s;
    return false;
  }

  std::string status() const { return testsupport::httpGet(proxy_->admin_port, "/status", {}, 5s).body; }
  std::string metrics() const { return testsupport::httpGet(proxy_->admin_port, "/metrics", {}, 5s).body; }

  static std::string target(const std::string& prefix, int i) {
    return prefix + std::to_string(i) + ".ts?size=" + std::to_string(kObjectBytes);
  }
  static std::string path(const std::string& prefix, int i) { return prefix + std::to_string(i) + ".ts"; }

  // Fetches every object once and waits (≤ 10 s) until at least `min_on_ssd` are on the device.
  double fillAndSpill(const std::string& prefix, double min_on_ssd) {
    for (int i = 0; i < kObjects; ++i) {
      const HttpResponse r = testsupport::httpGet(proxy_->http_port, target(prefix, i), {}, 15s);
      EXPECT_EQ(r.status, 200) << r.error;
      EXPECT_TRUE(r.body == simBody(path(prefix, i), kObjectBytes));
    }
    double on_ssd = -1;
    for (int attempt = 0; attempt < 100; ++attempt) {
      const std::string m = metrics();
      on_ssd = metricValue(m, "streamedge_cache_objects", "tier=\"ssd\"");
      if (on_ssd >= min_on_ssd && metricValue(m, "streamedge_ssd_write_seconds_count") >= 1) break;
      std::this_thread::sleep_for(100ms);
    }
    std::this_thread::sleep_for(1500ms);  // past the writer's 1 s idle sync
    return on_ssd;
  }

  // Requests every object again; how many were served without a new origin fetch (each had
  // been fetched once). Every body must be exact.
  int refetchServedFromCache(const std::string& prefix) {
    int cached = 0;
    for (int i = 0; i < kObjects; ++i) {
      const HttpResponse r = testsupport::httpGet(proxy_->http_port, target(prefix, i), {}, 15s);
      EXPECT_EQ(r.status, 200) << r.error;
      EXPECT_TRUE(r.body == simBody(path(prefix, i), kObjectBytes)) << "object " << i;
      if (testsupport::simCount(sim_->port, path(prefix, i)) == 1) ++cached;
    }
    return cached;
  }

  // Sends SIGUSR2 and waits (≤ 30 s) for the line that ends the attempt; returns it.
  std::string upgradeAndWaitFor(const std::string& line, size_t* from_out = nullptr) {
    const size_t from = proxy_->process.logSize();
    if (from_out) *from_out = from;
    EXPECT_TRUE(proxy_->process.signal(SIGUSR2));
    const auto found = proxy_->process.waitForLine(line, 30s, from);
    EXPECT_TRUE(found) << "no \"" << line << "\" in the log:\n" << proxy_->process.logTail(60);
    return found.value_or("");
  }

  void reload(const std::string& text) {
    ASSERT_TRUE(proxy_->rewriteConfig(text));
    const size_t from = proxy_->process.logSize();
    ASSERT_TRUE(proxy_->process.signal(SIGHUP));
    ASSERT_TRUE(proxy_->process.waitForLine("streamedge: reloaded", 10s, from)) << proxy_->process.logTail();
  }

  testsupport::TempDir dir_{"streamedge-upgrade"};
  std::optional<testsupport::OriginSimProcess> sim_;
  std::optional<testsupport::StreamedgeProcess> proxy_;
  std::string store_;
  std::string key_;
  pid_t new_pid_ = -1;
};

TEST_F(HotUpgradeTest, UnderLoadANewBinaryTakesOverWithNothingLostAndTheSsdStaysWarm) {
  // The binary is started from a path of its own, then replaced at that path the way a package
  // upgrade does it (a new file renamed over the old one): the upgrade must start the new
  // file, not /proc/self/exe (which then names the deleted old one).
  const std::string binary = dir_.file("streamedge");
  ASSERT_TRUE(copyFile(STREAMEDGE_BINARY, binary));
  ASSERT_NO_FATAL_FAILURE(start(config(), binary));
  const pid_t old_pid = proxy_->process.pid();
  const uint16_t http_port = proxy_->http_port;
  const double on_ssd = fillAndSpill("/obj/hu/s", 15);
  ASSERT_GE(on_ssd, 15) << proxy_->process.logTail();

  ASSERT_TRUE(copyFile(STREAMEDGE_BINARY, binary + ".new"));
  ASSERT_EQ(::rename((binary + ".new").c_str(), binary.c_str()), 0);

  Load load(http_port, 3, 2);
  std::this_thread::sleep_for(500ms);
  size_t from = 0;
  const std::string serving = upgradeAndWaitFor("streamedge: upgrade: serving as pid", &from);
  ASSERT_FALSE(serving.empty());
  // The old process drains and exits 0 (bounded: drain_timeout is 5 s).
  const std::optional<int> old_exit = proxy_->process.wait(20s);
  ASSERT_TRUE(old_exit) << "the old process did not exit: " << proxy_->process.logTail(60);
  EXPECT_EQ(*old_exit, 0) << proxy_->process.logTail(60);
  std::this_thread::sleep_for(500ms);  // the new process alone under the same load
  load.stop();

  const std::string s = status();
  new_pid_ = static_cast<pid_t>(jsonNumber(s, "pid"));
  ASSERT_GT(new_pid_, 0) << s;
  EXPECT_NE(new_pid_, old_pid);
  EXPECT_EQ(jsonNumber(s, "took_over_from"), old_pid) << s;
  EXPECT_NE(serving.find(std::to_string(new_pid_)), std::string::npos) << serving;
  // The new process runs the file now at the path (the old inode is gone with the old process).
  char exe[4096] = {};
  ASSERT_GT(::readlink(("/proc/" + std::to_string(new_pid_) + "/exe").c_str(), exe, sizeof exe - 1), 0);
  EXPECT_EQ(std::string(exe), binary);

  EXPECT_EQ(load.failed.load(), 0) << load.firstError() << "\n" << proxy_->process.logTail(60);
  EXPECT_EQ(load.refused.load(), 0);
  EXPECT_GT(load.ok.load(), 100);

  // The store came over warm: the checkpoint written at the hand-over, no scan of the device.
  EXPECT_NE(s.find("\"checkpoint_loaded\":true"), std::string::npos) << s;
  const std::string log = proxy_->process.log().substr(from);
  EXPECT_NE(log.find("SSD store closed"), std::string::npos) << log;
  EXPECT_NE(log.find("from the checkpoint"), std::string::npos) << log;
  EXPECT_NE(log.find("took over 2 socket(s)"), std::string::npos) << log;
  EXPECT_EQ(log.find("upgrade failed"), std::string::npos) << log;
  const std::string m = metrics();
  EXPECT_EQ(metricValue(m, "streamedge_upgrade_took_over"), 1) << m;
  EXPECT_EQ(metricValue(m, "streamedge_upgrade_in_progress"), 0) << m;
  EXPECT_EQ(metricValue(m, "streamedge_upgrades_failed_total"), 0) << m;
  const double hits_before = metricValue(metrics(), "streamedge_ssd_hits_total");
  EXPECT_GE(refetchServedFromCache("/obj/hu/s"), static_cast<int>(on_ssd)) << proxy_->process.logTail(40);
  EXPECT_GE(metricValue(metrics(), "streamedge_ssd_hits_total") - std::max(hits_before, 0.0), on_ssd - 1);
}

TEST_F(HotUpgradeTest, AConfigThatFailsValidationLeavesTheOldProcessServing) {
  ASSERT_NO_FATAL_FAILURE(start(config()));
  const pid_t old_pid = proxy_->process.pid();
  const double on_ssd = fillAndSpill("/obj/hu/c", 15);
  ASSERT_GE(on_ssd, 15);

  Load load(proxy_->http_port, 2, 2);
  std::this_thread::sleep_for(300ms);
  // The new process reads the same file (same arguments): now broken.
  std::string broken = config();
  broken.replace(broken.find("workers = 2"), 11, "workers = -3");
  ASSERT_TRUE(proxy_->rewriteConfig(broken));
  size_t from = 0;
  const std::string failed = upgradeAndWaitFor("streamedge: upgrade failed", &from);
  EXPECT_NE(failed.find("the config is invalid"), std::string::npos) << failed;
  EXPECT_NE(failed.find("server.workers"), std::string::npos) << failed;
  EXPECT_NE(failed.find("keeps serving"), std::string::npos) << failed;
  std::this_thread::sleep_for(300ms);
  load.stop();

  EXPECT_EQ(load.failed.load(), 0) << load.firstError();
  EXPECT_EQ(load.refused.load(), 0);
  EXPECT_GT(load.ok.load(), 50);
  ASSERT_TRUE(proxy_->process.running());
  const std::string s = status();
  EXPECT_EQ(jsonNumber(s, "pid"), old_pid) << s;
  EXPECT_NE(s.find("\"upgrade\":{\"state\":\"idle\",\"failed\":1,\"last_error\":"), std::string::npos) << s;
  const std::string m = metrics();
  EXPECT_EQ(metricValue(m, "streamedge_upgrades_failed_total"), 1) << m;
  EXPECT_EQ(metricValue(m, "streamedge_upgrade_took_over"), 0) << m;
  // The store was never asked for: untouched, still serving.
  EXPECT_EQ(proxy_->process.log().find("handing the SSD store", from), std::string::npos);
  EXPECT_GE(refetchServedFromCache("/obj/hu/c"), static_cast<int>(on_ssd));
  ASSERT_TRUE(proxy_->rewriteConfig(config()));
}

TEST_F(HotUpgradeTest, ANewBinaryThatFailsBeforeReadyLeavesTheOldServingWithItsStore) {
  ASSERT_NO_FATAL_FAILURE(start(config("upgrade_binary = \"/bin/false\"\n")));
  const pid_t old_pid = proxy_->process.pid();
  const double on_ssd = fillAndSpill("/obj/hu/f", 15);
  ASSERT_GE(on_ssd, 15);
  Load load(proxy_->http_port, 2, 2);
  std::this_thread::sleep_for(300ms);

  // 1. It exits at once.
  std::string line = upgradeAndWaitFor("streamedge: upgrade failed");
  EXPECT_NE(line.find("exited with status 1"), std::string::npos) << line;

  // 2. It never gets ready: stopped at the timeout; a second SIGUSR2 meanwhile is refused.
  const std::string hang = dir_.file("hang.sh");
  ASSERT_TRUE(testsupport::writeFile(hang, "#!/bin/sh\nexec sleep 30\n"));
  ASSERT_EQ(::chmod(hang.c_str(), 0755), 0);
  reload(config("upgrade_binary = \"" + hang + "\"\nupgrade_timeout = \"2s\"\n"));
  size_t from = proxy_->process.logSize();
  ASSERT_TRUE(proxy_->process.signal(SIGUSR2));
  ASSERT_TRUE(proxy_->process.waitForLine("streamedge: upgrade: started", 10s, from));
  ASSERT_TRUE(proxy_->process.signal(SIGUSR2));
  EXPECT_TRUE(proxy_->process.waitForLine("upgrade refused: an upgrade is in progress", 10s, from))
      << proxy_->process.logTail();
  const auto timed_out = proxy_->process.waitForLine("streamedge: upgrade failed", 20s, from);
  ASSERT_TRUE(timed_out) << proxy_->process.logTail();
  EXPECT_NE(timed_out->find("not ready within 2000 ms"), std::string::npos) << *timed_out;

  // 3. It takes the SSD store over, then dies (its access log cannot be opened): the old
  // process opens the store again, warm from the checkpoint written when it was closed.
  const std::string bad = dir_.file("bad.toml");
  ASSERT_TRUE(testsupport::writeFile(
      bad, config("", "/nonexistent-streamedge-dir/access.log", "rebuild = \"before_start\"\n")));
  const std::string dies = dir_.file("dies.sh");
  ASSERT_TRUE(testsupport::writeFile(dies, "#!/bin/sh\nexec " + std::string(STREAMEDGE_BINARY) +
                                               " -c " + bad + "\n"));
  ASSERT_EQ(::chmod(dies.c_str(), 0755), 0);
  reload(config("upgrade_binary = \"" + dies + "\"\n"));
  line = upgradeAndWaitFor("streamedge: upgrade failed", &from);
  EXPECT_NE(line.find("cannot open the access log"), std::string::npos) << line;
  EXPECT_NE(line.find("its SSD store is open again"), std::string::npos) << line;
  EXPECT_NE(proxy_->process.log().find("SSD store closed", from), std::string::npos);
  std::this_thread::sleep_for(300ms);
  load.stop();

  EXPECT_EQ(load.failed.load(), 0) << load.firstError() << "\n" << proxy_->process.logTail(60);
  EXPECT_EQ(load.refused.load(), 0);
  EXPECT_GT(load.ok.load(), 100);
  ASSERT_TRUE(proxy_->process.running());
  ASSERT_TRUE(waitUntilRebuilt());
  const std::string s = status();
  EXPECT_EQ(jsonNumber(s, "pid"), old_pid) << s;
  EXPECT_NE(s.find("\"failed\":3"), std::string::npos) << s;
  EXPECT_NE(s.find("\"checkpoint_loaded\":true"), std::string::npos) << s;
  EXPECT_GE(refetchServedFromCache("/obj/hu/f"), static_cast<int>(on_ssd)) << proxy_->process.logTail(40);
}

}  // namespace
}  // namespace streamedge::scenario
