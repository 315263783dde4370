// TicketKeyRing: the session-ticket keys of one TLS listener, shared by every worker (one SSL_CTX
// per listener serves all of them). The first key encrypts new tickets; the others only decrypt
// (a ticket they open is renewed under the current key). Random rings rotate on their own every
// `rotation`, keeping the previous key, so a ticket lives one to two rotations. File rings come
// from a key file that several edge servers share (80 bytes per key: name 16, HMAC secret 32,
// AES key 32 — nginx's ssl_session_ticket_key layout); they change on reload only.
// Thread-safe (one mutex; taken once per handshake that issues or opens a ticket).
#pragma once

#include <array>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace streamedge::tls {

class TicketKeyRing {
 public:
  using TimePoint = std::chrono::system_clock::time_point;
  struct Key {
    std::array<unsigned char, 16> name{};
    std::array<unsigned char, 32> hmac{};
    std::array<unsigned char, 32> aes{};
    TimePoint created{};
  };

  // Random keys; the first is made now.
  static std::shared_ptr<TicketKeyRing> random(std::chrono::seconds rotation, TimePoint now);
  // Keys from a file; null with `error` set when unreadable or not a multiple of 80 bytes.
  static std::shared_ptr<TicketKeyRing> fromFile(const std::string& path, std::string& error);

  // The key to encrypt with; a random ring rotates first when the current key is due.
  Key current(TimePoint now);
  // The key called `name`; false when unknown (the ticket is ignored: full handshake).
  // `is_current` tells whether the ticket should be renewed.
  // Keys of a random ring older than two rotations are forgotten.
  bool find(const unsigned char* name, TimePoint now, Key& out, bool& is_current);
  // Makes a new current key, keeping the previous one for decryption (random rings only).
  void rotate(TimePoint now);

  std::chrono::seconds rotation() const { return rotation_; }
  bool fromFile() const { return from_file_; }

 private:
  TicketKeyRing(std::chrono::seconds rotation, bool from_file)
      : rotation_(rotation), from_file_(from_file) {}
  static Key makeKey(TimePoint now);

  const std::chrono::seconds rotation_;
  const bool from_file_;
  std::mutex mu_;
  std::vector<Key> keys_;  // guarded by mu_; [0] current
};

}  // namespace streamedge::tls
