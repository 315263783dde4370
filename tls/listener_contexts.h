// ListenerContexts: the OpenSSL server contexts of one TLS listener, built from its
// [[listener.certificate]] entries. Certificates with the same DNS names and different key types
// (RSA and ECDSA) share one SSL_CTX, so OpenSSL picks the one the client's signature algorithms
// allow; certificates with other names get their own SSL_CTX, chosen by SNI in the servername
// callback: exact name, then a one-label wildcard ("*.example.com"), then the default (the first
// certificate). Every SSL_CTX has the listener's protocol range (TLS 1.2–1.3), ciphers, ALPN
// (http/1.1), session cache, session tickets (keys from a shared TicketKeyRing) and OCSP stapling.
//
// Immutable once built and thread-safe to use: all workers handshake on the same SSL_CTXs. An SSL
// made from defaultContext() refers back to this object from its callbacks, so whoever owns the
// SSL must keep the ListenerContexts alive (pin the TlsState snapshot) until SSL_free.
#pragma once

#include <ctime>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "conf/config.h"
#include "tls/certificate.h"
#include "tls/openssl_handles.h"
#include "tls/ticket_key_ring.h"

namespace streamedge::tls {

// A certificate a listener serves, for monitoring: the configured file and its leaf's notAfter.
struct ServedCertificate {
  std::string certificate;  // the configured cert path ([[listener.certificate]] cert)
  std::time_t not_after = 0;  // 0 when the leaf's notAfter could not be read
};

class ListenerContexts {
 public:
  struct Build {
    std::shared_ptr<ListenerContexts> contexts;  // null when errors is non-empty
    std::vector<std::string> errors;
    std::vector<std::string> warnings;
  };
  // `tickets`: the ring to use (null → a new random ring, or the key file's). Blocking file I/O.
  static Build build(const conf::ListenerConfig& config, std::shared_ptr<TicketKeyRing> tickets,
                     std::time_t now);

  ~ListenerContexts();
  ListenerContexts(const ListenerContexts&) = delete;
  ListenerContexts& operator=(const ListenerContexts&) = delete;

  // The context new connections start with (SNI may switch an SSL to another one of ours).
  SSL_CTX* defaultContext() const { return slots_.front().ctx.get(); }
  // Which context serves `server_name` (any case, trailing dot allowed); "" → the default.
  SSL_CTX* select(std::string_view server_name) const;
  // The certificates of the context `select` returns, for tests and logs.
  const std::vector<std::string>& subjectsFor(std::string_view server_name) const;
  const std::shared_ptr<TicketKeyRing>& tickets() const { return tickets_; }
  // Every certificate of this listener, in config order (the default first).
  const std::vector<ServedCertificate>& certificates() const { return certificates_; }

 private:
  struct Slot {
    SslCtxPtr ctx;
    std::vector<std::string> names;  // the DNS names all its certificates share
    std::vector<std::string> subjects;
    std::vector<std::unique_ptr<LoadedCertificate>> certs;  // OCSP responses live here
  };
  ListenerContexts() = default;
  size_t slotFor(std::string_view server_name) const;

  static int servernameCb(SSL* ssl, int* alert, void* arg);
  static int alpnCb(SSL* ssl, const unsigned char** out, unsigned char* outlen,
                    const unsigned char* in, unsigned int inlen, void* arg);
  static int ticketCb(SSL* ssl, unsigned char* key_name, unsigned char* iv, EVP_CIPHER_CTX* ctx,
                      EVP_MAC_CTX* hctx, int enc);
  static int statusCb(SSL* ssl, void* arg);

  std::vector<Slot> slots_;                    // [0] holds the default certificate
  std::map<std::string, size_t, std::less<>> exact_;     // name → slot
  std::map<std::string, size_t, std::less<>> wildcard_;  // "example.com" for "*.example.com" → slot
  std::shared_ptr<TicketKeyRing> tickets_;     // null when tickets are off
  std::vector<ServedCertificate> certificates_;  // config order
};

}  // namespace streamedge::tls
