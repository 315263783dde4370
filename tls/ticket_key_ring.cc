#include "tls/ticket_key_ring.h"

#include <openssl/rand.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace streamedge::tls {

TicketKeyRing::Key TicketKeyRing::makeKey(TimePoint now) {
  Key key;
  // RAND_bytes only fails when the DRBG cannot be seeded; going on with predictable ticket keys
  // would let anyone decrypt recorded sessions.
  if (RAND_bytes(key.name.data(), static_cast<int>(key.name.size())) != 1 ||
      RAND_bytes(key.hmac.data(), static_cast<int>(key.hmac.size())) != 1 ||
      RAND_bytes(key.aes.data(), static_cast<int>(key.aes.size())) != 1) {
    std::fprintf(stderr, "streamedge: RAND_bytes failed for a ticket key\n");
    std::abort();
  }
  key.created = now;
  return key;
}

std::shared_ptr<TicketKeyRing> TicketKeyRing::random(std::chrono::seconds rotation, TimePoint now) {
  std::shared_ptr<TicketKeyRing> ring(new TicketKeyRing(rotation, false));
  ring->keys_.push_back(makeKey(now));
  return ring;
}

std::shared_ptr<TicketKeyRing> TicketKeyRing::fromFile(const std::string& path, std::string& error) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) {
    error = "ticket key file " + path + ": cannot open: " + std::strerror(errno);
    return nullptr;
  }
  std::string data;
  char buf[4096];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) data.append(buf, n);
  std::fclose(f);
  if (data.empty() || data.size() % 80 != 0) {
    error = "ticket key file " + path + ": expected a multiple of 80 bytes (name 16, HMAC 32, AES 32 "
            "per key; e.g. openssl rand 80 > FILE), got " + std::to_string(data.size());
    return nullptr;
  }
  std::shared_ptr<TicketKeyRing> ring(new TicketKeyRing(std::chrono::seconds(0), true));
  for (size_t off = 0; off < data.size(); off += 80) {
    Key key;
    std::memcpy(key.name.data(), data.data() + off, 16);
    std::memcpy(key.hmac.data(), data.data() + off + 16, 32);
    std::memcpy(key.aes.data(), data.data() + off + 48, 32);
    ring->keys_.push_back(key);
  }
  OPENSSL_cleanse(data.data(), data.size());
  return ring;
}

TicketKeyRing::Key TicketKeyRing::current(TimePoint now) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!from_file_ && now - keys_.front().created >= rotation_) {
    keys_.insert(keys_.begin(), makeKey(now));
    keys_.resize(2);
  }
  return keys_.front();
}

bool TicketKeyRing::find(const unsigned char* name, TimePoint now, Key& out, bool& is_current) {
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = 0; i < keys_.size(); ++i) {
    if (std::memcmp(keys_[i].name.data(), name, keys_[i].name.size()) == 0) {
      if (!from_file_ && now - keys_[i].created >= 2 * rotation_) return false;
      out = keys_[i];
      is_current = i == 0;
      return true;
    }
  }
  return false;
}

void TicketKeyRing::rotate(TimePoint now) {
  std::lock_guard<std::mutex> lock(mu_);
  if (from_file_) return;
  keys_.insert(keys_.begin(), makeKey(now));
  keys_.resize(2);
}

}  // namespace streamedge::tls
