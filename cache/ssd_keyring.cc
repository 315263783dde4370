#include "cache/ssd_keyring.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <xxhash.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

#include "cache/file_io.h"

namespace streamedge::cache {
namespace {

constexpr uint64_t kKeyringMagic = 0x5359454B'45455453ull;  // "STEEKEYS"
constexpr uint32_t kKeyringVersion = 1;
// A keyring is one record per vhost: anything beyond this is damage, not a keyring.
constexpr uint32_t kMaxRecords = 1u << 20;

struct KeyringHeader {
  uint64_t magic;
  uint32_t version;
  uint32_t header_bytes;   // sizeof(KeyringHeader)
  uint8_t key_check[8];    // keyCheckValue() of the store key
  uint32_t next_id;        // ids below it were given out (never reused)
  uint32_t count;          // records
  uint32_t payload_bytes;  // the records' bytes, after the header
  uint32_t reserved;
  uint64_t checksum;       // xxh3-64 of the bytes above and the payload
};
static_assert(sizeof(KeyringHeader) == 48);

constexpr size_t kRecordFixedBytes = 4 + 2 + 2;
constexpr size_t kRecordSealBytes = kNonceBytes + 32 + kTagBytes;

uint64_t keyringChecksum(const uint8_t* bytes, size_t len) {
  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  XXH3_64bits_update(state, bytes, offsetof(KeyringHeader, checksum));
  XXH3_64bits_update(state, bytes + sizeof(KeyringHeader), len - sizeof(KeyringHeader));
  const uint64_t sum = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  return sum;
}

// The AAD of a record: its id and vhost, so that a wrapped key cannot be moved to another id
// or vhost.
std::vector<uint8_t> recordAad(uint32_t id, std::string_view vhost) {
  std::vector<uint8_t> aad(kRecordFixedBytes + vhost.size());
  const uint16_t len = static_cast<uint16_t>(vhost.size());
  std::memcpy(aad.data(), &id, 4);
  std::memcpy(aad.data() + 4, &len, 2);
  std::memcpy(aad.data() + kRecordFixedBytes, vhost.data(), vhost.size());
  return aad;
}


bool writeAll(int fd, const uint8_t* p, size_t len, off_t at) {
  size_t done = 0;
  while (done < len) {
    const ssize_t n = ::pwrite(fd, p + done, len - done, at + static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

// Replaces `path` with `bytes`: a temporary file beside it (0600), fsync, rename, fsync of the
// directory. Then the replaced file's bytes are overwritten with zeros (through a descriptor
// opened before the rename) and synced, so that keys it held do not linger in its blocks on
// file systems that overwrite in place.
Status replaceFile(const std::string& path, const std::vector<uint8_t>& bytes) {
  int old_fd = -1;
  Status s = replaceFileDurably(path, bytes, &old_fd);
  if (old_fd >= 0) {
    struct stat st {};
    if (::fstat(old_fd, &st) == 0 && st.st_size > 0) {
      const std::vector<uint8_t> zeros(static_cast<size_t>(st.st_size), 0);
      if (!writeAll(old_fd, zeros.data(), zeros.size(), 0) || ::fdatasync(old_fd) != 0) {
        if (s.isOk()) s = Status(Code::kIo, Source::kStorage, "overwriting the old keyring failed");
      }
    }
    ::close(old_fd);
  }
  return s;
}

}  // namespace

namespace ssd {

bool decodeKeyring(const std::vector<uint8_t>& bytes, const StoreKey& store_key,
                   std::vector<KeyringRecord>* records, uint32_t* next_id, const char** why) {
  const auto fail = [&](const char* reason) {
    for (KeyringRecord& r : *records) OPENSSL_cleanse(r.key.data(), r.key.size());
    records->clear();
    *why = reason;
    return false;
  };
  records->clear();
  if (bytes.size() < sizeof(KeyringHeader)) return fail("shorter than its header");
  KeyringHeader h;
  std::memcpy(&h, bytes.data(), sizeof(h));
  if (h.magic != kKeyringMagic) return fail("not a keyring (bad magic)");
  if (h.version != kKeyringVersion || h.header_bytes != sizeof(KeyringHeader)) {
    return fail("another keyring version");
  }
  if (h.payload_bytes != bytes.size() - sizeof(KeyringHeader) || h.count > kMaxRecords) {
    return fail("lengths do not match the file");
  }
  if (h.checksum != keyringChecksum(bytes.data(), bytes.size())) return fail("checksum mismatch");
  const std::array<uint8_t, 8> check = keyCheckValue(store_key);
  if (std::memcmp(h.key_check, check.data(), check.size()) != 0) {
    return fail("written under another store key");
  }
  const EntryCipher unwrap(store_key);
  size_t off = sizeof(KeyringHeader);
  for (uint32_t i = 0; i < h.count; ++i) {
    if (bytes.size() - off < kRecordFixedBytes) return fail("record cut off");
    uint32_t id = 0;
    uint16_t len = 0;
    std::memcpy(&id, bytes.data() + off, 4);
    std::memcpy(&len, bytes.data() + off + 4, 2);
    if (len == 0 || len > kMaxKeyringVhostBytes || id == kStoreKeyId || id >= h.next_id ||
        bytes.size() - off < kRecordFixedBytes + len + kRecordSealBytes) {
      return fail("bad record");
    }
    KeyringRecord r;
    r.id = id;
    r.vhost.assign(reinterpret_cast<const char*>(bytes.data() + off + kRecordFixedBytes), len);
    const uint8_t* nonce = bytes.data() + off + kRecordFixedBytes + len;
    const uint8_t* wrapped = nonce + kNonceBytes;
    const uint8_t* tag = wrapped + 32;
    std::memcpy(r.nonce.data(), nonce, kNonceBytes);
    std::memcpy(r.wrapped.data(), wrapped, r.wrapped.size());
    std::memcpy(r.tag.data(), tag, kTagBytes);
    std::memcpy(r.key.data(), wrapped, r.key.size());
    const std::vector<uint8_t> aad = recordAad(id, r.vhost);
    if (!unwrap.open(nonce, aad.data(), aad.size(), r.key.data(), r.key.size(), tag)) {
      OPENSSL_cleanse(r.key.data(), r.key.size());
      return fail("a wrapped key does not verify");
    }
    for (const KeyringRecord& other : *records) {
      if (other.id == r.id || other.vhost == r.vhost) {
        OPENSSL_cleanse(r.key.data(), r.key.size());
        return fail("duplicate record");
      }
    }
    records->push_back(std::move(r));
    off += kRecordFixedBytes + len + kRecordSealBytes;
  }
  if (off != bytes.size()) return fail("trailing bytes");
  *next_id = h.next_id;
  return true;
}

}  // namespace ssd

SsdKeyring::SsdKeyring(const StoreKey& store_key, std::string path, SsdLogFn log)
    : path_(std::move(path)), log_(std::move(log)), wrap_(store_key),
      key_check_(keyCheckValue(store_key)) {
  // A new keyring's first id is random: entries sealed under ids of a keyring that was lost
  // (deleted, damaged) are not looked up under a new key of the same id.
  uint32_t r = 0;
  randomBytes(reinterpret_cast<uint8_t*>(&r), sizeof(r));
  next_id_ = 1 + (r & ((1u << 30) - 1));
  if (path_.empty()) return;
  auto bytes = readWholeFile(path_, 64u << 20);
  if (!bytes.isOk()) {
    if (bytes.status().code() != Code::kNotFound) {
      stats_.load_failed = true;
      if (log_) {
        log_("keyring " + path_ + ": " + bytes.status().toString() +
             "; starting an empty keyring: entries sealed with per-vhost data keys are unreadable "
             "(misses)");
      }
    }
    return;
  }
  std::vector<ssd::KeyringRecord> records;
  uint32_t next_id = 0;
  const char* why = "";
  if (!ssd::decodeKeyring(*bytes, store_key, &records, &next_id, &why)) {
    stats_.load_failed = true;
    if (log_) {
      log_("keyring " + path_ + " is unusable (" + why +
           "): starting an empty keyring; the entries its data keys sealed are unreadable "
           "(misses), and it is replaced at the next change");
    }
    return;
  }
  for (ssd::KeyringRecord& r : records) {
    DataKey k;
    k.id = r.id;
    k.vhost = r.vhost;
    k.cipher = std::make_shared<const EntryCipher>(r.key);
    // The file's record as it is: rewriting the file needs no re-wrapping.
    k.nonce = r.nonce;
    k.wrapped = r.wrapped;
    k.tag = r.tag;
    OPENSSL_cleanse(r.key.data(), r.key.size());
    by_id_[k.id] = k.cipher;
    by_vhost_.emplace(k.vhost, std::move(k));
  }
  next_id_ = next_id;
  stats_.loaded = true;
  stats_.keys = by_vhost_.size();
}

SsdKeyring::~SsdKeyring() = default;  // each EntryCipher wipes its key

std::shared_ptr<const EntryCipher> SsdKeyring::cipher(uint32_t id) const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : it->second;
}

Result<std::pair<uint32_t, std::shared_ptr<const EntryCipher>>> SsdKeyring::keyFor(
    std::string_view vhost) {
  {
    std::shared_lock<std::shared_mutex> lock(mu_);
    auto it = by_vhost_.find(vhost);
    if (it != by_vhost_.end()) return std::make_pair(it->second.id, it->second.cipher);
  }
  if (vhost.empty() || vhost.size() > kMaxKeyringVhostBytes) {
    return Status(Code::kInvalid, Source::kStorage, "vhost name unfit for the keyring");
  }
  std::unique_lock<std::shared_mutex> lock(mu_);
  auto it = by_vhost_.find(vhost);  // made meanwhile by another caller
  if (it != by_vhost_.end()) return std::make_pair(it->second.id, it->second.cipher);
  if (next_id_ == UINT32_MAX) return Status(Code::kInternal, Source::kStorage, "keyring ids exhausted");
  auto key = randomStoreKey();
  if (!key.isOk()) return key.status();
  DataKey k;
  k.id = next_id_;
  k.vhost.assign(vhost);
  k.cipher = std::make_shared<const EntryCipher>(*key);
  std::memcpy(k.wrapped.data(), key->data(), key->size());
  wipeStoreKey(*key);
  const std::vector<uint8_t> aad = recordAad(k.id, k.vhost);
  if (!randomBytes(k.nonce.data(), k.nonce.size()) ||
      !wrap_.seal(k.nonce.data(), aad.data(), aad.size(), k.wrapped.data(), k.wrapped.size(),
                  k.tag.data())) {
    OPENSSL_cleanse(k.wrapped.data(), k.wrapped.size());
    return Status(Code::kInternal, Source::kStorage, "wrapping a data key failed");
  }
  const uint32_t id = k.id;
  auto cipher = k.cipher;
  ++next_id_;
  by_id_[id] = cipher;
  by_vhost_.emplace(k.vhost, std::move(k));
  // Durable before any entry sealed with it can reach the device.
  if (!path_.empty()) {
    if (const Status s = persistLocked(); !s.isOk()) {
      ++stats_.write_errors;
      by_id_.erase(id);
      by_vhost_.erase(by_vhost_.find(vhost));
      return s;
    }
  }
  ++stats_.created;
  stats_.keys = by_vhost_.size();
  return std::make_pair(id, std::move(cipher));
}

Result<uint32_t> SsdKeyring::destroy(std::string_view vhost) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  auto it = by_vhost_.find(vhost);
  if (it == by_vhost_.end()) return kStoreKeyId;
  const uint32_t id = it->second.id;
  // Forgotten in memory first: from here on no lookup finds it, whatever the file write does.
  // The cipher (the one plain copy) is wiped by its destructor when the last holder (a seal or
  // open in progress on another thread) lets go.
  by_id_.erase(id);
  by_vhost_.erase(it);
  ++stats_.destroyed;
  stats_.keys = by_vhost_.size();
  if (path_.empty()) return id;
  if (const Status s = persistLocked(); !s.isOk()) {
    ++stats_.write_errors;
    if (log_) {
      log_("keyring " + path_ + ": the data key of vhost \"" + std::string(vhost) +
           "\" was forgotten but the file could not be rewritten (" + s.toString() +
           "); its wrapped copy stays in the file until the next successful write");
    }
    return s;
  }
  return id;
}

Status SsdKeyring::persistLocked() {
  std::vector<uint8_t> out(sizeof(KeyringHeader));
  for (const auto& [vhost, k] : by_vhost_) {
    const std::vector<uint8_t> aad = recordAad(k.id, vhost);
    out.insert(out.end(), aad.begin(), aad.end());
    out.insert(out.end(), k.nonce.begin(), k.nonce.end());
    out.insert(out.end(), k.wrapped.begin(), k.wrapped.end());
    out.insert(out.end(), k.tag.begin(), k.tag.end());
  }
  KeyringHeader h{};
  h.magic = kKeyringMagic;
  h.version = kKeyringVersion;
  h.header_bytes = sizeof(KeyringHeader);
  std::memcpy(h.key_check, key_check_.data(), key_check_.size());
  h.next_id = next_id_;
  h.count = static_cast<uint32_t>(by_vhost_.size());
  h.payload_bytes = static_cast<uint32_t>(out.size() - sizeof(KeyringHeader));
  std::memcpy(out.data(), &h, sizeof(h));
  h.checksum = keyringChecksum(out.data(), out.size());
  std::memcpy(out.data(), &h, sizeof(h));
  return replaceFile(path_, out);
}

std::vector<std::pair<std::string, uint32_t>> SsdKeyring::vhosts() const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  std::vector<std::pair<std::string, uint32_t>> out;
  for (const auto& [vhost, k] : by_vhost_) out.emplace_back(vhost, k.id);
  return out;
}

SsdKeyringStats SsdKeyring::stats() const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  return stats_;
}

}  // namespace streamedge::cache
