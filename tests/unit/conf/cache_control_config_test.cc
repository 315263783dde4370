// [cache] cache_control_target and surrogate_control: defaults, values, and file:line errors.
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

LoadResult load(std::string_view extra) {
  std::string text(kBase);
  text += extra;
  return loadConfigText(text, "test.toml");
}

std::string describe(const LoadResult& r) {
  std::string out;
  for (const ConfigError& e : r.errors) out += "  " + e.toString() + "\n";
  return out;
}

int baseLines() { return 1 + static_cast<int>(std::count(kBase.begin(), kBase.end(), '\n')); }

void expectOnlyError(std::string_view extra, const std::string& key, int line_in_extra,
                     std::string_view part) {
  const LoadResult r = load(extra);
  SCOPED_TRACE(std::string(extra));
  ASSERT_FALSE(r.ok());
  ASSERT_EQ(r.errors.size(), 1u) << describe(r);
  EXPECT_EQ(r.errors[0].key, key) << describe(r);
  EXPECT_EQ(r.errors[0].line, baseLines() + line_in_extra - 1) << describe(r);
  EXPECT_NE(r.errors[0].message.find(part), std::string::npos) << describe(r);
}

TEST(CacheControlConfig, DefaultsAreTheOwnTargetAndNoSurrogateControl) {
  const LoadResult r = load("");
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r.config->cache.cache_control_target, "Streamedge-Cache-Control");
  EXPECT_FALSE(r.config->cache.surrogate_control);
}

TEST(CacheControlConfig, ExampleConfigStatesTheDefaults) {
  const LoadResult r =
      loadConfigFile(std::string(STREAMEDGE_SOURCE_DIR) + "/conf/streamedge.example.toml");
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r.config->cache.cache_control_target, CacheConfig{}.cache_control_target);
  EXPECT_EQ(r.config->cache.surrogate_control, CacheConfig{}.surrogate_control);
}

TEST(CacheControlConfig, ValuesAreRead) {
  const LoadResult r = load(R"(
[cache]
cache_control_target = "Acme-Edge-Cache-Control"
surrogate_control = true
[cache.ram]
size = "64MiB"
)");
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r.config->cache.cache_control_target, "Acme-Edge-Cache-Control");
  EXPECT_TRUE(r.config->cache.surrogate_control);
  EXPECT_EQ(r.config->cache.ram.size_bytes, 64ull << 20);
}

TEST(CacheControlConfig, EmptyTargetTurnsTheOwnFieldOff) {
  const LoadResult r = load("\n[cache]\ncache_control_target = \"\"\n");
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r.config->cache.cache_control_target, "");
}

TEST(CacheControlConfig, TargetMustBeAFieldNameOfItsOwn) {
  expectOnlyError("\n[cache]\ncache_control_target = \"My Cache\"\n",
                  "cache.cache_control_target", 3, "must be a field name");
  expectOnlyError("\n[cache]\ncache_control_target = \"x:y\"\n", "cache.cache_control_target",
                  3, "must be a field name");
  expectOnlyError("\n[cache]\ncache_control_target = \"cache-control\"\n",
                  "cache.cache_control_target", 3, "must not be Cache-Control");
  expectOnlyError("\n[cache]\ncache_control_target = \"CDN-Cache-Control\"\n",
                  "cache.cache_control_target", 3, "must not be CDN-Cache-Control");
  expectOnlyError("\n[cache]\ncache_control_target = \"Surrogate-Control\"\n",
                  "cache.cache_control_target", 3, "must not be Surrogate-Control");
}

TEST(CacheControlConfig, WrongTypesAndUnknownKeysAreReported) {
  expectOnlyError("\n[cache]\nsurrogate_control = \"yes\"\n", "cache.surrogate_control", 3,
                  "true or false");
  expectOnlyError("\n[cache]\ncache_control_target = 5\n", "cache.cache_control_target", 3,
                  "a string");
  const LoadResult r = load("\n[cache]\ncdn_cache_control = true\n");
  EXPECT_FALSE(r.ok());
}

}  // namespace
}  // namespace streamedge::conf
