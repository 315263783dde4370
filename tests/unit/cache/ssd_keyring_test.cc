// SsdKeyring on real files: data keys are made per vhost, survive a reopen under the same store
// key, are gone from the file (and from memory) once destroyed, and a damaged keyring or one
// under another store key yields no key at all (never a wrong one), with a log line.
#include "cache/ssd_keyring.h"

#include <gtest/gtest.h>

#include <sys/stat.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "tests/unit/cache/ssd_test_util.h"

namespace streamedge::cache {
namespace {

using testing::patchFile;
using testing::readFileBytes;
using testing::TempDir;

StoreKey storeKey(uint8_t fill) {
  StoreKey k;
  k.fill(fill);
  return k;
}

// Seals a probe with `cipher` and opens it with `other`: true when they hold the same key.
bool sameKey(const EntryCipher& cipher, const EntryCipher& other) {
  uint8_t nonce[kNonceBytes] = {1, 2, 3};
  uint8_t data[16] = "probe-probe-pro";
  uint8_t tag[kTagBytes];
  if (!cipher.seal(nonce, nullptr, 0, data, sizeof data, tag)) return false;
  return other.open(nonce, nullptr, 0, data, sizeof data, tag) &&
         std::memcmp(data, "probe-probe-pro", sizeof data) == 0;
}

class SsdKeyringTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(dir_.ok()); }
  std::unique_ptr<SsdKeyring> open(uint8_t key = 0x11) {
    return std::make_unique<SsdKeyring>(storeKey(key), path_,
                                        [this](std::string_view l) { log_ += std::string(l) + "\n"; });
  }
  TempDir dir_;
  std::string path_ = dir_.file("store.keys");
  std::string log_;
};

TEST_F(SsdKeyringTest, EachVhostGetsItsOwnKeyWhichSurvivesAReopen) {
  auto ring = open();
  auto a = ring->keyFor("tv");
  auto b = ring->keyFor("radio");
  ASSERT_TRUE(a.isOk() && b.isOk());
  EXPECT_NE(a->first, kStoreKeyId);
  EXPECT_NE(a->first, b->first);
  EXPECT_FALSE(sameKey(*a->second, *b->second));
  // Asked again: the same key, not a new one.
  auto again = ring->keyFor("tv");
  ASSERT_TRUE(again.isOk());
  EXPECT_EQ(again->first, a->first);
  EXPECT_EQ(ring->stats().created, 2u);
  // Durable at once: the file is there, private, and holds no key in the clear.
  struct stat st {};
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  auto reopened = open();
  EXPECT_TRUE(reopened->stats().loaded);
  auto a2 = reopened->cipher(a->first);
  auto b2 = reopened->cipher(b->first);
  ASSERT_TRUE(a2 && b2);
  EXPECT_TRUE(sameKey(*a->second, *a2));
  EXPECT_TRUE(sameKey(*b->second, *b2));
  auto a3 = reopened->keyFor("tv");
  ASSERT_TRUE(a3.isOk());
  EXPECT_EQ(a3->first, a->first);
  // A new vhost after the reopen gets an id never given out before.
  auto c = reopened->keyFor("news");
  ASSERT_TRUE(c.isOk());
  EXPECT_GT(c->first, std::max(a->first, b->first));
  EXPECT_EQ(log_, "");
}

TEST_F(SsdKeyringTest, DestroyedKeyIsGoneFromMemoryAndFromTheFileAndTheVhostGetsAFreshOne) {
  auto ring = open();
  auto a = ring->keyFor("tv");
  auto b = ring->keyFor("radio");
  ASSERT_TRUE(a.isOk() && b.isOk());
  const std::shared_ptr<const EntryCipher> old_tv = a->second;
  auto destroyed = ring->destroy("tv");
  ASSERT_TRUE(destroyed.isOk());
  EXPECT_EQ(*destroyed, a->first);
  EXPECT_EQ(ring->cipher(a->first), nullptr);
  EXPECT_FALSE(ring->known(a->first));
  EXPECT_TRUE(ring->known(b->first));
  // A vhost without a key: nothing to destroy.
  auto none = ring->destroy("tv");
  ASSERT_TRUE(none.isOk());
  EXPECT_EQ(*none, kStoreKeyId);

  // The file no longer holds it: a reopen does not know the id, with the store key or any other.
  auto reopened = open();
  EXPECT_EQ(reopened->cipher(a->first), nullptr);
  ASSERT_NE(reopened->cipher(b->first), nullptr);
  std::vector<ssd::KeyringRecord> records;
  uint32_t next_id = 0;
  const char* why = "";
  ASSERT_TRUE(ssd::decodeKeyring(readFileBytes(path_), storeKey(0x11), &records, &next_id, &why)) << why;
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].vhost, "radio");
  EXPECT_FALSE(sameKey(*old_tv, EntryCipher(records[0].key)));
  // Nor the temporary file, nor anything else in the directory.
  EXPECT_TRUE(readFileBytes(path_ + ".tmp").empty());

  // The vhost's next key is a new one, under a new id.
  auto fresh = reopened->keyFor("tv");
  ASSERT_TRUE(fresh.isOk());
  EXPECT_NE(fresh->first, a->first);
  EXPECT_FALSE(sameKey(*old_tv, *fresh->second));
}

TEST_F(SsdKeyringTest, ADamagedKeyringGivesNoKeysAndIsLoggedNeverACrash) {
  uint32_t id = 0;
  {
    auto ring = open();
    auto a = ring->keyFor("tv");
    ASSERT_TRUE(a.isOk());
    id = a->first;
  }
  const std::vector<uint8_t> good = readFileBytes(path_);
  ASSERT_GT(good.size(), 60u);
  // Every single-byte flip anywhere in the file: the keyring refuses the whole file.
  for (size_t at = 0; at < good.size(); ++at) {
    ASSERT_TRUE(patchFile(path_, at, {static_cast<uint8_t>(good[at] ^ 0x04)}));
    log_.clear();
    auto ring = open();
    EXPECT_EQ(ring->cipher(id), nullptr) << "flip at " << at;
    EXPECT_TRUE(ring->stats().load_failed) << at;
    EXPECT_NE(log_.find("unusable"), std::string::npos) << log_;
    ASSERT_TRUE(patchFile(path_, at, {good[at]}));
  }
  // Cut short, and empty.
  ASSERT_EQ(::truncate(path_.c_str(), static_cast<off_t>(good.size() - 5)), 0);
  EXPECT_EQ(open()->cipher(id), nullptr);
  ASSERT_EQ(::truncate(path_.c_str(), 0), 0);
  EXPECT_EQ(open()->cipher(id), nullptr);
  // The damaged keyring is replaced at the next change, and that works again.
  {
    auto ring = open();
    ASSERT_TRUE(ring->keyFor("radio").isOk());
  }
  auto ring = open();
  EXPECT_FALSE(ring->stats().load_failed);
  EXPECT_EQ(ring->vhosts().size(), 1u);
}

TEST_F(SsdKeyringTest, AKeyringUnderAnotherStoreKeyIsRefused) {
  uint32_t id = 0;
  {
    auto ring = open(0x11);
    auto a = ring->keyFor("tv");
    ASSERT_TRUE(a.isOk());
    id = a->first;
  }
  auto other = open(0x22);
  EXPECT_EQ(other->cipher(id), nullptr);
  EXPECT_TRUE(other->stats().load_failed);
  EXPECT_NE(log_.find("another store key"), std::string::npos) << log_;
  std::vector<ssd::KeyringRecord> records;
  uint32_t next_id = 0;
  const char* why = "";
  EXPECT_FALSE(ssd::decodeKeyring(readFileBytes(path_), storeKey(0x22), &records, &next_id, &why));
  EXPECT_TRUE(records.empty());
}

TEST_F(SsdKeyringTest, InMemoryKeyringWritesNoFile) {
  SsdKeyring ring(storeKey(0x33), "", nullptr);
  auto a = ring.keyFor("tv");
  ASSERT_TRUE(a.isOk());
  EXPECT_TRUE(ring.known(a->first));
  auto d = ring.destroy("tv");
  ASSERT_TRUE(d.isOk());
  EXPECT_EQ(*d, a->first);
  EXPECT_FALSE(ring.known(a->first));
  EXPECT_TRUE(readFileBytes(path_).empty());
}

TEST_F(SsdKeyringTest, AnUnwritableKeyringMakesNoKey) {
  path_ = dir_.file("no-such-dir/store.keys");
  auto ring = open();
  auto a = ring->keyFor("tv");
  ASSERT_FALSE(a.isOk());
  EXPECT_EQ(a.status().code(), Code::kIo);
  EXPECT_TRUE(ring->vhosts().empty());
  EXPECT_EQ(ring->stats().write_errors, 1u);
}

}  // namespace
}  // namespace streamedge::cache
