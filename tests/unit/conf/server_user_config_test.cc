// [server] user: the account a process started as root switches to. Unknown users and root
// itself are errors with file:line, so that `-t` catches them before a start does.
#include <gtest/gtest.h>
#include <pwd.h>

#include "tests/unit/conf/config_test_base.h"

namespace streamedge::conf {
namespace {

using testing::describe;
using testing::expectOnlyError;
using testing::load;

TEST(ServerUserConfig, DefaultIsEmptySoTheProcessStaysAsStarted) {
  const LoadResult r = load("");
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r.config->server.user, "");
}

TEST(ServerUserConfig, AnExistingUserIsRead) {
  // "nobody" exists on every Debian system (base-passwd).
  ASSERT_NE(::getpwnam("nobody"), nullptr) << "this system has no user nobody";
  const LoadResult r = load("[server]\nuser = \"nobody\"\n");
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r.config->server.user, "nobody");
}

TEST(ServerUserConfig, AnEmptyStringMeansNoSwitch) {
  const LoadResult r = load("[server]\nuser = \"\"\n");
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r.config->server.user, "");
}

TEST(ServerUserConfig, AnUnknownUserIsAnErrorOnItsLine) {
  expectOnlyError("[server]\nworkers = 1\nuser = \"no-such-user-3f9c\"\n", "server.user", 3,
                  "no such user \"no-such-user-3f9c\"");
}

TEST(ServerUserConfig, RootIsRefused) {
  expectOnlyError("[server]\nuser = \"root\"\n", "server.user", 2, "is root");
}

TEST(ServerUserConfig, ANonStringIsAnError) {
  expectOnlyError("[server]\nuser = 65534\n", "server.user", 2, "a string");
}

}  // namespace
}  // namespace streamedge::conf
