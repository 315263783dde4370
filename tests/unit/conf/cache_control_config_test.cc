// [cache] cache_control_target and surrogate_control: defaults, values, and file:line errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "conf/config_loader.h"
#include "tests/unit/conf/config_test_base.h"

namespace streamedge::conf {
namespace {

using namespace streamedge::conf::testing;

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
