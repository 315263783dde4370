// [admin]: the observability keys (health_stall_bound, debug_endpoints), their defaults and
// errors with file:line.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "conf/config_loader.h"

namespace streamedge::conf {
namespace {

constexpr std::string_view kBase = R"([[listener]]
address = "127.0.0.1:8080"

[[origin_group]]
name = "main"
  [[origin_group.origin]]
  url = "http://127.0.0.1:8081"

[[vhost]]
hostnames = ["*"]
  [[vhost.route]]
  prefix = "/"
  origin_group = "main"

)";

LoadResult load(std::string_view admin) {
  std::string text(kBase);
  text += "[admin]\n";
  text += admin;
  return loadConfigText(text, "test.toml");
}

std::string errors(const LoadResult& r) {
  std::string out;
  for (const ConfigError& e : r.errors) out += e.toString() + "\n";
  return out;
}

TEST(AdminConfig, DefaultsAreFiveSecondsAndNoDebugEndpoints) {
  const LoadResult r = load("");
  ASSERT_TRUE(r.ok()) << errors(r);
  EXPECT_EQ(r.config->admin.health_stall_bound, std::chrono::milliseconds(5000));
  EXPECT_FALSE(r.config->admin.debug_endpoints);
}

TEST(AdminConfig, StallBoundAndDebugEndpointsAreRead) {
  const LoadResult r = load("health_stall_bound = \"1500ms\"\ndebug_endpoints = true\n");
  ASSERT_TRUE(r.ok()) << errors(r);
  EXPECT_EQ(r.config->admin.health_stall_bound, std::chrono::milliseconds(1500));
  EXPECT_TRUE(r.config->admin.debug_endpoints);
}

TEST(AdminConfig, BadValuesNameFileLineAndKey) {
  const LoadResult r = load("health_stall_bound = \"0s\"\ndebug_endpoints = \"yes\"\n");
  ASSERT_FALSE(r.ok());
  const std::string text = errors(r);
  // Lines of kBase, then "[admin]", then the two keys.
  const auto base_lines = static_cast<int>(std::count(kBase.begin(), kBase.end(), '\n'));
  const std::string stall_at = "test.toml:" + std::to_string(base_lines + 2) + ": admin.health_stall_bound";
  const std::string debug_at = "test.toml:" + std::to_string(base_lines + 3) + ": admin.debug_endpoints";
  EXPECT_NE(text.find(stall_at), std::string::npos) << text;
  EXPECT_NE(text.find(debug_at), std::string::npos) << text;
  EXPECT_NE(text.find("admin.debug_endpoints"), std::string::npos) << text;
}

}  // namespace
}  // namespace streamedge::conf
