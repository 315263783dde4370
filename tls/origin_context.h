// TLS to origins: the client SSL_CTX for an https origin (peer verification on by default against
// the system CA store or the origin's ca_file, optional client certificate for mTLS, TLS 1.2+,
// ALPN http/1.1), the per-connection SSL (SNI and host-name check), and session reuse across a
// worker's pooled connections through an OriginSessionSlot.
// Contexts are built on the main thread (blocking file I/O) and are thread-safe to use. An
// OriginSessionSlot belongs to one worker and must outlive every SSL made with it.
#pragma once

#include <string>

#include "conf/config.h"
#include "tls/openssl_handles.h"

namespace streamedge::tls {

// The last session an origin gave us; new connections to it try to resume it.
class OriginSessionSlot {
 public:
  OriginSessionSlot() = default;
  OriginSessionSlot(const OriginSessionSlot&) = delete;
  OriginSessionSlot& operator=(const OriginSessionSlot&) = delete;
  SSL_SESSION* get() const { return session_.get(); }
  void put(SSL_SESSION* session) { session_.reset(session); }  // takes the reference
  void clear() { session_.reset(); }

 private:
  SslSessionPtr session_;
};

struct OriginContextBuild {
  SslCtxPtr ctx;
  std::string error;  // non-empty: unusable (unreadable CA file, client key mismatch)
};

// Origins with the same key share one context.
std::string originContextKey(const conf::OriginConfig& origin);
OriginContextBuild buildOriginContext(const conf::OriginConfig& origin);

// A client SSL for one connection to `origin`: SNI (names only, never IP literals), the name or
// address the certificate must match, and the slot's session when there is one. Null on failure.
SslPtr newOriginSsl(SSL_CTX* ctx, const conf::OriginConfig& origin, OriginSessionSlot* slot);

// Why a handshake failed, for the log line: the verification result when the peer's certificate
// was refused, else the OpenSSL error queue.
std::string describeHandshakeFailure(SSL* ssl, const std::string& queued_errors);

}  // namespace streamedge::tls
