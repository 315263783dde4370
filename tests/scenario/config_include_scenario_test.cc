// include = ["conf.d/*.toml"] on the real binary: a customer's vhost file added to the directory
// is served after a reload, a broken one is refused with its file and line while the running
// config goes on, and a removed one is gone after the next reload.
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "tests/scenario/scenario_env.h"

namespace streamedge::scenario {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

class ConfigIncludeScenarioTest : public ScenarioTest {
 protected:
  void SetUp() override {
    std::string error;
    sim_ = testsupport::startOriginSim({"--name", "dc-a"}, &error);
    ASSERT_TRUE(sim_) << error;
    dir_.emplace("streamedge-include");
    access_log_ = dir_->file("access.log");
    proxy_ = testsupport::startStreamedge(mainConfig(), &error);
    ASSERT_TRUE(proxy_) << error;
    confd_ = fs::path(proxy_->config_path).parent_path() / "conf.d";
    fs::create_directories(confd_);
  }
  std::string mainConfig() const {
    return "include = [\"conf.d/*.toml\"]\n" + scenarioConfig(simPort(), access_log_);
  }
  // Reloads and waits for the outcome line that follows this reload.
  bool reload(const std::string& expect) {
    const size_t from = proxy_->process.logSize();
    if (!proxy_->process.signal(SIGHUP)) return false;
    const bool seen = proxy_->process.waitForLine(expect, 10s, from).has_value();
    std::this_thread::sleep_for(300ms);  // the workers pick the snapshot up from their inbox
    return seen;
  }
  std::string cacheOf(const std::string& target) {
    return testsupport::httpGet(port(), target, {{"Host", "cust.example"}}, 10s).header("X-Cache");
  }

  fs::path confd_;
};

TEST_F(ConfigIncludeScenarioTest, CustomerFilesComeAndGoWithReloads) {
  // The catch-all vhost of the main file caches.
  EXPECT_EQ(cacheOf("/obj/inc/a.ts?size=100"), "MISS") << proxyLog();
  std::ofstream(confd_ / "cust.toml")
      << "[[vhost]]\nname = \"cust\"\nhostnames = [\"cust.example\"]\n"
         "  [[vhost.route]]\n  prefix = \"/\"\n  origin_group = \"main\"\n  cache = \"pass\"\n";
  ASSERT_TRUE(reload("streamedge: reloaded")) << proxy_->process.logTail();
  EXPECT_EQ(cacheOf("/obj/inc/a.ts?size=100"), "PASS");

  // A broken customer file: refused with its own file and line; the running config stays.
  std::ofstream(confd_ / "zz-broken.toml") << "[[vhost]]\nhostnames = [\"b.example\"]\nbogus = 1\n";
  ASSERT_TRUE(reload("zz-broken.toml:3")) << proxy_->process.logTail();
  EXPECT_EQ(cacheOf("/obj/inc/a.ts?size=100"), "PASS");

  fs::remove(confd_ / "zz-broken.toml");
  fs::remove(confd_ / "cust.toml");
  ASSERT_TRUE(reload("streamedge: reloaded")) << proxy_->process.logTail();
  EXPECT_EQ(cacheOf("/obj/inc/a.ts?size=100"), "HIT");
}

}  // namespace
}  // namespace streamedge::scenario
