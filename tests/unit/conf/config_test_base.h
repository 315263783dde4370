// Shared by the config section tests: a minimal valid config, loading it with extra text after
// it, and "exactly one error, on this key, on this line of the extra text".
#pragma once

#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "conf/config_loader.h"

namespace streamedge::conf::testing {

inline constexpr std::string_view kBase = R"([[listener]]
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

inline LoadResult load(std::string_view extra) {
  std::string text(kBase);
  text += extra;
  return loadConfigText(text, "test.toml");
}

inline std::string describe(const LoadResult& r) {
  std::string out;
  for (const ConfigError& e : r.errors) out += "  " + e.toString() + "\n";
  for (const std::string& w : r.warnings) out += "  warning: " + w + "\n";
  return out;
}

inline int baseLines() {
  return 1 + static_cast<int>(std::count(kBase.begin(), kBase.end(), '\n'));
}

// Exactly one error, on `key`, on line `line_in_extra` of `extra` (1-based), mentioning `part`.
inline void expectOnlyError(std::string_view extra, const std::string& key, int line_in_extra,
                            std::string_view part) {
  const LoadResult r = load(extra);
  SCOPED_TRACE(std::string(extra));
  ASSERT_FALSE(r.ok());
  ASSERT_EQ(r.errors.size(), 1u) << describe(r);
  EXPECT_EQ(r.errors[0].key, key) << describe(r);
  EXPECT_EQ(r.errors[0].line, baseLines() + line_in_extra - 1) << describe(r);
  EXPECT_NE(r.errors[0].message.find(part), std::string::npos) << describe(r);
}

// A fixture with a cluster peer key file (64 hex digits, mode 0600) in a temporary directory:
// key_ is its path.
class PeerKeyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/streamedge-cluster-conf-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    key_ = dir_ + "/peer.key";
    std::FILE* f = std::fopen(key_.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    const std::string hex = std::string(62, '0') + "2a\n";
    std::fwrite(hex.data(), 1, hex.size(), f);
    std::fclose(f);
    ::chmod(key_.c_str(), 0600);
  }
  void TearDown() override {
    ::unlink(key_.c_str());
    ::rmdir(dir_.c_str());
  }

  std::string dir_;
  std::string key_;
};

}  // namespace streamedge::conf::testing
