// conf/streamedge.toml.in: the configuration the install rules and the Debian package put in
// /etc/streamedge. It must load as installed, and be safe before anyone edits it: nothing
// reachable from another host, the access log where logrotate and the unit expect it.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "conf/config_loader.h"

namespace streamedge::conf {
namespace {

// The values CMake's configure_file gives the @VARIABLES@ for the Debian layout (prefix /usr).
const std::map<std::string, std::string> kDebianLayout = {
    {"@STREAMEDGE_CONFIG_FILE@", "/etc/streamedge/streamedge.toml"},
    {"@STREAMEDGE_LOG_DIR@", "/var/log/streamedge"},
    {"@STREAMEDGE_CACHE_DIR@", "/var/cache/streamedge"},
    {"@STREAMEDGE_EXAMPLE_CONFIG@", "/usr/share/doc/streamedge/examples/streamedge.example.toml"},
};

std::string installedText() {
  std::ifstream in(std::string(STREAMEDGE_SOURCE_DIR) + "/conf/streamedge.toml.in");
  std::stringstream buf;
  buf << in.rdbuf();
  std::string text = buf.str();
  for (const auto& [token, value] : kDebianLayout) {
    for (size_t at; (at = text.find(token)) != std::string::npos;) text.replace(at, token.size(), value);
  }
  return text;
}

bool loopback(const std::string& host) { return host == "127.0.0.1" || host == "::1"; }

class InstalledConfig : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/streamedge-installed-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/streamedge.toml";
    text_ = installedText();
    ASSERT_FALSE(text_.empty());
    std::ofstream(path_) << text_;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string dir_;
  std::string path_;
  std::string text_;
};

TEST_F(InstalledConfig, EveryPlaceholderIsKnown) {
  // configure_file(@ONLY) turns an unknown @NAME@ into nothing: a typo would go unnoticed.
  EXPECT_EQ(text_.find('@'), std::string::npos) << text_;
}

TEST_F(InstalledConfig, LoadsAsInstalledWithAnEmptyConfD) {
  ::mkdir((dir_ + "/conf.d").c_str(), 0755);
  const LoadResult r = loadConfigFile(path_);
  std::string errors;
  for (const ConfigError& e : r.errors) errors += e.toString() + "\n";
  ASSERT_TRUE(r.ok()) << errors;
  EXPECT_TRUE(r.warnings.empty());
  EXPECT_EQ(r.config->log.access_log, "/var/log/streamedge/access.log");
  EXPECT_EQ(r.config->server.user, "") << "the unit starts the process as the user already";
  EXPECT_FALSE(r.config->cache.ssd.enabled) << "no disk is taken before the operator says so";
}

TEST_F(InstalledConfig, ListensOnLoopbackOnlyUntilEdited) {
  const LoadResult r = loadConfigFile(path_);
  ASSERT_TRUE(r.ok());
  ASSERT_FALSE(r.config->listeners.empty());
  for (const ListenerConfig& l : r.config->listeners) EXPECT_TRUE(loopback(l.host)) << l.address;
  EXPECT_EQ(r.config->admin.address.rfind("127.0.0.1:", 0), 0u) << r.config->admin.address;
}

TEST_F(InstalledConfig, AFileInConfDAddsItsVhost) {
  ::mkdir((dir_ + "/conf.d").c_str(), 0755);
  std::ofstream(dir_ + "/conf.d/site.toml")
      << "[[vhost]]\nname = \"site\"\nhostnames = [\"video.example.com\"]\n"
         "  [[vhost.route]]\n  prefix = \"/\"\n  origin_group = \"origin\"\n";
  const LoadResult r = loadConfigFile(path_);
  std::string errors;
  for (const ConfigError& e : r.errors) errors += e.toString() + "\n";
  ASSERT_TRUE(r.ok()) << errors;
  bool found = false;
  for (const VhostConfig& v : r.config->vhosts) found = found || v.name == "site";
  EXPECT_TRUE(found);
}

}  // namespace
}  // namespace streamedge::conf
