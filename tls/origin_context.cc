#include "tls/origin_context.h"

#include <arpa/inet.h>
#include <openssl/x509v3.h>

namespace streamedge::tls {

namespace {

constexpr unsigned char kAlpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};

int slotIndex() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

bool isIpLiteral(const std::string& host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

// A new session (TLS 1.3: when its ticket arrives) becomes the origin's session to resume.
int newSessionCb(SSL* ssl, SSL_SESSION* session) {
  auto* slot = static_cast<OriginSessionSlot*>(SSL_get_ex_data(ssl, slotIndex()));
  if (!slot) return 0;
  slot->put(session);
  return 1;  // we keep the reference
}

}  // namespace

std::string originContextKey(const conf::OriginConfig& origin) {
  return std::string(origin.tls_verify ? "v" : "n") + '\n' + origin.ca_file + '\n' +
         origin.client_cert + '\n' + origin.client_key;
}

OriginContextBuild buildOriginContext(const conf::OriginConfig& origin) {
  OriginContextBuild out;
  ERR_clear_error();
  out.ctx.reset(SSL_CTX_new(TLS_client_method()));
  SSL_CTX* ctx = out.ctx.get();
  if (!ctx) {
    out.error = "SSL_CTX_new failed (" + drainSslErrors() + ")";
    return out;
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_alpn_protos(ctx, kAlpn, sizeof kAlpn);
  if (origin.tls_verify) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    if (!origin.ca_file.empty()) {
      if (SSL_CTX_load_verify_locations(ctx, origin.ca_file.c_str(), nullptr) != 1) {
        out.error = "ca_file " + origin.ca_file + ": cannot load (" + drainSslErrors() + ")";
        out.ctx.reset();
        return out;
      }
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
      out.error = "cannot load the system CA store (" + drainSslErrors() + ")";
      out.ctx.reset();
      return out;
    }
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  }
  if (!origin.client_cert.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx, origin.client_cert.c_str()) != 1) {
      out.error = "client_cert " + origin.client_cert + ": cannot load (" + drainSslErrors() + ")";
      out.ctx.reset();
      return out;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, origin.client_key.c_str(), SSL_FILETYPE_PEM) != 1) {
      out.error = "client_key " + origin.client_key + ": cannot load (" + drainSslErrors() + ")";
      out.ctx.reset();
      return out;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
      drainSslErrors();
      out.error = "client_key " + origin.client_key + " does not match client_cert " +
                  origin.client_cert;
      out.ctx.reset();
      return out;
    }
  }
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(ctx, newSessionCb);
  return out;
}

SslPtr newOriginSsl(SSL_CTX* ctx, const conf::OriginConfig& origin, OriginSessionSlot* slot) {
  SslPtr ssl(SSL_new(ctx));
  if (!ssl) return nullptr;
  const std::string& name = origin.tls_server_name.empty() ? origin.host : origin.tls_server_name;
  if (isIpLiteral(name)) {
    // RFC 6066 §3: no IP literals in SNI; the certificate must carry the address as an IP SAN.
    if (origin.tls_verify && X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl.get()), name.c_str()) != 1) {
      return nullptr;
    }
  } else {
    if (SSL_set_tlsext_host_name(ssl.get(), name.c_str()) != 1) return nullptr;
    if (origin.tls_verify) {
      SSL_set_hostflags(ssl.get(), X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      if (SSL_set1_host(ssl.get(), name.c_str()) != 1) return nullptr;
    }
  }
  if (slot) {
    SSL_set_ex_data(ssl.get(), slotIndex(), slot);
    if (SSL_SESSION* session = slot->get()) SSL_set_session(ssl.get(), session);
  }
  return ssl;
}

std::string describeHandshakeFailure(SSL* ssl, const std::string& queued_errors) {
  if (ssl) {
    const long verify = SSL_get_verify_result(ssl);
    if (verify != X509_V_OK) {
      return std::string("certificate verification failed: ") +
             X509_verify_cert_error_string(verify);
    }
  }
  return queued_errors.empty() ? "TLS handshake failed" : "TLS handshake failed: " + queued_errors;
}

}  // namespace streamedge::tls
