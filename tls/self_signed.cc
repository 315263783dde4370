#include "tls/self_signed.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace streamedge::tls {

namespace {

bool addExtension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (!ext) return false;
  const int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  return ok == 1;
}

}  // namespace

GeneratedCertificate generateCertificate(const CertificateSpec& spec) {
  GeneratedCertificate out;
  ERR_clear_error();
  out.key.reset(spec.key_kind == KeyKind::kEcP256 ? EVP_EC_gen("P-256")
                                                  : EVP_RSA_gen(2048));
  if (!out.key) {
    out.error = "key generation failed (" + drainSslErrors() + ")";
    return out;
  }
  out.cert.reset(X509_new());
  X509* cert = out.cert.get();
  X509_set_version(cert, 2);
  unsigned char serial[16];
  RAND_bytes(serial, sizeof serial);
  serial[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(cert), spec.valid_from_seconds);
  X509_gmtime_adj(X509_getm_notAfter(cert), spec.valid_until_seconds);
  X509_set_pubkey(cert, out.key.get());
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(spec.common_name.c_str()), -1, -1, 0);
  X509* issuer = spec.issuer_cert ? spec.issuer_cert : cert;
  EVP_PKEY* signer = spec.issuer_key ? spec.issuer_key : out.key.get();
  X509_set_issuer_name(cert, X509_get_subject_name(issuer));

  std::string san;
  for (const std::string& dns : spec.dns_names) san += (san.empty() ? "DNS:" : ",DNS:") + dns;
  for (const std::string& ip : spec.ip_addresses) san += (san.empty() ? "IP:" : ",IP:") + ip;
  bool ok = addExtension(cert, issuer, NID_subject_key_identifier, "hash") &&
            (issuer == cert || addExtension(cert, issuer, NID_authority_key_identifier, "keyid:always"));
  if (spec.is_ca) {
    ok = ok && addExtension(cert, issuer, NID_basic_constraints, "critical,CA:TRUE") &&
         addExtension(cert, issuer, NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature");
  } else {
    ok = ok && addExtension(cert, issuer, NID_basic_constraints, "critical,CA:FALSE") &&
         addExtension(cert, issuer, NID_ext_key_usage, "serverAuth,clientAuth");
  }
  if (!san.empty()) ok = ok && addExtension(cert, issuer, NID_subject_alt_name, san);
  if (!ok || X509_sign(cert, signer, EVP_sha256()) <= 0) {
    out.error = "certificate generation failed (" + drainSslErrors() + ")";
    out.cert.reset();
    out.key.reset();
  }
  return out;
}

std::string writePem(const std::string& cert_path, const std::string& key_path, X509* cert,
                     EVP_PKEY* key, const std::vector<X509*>& chain) {
  const int kfd = ::open(key_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (kfd < 0) return key_path + ": " + std::strerror(errno);
  std::FILE* kf = fdopen(kfd, "w");
  const bool key_ok = kf && PEM_write_PrivateKey(kf, key, nullptr, nullptr, 0, nullptr, nullptr) == 1;
  if (kf) std::fclose(kf); else ::close(kfd);
  if (!key_ok) return key_path + ": cannot write the key";
  std::FILE* cf = std::fopen(cert_path.c_str(), "w");
  if (!cf) return cert_path + ": " + std::strerror(errno);
  bool cert_ok = PEM_write_X509(cf, cert) == 1;
  for (X509* c : chain) cert_ok = cert_ok && PEM_write_X509(cf, c) == 1;
  std::fclose(cf);
  return cert_ok ? "" : cert_path + ": cannot write the certificate";
}

}  // namespace streamedge::tls
