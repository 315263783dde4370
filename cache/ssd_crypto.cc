#include "cache/ssd_crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <memory>
#include <string_view>

#include "conf/key_file.h"

namespace streamedge::cache {
namespace {

struct CtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using CtxPtr = std::unique_ptr<EVP_CIPHER_CTX, CtxFree>;

// EVP lengths are ints: feed large buffers in pieces.
constexpr size_t kMaxChunk = size_t{1} << 30;

}  // namespace

Result<StoreKey> loadStoreKey(const std::string& path, std::string* error) {
  std::string secret;
  std::string why;
  const conf::KeyFileError e = conf::readKeyFile(path, conf::KeyFileAccess::kAnyRegularFile,
                                                 "decrypt the SSD store", secret, why);
  if (e != conf::KeyFileError::kNone) {
    if (error) *error = path + ": " + why;
    return e == conf::KeyFileError::kContent
               ? Status(Code::kInvalid, Source::kStorage, "bad SSD key file")
               : Status(Code::kIo, Source::kStorage, "cannot open the SSD key file");
  }
  StoreKey key{};
  std::memcpy(key.data(), secret.data(), key.size());
  OPENSSL_cleanse(secret.data(), secret.size());
  return key;
}

Result<StoreKey> randomStoreKey() {
  StoreKey key{};
  if (!randomBytes(key.data(), key.size())) {
    return Status(Code::kInternal, Source::kInternal, "CSPRNG failed");
  }
  return key;
}

void wipeStoreKey(StoreKey& key) { OPENSSL_cleanse(key.data(), key.size()); }

bool randomBytes(uint8_t* out, size_t len) {
  return RAND_bytes(out, static_cast<int>(len)) == 1;
}

std::array<uint8_t, 8> keyCheckValue(const StoreKey& key) {
  static constexpr std::string_view kLabel = "streamedge ssd key check";
  uint8_t digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  std::array<uint8_t, kLabel.size() + 32> input{};
  std::memcpy(input.data(), kLabel.data(), kLabel.size());
  std::memcpy(input.data() + kLabel.size(), key.data(), key.size());
  EVP_Digest(input.data(), input.size(), digest, &digest_len, EVP_sha256(), nullptr);
  OPENSSL_cleanse(input.data(), input.size());
  std::array<uint8_t, 8> out{};
  std::memcpy(out.data(), digest, out.size());
  return out;
}

EntryCipher::EntryCipher(const StoreKey& key) : key_(key) {}

EntryCipher::~EntryCipher() { OPENSSL_cleanse(key_.data(), key_.size()); }

bool EntryCipher::seal(const uint8_t* nonce, const uint8_t* aad, size_t aad_len, uint8_t* data,
                       size_t len, uint8_t* tag) const {
  CtxPtr ctx(EVP_CIPHER_CTX_new());
  if (!ctx) return false;
  int out_len = 0;
  if (EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) != 1) return false;
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, kNonceBytes, nullptr) != 1) return false;
  if (EVP_EncryptInit_ex(ctx.get(), nullptr, nullptr, key_.data(), nonce) != 1) return false;
  if (EVP_EncryptUpdate(ctx.get(), nullptr, &out_len, aad, static_cast<int>(aad_len)) != 1) return false;
  for (size_t done = 0; done < len;) {
    const size_t n = std::min(kMaxChunk, len - done);
    if (EVP_EncryptUpdate(ctx.get(), data + done, &out_len, data + done, static_cast<int>(n)) != 1) {
      return false;
    }
    done += n;
  }
  if (EVP_EncryptFinal_ex(ctx.get(), data + len, &out_len) != 1) return false;  // GCM: writes 0
  return EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTagBytes, tag) == 1;
}

bool EntryCipher::open(const uint8_t* nonce, const uint8_t* aad, size_t aad_len, uint8_t* data,
                       size_t len, const uint8_t* tag) const {
  CtxPtr ctx(EVP_CIPHER_CTX_new());
  if (!ctx) return false;
  int out_len = 0;
  if (EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) != 1) return false;
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, kNonceBytes, nullptr) != 1) return false;
  if (EVP_DecryptInit_ex(ctx.get(), nullptr, nullptr, key_.data(), nonce) != 1) return false;
  if (EVP_DecryptUpdate(ctx.get(), nullptr, &out_len, aad, static_cast<int>(aad_len)) != 1) return false;
  for (size_t done = 0; done < len;) {
    const size_t n = std::min(kMaxChunk, len - done);
    if (EVP_DecryptUpdate(ctx.get(), data + done, &out_len, data + done, static_cast<int>(n)) != 1) {
      return false;
    }
    done += n;
  }
  uint8_t tag_copy[kTagBytes];
  std::memcpy(tag_copy, tag, kTagBytes);
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTagBytes, tag_copy) != 1) return false;
  return EVP_DecryptFinal_ex(ctx.get(), data + len, &out_len) == 1;
}

}  // namespace streamedge::cache
