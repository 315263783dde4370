// A certificate as a TLS listener serves it: the leaf, its chain, its private key, the DNS names
// it answers for (SAN, else the subject CN) and, when a `<cert>.ocsp` file (DER OCSP response)
// sits next to it, the response to staple and until when it may be stapled.
// Loading does blocking file I/O: main thread only (config check, start, SIGHUP). A loaded
// certificate is immutable and may be read from any thread.
#pragma once

#include <ctime>
#include <string>
#include <vector>

#include "conf/config.h"
#include "tls/openssl_handles.h"

namespace streamedge::tls {

struct LoadedCertificate {
  X509Ptr leaf;
  std::vector<X509Ptr> chain;           // intermediates, in file order
  EvpPkeyPtr key;
  std::vector<std::string> dns_names;   // lowercase; "*.example.com" for wildcards
  std::string key_type;                 // "RSA", "EC", ...
  std::string subject;                  // one-line subject, for logs
  std::time_t not_after = 0;
  std::string ocsp_der;                 // empty: nothing to staple
  std::time_t ocsp_next_update = 0;     // 0 with ocsp_der: no nextUpdate given (always served)
};

struct CertificateLoad {
  LoadedCertificate cert;
  std::string error;                  // non-empty: unusable (missing file, key mismatch, ...)
  std::vector<std::string> warnings;  // usable but suspicious (expired, stale OCSP response)
  bool ok() const { return error.empty(); }
};

// Loads `config.cert` (PEM, leaf first) and `config.key` and checks that they belong together.
// `now` decides the expiry warnings.
CertificateLoad loadCertificate(const conf::CertificateConfig& config, std::time_t now);

// ASN1_TIME → time_t (UTC); 0 when unparseable.
std::time_t asn1TimeToTimeT(const ASN1_TIME* t);

}  // namespace streamedge::tls
