// TlsState: every OpenSSL context one config needs — the server contexts of each TLS listener
// and the client contexts of the https origins. Built on the main thread at start, by the config
// check and on SIGHUP (a failed build keeps the previous state running), then published as
// std::shared_ptr<const TlsState>: each connection pins the snapshot it started with, so a
// reload never changes a handshake in progress. Immutable and thread-safe once built.
#pragma once

#include <ctime>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "conf/config.h"
#include "tls/listener_contexts.h"
#include "tls/openssl_handles.h"

namespace streamedge::tls {

class TlsState {
 public:
  struct Build {
    std::shared_ptr<const TlsState> state;  // null when errors is non-empty
    std::vector<std::string> errors;        // "listener[0] (addr): certificate[1]: ..."
    std::vector<std::string> warnings;
    bool ok() const { return state != nullptr; }
  };
  // `previous`: the running state, whose random ticket keys carry over to listeners on the same
  // address (so a reload does not invalidate every viewer's ticket). Blocking file I/O.
  static Build build(const conf::Config& config, const TlsState* previous, std::time_t now);

  // The contexts of listener `index` (config order); null for a plain listener.
  const ListenerContexts* listener(size_t index) const {
    return index < listeners_.size() ? listeners_[index].get() : nullptr;
  }
  // The contexts of the admin listener when [admin] has certificates (with client_ca, every
  // context asks for and verifies a client certificate); null for a plain admin listener.
  const ListenerContexts* admin() const { return admin_.get(); }
  // The client context for an https origin of the config this state was built from; null for
  // http origins and origins of another config.
  SSL_CTX* originContext(const conf::OriginConfig& origin) const;

  struct ListenerCertificate {
    size_t listener_index = 0;  // config order, as for listener()
    ServedCertificate served;
  };
  // Every certificate the TLS listeners serve (listener order, then config order), with its
  // notAfter: what the certificate expiry gauge exports. Labels come from config only.
  std::vector<ListenerCertificate> listenerCertificates() const;

 private:
  std::vector<std::shared_ptr<ListenerContexts>> listeners_;
  std::vector<std::string> listener_addresses_;
  std::shared_ptr<ListenerContexts> admin_;
  std::map<std::string, SslCtxPtr> origins_;  // originContextKey → context
};

using TlsStatePtr = std::shared_ptr<const TlsState>;

}  // namespace streamedge::tls
