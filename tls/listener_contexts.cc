#include "tls/listener_contexts.h"

#include <openssl/core_names.h>
#include <openssl/rand.h>
#include <openssl/tls1.h>

#include <algorithm>
#include <cstring>

namespace streamedge::tls {

namespace {

// Wire-format ALPN lists we offer, in our order of preference (RFC 7301 §3.2: the server
// chooses): HTTP/1.1 only, or h2 first where the listener has http2.
constexpr unsigned char kAlpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
constexpr unsigned char kAlpnH2[] = {2, 'h', '2', 8, 'h', 't', 't', 'p', '/', '1', '.', '1'};

int contextsIndex() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

std::string normalizeName(std::string_view name) {
  std::string out(name);
  if (!out.empty() && out.back() == '.') out.pop_back();
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// The listener-wide settings every context of the listener gets, so that switching the context
// by SNI never changes what is negotiated.
bool configureContext(SSL_CTX* ctx, const conf::ListenerConfig& config, std::string& error) {
  const int min_version = config.tls_min_version == "1.3" ? TLS1_3_VERSION : TLS1_2_VERSION;
  SSL_CTX_set_min_proto_version(ctx, min_version);
  SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
  uint64_t options = SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                     SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF;
  if (!config.tls_session_tickets) options |= SSL_OP_NO_TICKET;
  SSL_CTX_set_options(ctx, options);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  if (SSL_CTX_set_cipher_list(ctx, config.tls_ciphers.c_str()) != 1) {
    error = "tls_ciphers \"" + config.tls_ciphers + "\" selects no usable cipher (" +
            drainSslErrors() + ")";
    return false;
  }
  if (SSL_CTX_set_ciphersuites(ctx, config.tls_ciphersuites.c_str()) != 1) {
    error = "tls_ciphersuites \"" + config.tls_ciphersuites + "\" selects no usable suite (" +
            drainSslErrors() + ")";
    return false;
  }
  if (SSL_CTX_set1_groups_list(ctx, "X25519:P-256:P-384") != 1) {
    error = "cannot set key-exchange groups (" + drainSslErrors() + ")";
    return false;
  }
  // Sessions resume only on the listener that made them.
  std::string sid = "streamedge " + config.address;
  sid.resize(std::min<size_t>(sid.size(), SSL_MAX_SID_CTX_LENGTH));
  SSL_CTX_set_session_id_context(ctx, reinterpret_cast<const unsigned char*>(sid.data()),
                                 static_cast<unsigned int>(sid.size()));
  if (config.tls_session_cache_size > 0) {
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(ctx, config.tls_session_cache_size);
  } else {
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  }
  SSL_CTX_set_timeout(ctx, static_cast<long>(config.tls_session_timeout.count()));
  if (!config.client_ca.empty()) {
    // Client certificates: asked for (naming the acceptable CAs), required, and verified
    // against client_ca only (not the system store). Every context of the listener gets the
    // same, so SNI cannot switch to one that does not ask.
    if (SSL_CTX_load_verify_locations(ctx, config.client_ca.c_str(), nullptr) != 1) {
      error = "client_ca " + config.client_ca + ": cannot be read as PEM CA certificates (" +
              drainSslErrors() + ")";
      return false;
    }
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(config.client_ca.c_str());
    if (!names || sk_X509_NAME_num(names) == 0) {
      if (names) sk_X509_NAME_pop_free(names, X509_NAME_free);
      error = "client_ca " + config.client_ca + ": holds no certificate (" + drainSslErrors() + ")";
      return false;
    }
    SSL_CTX_set_client_CA_list(ctx, names);  // takes ownership
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    SSL_CTX_set_verify_depth(ctx, 8);
  }
  return true;
}

}  // namespace

ListenerContexts::~ListenerContexts() = default;

ListenerContexts::Build ListenerContexts::build(const conf::ListenerConfig& config,
                                                std::shared_ptr<TicketKeyRing> tickets,
                                                std::time_t now) {
  Build out;
  std::shared_ptr<ListenerContexts> self(new ListenerContexts());
  if (config.certificates.empty()) {
    out.errors.push_back("a TLS listener needs at least one [[listener.certificate]]");
    return out;
  }

  // Load every certificate (all errors at once), then group: same names, distinct key types.
  std::vector<std::unique_ptr<LoadedCertificate>> loaded;
  for (size_t i = 0; i < config.certificates.size(); ++i) {
    CertificateLoad load = loadCertificate(config.certificates[i], now);
    const std::string where = "certificate[" + std::to_string(i) + "]: ";
    for (std::string& w : load.warnings) out.warnings.push_back(where + w);
    if (!load.ok()) {
      out.errors.push_back(where + load.error);
      continue;
    }
    self->certificates_.push_back({config.certificates[i].cert, load.cert.not_after});
    loaded.push_back(std::make_unique<LoadedCertificate>(std::move(load.cert)));
  }
  if (!out.errors.empty()) return out;

  for (std::unique_ptr<LoadedCertificate>& cert : loaded) {
    std::vector<std::string> names = cert->dns_names;
    std::sort(names.begin(), names.end());
    Slot* target = nullptr;
    for (Slot& slot : self->slots_) {
      const bool same_type = std::any_of(slot.certs.begin(), slot.certs.end(), [&](const auto& c) {
        return c->key_type == cert->key_type;
      });
      if (slot.names == names && !same_type) {
        target = &slot;
        break;
      }
    }
    if (!target) {
      self->slots_.emplace_back();
      target = &self->slots_.back();
      target->names = names;
    }
    target->subjects.push_back(cert->subject + " (" + cert->key_type + ")");
    target->certs.push_back(std::move(cert));
  }

  if (config.tls_session_tickets) {
    if (!config.tls_ticket_key_file.empty()) {
      std::string error;
      tickets = TicketKeyRing::fromFile(config.tls_ticket_key_file, error);
      if (!tickets) {
        out.errors.push_back(error);
        return out;
      }
    } else if (!tickets || tickets->fromFile() || tickets->rotation() != config.tls_ticket_rotation) {
      tickets = TicketKeyRing::random(config.tls_ticket_rotation, std::chrono::system_clock::now());
    }
    self->tickets_ = std::move(tickets);
  }

  for (size_t s = 0; s < self->slots_.size(); ++s) {
    Slot& slot = self->slots_[s];
    slot.ctx.reset(SSL_CTX_new(TLS_server_method()));
    SSL_CTX* ctx = slot.ctx.get();
    std::string error;
    if (!ctx) {
      out.errors.push_back("SSL_CTX_new failed (" + drainSslErrors() + ")");
      return out;
    }
    if (!configureContext(ctx, config, error)) {
      out.errors.push_back(error);
      return out;
    }
    for (const std::unique_ptr<LoadedCertificate>& cert : slot.certs) {
      STACK_OF(X509)* chain = sk_X509_new_null();
      for (const X509Ptr& c : cert->chain) sk_X509_push(chain, c.get());
      // Takes its own references to the leaf, key and chain.
      const int ok = SSL_CTX_use_cert_and_key(ctx, cert->leaf.get(), cert->key.get(), chain, 1);
      sk_X509_free(chain);
      if (ok != 1) {
        out.errors.push_back("certificate " + cert->subject + ": cannot be used (" +
                             drainSslErrors() + ")");
        return out;
      }
    }
    SSL_CTX_set_ex_data(ctx, contextsIndex(), self.get());
    SSL_CTX_set_tlsext_servername_callback(ctx, servernameCb);
    SSL_CTX_set_tlsext_servername_arg(ctx, self.get());
    // The callback's argument says whether h2 is offered (no state behind the pointer).
    SSL_CTX_set_alpn_select_cb(ctx, alpnCb,
                               config.http2 ? const_cast<unsigned char*>(kAlpnH2) : nullptr);
    SSL_CTX_set_tlsext_status_cb(ctx, statusCb);
    SSL_CTX_set_tlsext_status_arg(ctx, &slot);
    if (self->tickets_) SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticketCb);

    for (const std::string& name : slot.names) {
      const bool wildcard = name.size() > 2 && name.compare(0, 2, "*.") == 0;
      auto& map = wildcard ? self->wildcard_ : self->exact_;
      const std::string key = wildcard ? name.substr(2) : name;
      const auto [it, inserted] = map.emplace(key, s);
      if (!inserted && it->second != s) {
        out.warnings.push_back("name " + name + " is in more than one certificate; the first (" +
                               self->slots_[it->second].subjects.front() + ") serves it");
      }
    }
  }
  out.contexts = std::move(self);
  return out;
}

size_t ListenerContexts::slotFor(std::string_view server_name) const {
  if (server_name.empty()) return 0;
  const std::string name = normalizeName(server_name);
  if (auto it = exact_.find(name); it != exact_.end()) return it->second;
  // RFC 6125 §6.4.3: the wildcard stands for exactly one whole label.
  const size_t dot = name.find('.');
  if (dot != std::string::npos && dot > 0 && dot + 1 < name.size()) {
    if (auto it = wildcard_.find(std::string_view(name).substr(dot + 1)); it != wildcard_.end()) {
      return it->second;
    }
  }
  return 0;
}

SSL_CTX* ListenerContexts::select(std::string_view server_name) const {
  return slots_[slotFor(server_name)].ctx.get();
}

const std::vector<std::string>& ListenerContexts::subjectsFor(std::string_view server_name) const {
  return slots_[slotFor(server_name)].subjects;
}

int ListenerContexts::servernameCb(SSL* ssl, int*, void* arg) {
  const auto* self = static_cast<const ListenerContexts*>(arg);
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (!name) return SSL_TLSEXT_ERR_OK;  // no SNI: the default certificate
  SSL_CTX* ctx = self->select(name);
  if (ctx != SSL_get_SSL_CTX(ssl)) SSL_set_SSL_CTX(ssl, ctx);
  return SSL_TLSEXT_ERR_OK;
}

int ListenerContexts::alpnCb(SSL*, const unsigned char** out, unsigned char* outlen,
                             const unsigned char* in, unsigned int inlen, void* arg) {
  unsigned char* selected = nullptr;
  const bool h2 = arg != nullptr;
  if (SSL_select_next_proto(&selected, outlen, h2 ? kAlpnH2 : kAlpn,
                            h2 ? sizeof kAlpnH2 : sizeof kAlpn, in, inlen) !=
      OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_NOACK;  // a client without http/1.1 still gets HTTP/1.1 without ALPN
  }
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

int ListenerContexts::ticketCb(SSL* ssl, unsigned char* key_name, unsigned char* iv,
                               EVP_CIPHER_CTX* ctx, EVP_MAC_CTX* hctx, int enc) {
  const auto* self =
      static_cast<const ListenerContexts*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), contextsIndex()));
  if (!self || !self->tickets_) return enc ? -1 : 0;
  const auto now = std::chrono::system_clock::now();
  TicketKeyRing::Key key;
  int result = 1;
  if (enc) {
    key = self->tickets_->current(now);
    if (RAND_bytes(iv, EVP_MAX_IV_LENGTH) != 1) return -1;
    std::memcpy(key_name, key.name.data(), key.name.size());
    if (EVP_EncryptInit_ex(ctx, EVP_aes_256_cbc(), nullptr, key.aes.data(), iv) != 1) return -1;
  } else {
    bool is_current = false;
    if (!self->tickets_->find(key_name, now, key, is_current)) return 0;  // full handshake
    if (EVP_DecryptInit_ex(ctx, EVP_aes_256_cbc(), nullptr, key.aes.data(), iv) != 1) return -1;
    result = is_current ? 1 : 2;  // 2: renew under the current key
  }
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key.hmac.data(), key.hmac.size()),
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_end(),
  };
  if (EVP_MAC_CTX_set_params(hctx, params) != 1) return -1;
  OPENSSL_cleanse(&key, sizeof key);
  return result;
}

int ListenerContexts::statusCb(SSL* ssl, void* arg) {
  const auto* slot = static_cast<const Slot*>(arg);
  X509* served = SSL_get_certificate(ssl);
  for (const std::unique_ptr<LoadedCertificate>& cert : slot->certs) {
    if (cert->leaf.get() != served) continue;
    if (cert->ocsp_der.empty()) return SSL_TLSEXT_ERR_NOACK;
    // Served only while valid: an expired response would make strict clients fail.
    if (cert->ocsp_next_update != 0 && cert->ocsp_next_update <= std::time(nullptr)) {
      return SSL_TLSEXT_ERR_NOACK;
    }
    auto* copy = static_cast<unsigned char*>(OPENSSL_memdup(cert->ocsp_der.data(), cert->ocsp_der.size()));
    if (!copy) return SSL_TLSEXT_ERR_NOACK;
    SSL_set_tlsext_status_ocsp_resp(ssl, copy, static_cast<long>(cert->ocsp_der.size()));
    return SSL_TLSEXT_ERR_OK;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

}  // namespace streamedge::tls
