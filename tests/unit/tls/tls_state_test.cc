#include "tls/tls_state.h"

#include <gtest/gtest.h>

#include "conf/config_loader.h"
#include "tests/unit/tls/tls_test_certs.h"

namespace streamedge::tls {
namespace {

std::string config(const std::string& dir, const std::string& extra_origin) {
  return R"(
[[listener]]
address = "127.0.0.1:0"
[[listener]]
address = "127.0.0.1:0"
  [[listener.certificate]]
  cert = ")" + dir + R"(/edge.pem"
  key = ")" + dir + R"(/edge.key"
[[origin_group]]
name = "g"
ca_file = ")" + dir + R"(/ca.pem"
  [[origin_group.origin]]
  url = "https://origin.test:8443"
)" + extra_origin + R"(
[[vhost]]
hostnames = ["*"]
  [[vhost.route]]
  prefix = "/"
  origin_group = "g"
)";
}

TEST(TlsState, BuildsListenerAndOriginContextsAndReportsBadOriginFiles) {
  const std::string dir = testing::makeTempDir();
  testing::TestCa ca;
  ca.leaf(dir, "edge", {"edge.test"});
  ASSERT_EQ(writePem(dir + "/ca.pem", dir + "/ca.key", ca.ca.cert.get(), ca.ca.key.get()), "");

  conf::LoadResult loaded = conf::loadConfigText(config(dir, ""), "t.toml");
  ASSERT_TRUE(loaded.ok()) << loaded.errors[0].toString();
  TlsState::Build b = TlsState::build(*loaded.config, nullptr, std::time(nullptr));
  ASSERT_TRUE(b.ok()) << b.errors[0];
  EXPECT_EQ(b.state->listener(0), nullptr);
  ASSERT_NE(b.state->listener(1), nullptr);
  EXPECT_NE(b.state->originContext(loaded.config->origin_groups[0].origins[0]), nullptr);

  // A reload keeps the random ticket keys of a listener on the same address.
  TlsState::Build again = TlsState::build(*loaded.config, b.state.get(), std::time(nullptr));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again.state->listener(1)->tickets(), b.state->listener(1)->tickets());

  loaded = conf::loadConfigText(config(dir, R"(
  [[origin_group.origin]]
  url = "https://other.test"
  ca_file = "/nonexistent/ca.pem"
)"), "t.toml");
  ASSERT_TRUE(loaded.ok()) << loaded.errors[0].toString();
  b = TlsState::build(*loaded.config, nullptr, std::time(nullptr));
  EXPECT_FALSE(b.ok());
  ASSERT_EQ(b.errors.size(), 1u);
  EXPECT_NE(b.errors[0].find("origin_group[0].origin[1] (other.test:443): ca_file /nonexistent/ca.pem"),
            std::string::npos) << b.errors[0];
}

}  // namespace
}  // namespace streamedge::tls
