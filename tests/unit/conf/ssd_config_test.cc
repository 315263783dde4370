// [cache.ssd]: the contract keys, the defaults, and one error per bad value with file:line.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "conf/config_loader.h"
#include "tests/unit/conf/config_test_base.h"

namespace streamedge::conf {
namespace {

using namespace streamedge::conf::testing;

TEST(SsdConfig, AbsentSectionMeansRamOnly) {
  const LoadResult r = load("");
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_FALSE(r.config->cache.ssd.enabled);
}

TEST(SsdConfig, ContractKeysLoadExactlyAsWritten) {
  const LoadResult r = load(R"(
[cache.ssd]
path = "/var/cache/streamedge/store"
size = "8GiB"
encrypt = true
key_file = "/etc/streamedge/store.key"
)");
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_TRUE(r.warnings.empty()) << describe(r);
  const SsdCacheConfig& s = r.config->cache.ssd;
  EXPECT_TRUE(s.enabled);
  EXPECT_EQ(s.path, "/var/cache/streamedge/store");
  EXPECT_EQ(s.size_bytes, 8ull << 30);
  EXPECT_TRUE(s.encrypt);
  EXPECT_EQ(s.key_file, "/etc/streamedge/store.key");
  // Defaults of the keys that are ours.
  EXPECT_EQ(s.region_bytes, 16ull << 20);
  EXPECT_EQ(s.admission, SsdAdmission::kEvict);
  EXPECT_EQ(s.io_backend, IoBackend::kAuto);
  EXPECT_TRUE(s.direct_io);
  EXPECT_EQ(s.reclaim, SsdReclaim::kReinsert);
  EXPECT_EQ(s.write_queue_bytes, 64ull << 20);
  EXPECT_EQ(s.sync_interval, Millis(1000));
  EXPECT_TRUE(s.background_rebuild);
}

TEST(SsdConfig, EverySettableValueIsParsed) {
  const LoadResult r = load(R"(
[cache.ssd]
path = "/dev/nvme1n1"
size = 1073741824
region_size = "4MiB"
encrypt = false
admission = "fill"
io_backend = "threads"
direct_io = false
reclaim = "fifo"
write_queue = "8MiB"
sync_interval = "250ms"
rebuild = "before_start"
)");
  ASSERT_TRUE(r.ok()) << describe(r);
  const SsdCacheConfig& s = r.config->cache.ssd;
  EXPECT_EQ(s.path, "/dev/nvme1n1");
  EXPECT_EQ(s.size_bytes, 1ull << 30);
  EXPECT_EQ(s.region_bytes, 4ull << 20);
  EXPECT_FALSE(s.encrypt);
  EXPECT_TRUE(s.key_file.empty());
  EXPECT_EQ(s.admission, SsdAdmission::kFill);
  EXPECT_EQ(s.io_backend, IoBackend::kThreads);
  EXPECT_FALSE(s.direct_io);
  EXPECT_EQ(s.reclaim, SsdReclaim::kFifo);
  EXPECT_EQ(s.write_queue_bytes, 8ull << 20);
  EXPECT_EQ(s.sync_interval, Millis(250));
  EXPECT_FALSE(s.background_rebuild);

  const LoadResult u = load("\n[cache.ssd]\npath = \"/s\"\nsize = \"1GiB\"\nio_backend = \"io_uring\"\n");
  ASSERT_TRUE(u.ok()) << describe(u);
  EXPECT_EQ(u.config->cache.ssd.io_backend, IoBackend::kIoUring);
}

TEST(SsdConfig, PathAndSizeAreRequired) {
  const LoadResult r = load("\n[cache.ssd]\nencrypt = true\n");
  ASSERT_FALSE(r.ok());
  ASSERT_EQ(r.errors.size(), 2u) << describe(r);
  EXPECT_EQ(r.errors[0].key, "cache.ssd.path");
  EXPECT_EQ(r.errors[1].key, "cache.ssd.size");
  EXPECT_EQ(r.errors[0].line, baseLines() + 1);
}

TEST(SsdConfig, BadValuesAreReportedWithLineAndKey) {
  expectOnlyError("\n[cache.ssd]\npath = \"/s\"\nsize = \"1GiB\"\nadmission = \"always\"\n",
                  "cache.ssd.admission", 5, "\"evict\" or \"fill\"");
  expectOnlyError("\n[cache.ssd]\npath = \"/s\"\nsize = \"1GiB\"\nio_backend = \"aio\"\n",
                  "cache.ssd.io_backend", 5, "\"threads\"");
  expectOnlyError("\n[cache.ssd]\npath = \"/s\"\nsize = \"1GiB\"\nreclaim = \"lru\"\n",
                  "cache.ssd.reclaim", 5, "\"fifo\" or \"reinsert\"");
  expectOnlyError("\n[cache.ssd]\npath = \"/s\"\nsize = \"1GiB\"\nwrite_queue = \"64KiB\"\n",
                  "cache.ssd.write_queue", 5, "at least");
  expectOnlyError("\n[cache.ssd]\npath = \"/s\"\nsize = \"1GiB\"\nsync_interval = \"soon\"\n",
                  "cache.ssd.sync_interval", 5, "invalid duration");
  expectOnlyError("\n[cache.ssd]\npath = \"/s\"\nsize = \"1GiB\"\nrebuild = \"lazy\"\n",
                  "cache.ssd.rebuild", 5, "\"background\" or \"before_start\"");
  expectOnlyError("\n[cache.ssd]\npath = \"/s\"\nsize = \"1GiB\"\nregion_size = \"10000B\"\n",
                  "cache.ssd.region_size", 5, "at least");
  expectOnlyError("\n[cache.ssd]\npath = \"/s\"\nsize = \"1GiB\"\nregion_size = \"20000B\"\n",
                  "cache.ssd.region_size", 5, "multiple of 4KiB");
  expectOnlyError("\n[cache.ssd]\npath = \"/s\"\nsize = \"32MiB\"\n", "cache.ssd.size", 4,
                  "at least 3 regions");
  expectOnlyError("\n[cache.ssd]\npath = \"\"\nsize = \"1GiB\"\n", "cache.ssd.path", 3,
                  "must not be empty");
  expectOnlyError("\n[cache.ssd]\npath = \"/s\"\nsize = \"1GiB\"\nencrypt = \"yes\"\n",
                  "cache.ssd.encrypt", 5, "true or false");
  expectOnlyError("\n[cache.ssd]\npath = \"/s\"\nsize = \"1GiB\"\nkey_file = \"\"\n",
                  "cache.ssd.key_file", 5, "ephemeral");
  expectOnlyError("\n[cache.ssd]\npath = \"/s\"\nsize = \"1GiB\"\nregion = \"16MiB\"\n",
                  "cache.ssd.region", 5, "unknown");
}

TEST(SsdConfig, KeyFileWithoutEncryptionIsAWarning) {
  const LoadResult r = load(
      "\n[cache.ssd]\npath = \"/s\"\nsize = \"1GiB\"\nencrypt = false\nkey_file = \"/k\"\n");
  ASSERT_TRUE(r.ok()) << describe(r);
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_NE(r.warnings[0].find("cache.ssd.key_file"), std::string::npos) << r.warnings[0];
}

TEST(SsdConfig, KeyringDefaultsBesideAStoreFileAndCanBeSetOrTurnedOff) {
  const LoadResult r = load("\n[cache.ssd]\npath = \"/var/cache/s\"\nsize = \"1GiB\"\n");
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r.config->cache.ssd.keyring, "/var/cache/s.keys");
  const LoadResult set = load(
      "\n[cache.ssd]\npath = \"/var/cache/s\"\nsize = \"1GiB\"\nkeyring = \"/keys/s.keys\"\n");
  ASSERT_TRUE(set.ok()) << describe(set);
  EXPECT_EQ(set.config->cache.ssd.keyring, "/keys/s.keys");
  const LoadResult off =
      load("\n[cache.ssd]\npath = \"/var/cache/s\"\nsize = \"1GiB\"\nkeyring = \"\"\n");
  ASSERT_TRUE(off.ok()) << describe(off);
  EXPECT_EQ(off.config->cache.ssd.keyring, "");
  EXPECT_TRUE(off.warnings.empty()) << describe(off);
}

TEST(SsdConfig, KeyringMustBeAFileOfItsOwn) {
  expectOnlyError("\n[cache.ssd]\npath = \"/s\"\nsize = \"1GiB\"\nkeyring = \"/s\"\n",
                  "cache.ssd.keyring", 5, "file of its own");
  expectOnlyError(
      "\n[cache.ssd]\npath = \"/s\"\nsize = \"1GiB\"\ncheckpoint = \"/c\"\nkeyring = \"/c\"\n",
      "cache.ssd.keyring", 6, "file of its own");
}

TEST(SsdConfig, ABlockDeviceWithAKeyFileAndNoKeyringIsAWarning) {
  const LoadResult r = load(
      "\n[cache.ssd]\npath = \"/dev/nvme1n1\"\nsize = \"1GiB\"\nkey_file = \"/k\"\n");
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r.config->cache.ssd.keyring, "");
  ASSERT_EQ(r.warnings.size(), 1u) << describe(r);
  EXPECT_NE(r.warnings[0].find("cache.ssd.keyring"), std::string::npos) << r.warnings[0];
  const LoadResult set = load(
      "\n[cache.ssd]\npath = \"/dev/nvme1n1\"\nsize = \"1GiB\"\nkey_file = \"/k\"\n"
      "keyring = \"/var/lib/streamedge/nvme1n1.keys\"\n");
  ASSERT_TRUE(set.ok()) << describe(set);
  EXPECT_TRUE(set.warnings.empty()) << describe(set);
}

TEST(SsdConfig, ExampleConfigDocumentsTheSsdTier) {
  const LoadResult r =
      loadConfigFile(std::string(STREAMEDGE_SOURCE_DIR) + "/conf/streamedge.example.toml");
  ASSERT_TRUE(r.ok()) << describe(r);
  const SsdCacheConfig& s = r.config->cache.ssd;
  EXPECT_TRUE(s.enabled);
  EXPECT_EQ(s.size_bytes, 8ull << 30);
  EXPECT_EQ(s.region_bytes, 16ull << 20);
  EXPECT_TRUE(s.encrypt);
  EXPECT_EQ(s.key_file, "/etc/streamedge/store.key");
}

}  // namespace
}  // namespace streamedge::conf
