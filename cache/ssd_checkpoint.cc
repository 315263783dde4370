#include "cache/ssd_checkpoint.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>

#include <xxhash.h>

#include "cache/file_io.h"

namespace streamedge::cache::ssd {

namespace {

constexpr uint64_t kCheckpointMagic = 0x31504b43'45455453ull;  // "STEECKP1"
// 2: purge labels after the entries (a version 1 checkpoint is refused: the store scans).
// 3: each entry carries its response time (retention); an older checkpoint is refused.
// 4: entries (and their labels) in key order, so that the store can answer lookups from the
//    loaded array by binary search while it builds its index. A version 3 checkpoint (same
//    layout, any order) is still read: it is sorted after decoding, once.
constexpr uint32_t kCheckpointVersion = 4;
constexpr uint32_t kUnsortedCheckpointVersion = 3;
constexpr uint32_t kFlagEncrypted = 1;
// Bounds that no real store reaches; a header beyond them is damage.
constexpr uint64_t kMaxNames = 1u << 16;
constexpr uint64_t kMaxNameBytes = 1u << 12;

struct CheckpointHeader {
  uint64_t magic;
  uint32_t version;
  uint32_t flags;            // kFlagEncrypted
  uint64_t region_bytes;
  uint32_t region_count;
  uint32_t resume_region;
  uint64_t resume_seq;
  uint8_t key_check[8];
  uint64_t names_bytes;      // payload part 1
  uint64_t entry_count;      // payload part 2: entry_count * sizeof(CheckpointEntry); part 3:
                             // labels, the rest
  uint64_t payload_checksum; // xxh3-64 of the plaintext payload
  uint8_t nonce[12];
  uint8_t tag[16];
  uint32_t reserved;
  uint64_t checksum;         // xxh3-64 of the bytes above (tag zeroed)
};
static_assert(sizeof(CheckpointHeader) == 112);

uint64_t headerChecksum(CheckpointHeader h) {
  std::memset(h.tag, 0, sizeof(h.tag));
  return XXH3_64bits(&h, offsetof(CheckpointHeader, checksum));
}

// The AAD: the header as written, without its tag and checksum (both set after sealing).
std::array<uint8_t, offsetof(CheckpointHeader, tag)> aadOf(const CheckpointHeader& h) {
  std::array<uint8_t, offsetof(CheckpointHeader, tag)> aad{};
  std::memcpy(aad.data(), &h, aad.size());
  return aad;
}

void putU32(std::vector<uint8_t>& out, uint32_t v) {
  const size_t at = out.size();
  out.resize(at + 4);
  std::memcpy(out.data() + at, &v, 4);
}

// The entries' indexes in key order.
template <class Entries>
std::vector<uint32_t> keyOrder(const Entries& entries) {
  std::vector<uint32_t> order(entries.size());
  for (uint32_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
    return checkpointKeyLess(entries[a].key, entries[b].key);
  });
  return order;
}


}  // namespace

const CheckpointEntry* findCheckpointEntry(const CheckpointVector<CheckpointEntry>& entries,
                                           const CacheKey& key) {
  auto it = std::lower_bound(entries.begin(), entries.end(), key,
                             [](const CheckpointEntry& e, const CacheKey& k) {
                               return checkpointKeyLess(e.key, k);
                             });
  if (it == entries.end() || !(it->key == key)) return nullptr;
  return &*it;
}

PurgeLabelsView labelsAt(const Checkpoint& cp, size_t i) {
  if (i < cp.labels.size()) return {cp.labels[i].vhost, cp.labels[i].path, cp.labels[i].tags};
  if (i >= cp.label_at.size()) return {};
  // Checked by decodeCheckpoint(): three length-prefixed strings inside label_bytes.
  const uint8_t* q = cp.label_bytes.data() + cp.label_at[i];
  std::string_view parts[3];
  for (std::string_view& part : parts) {
    uint32_t len = 0;
    std::memcpy(&len, q, 4);
    part = std::string_view(reinterpret_cast<const char*>(q + 4), len);
    q += 4 + len;
  }
  return {parts[0], parts[1], parts[2]};
}

std::vector<uint8_t> encodeCheckpoint(const Checkpoint& cp, const EntryCipher* cipher) {
  std::vector<uint8_t> out(sizeof(CheckpointHeader));
  // Names: count, then per list: count, then per name: length and bytes. [0] (none) is implied.
  const size_t names_at = out.size();
  putU32(out, static_cast<uint32_t>(cp.names.size() > 0 ? cp.names.size() - 1 : 0));
  for (size_t i = 1; i < cp.names.size(); ++i) {
    putU32(out, static_cast<uint32_t>(cp.names[i].size()));
    for (const std::string& n : cp.names[i]) {
      putU32(out, static_cast<uint32_t>(n.size()));
      out.insert(out.end(), n.begin(), n.end());
    }
  }
  const size_t names_bytes = out.size() - names_at;
  // Entries in key order (version 4), each followed in the label table at the same position.
  const std::vector<uint32_t> order = keyOrder(cp.entries);
  const size_t entries_at = out.size();
  out.resize(entries_at + cp.entries.size() * sizeof(CheckpointEntry));
  for (size_t n = 0; n < order.size(); ++n) {
    std::memcpy(out.data() + entries_at + n * sizeof(CheckpointEntry), &cp.entries[order[n]],
                sizeof(CheckpointEntry));
  }
  // Labels: per entry, three length-prefixed strings (vhost, path, tags).
  for (const uint32_t i : order) {
    static const PurgeLabels kNone;
    const PurgeLabels& l = i < cp.labels.size() ? cp.labels[i] : kNone;
    for (const std::string* str : {&l.vhost, &l.path, &l.tags}) {
      putU32(out, static_cast<uint32_t>(str->size()));
      out.insert(out.end(), str->begin(), str->end());
    }
  }
  uint8_t* payload = out.data() + sizeof(CheckpointHeader);
  const size_t payload_bytes = out.size() - sizeof(CheckpointHeader);

  CheckpointHeader h{};
  h.magic = kCheckpointMagic;
  h.version = kCheckpointVersion;
  h.flags = cipher ? kFlagEncrypted : 0;
  h.region_bytes = cp.region_bytes;
  h.region_count = cp.region_count;
  h.resume_region = cp.resume_region;
  h.resume_seq = cp.resume_seq;
  std::memcpy(h.key_check, cp.key_check.data(), sizeof(h.key_check));
  h.names_bytes = names_bytes;
  h.entry_count = cp.entries.size();
  h.payload_checksum = XXH3_64bits(payload, payload_bytes);
  if (cipher) {
    if (!randomBytes(h.nonce, sizeof(h.nonce))) return {};
    const auto aad = aadOf(h);
    if (!cipher->seal(h.nonce, aad.data(), aad.size(), payload, payload_bytes, h.tag)) return {};
  }
  h.checksum = headerChecksum(h);
  std::memcpy(out.data(), &h, sizeof(h));
  return out;
}

bool decodeCheckpoint(CheckpointBytes& bytes, const EntryCipher* cipher, Checkpoint* out,
                      const char** why) {
  const auto fail = [&](const char* reason) {
    *why = reason;
    return false;
  };
  if (bytes.size() < sizeof(CheckpointHeader)) return fail("shorter than its header");
  CheckpointHeader h;
  std::memcpy(&h, bytes.data(), sizeof(h));
  if (h.magic != kCheckpointMagic) return fail("not a checkpoint (bad magic)");
  if (h.checksum != headerChecksum(h)) return fail("header checksum mismatch");
  if (h.version != kCheckpointVersion && h.version != kUnsortedCheckpointVersion) {
    return fail("another checkpoint version");
  }
  if (((h.flags & kFlagEncrypted) != 0) != (cipher != nullptr)) {
    return fail("written with the other encryption setting");
  }
  const uint64_t payload_bytes = bytes.size() - sizeof(CheckpointHeader);
  if (h.names_bytes > payload_bytes ||
      h.entry_count > (payload_bytes - h.names_bytes) / sizeof(CheckpointEntry)) {
    return fail("its length does not match its header");
  }
  uint8_t* payload = bytes.data() + sizeof(CheckpointHeader);
  if (cipher) {
    const auto aad = aadOf(h);
    if (!cipher->open(h.nonce, aad.data(), aad.size(), payload, payload_bytes, h.tag)) {
      return fail("authentication failed (another key, or altered)");
    }
  }
  if (XXH3_64bits(payload, payload_bytes) != h.payload_checksum) {
    return fail("payload checksum mismatch");
  }
  Checkpoint cp;
  cp.region_bytes = h.region_bytes;
  cp.region_count = h.region_count;
  cp.encrypted = cipher != nullptr;
  std::memcpy(cp.key_check.data(), h.key_check, sizeof(h.key_check));
  cp.resume_region = h.resume_region;
  cp.resume_seq = h.resume_seq;
  // Names.
  const uint8_t* p = payload;
  const uint8_t* const names_end = payload + h.names_bytes;
  const auto getU32 = [&](uint32_t& v) {
    if (names_end - p < 4) return false;
    std::memcpy(&v, p, 4);
    p += 4;
    return true;
  };
  uint32_t lists = 0;
  if (!getU32(lists) || lists > kMaxNames) return fail("bad name table");
  cp.names.resize(size_t{lists} + 1);
  for (uint32_t i = 1; i <= lists; ++i) {
    uint32_t count = 0;
    if (!getU32(count) || count > kMaxNames) return fail("bad name table");
    for (uint32_t j = 0; j < count; ++j) {
      uint32_t len = 0;
      if (!getU32(len) || len > kMaxNameBytes || static_cast<uint64_t>(names_end - p) < len) {
        return fail("bad name table");
      }
      cp.names[i].emplace_back(reinterpret_cast<const char*>(p), len);
      p += len;
    }
  }
  if (p != names_end) return fail("bad name table");
  cp.entries.resize(h.entry_count);
  if (h.entry_count > 0) {
    std::memcpy(cp.entries.data(), names_end, h.entry_count * sizeof(CheckpointEntry));
  }
  // Labels: checked and located, not copied (labelsAt() reads them from the file's bytes).
  {
    const uint8_t* q = names_end + h.entry_count * sizeof(CheckpointEntry);
    const uint8_t* const end = payload + payload_bytes;
    cp.label_at.resize(h.entry_count);
    for (uint64_t& at : cp.label_at) {
      at = static_cast<uint64_t>(q - bytes.data());
      for (int n = 0; n < 3; ++n) {
        uint32_t len = 0;
        if (end - q < 4) return fail("bad label table");
        std::memcpy(&len, q, 4);
        q += 4;
        if (static_cast<uint64_t>(end - q) < len) return fail("bad label table");
        q += len;
      }
    }
    if (q != end) return fail("its length does not match its header");
  }
  for (const CheckpointEntry& e : cp.entries) {
    if (e.region >= cp.region_count || e.names >= cp.names.size() ||
        uint64_t{e.offset} + e.entry_bytes > cp.region_bytes) {
      return fail("an entry lies outside the store");
    }
  }
  if (h.version == kUnsortedCheckpointVersion) {
    // Written before the order was part of the format: sorted here (entries and labels alike).
    const std::vector<uint32_t> order = keyOrder(cp.entries);
    CheckpointVector<CheckpointEntry> entries(order.size());
    std::vector<uint64_t> label_at(order.size());
    for (size_t n = 0; n < order.size(); ++n) {
      entries[n] = cp.entries[order[n]];
      label_at[n] = cp.label_at[order[n]];
    }
    cp.entries = std::move(entries);
    cp.label_at = std::move(label_at);
  }
  // One entry per key, in key order: the store's binary search relies on it (and an index
  // never holds a key twice, so a repeat is damage).
  for (size_t i = 1; i < cp.entries.size(); ++i) {
    if (!checkpointKeyLess(cp.entries[i - 1].key, cp.entries[i].key)) {
      return fail("its entries are not in key order");
    }
  }
  cp.label_bytes = std::move(bytes);
  *out = std::move(cp);
  return true;
}

Status writeCheckpointFile(const std::string& path, const std::vector<uint8_t>& bytes) {
  return replaceFileDurably(path, bytes);
}

Result<CheckpointBytes> readCheckpointFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return Status(Code::kNotFound, Source::kStorage, "no such file");
    return Status(Code::kIo, Source::kStorage, "cannot open the checkpoint file");
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || st.st_size < 0) {
    ::close(fd);
    return Status(Code::kIo, Source::kStorage, "cannot stat the checkpoint file");
  }
  CheckpointBytes bytes(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  if (done != bytes.size()) return Status(Code::kIo, Source::kStorage, "reading the checkpoint failed");
  return bytes;
}

namespace {
constexpr size_t kHugePage = size_t{2} << 20;
constexpr size_t kMapThreshold = size_t{1} << 20;
size_t mappedLength(size_t bytes) { return (bytes + kHugePage - 1) / kHugePage * kHugePage; }
}  // namespace

void* allocateCheckpointMemory(size_t bytes) {
  if (bytes < kMapThreshold) return ::operator new(bytes);
  // Mapped with a huge page of slack, then trimmed to a 2 MiB-aligned range (only aligned
  // ranges can be backed by huge pages).
  const size_t len = mappedLength(bytes);
  void* raw = ::mmap(nullptr, len + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                     -1, 0);
  if (raw == MAP_FAILED) throw std::bad_alloc();
  const uintptr_t start = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = (start + kHugePage - 1) / kHugePage * kHugePage;
  if (aligned > start) ::munmap(raw, aligned - start);
  const size_t tail = (start + len + kHugePage) - (aligned + len);
  if (tail > 0) ::munmap(reinterpret_cast<void*>(aligned + len), tail);
  void* p = reinterpret_cast<void*>(aligned);
  ::madvise(p, len, MADV_HUGEPAGE);  // advice only: without THP it is ordinary memory
  return p;
}

void freeCheckpointMemory(void* p, size_t bytes) {
  if (!p) return;
  if (bytes < kMapThreshold) {
    ::operator delete(p);
    return;
  }
  ::munmap(p, mappedLength(bytes));
}

Status removeCheckpointFile(const std::string& path) {
  if (::unlink(path.c_str()) != 0) {
    if (errno == ENOENT) return Status::ok();
    return Status(Code::kIo, Source::kStorage, "cannot remove the checkpoint file");
  }
  return syncParentDirectory(path);
}

}  // namespace streamedge::cache::ssd
