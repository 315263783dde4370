// [privacy] log_retention over real files in a temporary directory, with modification times set
// by utimensat: only rotated files of the log (its name followed by '.' or '-') that are old
// enough are deleted; the live file, the other logs' live files, the audit log and its
// rotations, other names, symlinks and directories are never touched.
#include "proxy/log_retention.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace streamedge::proxy {
namespace {

using namespace std::chrono_literals;

class LogRetention : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* env = std::getenv("TMPDIR");
    std::string tmpl = std::string(env && *env ? env : "/tmp") + "/streamedge-logs-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  std::string path(const std::string& name) const { return dir_ + "/" + name; }

  // A file `name` last modified `age` before now_.
  void make(const std::string& name, std::chrono::seconds age) {
    { std::ofstream(path(name)) << "line\n"; }
    const auto mtime = now_ - age;
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(mtime.time_since_epoch());
    timespec times[2];
    times[0].tv_sec = times[1].tv_sec = static_cast<time_t>(ns.count() / 1'000'000'000);
    times[0].tv_nsec = times[1].tv_nsec = static_cast<long>(ns.count() % 1'000'000'000);
    ASSERT_EQ(::utimensat(AT_FDCWD, path(name).c_str(), times, 0), 0);
  }

  bool exists(const std::string& name) const {
    struct stat st {};
    return ::lstat(path(name).c_str(), &st) == 0;
  }

  std::string dir_;
  const WallTime now_ = std::chrono::system_clock::now();
};

TEST(LogRetentionNames, RotatedNamesAreTheLogNameFollowedByADotOrADash) {
  EXPECT_TRUE(isRotatedLogName("access.log.1", "access.log"));
  EXPECT_TRUE(isRotatedLogName("access.log.2.gz", "access.log"));
  EXPECT_TRUE(isRotatedLogName("access.log-20250101", "access.log"));
  EXPECT_FALSE(isRotatedLogName("access.log", "access.log"));
  EXPECT_FALSE(isRotatedLogName("access.logs", "access.log"));
  EXPECT_FALSE(isRotatedLogName("access.log_1", "access.log"));
  EXPECT_FALSE(isRotatedLogName("xaccess.log.1", "access.log"));
  EXPECT_FALSE(isRotatedLogName("other.log.1", "access.log"));
  EXPECT_FALSE(isRotatedLogName("access.log.1", ""));
}

TEST_F(LogRetention, RemovesOnlyOldRotationsOfTheLog) {
  const auto day = std::chrono::seconds(86400);
  make("access.log", 40 * day);             // live: never, however old
  make("access.log.1", 1 * day);            // young rotation: kept
  make("access.log.2.gz", 20 * day);        // old rotation: removed
  make("access.log-20240101", 400 * day);   // dated rotation: removed
  make("access.logs", 400 * day);           // another name
  make("error.log.1", 400 * day);           // another log
  make("notes.txt", 400 * day);
  const LogRetentionResult r = removeRotatedLogs(path("access.log"), 14 * day, now_);
  EXPECT_TRUE(r.errors.empty());
  EXPECT_EQ(r.removed, (std::vector<std::string>{path("access.log-20240101"), path("access.log.2.gz")}));
  EXPECT_TRUE(exists("access.log"));
  EXPECT_TRUE(exists("access.log.1"));
  EXPECT_FALSE(exists("access.log.2.gz"));
  EXPECT_FALSE(exists("access.log-20240101"));
  EXPECT_TRUE(exists("access.logs"));
  EXPECT_TRUE(exists("error.log.1"));
  EXPECT_TRUE(exists("notes.txt"));
  // Again: nothing left to do.
  EXPECT_TRUE(removeRotatedLogs(path("access.log"), 14 * day, now_).removed.empty());
}

TEST_F(LogRetention, TheBoundaryIsInclusiveAndZeroMeansOff) {
  make("a.log.1", 100s);
  make("a.log.2", 99s);
  EXPECT_TRUE(removeRotatedLogs(path("a.log"), 0s, now_).removed.empty());
  EXPECT_TRUE(exists("a.log.1"));
  const LogRetentionResult r = removeRotatedLogs(path("a.log"), 100s, now_);
  EXPECT_EQ(r.removed, (std::vector<std::string>{path("a.log.1")}));
  EXPECT_TRUE(exists("a.log.2"));
}

TEST_F(LogRetention, LiveFilesOfOtherLogsAndTheAuditLogAreNeverRemoved) {
  const auto day = std::chrono::seconds(86400);
  // The security and audit logs named after the access log: they match its pattern.
  make("access.log.security", 30 * day);
  make("access.log.audit", 30 * day);
  make("access.log.audit.1", 30 * day);
  make("access.log.audit-2024", 30 * day);
  make("access.log.3", 30 * day);
  const LogRetentionResult r =
      removeRotatedLogs(path("access.log"), 14 * day, now_,
                        {path("access.log"), path("access.log.security"), path("access.log.audit")},
                        {path("access.log.audit")});
  EXPECT_EQ(r.removed, (std::vector<std::string>{path("access.log.3")}));
  EXPECT_TRUE(exists("access.log.security"));
  EXPECT_TRUE(exists("access.log.audit"));
  EXPECT_TRUE(exists("access.log.audit.1"));
  EXPECT_TRUE(exists("access.log.audit-2024"));
}

TEST_F(LogRetention, SymlinksAndDirectoriesAreNotFollowedNorRemoved) {
  const auto day = std::chrono::seconds(86400);
  make("precious", 30 * day);
  ASSERT_EQ(::symlink(path("precious").c_str(), path("access.log.9").c_str()), 0);
  ASSERT_EQ(::mkdir(path("access.log.d").c_str(), 0700), 0);
  const LogRetentionResult r = removeRotatedLogs(path("access.log"), 1 * day, now_);
  EXPECT_TRUE(r.removed.empty());
  EXPECT_TRUE(exists("access.log.9"));
  EXPECT_TRUE(exists("precious"));
  EXPECT_TRUE(exists("access.log.d"));
}

TEST_F(LogRetention, StreamsAndMissingDirectories) {
  EXPECT_TRUE(removeRotatedLogs("stderr", 1s, now_).removed.empty());
  EXPECT_TRUE(removeRotatedLogs("off", 1s, now_).errors.empty());
  const LogRetentionResult r = removeRotatedLogs(path("nope/access.log"), 1s, now_);
  EXPECT_TRUE(r.removed.empty());
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_NE(r.errors[0].find("cannot list"), std::string::npos) << r.errors[0];
}

}  // namespace
}  // namespace streamedge::proxy
