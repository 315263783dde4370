// The index checkpoint's format (version 4): every field round-trips, with and without
// encryption; entries (and their labels) come out in key order whatever order they went in;
// a version 3 file (any order) is read and sorted; a file whose entries are out of order,
// repeated or damaged is refused (the store then scans the whole device).
#include "cache/ssd_checkpoint.h"

#include <gtest/gtest.h>

#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

namespace streamedge::cache::ssd {
namespace {

// Offsets in the file's header (see ssd_checkpoint.cc): the tests rewrite it like damage would.
constexpr size_t kVersionAt = 8;
constexpr size_t kPayloadChecksumAt = 64;
constexpr size_t kHeaderChecksumAt = 104;
constexpr size_t kHeaderBytes = 112;

CacheKey key(int i) { return makeKey("v", "/seg/" + std::to_string(i) + ".ts", ""); }

Checkpoint sample(int count) {
  Checkpoint cp;
  cp.region_bytes = 1 << 20;
  cp.region_count = 64;
  cp.resume_region = 7;
  cp.resume_seq = 1234;
  cp.names.emplace_back();
  cp.names.push_back({"origin"});
  for (int i = 0; i < count; ++i) {
    CheckpointEntry e;
    e.key = key(i);
    e.primary = i % 5 == 0 ? key(1000 + i) : CacheKey{};
    e.names = i % 5 == 0 ? 1 : 0;
    e.region = static_cast<uint32_t>(i % 64);
    e.offset = static_cast<uint32_t>(64 + i * 8);
    e.entry_bytes = 4096;
    e.seq = 100 + static_cast<uint64_t>(i % 64);
    e.checksum = 0x1234'0000u + static_cast<uint64_t>(i);
    e.body_bytes = 4000;
    e.fresh_until_s = 1'800'000'000 + i;
    e.usable_until_s = 1'800'000'060 + i;
    e.validators = i % 2 == 0 ? kCheckpointValidators : kCheckpointInvalidated;
    e.key_id = static_cast<uint32_t>(i % 3);
    e.stored_at_s = 1'700'000'000 + i;
    cp.entries.push_back(e);
    PurgeLabels l;
    if (i % 4 != 3) {
      l.vhost = "v";
      l.path = "/seg/" + std::to_string(i) + ".ts";
      l.tags = i % 2 ? "tag-" + std::to_string(i) : "";
    }
    cp.labels.push_back(l);
  }
  return cp;
}

// The label an entry of sample() carries, by its key (labels must follow their entries).
std::string pathOf(const CacheKey& k, int count) {
  for (int i = 0; i < count; ++i) {
    if (key(i) == k) return i % 4 != 3 ? "/seg/" + std::to_string(i) + ".ts" : "";
  }
  return "?";
}

template <class Entries>
bool sorted(const Entries& entries) {
  for (size_t i = 1; i < entries.size(); ++i) {
    if (!checkpointKeyLess(entries[i - 1].key, entries[i].key)) return false;
  }
  return true;
}

CheckpointBytes encoded(const Checkpoint& cp, const EntryCipher* cipher) {
  const std::vector<uint8_t> bytes = encodeCheckpoint(cp, cipher);
  return CheckpointBytes(bytes.begin(), bytes.end());
}

// Rewrites the checksums of an unencrypted checkpoint after a test changed its bytes.
void reseal(CheckpointBytes& bytes) {
  const uint64_t payload = XXH3_64bits(bytes.data() + kHeaderBytes, bytes.size() - kHeaderBytes);
  std::memcpy(bytes.data() + kPayloadChecksumAt, &payload, 8);
  const uint64_t header = XXH3_64bits(bytes.data(), kHeaderChecksumAt);  // tag is zero here
  std::memcpy(bytes.data() + kHeaderChecksumAt, &header, 8);
}

// Offset of entry `n` in an unencrypted checkpoint with sample()'s name table.
size_t entryAt(size_t n) {
  const size_t names = 4 + 4 + 4 + std::string("origin").size();
  return kHeaderBytes + names + n * sizeof(CheckpointEntry);
}

TEST(SsdCheckpoint, Version4RoundTripsEveryFieldInKeyOrder) {
  const Checkpoint in = sample(200);
  ASSERT_FALSE(sorted(in.entries));  // the input is in write order, not key order
  for (bool encrypted : {false, true}) {
    StoreKey k{};
    k.fill(0x42);
    EntryCipher cipher(k);
    const EntryCipher* c = encrypted ? &cipher : nullptr;
    CheckpointBytes bytes = encoded(in, c);
    ASSERT_FALSE(bytes.empty());
    uint32_t version = 0;
    std::memcpy(&version, bytes.data() + kVersionAt, 4);
    EXPECT_EQ(version, 4u);
    if (!encrypted) {
      // Sorted in the file itself, not only after decoding.
      std::vector<CheckpointEntry> raw(in.entries.size());
      std::memcpy(raw.data(), bytes.data() + entryAt(0), raw.size() * sizeof(CheckpointEntry));
      EXPECT_TRUE(sorted(raw));
    }
    Checkpoint out;
    const char* why = "";
    ASSERT_TRUE(decodeCheckpoint(bytes, c, &out, &why)) << why;
    EXPECT_EQ(out.region_bytes, in.region_bytes);
    EXPECT_EQ(out.region_count, in.region_count);
    EXPECT_EQ(out.resume_region, in.resume_region);
    EXPECT_EQ(out.resume_seq, in.resume_seq);
    EXPECT_EQ(out.encrypted, encrypted);
    ASSERT_EQ(out.names.size(), 2u);
    EXPECT_EQ(out.names[1], VaryNames{"origin"});
    ASSERT_EQ(out.entries.size(), in.entries.size());
    EXPECT_TRUE(out.labels.empty());  // read from the file's bytes, not copied per entry
    ASSERT_EQ(out.label_at.size(), in.entries.size());
    EXPECT_TRUE(sorted(out.entries));
    for (size_t n = 0; n < out.entries.size(); ++n) {
      const CheckpointEntry& e = out.entries[n];
      const CheckpointEntry* orig = nullptr;
      for (const CheckpointEntry& x : in.entries) {
        if (x.key == e.key) orig = &x;
      }
      ASSERT_NE(orig, nullptr);
      EXPECT_EQ(std::memcmp(orig, &e, sizeof(e)), 0) << n;
      const PurgeLabelsView l = labelsAt(out, n);
      EXPECT_EQ(l.path, pathOf(e.key, 200)) << "labels follow their entries";
      EXPECT_EQ(l.vhost, l.path.empty() ? "" : "v");
      // And the binary search finds each one.
      EXPECT_EQ(findCheckpointEntry(out.entries, e.key), &e);
    }
    EXPECT_EQ(findCheckpointEntry(out.entries, key(100'000)), nullptr);
  }
}

TEST(SsdCheckpoint, ALargeCheckpointOnHugePageMemoryRoundTrips) {
  // 20,000 entries (2 MB): its buffers are mapped on their own (CheckpointAllocator).
  const Checkpoint in = sample(20'000);
  CheckpointBytes bytes = encoded(in, nullptr);
  Checkpoint out;
  const char* why = "";
  ASSERT_TRUE(decodeCheckpoint(bytes, nullptr, &out, &why)) << why;
  ASSERT_EQ(out.entries.size(), 20'000u);
  EXPECT_TRUE(sorted(out.entries));
  for (int i : {0, 1, 4, 777, 19'999}) {
    const CheckpointEntry* e = findCheckpointEntry(out.entries, key(i));
    ASSERT_NE(e, nullptr) << i;
    EXPECT_EQ(e->checksum, 0x1234'0000u + static_cast<uint64_t>(i));
    EXPECT_EQ(labelsAt(out, static_cast<size_t>(e - out.entries.data())).path, pathOf(key(i), 20'000));
  }
}

TEST(SsdCheckpoint, AnEmptyCheckpointRoundTrips) {
  Checkpoint in = sample(0);
  CheckpointBytes bytes = encoded(in, nullptr);
  Checkpoint out;
  const char* why = "";
  ASSERT_TRUE(decodeCheckpoint(bytes, nullptr, &out, &why)) << why;
  EXPECT_TRUE(out.entries.empty());
  EXPECT_EQ(findCheckpointEntry(out.entries, key(1)), nullptr);
}

TEST(SsdCheckpoint, AVersion3CheckpointInWriteOrderIsReadAndSorted) {
  const Checkpoint in = sample(3);
  CheckpointBytes bytes = encoded(in, nullptr);
  // What version 3 wrote: the same layout, entries (and labels) in any order. Reverse the
  // sorted entries and their labels, then call it version 3.
  Checkpoint sorted_cp;
  {
    CheckpointBytes copy = bytes;
    const char* why = "";
    ASSERT_TRUE(decodeCheckpoint(copy, nullptr, &sorted_cp, &why)) << why;
  }
  Checkpoint v3;
  v3.entries = sorted_cp.entries;
  for (size_t n = 0; n < v3.entries.size(); ++n) v3.labels.push_back(labelsAt(sorted_cp, n).copy());
  std::reverse(v3.entries.begin(), v3.entries.end());
  std::reverse(v3.labels.begin(), v3.labels.end());
  CheckpointBytes reversed = bytes;
  for (size_t n = 0; n < v3.entries.size(); ++n) {
    std::memcpy(reversed.data() + entryAt(n), &v3.entries[n], sizeof(CheckpointEntry));
  }
  // Labels: rewrite the table in the reversed order.
  reversed.resize(entryAt(v3.entries.size()));
  for (const PurgeLabels& l : v3.labels) {
    for (const std::string* str : {&l.vhost, &l.path, &l.tags}) {
      const uint32_t len = static_cast<uint32_t>(str->size());
      const size_t at = reversed.size();
      reversed.resize(at + 4 + len);
      std::memcpy(reversed.data() + at, &len, 4);
      std::memcpy(reversed.data() + at + 4, str->data(), len);
    }
  }
  ASSERT_EQ(reversed.size(), bytes.size());
  {
    // Out of order as version 4: refused.
    CheckpointBytes v4 = reversed;
    reseal(v4);
    Checkpoint out;
    const char* why = "";
    EXPECT_FALSE(decodeCheckpoint(v4, nullptr, &out, &why));
    EXPECT_STREQ(why, "its entries are not in key order");
  }
  const uint32_t three = 3;
  std::memcpy(reversed.data() + kVersionAt, &three, 4);
  reseal(reversed);
  Checkpoint out;
  const char* why = "";
  ASSERT_TRUE(decodeCheckpoint(reversed, nullptr, &out, &why)) << why;
  ASSERT_EQ(out.entries.size(), 3u);
  EXPECT_TRUE(sorted(out.entries));
  for (size_t n = 0; n < 3; ++n) {
    EXPECT_EQ(std::memcmp(&out.entries[n], &sorted_cp.entries[n], sizeof(CheckpointEntry)), 0);
    EXPECT_EQ(labelsAt(out, n).path, pathOf(out.entries[n].key, 3));
  }
}

TEST(SsdCheckpoint, ARepeatedKeyOrDamageOrAnotherVersionIsRefused) {
  const Checkpoint in = sample(4);
  const CheckpointBytes good = encoded(in, nullptr);
  {
    // The second entry made a copy of the first: a key twice.
    CheckpointBytes bytes = good;
    std::memcpy(bytes.data() + entryAt(1), bytes.data() + entryAt(0), sizeof(CheckpointEntry));
    reseal(bytes);
    Checkpoint out;
    const char* why = "";
    EXPECT_FALSE(decodeCheckpoint(bytes, nullptr, &out, &why));
    EXPECT_STREQ(why, "its entries are not in key order");
  }
  {
    CheckpointBytes bytes = good;
    bytes[entryAt(2) + 3] ^= 0x10;  // not resealed: damage
    Checkpoint out;
    const char* why = "";
    EXPECT_FALSE(decodeCheckpoint(bytes, nullptr, &out, &why));
    EXPECT_STREQ(why, "payload checksum mismatch");
  }
  {
    CheckpointBytes bytes = good;
    const uint32_t two = 2;
    std::memcpy(bytes.data() + kVersionAt, &two, 4);
    reseal(bytes);
    Checkpoint out;
    const char* why = "";
    EXPECT_FALSE(decodeCheckpoint(bytes, nullptr, &out, &why));
    EXPECT_STREQ(why, "another checkpoint version");
  }
}

}  // namespace
}  // namespace streamedge::cache::ssd
