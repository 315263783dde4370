// include = [...]: per-customer files in a conf.d directory, read in byte order, each error
// naming its own file and line; only vhosts, origin groups and listeners may be included.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "conf/config_loader.h"
#include "tests/unit/conf/config_test_base.h"

namespace streamedge::conf {
namespace {

namespace fs = std::filesystem;
using testing::describe;
using testing::kBase;

class ConfigIncludeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/streamedge-include-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    fs::create_directory(dir_ / "conf.d");
  }
  void TearDown() override { fs::remove_all(dir_); }

  void write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
  }
  LoadResult loadMain(const std::string& include_line) {
    write("main.toml", include_line + "\n" + std::string(kBase));
    return loadConfigFile((dir_ / "main.toml").string());
  }

  static std::string customer(const std::string& name, const std::string& host) {
    return "[[origin_group]]\nname = \"" + name + "\"\n  [[origin_group.origin]]\n"
           "  url = \"http://127.0.0.1:9000\"\n\n[[vhost]]\nname = \"" + name +
           "\"\nhostnames = [\"" + host + "\"]\n  [[vhost.route]]\n  prefix = \"/\"\n"
           "  origin_group = \"" + name + "\"\n";
  }

  fs::path dir_;
};

TEST_F(ConfigIncludeTest, IncludedVhostsAndGroupsFollowTheMainFileInByteOrder) {
  write("conf.d/b-customer.toml", customer("b", "b.example"));
  write("conf.d/a-customer.toml", customer("a", "a.example"));
  write("conf.d/notes.txt", "not toml at all [");
  const LoadResult r = loadMain("include = [\"conf.d/*.toml\"]");
  ASSERT_TRUE(r.ok()) << describe(r);
  ASSERT_EQ(r.config->vhosts.size(), 3u);
  EXPECT_EQ(r.config->vhosts[1].name, "a");
  EXPECT_EQ(r.config->vhosts[2].name, "b");
  ASSERT_EQ(r.config->origin_groups.size(), 3u);
  EXPECT_EQ(r.config->origin_groups[1].name, "a");
  // Routes resolve groups across files.
  EXPECT_EQ(r.config->vhosts[2].routes[0].origin_group_index, 2u);
}

TEST_F(ConfigIncludeTest, AnEmptyDirectoryIsFineAndAMissingNamedFileIsNot) {
  EXPECT_TRUE(loadMain("include = [\"conf.d/*.toml\"]").ok());
  const LoadResult missing = loadMain("include = \"customers.toml\"");
  ASSERT_FALSE(missing.ok());
  ASSERT_EQ(missing.errors.size(), 1u) << describe(missing);
  EXPECT_EQ(missing.errors[0].line, 1);
  EXPECT_NE(missing.errors[0].message.find("no such file"), std::string::npos);
}

TEST_F(ConfigIncludeTest, ErrorsNameTheIncludedFileAndItsLine) {
  write("conf.d/a.toml", customer("a", "a.example"));
  // Line 4: a bad origin URL; the hostname of the main file's catch-all is taken again, which
  // is fine ("*" is not a.example); a second file repeats a's hostname.
  write("conf.d/b.toml", "[[origin_group]]\nname = \"b\"\n  [[origin_group.origin]]\n"
                         "  url = \"ftp://nope\"\n");
  write("conf.d/c.toml", customer("c", "a.example"));
  const LoadResult r = loadMain("include = [\"conf.d/*.toml\"]");
  ASSERT_FALSE(r.ok());
  ASSERT_EQ(r.errors.size(), 2u) << describe(r);
  const std::string b = (dir_ / "conf.d/b.toml").string();
  const std::string c = (dir_ / "conf.d/c.toml").string();
  EXPECT_EQ(r.errors[0].file, b) << describe(r);
  EXPECT_EQ(r.errors[0].line, 4) << describe(r);
  EXPECT_EQ(r.errors[1].file, c) << describe(r);
  // The duplicate names where the first one is.
  EXPECT_NE(r.errors[1].message.find("a.toml:"), std::string::npos) << describe(r);
}

TEST_F(ConfigIncludeTest, OnlyVhostsGroupsAndListenersMayBeIncluded) {
  write("conf.d/a.toml", "[server]\nworkers = 2\n");
  write("conf.d/b.toml", "include = [\"x.toml\"]\n");
  write("conf.d/c.toml", "[[vhost]\nbroken");
  const LoadResult r = loadMain("include = [\"conf.d/*.toml\"]");
  ASSERT_FALSE(r.ok());
  ASSERT_EQ(r.errors.size(), 3u) << describe(r);
  EXPECT_NE(r.errors[0].message.find("only [[vhost]]"), std::string::npos) << describe(r);
  EXPECT_NE(r.errors[1].message.find("main config file only"), std::string::npos) << describe(r);
  EXPECT_EQ(r.errors[2].file, (dir_ / "conf.d/c.toml").string()) << describe(r);
  EXPECT_EQ(r.errors[2].line, 1) << describe(r);
}

TEST_F(ConfigIncludeTest, AFileMatchedTwiceIsReadOnce) {
  write("conf.d/a.toml", customer("a", "a.example"));
  const LoadResult r = loadMain("include = [\"conf.d/*.toml\", \"conf.d/a.toml\"]");
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r.config->vhosts.size(), 2u);
}

}  // namespace
}  // namespace streamedge::conf
