// SsdKeyring: the per-virtual-host data keys of an encrypted SSD store (crypto-shredding).
//
// Each vhost's entries are sealed with that vhost's own random 256-bit data key; entries record
// the key's id in their clear (GCM-authenticated) header. Destroying a vhost's key (a purge of
// the whole vhost) makes all its ciphertext unreadable at once, wherever it lies on the device
// and whatever index or checkpoint still points at it. Id 0 (kStoreKeyId) is the store key
// itself: entries without a vhost label, tombstones, and everything written before data keys
// existed.
//
// Where the keys live: a small file of its own beside the store (`<store path>.keys` by
// default), not a reserved area of the device. A file can be replaced atomically (temp file,
// fsync, rename, fsync of the directory), so a crash leaves either the old keyring or the new
// one, never a torn one; a reserved area would need double-buffered slots of our own to get the
// same guarantee, and a block device has no rename. The file is small (one record per vhost),
// mode 0600, and every data key in it is wrapped (AES-256-GCM, random nonce, the record's id
// and vhost as AAD) under the store key, so the file alone reveals nothing.
//
// File layout (little-endian):
//   KeyringHeader (48 bytes: magic, version, key check of the store key, next id, record
//   count, payload length, xxh3-64 of everything but the checksum itself)
//   record * count: id u32 | vhost length u16 | 0 u16 | vhost | nonce 12 | wrapped key 32 | tag 16
// A file whose checksum, lengths or any record's tag do not verify is damaged: it is logged and
// the keyring starts empty (the entries its keys sealed are unreadable: misses, never wrong
// bytes); it is replaced at the next change. A file written under another store key likewise.
//
// Destroying a key rewrites the file without it (atomically, durably) before returning, then
// overwrites the old file's bytes with zeros through a descriptor opened before the rename and
// syncs them: on file systems that overwrite in place (ext4, xfs) the old wrapped key is gone
// from the old blocks too. Copy-on-write file systems and flash translation layers may keep old
// blocks; the wrapped key is still sealed under the store key there.
//
// Keys never leave this class except inside an EntryCipher (which wipes its copy when
// destroyed); nothing here logs a key or a wrapped key. Ids are never reused within a keyring
// (`next id` is kept in the file); a new keyring starts at a random id, so that entries sealed
// under a lost keyring's ids are not mistaken for a new key's (they would fail their tag anyway).
//
// Thread-safety: all methods are thread-safe (a shared mutex: readers look keys up concurrently,
// key creation and destruction are exclusive, including their file writes).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "cache/ssd_crypto.h"
#include "cache/ssd_device.h"
#include "conf/status.h"

namespace streamedge::cache {

inline constexpr uint32_t kStoreKeyId = 0;
// Longest vhost name the keyring records (vhost names are config names, far shorter).
inline constexpr size_t kMaxKeyringVhostBytes = 1024;

struct SsdKeyringStats {
  uint64_t keys = 0;         // data keys held now
  uint64_t created = 0;      // since open
  uint64_t destroyed = 0;    // since open
  uint64_t write_errors = 0; // the keyring file could not be written
  bool loaded = false;       // a keyring file was read at open
  bool load_failed = false;  // a keyring file was there but unusable (damaged, other store key)
};

class SsdKeyring {
 public:
  // Opens the keyring of the store whose key is `store_key`. `path` "" keeps the keys in memory
  // only (an ephemeral store key: nothing survives a restart anyway). A missing file is an
  // empty keyring; a damaged or foreign one is logged and treated as empty (see above).
  SsdKeyring(const StoreKey& store_key, std::string path, SsdLogFn log);
  ~SsdKeyring();
  SsdKeyring(const SsdKeyring&) = delete;
  SsdKeyring& operator=(const SsdKeyring&) = delete;

  // The cipher of data key `id`; null when the id is unknown (destroyed, lost with a damaged
  // keyring, never made). Not for kStoreKeyId (the store holds that cipher).
  std::shared_ptr<const EntryCipher> cipher(uint32_t id) const;
  bool known(uint32_t id) const { return cipher(id) != nullptr; }

  // The data key that seals `vhost`'s new entries; made from the CSPRNG and recorded durably in
  // the keyring file first when the vhost has none. Errors: kInvalid (empty or too long a vhost
  // name), kInternal (CSPRNG or cipher), kIo (the file could not be written: the key is not
  // made, the caller must not write the entry).
  Result<std::pair<uint32_t, std::shared_ptr<const EntryCipher>>> keyFor(std::string_view vhost);

  // Destroys `vhost`'s data key: it is out of the keyring file (rewritten atomically and
  // durably) and out of this keyring before the call returns, and its bytes are wiped as soon
  // as no seal or open in progress holds its cipher (at most one entry's worth of work). Returns
  // the destroyed key's id, or kStoreKeyId when the vhost had none. Errors: kIo when the file
  // could not be rewritten: the key is forgotten in memory all the same (its entries are
  // unreadable from now on), but a copy stays in the file until the next successful write.
  Result<uint32_t> destroy(std::string_view vhost);

  // The vhosts that have a data key now, with its id (tests, tools).
  std::vector<std::pair<std::string, uint32_t>> vhosts() const;
  SsdKeyringStats stats() const;
  const std::string& path() const { return path_; }

 private:
  struct DataKey {
    uint32_t id = 0;
    std::string vhost;
    std::shared_ptr<const EntryCipher> cipher;  // the only plain copy of the key
    // The record as the file holds it (the key wrapped under the store key): rewriting the
    // file needs no second plain copy.
    std::array<uint8_t, kNonceBytes> nonce{};
    std::array<uint8_t, 32> wrapped{};
    std::array<uint8_t, kTagBytes> tag{};
  };
  void load();
  // Serialises every key (wrapped) and replaces the file. Caller holds mu_ exclusively.
  Status persistLocked();

  // --- const after construction
  const std::string path_;
  const SsdLogFn log_;
  const EntryCipher wrap_;  // the store key, wrapping data keys
  const std::array<uint8_t, 8> key_check_;

  mutable std::shared_mutex mu_;
  std::map<std::string, DataKey, std::less<>> by_vhost_;  // guarded by mu_
  std::unordered_map<uint32_t, std::shared_ptr<const EntryCipher>> by_id_;  // guarded by mu_
  uint32_t next_id_ = 1;                                  // guarded by mu_
  SsdKeyringStats stats_;                                 // guarded by mu_
};

namespace ssd {

// Parses keyring file bytes: the (id, vhost, key) records, unwrapped with `store_key`. False
// with `why` when anything is off (magic, version, checksum, lengths, another store key, a
// record's tag). Used by the keyring and by tools and tests that inspect a store.
struct KeyringRecord {
  uint32_t id = 0;
  std::string vhost;
  StoreKey key{};  // unwrapped (the caller wipes it)
  // The record as stored: the key wrapped under the store key.
  std::array<uint8_t, kNonceBytes> nonce{};
  std::array<uint8_t, 32> wrapped{};
  std::array<uint8_t, kTagBytes> tag{};
};
bool decodeKeyring(const std::vector<uint8_t>& bytes, const StoreKey& store_key,
                   std::vector<KeyringRecord>* records, uint32_t* next_id, const char** why);

}  // namespace ssd

}  // namespace streamedge::cache
