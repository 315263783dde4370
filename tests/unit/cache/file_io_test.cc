// cache/file_io: whole-file reads and durable replacement of the SSD tier's side files.
#include "cache/file_io.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "tests/unit/cache/ssd_test_util.h"

namespace streamedge::cache {
namespace {

using testing::TempDir;

std::vector<uint8_t> bytesOf(const std::string& s) { return {s.begin(), s.end()}; }

TEST(FileIo, ReplaceWritesTheNewContentOwnerOnlyAndLeavesNoTemporaryFile) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string path = dir.path() + "/side";
  ASSERT_TRUE(replaceFileDurably(path, bytesOf("first")).isOk());
  ASSERT_TRUE(replaceFileDurably(path, bytesOf("second, longer")).isOk());
  auto read = readWholeFile(path, 1024);
  ASSERT_TRUE(read.isOk());
  EXPECT_EQ(read.value(), bytesOf("second, longer"));
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST(FileIo, ReplaceHandsBackTheOldFileSoItsBytesCanBeOverwritten) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string path = dir.path() + "/keys";
  int old_fd = 123;
  ASSERT_TRUE(replaceFileDurably(path, bytesOf("v1"), &old_fd).isOk());
  EXPECT_EQ(old_fd, -1) << "no file was there before";
  ASSERT_TRUE(replaceFileDurably(path, bytesOf("v2-new"), &old_fd).isOk());
  ASSERT_GE(old_fd, 0);
  // The descriptor is the replaced file (2 bytes), not the new one.
  struct stat st {};
  ASSERT_EQ(::fstat(old_fd, &st), 0);
  EXPECT_EQ(st.st_size, 2);
  ::close(old_fd);
  EXPECT_EQ(readWholeFile(path, 1024).value(), bytesOf("v2-new"));
}

TEST(FileIo, ReplaceInAMissingDirectoryFailsCleanly) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string path = dir.path() + "/no/such/dir/file";
  EXPECT_EQ(replaceFileDurably(path, bytesOf("x")).code(), Code::kIo);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST(FileIo, ReadWholeFileSaysNotFoundAndRefusesFilesOverTheBound) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  EXPECT_EQ(readWholeFile(dir.path() + "/absent", 10).status().code(), Code::kNotFound);
  const std::string path = dir.path() + "/big";
  ASSERT_TRUE(replaceFileDurably(path, std::vector<uint8_t>(100, 7)).isOk());
  EXPECT_EQ(readWholeFile(path, 99).status().code(), Code::kIo);
  EXPECT_EQ(readWholeFile(path, 100).value().size(), 100u);
}

}  // namespace
}  // namespace streamedge::cache
