// [server] upgrade_binary and upgrade_timeout: the hot upgrade (SIGUSR2) settings. A relative
// binary path and a timeout out of range are errors with file:line, so that `-t` catches them
// before an upgrade runs into them.
#include <gtest/gtest.h>

#include "tests/unit/conf/config_test_base.h"

namespace streamedge::conf {
namespace {

using testing::describe;
using testing::expectOnlyError;
using testing::load;

TEST(ServerUpgradeConfig, DefaultsStartTheBinaryAsStartedWithThirtySeconds) {
  const LoadResult r = load("");
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r.config->server.upgrade_binary, "");
  EXPECT_EQ(r.config->server.upgrade_timeout, Millis(30'000));
}

TEST(ServerUpgradeConfig, AnAbsolutePathAndADurationAreRead) {
  const LoadResult r =
      load("[server]\nupgrade_binary = \"/usr/sbin/streamedge\"\nupgrade_timeout = \"2m\"\n");
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r.config->server.upgrade_binary, "/usr/sbin/streamedge");
  EXPECT_EQ(r.config->server.upgrade_timeout, Millis(120'000));
}

TEST(ServerUpgradeConfig, ARelativePathIsAnErrorOnItsLine) {
  expectOnlyError("[server]\nworkers = 1\nupgrade_binary = \"bin/streamedge\"\n",
                  "server.upgrade_binary", 3, "must be an absolute path");
}

TEST(ServerUpgradeConfig, ATimeoutOutOfRangeIsAnError) {
  expectOnlyError("[server]\nupgrade_timeout = \"500ms\"\n", "server.upgrade_timeout", 2,
                  "between 1s and 1h");
  expectOnlyError("[server]\nupgrade_timeout = \"2h\"\n", "server.upgrade_timeout", 2,
                  "between 1s and 1h");
  expectOnlyError("[server]\nupgrade_timeout = \"0s\"\n", "server.upgrade_timeout", 2,
                  "greater than zero");
}

TEST(ServerUpgradeConfig, ANonStringBinaryIsAnError) {
  expectOnlyError("[server]\nupgrade_binary = 1\n", "server.upgrade_binary", 2, "a string");
}

}  // namespace
}  // namespace streamedge::conf
