// The SSD index checkpoint: a snapshot of the store's index in a file beside the store, so that
// a restart (or a binary upgrade) rebuilds only the regions written after it instead of
// scanning the whole device (about a second per GiB).
//
// File layout (little-endian):
//   CheckpointHeader (clear, authenticated) | payload (sealed with the store key when the
//   store is encrypted: AES-256-GCM, random nonce, the header as AAD)
//   payload = names (Vary field-name lists of variants), then entries (one per indexed object,
//   in key order since version 4), then (version 2) the entries' purge labels in the same
//   order (purge_labels.h).
// The header's checksum is xxh3-64 of the plaintext payload; the header has its own checksum.
//
// What the checkpoint promises: every entry it lists was on the device, verified, in a region
// whose sequence number it records, at the time it was written; regions written later start at
// `resume_region` with a sequence number >= `resume_seq` and follow in ring order (the writer
// writes regions in ring order with increasing sequence numbers). The store loads it, then
// scans forward from resume_region while region headers say seq >= resume_seq, and lets those
// scans replace (and their tombstones delete) what the checkpoint said. Reads still verify
// every entry, so a checkpoint that lied would cost misses, never a wrong byte.
//
// Entries are sorted by key (checkpointKeyLess) in the file and after decoding (a version 3
// file, unsorted, is sorted when it is decoded): while the store builds its index from them, it
// answers lookups from the decoded array by binary search (findCheckpointEntry).
//
// A checkpoint is consumed at open (the file is removed before anything is written), so a crash
// later can never leave one that is older than the device. Pure functions and file I/O;
// thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "cache/cache_key.h"
#include "cache/purge_labels.h"
#include "cache/ssd_crypto.h"
#include "cache/vary.h"
#include "conf/status.h"

namespace streamedge::cache::ssd {

// Memory for a loaded checkpoint (tens to hundreds of MB, written once, read until the index is
// built): blocks of 1 MiB and more are mapped on their own and asked for transparent huge pages
// (madvise), so that touching them costs one page fault per 2 MiB instead of per 4 KiB. On a
// VM a page fault costs microseconds: per 4 KiB that was most of the time to load a large
// checkpoint. Smaller blocks come from operator new.
void* allocateCheckpointMemory(size_t bytes);
void freeCheckpointMemory(void* p, size_t bytes);
template <class T>
struct CheckpointAllocator {
  using value_type = T;
  CheckpointAllocator() = default;
  template <class U>
  CheckpointAllocator(const CheckpointAllocator<U>&) noexcept {}
  T* allocate(size_t n) { return static_cast<T*>(allocateCheckpointMemory(n * sizeof(T))); }
  void deallocate(T* p, size_t n) noexcept { freeCheckpointMemory(p, n * sizeof(T)); }
  friend bool operator==(const CheckpointAllocator&, const CheckpointAllocator&) { return true; }
};
template <class T>
using CheckpointVector = std::vector<T, CheckpointAllocator<T>>;
using CheckpointBytes = CheckpointVector<uint8_t>;

inline constexpr uint32_t kCheckpointValidators = 1;   // ETag or Last-Modified
inline constexpr uint32_t kCheckpointInvalidated = 2;  // soft-purged (SsdStore::invalidate)

struct CheckpointEntry {
  CacheKey key;
  CacheKey primary;           // a variant's URL key; zero when not a variant
  uint32_t region = 0;
  uint32_t offset = 0;
  uint32_t entry_bytes = 0;
  uint32_t names = 0;         // index into Checkpoint::names; 0 = none (not a variant)
  uint64_t seq = 0;           // the region's sequence number
  uint64_t checksum = 0;
  uint64_t body_bytes = 0;
  int64_t fresh_until_s = 0;
  int64_t usable_until_s = 0;
  uint32_t validators = 0;    // kCheckpointValidators | kCheckpointInvalidated
  uint32_t key_id = 0;        // the data key that sealed it (was reserved, zero: the store key)
  int64_t stored_at_s = 0;    // response time (version 3): retention runs from it (retention.h)
};
static_assert(sizeof(CheckpointEntry) == 104);

// The order of checkpoint entries: by key.hi, then key.lo.
inline bool checkpointKeyLess(const CacheKey& a, const CacheKey& b) {
  return a.hi != b.hi ? a.hi < b.hi : a.lo < b.lo;
}

struct Checkpoint {
  uint64_t region_bytes = 0;
  uint32_t region_count = 0;
  bool encrypted = false;
  std::array<uint8_t, 8> key_check{};
  uint32_t resume_region = 0;
  uint64_t resume_seq = 0;
  std::vector<VaryNames> names;  // [0] is the empty list ("none")
  CheckpointVector<CheckpointEntry> entries;  // decoded: in key order, one per key
  // Purge labels to encode, one per entry (same order); empty labels for objects without. May
  // be empty as a whole (no labels at all). Left empty by decodeCheckpoint(), which keeps the
  // file's bytes instead (below): no allocation per entry at load. Read them with labelsAt().
  std::vector<PurgeLabels> labels;
  CheckpointBytes label_bytes;       // decoded: the (decrypted) file
  std::vector<uint64_t> label_at;    // decoded: per entry, where its labels start in it
};

// An entry's purge labels, as views into the checkpoint (valid while it lives, unchanged).
struct PurgeLabelsView {
  std::string_view vhost;
  std::string_view path;
  std::string_view tags;
  bool empty() const { return vhost.empty() && path.empty() && tags.empty(); }
  PurgeLabels copy() const { return {std::string(vhost), std::string(path), std::string(tags)}; }
};
// The labels of entry `i`: decoded ones, or those given to encode; empty when there are none.
PurgeLabelsView labelsAt(const Checkpoint& cp, size_t i);

// The entry of `key` in `entries` (sorted by key, as decodeCheckpoint() leaves them), or null.
const CheckpointEntry* findCheckpointEntry(const CheckpointVector<CheckpointEntry>& entries,
                                           const CacheKey& key);

// The file contents (entries written in key order, whatever their order in `cp`; the labels
// follow them); `cipher` null when the store is not encrypted. Empty on a CSPRNG or
// cipher failure.
std::vector<uint8_t> encodeCheckpoint(const Checkpoint& cp, const EntryCipher* cipher);
// Parses and verifies `bytes` (decrypted in place). False with `why` when anything is off:
// magic, version (3 and 4 are read), lengths, checksums, tag (wrong key or altered), an
// encryption mode that is not the caller's, entries out of key order or repeated. On success
// `bytes` is moved into out->label_bytes.
bool decodeCheckpoint(CheckpointBytes& bytes, const EntryCipher* cipher, Checkpoint* out,
                      const char** why);

// Writes `bytes` to `path` atomically: a temporary file beside it, fsync, rename, fsync of the
// directory. Mode 0600.
Status writeCheckpointFile(const std::string& path, const std::vector<uint8_t>& bytes);
// The whole file; kNotFound when there is none.
Result<CheckpointBytes> readCheckpointFile(const std::string& path);
// Removes `path` (and makes the removal durable). No error when it is already gone.
Status removeCheckpointFile(const std::string& path);

}  // namespace streamedge::cache::ssd
