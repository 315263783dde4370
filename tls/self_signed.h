// Certificate generation with OpenSSL APIs: the self-signed certificate the embedded default
// config serves at first start, and the CAs and leaves tests make (no key is ever checked in).
// Thread-compatible; writing files is blocking I/O.
#pragma once

#include <string>
#include <vector>

#include "tls/openssl_handles.h"

namespace streamedge::tls {

enum class KeyKind { kEcP256, kRsa2048 };

struct CertificateSpec {
  std::string common_name = "streamedge";
  std::vector<std::string> dns_names;  // SAN DNS entries ("*.example.com" allowed)
  std::vector<std::string> ip_addresses;  // SAN IP entries
  KeyKind key_kind = KeyKind::kEcP256;
  long valid_from_seconds = -3600;      // relative to now; negative = in the past
  long valid_until_seconds = 365L * 86400;
  bool is_ca = false;
  // Issuer; both null → self-signed.
  X509* issuer_cert = nullptr;
  EVP_PKEY* issuer_key = nullptr;
};

struct GeneratedCertificate {
  X509Ptr cert;
  EvpPkeyPtr key;
  std::string error;  // non-empty on failure
};

GeneratedCertificate generateCertificate(const CertificateSpec& spec);

// Writes PEM files (the key with mode 0600). `chain` certificates follow the leaf in cert_path.
// Returns "" or an error message.
std::string writePem(const std::string& cert_path, const std::string& key_path, X509* cert,
                     EVP_PKEY* key, const std::vector<X509*>& chain = {});

}  // namespace streamedge::tls
