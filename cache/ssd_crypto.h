// Encryption at rest for the SSD tier: the store key (from a key file, or ephemeral), its check
// value (recorded in region headers so that a store written under another key is recognised
// without trying to decrypt it), and AES-256-GCM sealing of one entry in place (OpenSSL EVP).
//
// Thread-safety: EntryCipher is immutable after construction and safe to share; each call uses
// its own EVP context. The key bytes are wiped when the cipher is destroyed.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

#include "conf/status.h"

namespace streamedge::cache {

using StoreKey = std::array<uint8_t, 32>;
constexpr size_t kNonceBytes = 12;  // 96-bit GCM nonce, random per entry
constexpr size_t kTagBytes = 16;

// A key file holds exactly 32 raw bytes, or 64 hex digits (upper or lower case) optionally
// followed by whitespace (a trailing newline from `openssl rand -hex 32 > file`).
// Errors: kIo (cannot open/read; `error` has the errno text), kInvalid (wrong content).
Result<StoreKey> loadStoreKey(const std::string& path, std::string* error = nullptr);
// 32 random bytes from the OpenSSL CSPRNG. kInternal if it fails (never seen; fail closed).
Result<StoreKey> randomStoreKey();
// 8 bytes of SHA-256("streamedge ssd key check" || key): identifies the key, reveals nothing
// usable about it.
std::array<uint8_t, 8> keyCheckValue(const StoreKey& key);
// Overwrites a key copy that is no longer needed (not optimised away).
void wipeStoreKey(StoreKey& key);
// Fills `out` with random bytes (nonces). False if the CSPRNG fails.
bool randomBytes(uint8_t* out, size_t len);

class EntryCipher {
 public:
  explicit EntryCipher(const StoreKey& key);
  ~EntryCipher();
  EntryCipher(const EntryCipher&) = delete;
  EntryCipher& operator=(const EntryCipher&) = delete;

  // Encrypts `data` in place and writes the tag; `aad` is authenticated, not encrypted.
  bool seal(const uint8_t* nonce, const uint8_t* aad, size_t aad_len, uint8_t* data, size_t len,
            uint8_t* tag) const;
  // Verifies and decrypts in place. False (and `data` unspecified: never use it) when the tag
  // does not match: wrong key, or ciphertext, nonce, AAD or tag altered.
  bool open(const uint8_t* nonce, const uint8_t* aad, size_t aad_len, uint8_t* data, size_t len,
            const uint8_t* tag) const;

 private:
  StoreKey key_;
};

}  // namespace streamedge::cache
