// [vhost.route.token_auth] and its keys: defaults, every key, the key files (read at load time,
// permissions checked) and one error per bad value with file:line.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "conf/config_loader.h"
#include "conf/key_file.h"
#include "tests/unit/conf/config_test_base.h"

namespace streamedge::conf {
namespace {

using namespace streamedge::conf::testing;

class TokenAuthConfig : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/streamedge-token-conf-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    hex_key_ = write("hex.key", std::string(64, 'a') + "\n", 0600);
    raw_key_ = write("raw.key", std::string(32, '\x07'), 0640);
  }
  void TearDown() override {
    for (const std::string& f : files_) ::unlink(f.c_str());
    ::rmdir(dir_.c_str());
  }

  std::string write(const std::string& name, const std::string& bytes, mode_t mode) {
    const std::string path = dir_ + "/" + name;
    std::FILE* f = std::fopen(path.c_str(), "wb");
    EXPECT_NE(f, nullptr);
    std::fwrite(bytes.data(), 1, bytes.size(), f);
    std::fclose(f);
    ::chmod(path.c_str(), mode);
    files_.push_back(path);
    return path;
  }

  std::string dir_, hex_key_, raw_key_;
  std::vector<std::string> files_;
};

TEST_F(TokenAuthConfig, AbsentMeansAnOpenRoute) {
  const LoadResult r = load("");
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_FALSE(r.config->vhosts[0].routes[0].token_auth.enabled);
  EXPECT_TRUE(r.config->vhosts[0].token_path_segments.empty());
  EXPECT_EQ(r.config->log.security_log, "stderr");
}

TEST_F(TokenAuthConfig, DefaultsWithOneKey) {
  const LoadResult r = load(R"(
  [vhost.route.token_auth]
    [[vhost.route.token_auth.key]]
    key_file = ")" + hex_key_ + R"("
)");
  ASSERT_TRUE(r.ok()) << describe(r);
  const conf::TokenAuthConfig& a = r.config->vhosts[0].routes[0].token_auth;
  EXPECT_TRUE(a.enabled);
  ASSERT_EQ(a.accept.size(), 1u);
  EXPECT_EQ(a.accept[0], TokenSource::kQuery);
  EXPECT_EQ(a.query_param, "token");
  EXPECT_EQ(a.cookie, "token");
  EXPECT_EQ(a.path_segment, "t");
  EXPECT_FALSE(a.require_client);
  ASSERT_EQ(a.keys.size(), 1u);
  EXPECT_EQ(a.keys[0].id, "");
  EXPECT_EQ(a.keys[0].secret, std::string(32, '\xaa'));
  EXPECT_TRUE(r.config->vhosts[0].token_path_segments.empty());  // path tokens not accepted
}

TEST_F(TokenAuthConfig, EveryKeyIsRead) {
  const LoadResult r = load(R"(
  [vhost.route.token_auth]
  accept = ["path", "cookie", "query"]
  query_param = "st"
  cookie = "edge_token"
  path_segment = "auth"
  require_client = true
    [[vhost.route.token_auth.key]]
    id = "2025-01"
    key_file = ")" + hex_key_ + R"("
    [[vhost.route.token_auth.key]]
    id = "2025-02"
    key_file = ")" + raw_key_ + R"("

[log]
security_log = "/var/log/streamedge/security.log"
)");
  ASSERT_TRUE(r.ok()) << describe(r);
  const RouteConfig& route = r.config->vhosts[0].routes[0];
  const conf::TokenAuthConfig& a = route.token_auth;
  ASSERT_EQ(a.accept.size(), 3u);
  EXPECT_EQ(a.accept[0], TokenSource::kPath);
  EXPECT_EQ(a.accept[1], TokenSource::kCookie);
  EXPECT_EQ(a.accept[2], TokenSource::kQuery);
  EXPECT_EQ(a.query_param, "st");
  EXPECT_EQ(a.cookie, "edge_token");
  EXPECT_EQ(a.path_segment, "auth");
  EXPECT_TRUE(a.require_client);
  ASSERT_EQ(a.keys.size(), 2u);
  EXPECT_EQ(a.keys[0].id, "2025-01");
  EXPECT_EQ(a.keys[1].id, "2025-02");
  EXPECT_EQ(a.keys[1].secret, std::string(32, '\x07'));
  EXPECT_EQ(a.keys[1].key_file, raw_key_);
  // The token's query parameter never enters the key (nor the log, nor a fill).
  const auto& drop = route.key.drop_params;
  EXPECT_NE(std::find(drop.begin(), drop.end(), "st"), drop.end());
  EXPECT_NE(std::find(drop.begin(), drop.end(), "token"), drop.end());  // built-in stays
  EXPECT_EQ(r.config->vhosts[0].token_path_segments, std::vector<std::string>{"auth"});
  EXPECT_EQ(r.config->log.security_log, "/var/log/streamedge/security.log");
}

TEST_F(TokenAuthConfig, KeyFilePermissionsAndContentsAreChecked) {
  const std::string world = write("world.key", std::string(64, 'b'), 0644);
  const std::string group_w = write("groupw.key", std::string(64, 'b'), 0660);
  const std::string short_key = write("short.key", std::string(40, 'b'), 0600);
  const std::string not_hex = write("nothex.key", std::string(64, 'z'), 0600);
  const auto keyFile = [](const std::string& path) {
    return "  [vhost.route.token_auth]\n    [[vhost.route.token_auth.key]]\n    key_file = \"" +
           path + "\"\n";
  };
  const std::string key = "vhost[0].route[0].token_auth.key[0].key_file";
  expectOnlyError(keyFile(world), key, 3, "readable by every user");
  expectOnlyError(keyFile(group_w), key, 3, "writable by other users");
  expectOnlyError(keyFile(short_key), key, 3, "64 hex digits");
  expectOnlyError(keyFile(not_hex), key, 3, "64 hex digits");
  expectOnlyError(keyFile(dir_ + "/missing.key"), key, 3, "cannot open");
  expectOnlyError(keyFile(dir_), key, 3, "not a regular file");
}

TEST_F(TokenAuthConfig, OneErrorPerBadValue) {
  const std::string k = "    [[vhost.route.token_auth.key]]\n    key_file = \"" + hex_key_ + "\"\n";
  const std::string p = "vhost[0].route[0].token_auth.";
  expectOnlyError("  [vhost.route.token_auth]\n  accept = [\"header\"]\n" + k, p + "accept[0]", 2,
                  "expected \"query\", \"cookie\" or \"path\"");
  expectOnlyError("  [vhost.route.token_auth]\n  accept = [\"query\", \"query\"]\n" + k,
                  p + "accept[1]", 2, "listed twice");
  expectOnlyError("  [vhost.route.token_auth]\n  accept = []\n" + k, p + "accept", 2,
                  "at least one");
  expectOnlyError("  [vhost.route.token_auth]\n  query_param = \"a&b\"\n" + k, p + "query_param",
                  2, "invalid query parameter name");
  expectOnlyError("  [vhost.route.token_auth]\n  cookie = \"a b\"\n" + k, p + "cookie", 2,
                  "invalid cookie name");
  expectOnlyError("  [vhost.route.token_auth]\n  path_segment = \"a/b\"\n" + k, p + "path_segment",
                  2, "path segment");
  expectOnlyError("  [vhost.route.token_auth]\n  path_segment = \"..\"\n" + k, p + "path_segment",
                  2, "path segment");
  expectOnlyError("  [vhost.route.token_auth]\n  require_client = \"yes\"\n" + k,
                  p + "require_client", 2, "true or false");
  expectOnlyError("  [vhost.route.token_auth]\n  colour = 1\n" + k, p + "colour", 2, "unknown key");
  expectOnlyError("  [vhost.route.token_auth]\n", p + "key", 1, "at least one");
  expectOnlyError("  [vhost.route.token_auth]\n    [[vhost.route.token_auth.key]]\n    id = \"x\"\n",
                  p + "key[0].key_file", 2, "missing required key");
  expectOnlyError("  [vhost.route.token_auth]\n    [[vhost.route.token_auth.key]]\n"
                  "    id = \"bad id\"\n    key_file = \"" + hex_key_ + "\"\n",
                  p + "key[0].id", 3, "letters, digits");
  expectOnlyError("  [vhost.route.token_auth]\n" + k + "    id = \"a\"\n" + k + "    id = \"a\"\n",
                  p + "key[1].id", 7, "duplicate key id");
  // The token parameter must never be a key parameter.
  expectOnlyError("  keep_params = [\"token\"]\n  [vhost.route.token_auth]\n" + k,
                  p + "query_param", 2, "keep_params");
}

TEST_F(TokenAuthConfig, AtMostEightKeys) {
  std::string text = "  [vhost.route.token_auth]\n";
  for (int i = 0; i < 9; ++i) {
    text += "    [[vhost.route.token_auth.key]]\n    id = \"k" + std::to_string(i) +
            "\"\n    key_file = \"" + hex_key_ + "\"\n";
  }
  const LoadResult r = load(text);
  ASSERT_FALSE(r.ok());
  ASSERT_EQ(r.errors.size(), 1u) << describe(r);
  EXPECT_NE(r.errors[0].message.find("at most 8"), std::string::npos) << describe(r);
}

TEST_F(TokenAuthConfig, PathSegmentsAreCollectedPerVhost) {
  const LoadResult r = load(R"(
  [vhost.route.token_auth]
  accept = ["query", "path"]
    [[vhost.route.token_auth.key]]
    key_file = ")" + hex_key_ + R"("
  [[vhost.route]]
  prefix = "/live/"
  origin_group = "main"
  [vhost.route.token_auth]
  accept = ["path"]
  path_segment = "t"
    [[vhost.route.token_auth.key]]
    key_file = ")" + hex_key_ + R"("
  [[vhost.route]]
  prefix = "/vod/"
  origin_group = "main"
  [vhost.route.token_auth]
  accept = ["path"]
  path_segment = "v"
    [[vhost.route.token_auth.key]]
    key_file = ")" + hex_key_ + R"("
)");
  ASSERT_TRUE(r.ok()) << describe(r);
  std::vector<std::string> names = r.config->vhosts[0].token_path_segments;
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"t", "v"}));
}

TEST_F(TokenAuthConfig, ReadTokenKeyFileDirectly) {
  std::string secret, error;
  ASSERT_TRUE(readTokenKeyFile(hex_key_, secret, error)) << error;
  EXPECT_EQ(secret.size(), kKeyFileBytes);
  ASSERT_TRUE(readTokenKeyFile(raw_key_, secret, error)) << error;
  EXPECT_EQ(secret, std::string(32, '\x07'));
  EXPECT_FALSE(readTokenKeyFile(dir_ + "/nope", secret, error));
  EXPECT_TRUE(secret.empty());
}

}  // namespace
}  // namespace streamedge::conf
