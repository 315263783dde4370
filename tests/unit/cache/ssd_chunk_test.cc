// Chunked SSD entries (format version 3, ssd_format.h): the format functions round-trip and
// find damage at the chunk where it is (and only there), and catch chunks moved to another
// index, a shorter entry or another entry; the store reads version-2 regions written by the old
// (unchunked) path; a streaming read hands out the verified chunks one by one, and a damaged
// chunk in the middle stops it exactly before that chunk, drops the entry and never shows a
// wrong byte; the cache serves a streaming SSD hit to its readers the same way.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cache/cache.h"
#include "cache/ssd_format.h"
#include "cache/ssd_store.h"
#include "conf/clock.h"
#include "tests/unit/cache/ssd_test_util.h"

namespace streamedge::cache {
namespace {

using namespace std::chrono_literals;
using ssd::ChunkedLayout;
using ssd::ChunkedView;
using ssd::EntryHeader;
using ssd::EntryMeta;
using ssd::kChunkBytes;
using testing::TempDir;

constexpr uint64_t kRegion = 1ull << 20;
constexpr uint64_t kStore = 8ull << 20;  // 8 regions

std::string pattern(size_t size, int seed) {
  std::string b;
  b.reserve(size);
  for (size_t i = 0; i < size; ++i) b += static_cast<char>('a' + (i * 7 + i / 4096 + seed) % 26);
  return b;
}

StoreKey testKey() {
  StoreKey k{};
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(i * 13 + 1);
  return k;
}

// One chunked entry built with the format functions, in memory.
struct Built {
  std::vector<uint8_t> bytes;
  ChunkedLayout layout;
  std::string head;
  std::string body;
};

Built build(const CacheKey& key, const std::string& head, const std::string& body,
            const EntryCipher* cipher, uint8_t nonce_seed = 7) {
  Built b;
  b.head = head;
  b.body = body;
  const size_t meta_head = sizeof(EntryMeta) + head.size();
  b.layout = ssd::chunkedLayout(meta_head, body.size(), cipher != nullptr);
  b.bytes.assign(b.layout.entry_bytes, 0xEE);
  EntryMeta m{};
  m.key_hi = key.hi;
  m.key_lo = key.lo;
  m.head_bytes = static_cast<uint32_t>(head.size());
  m.body_bytes = body.size();
  std::memcpy(b.bytes.data() + sizeof(EntryHeader), &m, sizeof(m));
  std::memcpy(b.bytes.data() + sizeof(EntryHeader) + sizeof(EntryMeta), head.data(), head.size());
  std::memcpy(b.bytes.data() + b.layout.body_at, body.data(), body.size());
  uint8_t nonce[kNonceBytes];
  for (size_t i = 0; i < kNonceBytes; ++i) nonce[i] = static_cast<uint8_t>(nonce_seed + i);
  uint64_t checksum = 0;
  EXPECT_TRUE(ssd::sealChunkedEntry(b.bytes.data(), 0, 0, nonce, key, CacheKey{}, head.size(),
                                    body.size(), cipher, &checksum));
  return b;
}

class ChunkFormatTest : public ::testing::TestWithParam<bool> {
 protected:
  const EntryCipher* cipher() const { return GetParam() ? &cipher_ : nullptr; }
  EntryCipher cipher_{testKey()};
  CacheKey key_ = makeKey("v", "/seg/1.ts", "");
};

TEST_P(ChunkFormatTest, RoundTripsEveryChunk) {
  // 3.5 chunks: the last one short.
  const std::string body = pattern(3 * kChunkBytes + kChunkBytes / 2, 1);
  Built b = build(key_, "HEADBLOB", body, cipher());
  ASSERT_EQ(b.layout.chunks, 4u);
  if (GetParam()) {
    // Sealed: the plaintext is nowhere in the entry.
    const std::string entry(b.bytes.begin(), b.bytes.end());
    EXPECT_EQ(entry.find(body.substr(0, 64)), std::string::npos);
    EXPECT_EQ(entry.find("HEADBLOB"), std::string::npos);
  }
  ChunkedView view;
  const char* why = "";
  ASSERT_TRUE(ssd::openChunkedEntry(b.bytes.data(), b.bytes.size(), cipher(), &view, &why)) << why;
  EXPECT_EQ(view.meta.body_bytes, body.size());
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(b.bytes.data() + sizeof(EntryHeader) +
                                                      sizeof(EntryMeta)),
                        view.meta.head_bytes),
            "HEADBLOB");
  for (uint32_t i = 0; i < view.layout.chunks; ++i) {
    EXPECT_TRUE(ssd::openChunk(b.bytes.data(), view, i, cipher())) << i;
  }
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(b.bytes.data() + view.layout.body_at),
                        body.size()),
            body);
  EXPECT_FALSE(ssd::openChunk(b.bytes.data(), view, view.layout.chunks, cipher()));
}

TEST_P(ChunkFormatTest, ADamagedChunkFailsThereAndNowhereElse) {
  const std::string body = pattern(4 * kChunkBytes + 100, 2);
  const Built clean = build(key_, "H", body, cipher());
  const uint32_t n = clean.layout.chunks;
  ASSERT_EQ(n, 5u);
  for (uint32_t bad = 0; bad < n; ++bad) {
    std::vector<uint8_t> bytes = clean.bytes;
    bytes[clean.layout.body_at + ssd::chunkBegin(bad) + 17] ^= 0x20;
    ChunkedView view;
    const char* why = "";
    // The meta and head do not cover the body bytes: they still open.
    ASSERT_TRUE(ssd::openChunkedEntry(bytes.data(), bytes.size(), cipher(), &view, &why)) << why;
    for (uint32_t i = 0; i < n; ++i) {
      EXPECT_EQ(ssd::openChunk(bytes.data(), view, i, cipher()), i != bad)
          << "damaged " << bad << ", chunk " << i;
    }
  }
  // A damaged chunk table entry (tag or checksum) fails the meta: it covers the table.
  std::vector<uint8_t> bytes = clean.bytes;
  bytes[clean.layout.table_at + clean.layout.table_entry * 2 + 3] ^= 0x01;
  ChunkedView view;
  const char* why = "";
  EXPECT_FALSE(ssd::openChunkedEntry(bytes.data(), bytes.size(), cipher(), &view, &why));
  EXPECT_STREQ(why, "checksum mismatch");
}

TEST_P(ChunkFormatTest, ReorderedChunksFail) {
  const std::string body = pattern(3 * kChunkBytes, 3);
  Built b = build(key_, "H", body, cipher());
  // Chunks 0 and 1 swapped, with their table entries: each is at the wrong index now.
  uint8_t* c0 = b.bytes.data() + b.layout.body_at;
  uint8_t* c1 = c0 + kChunkBytes;
  std::vector<uint8_t> tmp(c0, c0 + kChunkBytes);
  std::memcpy(c0, c1, kChunkBytes);
  std::memcpy(c1, tmp.data(), kChunkBytes);
  uint8_t* t0 = b.bytes.data() + b.layout.table_at;
  uint8_t* t1 = t0 + b.layout.table_entry;
  std::vector<uint8_t> tt(t0, t0 + b.layout.table_entry);
  std::memcpy(t0, t1, b.layout.table_entry);
  std::memcpy(t1, tt.data(), b.layout.table_entry);
  ChunkedView view;
  const char* why = "";
  // The table moved: the meta checksum sees it.
  EXPECT_FALSE(ssd::openChunkedEntry(b.bytes.data(), b.bytes.size(), cipher(), &view, &why));
  // Even with the meta taken as good, each chunk fails at its new index.
  Built fresh = build(key_, "H", body, cipher());
  ASSERT_TRUE(ssd::openChunkedEntry(fresh.bytes.data(), fresh.bytes.size(), cipher(), &view, &why));
  EXPECT_FALSE(ssd::openChunk(b.bytes.data(), view, 0, cipher()));
  EXPECT_FALSE(ssd::openChunk(b.bytes.data(), view, 1, cipher()));
  EXPECT_TRUE(ssd::openChunk(b.bytes.data(), view, 2, cipher()));
}

TEST_P(ChunkFormatTest, TruncationIsCaught) {
  const std::string body = pattern(3 * kChunkBytes, 4);
  const Built b = build(key_, "H", body, cipher());
  // The entry cut after two chunks, its header's size shrunk to match: the meta (which knows the
  // body length and the table) refuses it.
  {
    std::vector<uint8_t> cut = b.bytes;
    EntryHeader h;
    std::memcpy(&h, cut.data(), sizeof(h));
    h.entry_bytes = static_cast<uint32_t>(b.layout.body_at + 2 * kChunkBytes);
    std::memcpy(cut.data(), &h, sizeof(h));
    cut.resize(h.entry_bytes);
    ChunkedView view;
    const char* why = "";
    EXPECT_FALSE(ssd::openChunkedEntry(cut.data(), cut.size(), cipher(), &view, &why));
  }
  // A chunk read as one of a shorter entry (the count is in its AAD / checksum) fails. Each
  // check on its own copy: opening decrypts in place.
  std::vector<uint8_t> bytes = b.bytes;
  ChunkedView view;
  const char* why = "";
  ASSERT_TRUE(ssd::openChunkedEntry(bytes.data(), bytes.size(), cipher(), &view, &why));
  ChunkedView shorter = view;
  shorter.layout.chunks = 2;
  std::vector<uint8_t> copy = bytes;
  EXPECT_FALSE(ssd::openChunk(copy.data(), shorter, 1, cipher()));
  copy = bytes;
  EXPECT_TRUE(ssd::openChunk(copy.data(), view, 1, cipher()));
}

TEST_P(ChunkFormatTest, AChunkFromAnotherEntryFails) {
  const std::string body_a = pattern(2 * kChunkBytes, 5);
  const std::string body_b = pattern(2 * kChunkBytes, 6);
  const Built a = build(key_, "H", body_a, cipher(), /*nonce_seed=*/1);
  Built b = build(key_, "H", body_b, cipher(), /*nonce_seed=*/2);
  ChunkedView view;
  const char* why = "";
  ASSERT_TRUE(ssd::openChunkedEntry(b.bytes.data(), b.bytes.size(), cipher(), &view, &why));
  // A's chunk 1 bytes in B at the same index: fails B's tag (or checksum).
  std::vector<uint8_t> mixed = b.bytes;
  std::memcpy(mixed.data() + b.layout.body_at + kChunkBytes,
              a.bytes.data() + a.layout.body_at + kChunkBytes, kChunkBytes);
  EXPECT_FALSE(ssd::openChunk(mixed.data(), view, 1, cipher()));
  // With A's table entry too (openChunkedEntry decrypts in place: from B's sealed bytes with
  // that table entry swapped): B's meta refuses its changed table.
  Built b2 = build(key_, "H", body_b, cipher(), /*nonce_seed=*/2);
  std::memcpy(b2.bytes.data() + b2.layout.table_at + b2.layout.table_entry,
              a.bytes.data() + a.layout.table_at + a.layout.table_entry, b2.layout.table_entry);
  ChunkedView v2;
  EXPECT_FALSE(ssd::openChunkedEntry(b2.bytes.data(), b2.bytes.size(), cipher(), &v2, &why));
}

INSTANTIATE_TEST_SUITE_P(Modes, ChunkFormatTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& i) {
                           return i.param ? std::string("Encrypted") : std::string("Plain");
                         });

// --- the store -------------------------------------------------------------------------------

struct Obj {
  CacheKey key;
  std::shared_ptr<const ResponseHead> head;
  Freshness freshness;
  Ref<Body> body;
  std::string bytes;
};

Obj makeObj(int i, size_t size, WallTime now) {
  auto h = std::make_shared<ResponseHead>();
  h->status = 200;
  h->reason = "OK";
  h->headers = {{"Content-Type", "video/mp2t"}, {"ETag", "\"e" + std::to_string(i) + "\""}};
  h->content_length = size;
  h->buildWire();
  Freshness f;
  f.response_time = now;
  f.lifetime = conf::Seconds(3600);
  f.explicit_lifetime = true;
  Obj o{makeKey("v", "/seg/" + std::to_string(i) + ".ts", ""), h, f, {}, pattern(size, i)};
  o.body = Ref<Body>::make(std::optional<uint64_t>(size));
  o.body->append(reinterpret_cast<const uint8_t*>(o.bytes.data()), o.bytes.size());
  o.body->freeze();
  return o;
}

std::string bodyOf(const Body& body) {
  std::string out;
  const uint8_t* p = nullptr;
  for (uint64_t pos = 0;;) {
    const size_t n = body.peek(pos, &p);
    if (n == 0) break;
    out.append(reinterpret_cast<const char*>(p), n);
    pos += n;
  }
  return out;
}

class ChunkStoreTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override { ASSERT_TRUE(dir_.ok()); }
  void TearDown() override {
    engine_.reset();
    store_.reset();
  }
  void open(uint32_t write_version) {
    engine_.reset();
    store_.reset();
    SsdStoreOptions o;
    o.region_bytes = kRegion;
    o.encrypt = GetParam();
    if (GetParam()) o.key = testKey();
    o.write_format_version = write_version;
    o.log = [this](std::string_view l) { log_.emplace_back(l); };
    FileDeviceOptions fo;
    fo.path = dir_.file("store");
    fo.size_bytes = kStore;
    fo.log = nullptr;
    auto device = FileDevice::open(fo);
    ASSERT_TRUE(device.isOk());
    auto s = SsdStore::open(std::move(*device), std::move(o));
    ASSERT_TRUE(s.isOk()) << s.status().toString();
    store_ = std::move(*s);
    auto e = makeThreadPoolEngine(store_->device(), 1);
    ASSERT_TRUE(e.isOk());
    engine_ = std::move(*e);
  }
  uint32_t regionVersion(uint32_t region) {
    const std::vector<uint8_t> bytes = testing::readFileBytes(dir_.file("store"));
    ssd::RegionHeader h;
    std::memcpy(&h, bytes.data() + region * kRegion, sizeof(h));
    return h.version;
  }
  // Writes an object of `body_bytes` (key 1) and, in the next region, a small one (key 2, the
  // pad), so that region 0 is read from the device; returns {object, pad}.
  std::pair<Obj, Obj> writeWithPad(uint64_t body_bytes) {
    const WallTime now = SystemClock::instance().wallNow();
    body_size_ = body_bytes;
    Obj a = makeObj(1, body_size_, now);
    EXPECT_TRUE(store_->insert(a.key, a.head, a.freshness, a.body));
    EXPECT_TRUE(store_->flush().isOk());
    Obj pad = makeObj(2, 100, now);
    EXPECT_TRUE(store_->insert(pad.key, pad.head, pad.freshness, pad.body));
    EXPECT_TRUE(store_->flush().isOk());
    return {std::move(a), std::move(pad)};
  }
  // Flips one byte of the file at `offset` (of the body bytes `b` of an entry: found by content
  // when unencrypted, else by the known layout).
  void flipAt(uint64_t offset) {
    const std::vector<uint8_t> bytes = testing::readFileBytes(dir_.file("store"));
    ASSERT_LT(offset, bytes.size());
    ASSERT_TRUE(testing::patchFile(dir_.file("store"), offset,
                                   {static_cast<uint8_t>(bytes[offset] ^ 0x40)}));
  }
  // Where the body of the first entry of region 0 starts in the file.
  uint64_t firstBodyAt() {
    const std::vector<uint8_t> bytes = testing::readFileBytes(dir_.file("store"));
    EntryHeader h;
    std::memcpy(&h, bytes.data() + sizeof(ssd::RegionHeader), sizeof(h));
    EXPECT_TRUE(h.flags & ssd::kEntryFlagChunked);
    // The head part's length is in the clear header; the body length is the object's.
    const ChunkedLayout l = ssd::chunkedLayout(h.sealed_bytes, body_size_, GetParam());
    return sizeof(ssd::RegionHeader) + l.body_at;
  }

  TempDir dir_;
  std::unique_ptr<SsdStore> store_;
  std::unique_ptr<IoEngine> engine_;
  std::vector<std::string> log_;
  uint64_t body_size_ = 0;
};

TEST_P(ChunkStoreTest, VersionTwoRegionsWrittenByTheOldPathStillServe) {
  open(/*write_version=*/2);
  const WallTime now = SystemClock::instance().wallNow();
  Obj a = makeObj(1, 3 * kChunkBytes + 5, now);
  ASSERT_TRUE(store_->insert(a.key, a.head, a.freshness, a.body));
  ASSERT_TRUE(store_->flush().isOk());
  EXPECT_EQ(regionVersion(0), 2u);
  {
    const std::vector<uint8_t> bytes = testing::readFileBytes(dir_.file("store"));
    EntryHeader h;
    std::memcpy(&h, bytes.data() + sizeof(ssd::RegionHeader), sizeof(h));
    EXPECT_EQ(h.flags & ssd::kEntryFlagChunked, 0);  // the old, unchunked layout
  }
  open(ssd::kFormatVersion);  // a restart with the new code: the rebuild scans the v2 region
  EXPECT_EQ(store_->stats().rebuilt_objects, 1u);
  EXPECT_EQ(store_->stats().rebuild_skipped_regions, 0u);
  auto r = store_->readSync(a.key, *engine_);
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_EQ(bodyOf(*r->body), a.bytes);
  // New objects go to a version-3 region, and both read back, also after another restart.
  Obj b = makeObj(2, 2 * kChunkBytes + 9, now);
  ASSERT_TRUE(store_->insert(b.key, b.head, b.freshness, b.body));
  ASSERT_TRUE(store_->flush().isOk());
  EXPECT_EQ(regionVersion(1), ssd::kFormatVersion);
  open(ssd::kFormatVersion);
  EXPECT_EQ(store_->stats().rebuilt_objects, 2u);
  auto ra = store_->readSync(a.key, *engine_);
  auto rb = store_->readSync(b.key, *engine_);
  ASSERT_TRUE(ra.isOk());
  ASSERT_TRUE(rb.isOk());
  EXPECT_EQ(bodyOf(*ra->body), a.bytes);
  EXPECT_EQ(bodyOf(*rb->body), b.bytes);
  EXPECT_EQ(store_->stats().corrupt, 0u);
}

struct StreamResult {
  std::optional<Result<SsdHit>> hit;
  std::vector<uint64_t> lengths;  // the body's readable length at each progress call
  std::optional<Status> end;
  int calls = 0;
};

// A streaming read of `key`, polled to its end (bounded).
StreamResult streamRead(SsdStore& store, IoEngine& engine, const CacheKey& key,
                        const std::string& expected) {
  StreamResult out;
  EXPECT_TRUE(store.read(
      key, engine, [&out](Result<SsdHit> r) { out.hit.emplace(std::move(r)); },
      [&out, &expected](Status st, bool finished) {
        ++out.calls;
        const Body& body = *out.hit->value().body;
        out.lengths.push_back(body.length());
        // Every readable byte is the right one, at every step.
        EXPECT_EQ(bodyOf(body), expected.substr(0, body.length()));
        if (finished) out.end = st;
        return true;
      }));
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline &&
         !(out.hit && (!out.hit->isOk() || !(*out.hit)->streaming || out.end))) {
    engine.wait(20ms);
  }
  return out;
}

TEST_P(ChunkStoreTest, AStreamingReadHandsOutChunksAsTheyAreVerified) {
  open(ssd::kFormatVersion);
  const auto [a, pad] = writeWithPad(4 * kChunkBytes + 1000);
  StreamResult r = streamRead(*store_, *engine_, a.key, a.bytes);
  ASSERT_TRUE(r.hit && r.hit->isOk());
  EXPECT_TRUE((*r.hit)->streaming);
  ASSERT_TRUE(r.end.has_value());
  EXPECT_TRUE(r.end->isOk());
  // First chunk with the hit, then 1, 2, 4, ... chunks per progress call (one per turn of the
  // engine): chunk 1, chunks 2-3, chunk 4.
  EXPECT_EQ(r.lengths, (std::vector<uint64_t>{2 * kChunkBytes, 4 * kChunkBytes, body_size_}));
  EXPECT_EQ(bodyOf(*(*r.hit)->body), a.bytes);
  EXPECT_TRUE(store_->contains(a.key));
  // A whole read (no progress) verifies all chunks before answering.
  auto whole = store_->readSync(a.key, *engine_);
  ASSERT_TRUE(whole.isOk());
  EXPECT_FALSE(whole->streaming);
  EXPECT_EQ(bodyOf(*whole->body), a.bytes);
}

TEST_P(ChunkStoreTest, ADamagedChunkInTheMiddleStopsTheStreamBeforeItAndDropsTheEntry) {
  open(ssd::kFormatVersion);
  const auto [a, pad] = writeWithPad(5 * kChunkBytes);
  flipAt(firstBodyAt() + 2 * kChunkBytes + 1234);  // inside chunk 2 of 5
  StreamResult r = streamRead(*store_, *engine_, a.key, a.bytes);
  ASSERT_TRUE(r.hit && r.hit->isOk());
  ASSERT_TRUE(r.end.has_value());
  EXPECT_EQ(r.end->code(), Code::kCorrupt);
  // Chunks 0 and 1 were handed out; nothing of chunk 2 or after ever became readable.
  EXPECT_EQ(r.lengths, (std::vector<uint64_t>{2 * kChunkBytes, 2 * kChunkBytes}));
  EXPECT_EQ(bodyOf(*(*r.hit)->body), a.bytes.substr(0, 2 * kChunkBytes));
  EXPECT_FALSE(store_->contains(a.key));  // dropped
  EXPECT_EQ(store_->stats().corrupt, 1u);
  bool logged = false;
  for (const std::string& l : log_) {
    logged = logged || l.find("body chunk 2 of 5") != std::string::npos;
  }
  EXPECT_TRUE(logged);
  EXPECT_TRUE(store_->readSync(pad.key, *engine_).isOk());
}

// A damaged chunk in the middle of a turn's batch: the good chunks of the batch before it are
// handed out (and the readers get a turn to take them), nothing from it on.
TEST_P(ChunkStoreTest, ADamagedChunkInsideABatchHandsOutTheGoodChunksBeforeIt) {
  open(ssd::kFormatVersion);
  const auto [a, pad] = writeWithPad(8 * kChunkBytes);
  flipAt(firstBodyAt() + 5 * kChunkBytes + 77);  // chunk 5: in the third turn's batch (4-7)
  StreamResult r = streamRead(*store_, *engine_, a.key, a.bytes);
  ASSERT_TRUE(r.hit && r.hit->isOk());
  ASSERT_TRUE(r.end.has_value());
  EXPECT_EQ(r.end->code(), Code::kCorrupt);
  // Chunk 4 is handed out on the third turn, the damage reported on the fourth.
  EXPECT_EQ(r.lengths, (std::vector<uint64_t>{2 * kChunkBytes, 4 * kChunkBytes, 5 * kChunkBytes,
                                               5 * kChunkBytes}));
  EXPECT_EQ(bodyOf(*(*r.hit)->body), a.bytes.substr(0, 5 * kChunkBytes));
  EXPECT_FALSE(store_->contains(a.key));
  bool logged = false;
  for (const std::string& l : log_) {
    logged = logged || l.find("body chunk 5 of 8") != std::string::npos;
  }
  EXPECT_TRUE(logged);
}

// The same, when the reader stops wanting more right at that turn: the damage found is still
// reported and the entry dropped (not left for the next reader to find).
TEST_P(ChunkStoreTest, ADamageFoundWhenTheReaderStopsIsStillDropped) {
  open(ssd::kFormatVersion);
  const auto [a, pad] = writeWithPad(8 * kChunkBytes);
  flipAt(firstBodyAt() + 5 * kChunkBytes + 77);
  std::optional<Result<SsdHit>> hit;
  std::vector<uint64_t> lengths;
  std::optional<Status> end;
  ASSERT_TRUE(store_->read(
      a.key, *engine_, [&](Result<SsdHit> r) { hit.emplace(std::move(r)); },
      [&](Status st, bool finished) {
        lengths.push_back(hit->value().body->length());
        if (finished) end = st;
        return lengths.size() < 3;  // no more after the third call (chunk 4 handed out)
      }));
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline && store_->contains(a.key)) {
    engine_->wait(20ms);
  }
  ASSERT_TRUE(hit && hit->isOk());
  // The reader is told how it ended, with no byte more.
  EXPECT_EQ(lengths, (std::vector<uint64_t>{2 * kChunkBytes, 4 * kChunkBytes, 5 * kChunkBytes,
                                            5 * kChunkBytes}));
  ASSERT_TRUE(end.has_value());
  EXPECT_EQ(end->code(), Code::kCorrupt);
  EXPECT_FALSE(store_->contains(a.key));
  EXPECT_EQ(store_->stats().corrupt, 1u);
}

TEST_P(ChunkStoreTest, AWholeReadOfADamagedChunkIsAMiss) {
  open(ssd::kFormatVersion);
  const auto [a, pad] = writeWithPad(3 * kChunkBytes + 77);
  flipAt(firstBodyAt() + 3 * kChunkBytes + 10);  // the last, short chunk
  auto r = store_->readSync(a.key, *engine_);
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.status().code(), Code::kCorrupt);
  EXPECT_FALSE(store_->contains(a.key));
  // The rebuild skips it too (after a restart it is not indexed again).
  open(ssd::kFormatVersion);
  EXPECT_FALSE(store_->contains(a.key));
  EXPECT_TRUE(store_->contains(pad.key));
}

// --- the cache: a streaming SSD hit served to its readers ------------------------------------

class ChunkCacheTest : public ::testing::TestWithParam<bool> {
 protected:
  void TearDown() override {
    engine_.reset();  // pending SSD work holds fills of the cache: before the cache
    cache_.reset();
    store_.reset();
  }
  void start() {
    auto device = std::make_unique<MemoryDevice>(kStore);
    device_ = device.get();
    SsdStoreOptions o;
    o.region_bytes = kRegion;
    o.encrypt = GetParam();
    if (GetParam()) o.key = testKey();
    o.log = nullptr;
    auto store = SsdStore::open(std::move(device), std::move(o));
    ASSERT_TRUE(store.isOk());
    store_ = std::move(*store);
    conf::RamCacheConfig ram;
    ram.size_bytes = 8ull << 20;
    ram.max_object_bytes = 4ull << 20;
    cache_ = std::make_unique<Cache>(ram, SystemClock::instance());
    cache_->attachSsd(store_.get(), conf::SsdAdmission{});
    auto engine = makeThreadPoolEngine(store_->device(), 1);
    ASSERT_TRUE(engine.isOk());
    engine_ = std::move(*engine);
  }
  // `a` on the device (region 0, the writer moved on to region 1).
  void putOnDevice(const Obj& a) {
    ASSERT_TRUE(store_->insert(a.key, a.head, a.freshness, a.body));
    ASSERT_TRUE(store_->flush().isOk());
    Obj pad = makeObj(99, 100, a.freshness.response_time);
    ASSERT_TRUE(store_->insert(pad.key, pad.head, pad.freshness, pad.body));
    ASSERT_TRUE(store_->flush().isOk());
  }
  // One turn of the engine at a time (bounded), recording the readable body length whenever the
  // object has a head, until it is complete or aborted.
  std::vector<uint64_t> drive(const ObjectRef& object, const std::string& expected) {
    std::vector<uint64_t> seen;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    for (int n = 0; n < 1000 && std::chrono::steady_clock::now() < deadline; ++n) {
      engine_->wait(20ms);
      if (object->headPublished()) {
        const uint64_t len = object->body().length();
        if (seen.empty() || seen.back() != len) seen.push_back(len);
        // Whatever a reader can take now is the right bytes.
        EXPECT_EQ(bodyOf(object->body()), expected.substr(0, len));
      }
      const CacheObject::State st = object->state();
      if (st == CacheObject::State::kComplete || st == CacheObject::State::kAborted) break;
    }
    return seen;
  }

  MemoryDevice* device_ = nullptr;
  std::unique_ptr<SsdStore> store_;
  std::unique_ptr<Cache> cache_;
  std::unique_ptr<IoEngine> engine_;
};

TEST_P(ChunkCacheTest, ReadersGetEachVerifiedChunkBeforeTheWholeEntryIsChecked) {
  ASSERT_NO_FATAL_FAILURE(start());
  const Obj a = makeObj(1, 3 * kChunkBytes + 500, SystemClock::instance().wallNow());
  ASSERT_NO_FATAL_FAILURE(putOnDevice(a));
  LookupResult r = cache_->lookup(a.key, /*ssd_allowed=*/true);
  ASSERT_EQ(r.kind, LookupResult::Kind::kSsd);
  LookupResult follower = cache_->lookup(a.key, true);
  ASSERT_EQ(follower.kind, LookupResult::Kind::kBusy);
  bool missed = false;
  cache_->readFromSsd(std::move(r.fill), *engine_, [&](FillWriter) { missed = true; });
  const std::vector<uint64_t> seen = drive(follower.object, a.bytes);
  EXPECT_FALSE(missed);
  ASSERT_TRUE(follower.object->isComplete());
  EXPECT_TRUE(follower.object->fromSsd());
  // Published with the first chunk, then grown by 1, then 2 chunks (twice as many each turn).
  EXPECT_EQ(seen, (std::vector<uint64_t>{kChunkBytes, 2 * kChunkBytes, a.bytes.size()}));
  EXPECT_EQ(bodyOf(follower.object->body()), a.bytes);
  EXPECT_EQ(cache_->stats().ssd_hits, 1u);
  EXPECT_EQ(cache_->stats().fills_in_flight, 0u);
  EXPECT_TRUE(store_->contains(a.key));
}

TEST_P(ChunkCacheTest, ADamagedChunkCutsTheReadersThereAndTheEntryIsGone) {
  ASSERT_NO_FATAL_FAILURE(start());
  const Obj a = makeObj(1, 5 * kChunkBytes, SystemClock::instance().wallNow());
  ASSERT_NO_FATAL_FAILURE(putOnDevice(a));
  {
    // Chunk 2 of 5 damaged on the device (after the flushes: no I/O in flight).
    std::vector<uint8_t>& bytes = device_->bytes();
    EntryHeader h;
    std::memcpy(&h, bytes.data() + sizeof(ssd::RegionHeader), sizeof(h));
    ASSERT_TRUE(h.flags & ssd::kEntryFlagChunked);
    const ChunkedLayout l = ssd::chunkedLayout(h.sealed_bytes, a.bytes.size(), GetParam());
    bytes[sizeof(ssd::RegionHeader) + l.body_at + 2 * kChunkBytes + 4321] ^= 0x08;
  }
  LookupResult r = cache_->lookup(a.key, /*ssd_allowed=*/true);
  ASSERT_EQ(r.kind, LookupResult::Kind::kSsd);
  LookupResult follower = cache_->lookup(a.key, true);
  ASSERT_EQ(follower.kind, LookupResult::Kind::kBusy);
  bool missed = false;
  cache_->readFromSsd(std::move(r.fill), *engine_, [&](FillWriter) { missed = true; });
  const std::vector<uint64_t> seen = drive(follower.object, a.bytes);
  // The readers had the two verified chunks, then the fill was aborted (their connections are
  // cut there); never a byte of the damaged chunk.
  EXPECT_EQ(follower.object->state(), CacheObject::State::kAborted);
  EXPECT_EQ(seen, (std::vector<uint64_t>{kChunkBytes, 2 * kChunkBytes}));
  EXPECT_EQ(bodyOf(follower.object->body()), a.bytes.substr(0, 2 * kChunkBytes));
  EXPECT_FALSE(missed);  // bytes were out already: no origin fill behind the readers' backs
  EXPECT_FALSE(store_->contains(a.key));
  EXPECT_EQ(store_->stats().corrupt, 1u);
  EXPECT_EQ(cache_->stats().fills_in_flight, 0u);
  // The next request is a miss: it goes to the origin.
  LookupResult again = cache_->lookup(a.key, true);
  EXPECT_EQ(again.kind, LookupResult::Kind::kMiss);
}

INSTANTIATE_TEST_SUITE_P(Modes, ChunkCacheTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& i) {
                           return i.param ? std::string("Encrypted") : std::string("Plain");
                         });

INSTANTIATE_TEST_SUITE_P(Modes, ChunkStoreTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& i) {
                           return i.param ? std::string("Encrypted") : std::string("Plain");
                         });

}  // namespace
}  // namespace streamedge::cache
