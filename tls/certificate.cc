#include "tls/certificate.h"

#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace streamedge::tls {

namespace {

std::string lowercase(std::string s) {
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return s;
}

std::string formatTime(std::time_t t) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

bool readFile(const std::string& path, std::string& out, std::string& error) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) {
    error = std::strerror(errno);
    return false;
  }
  char buf[16384];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  if (failed) error = "read error";
  return !failed;
}

std::vector<std::string> dnsNamesOf(X509* cert) {
  std::vector<std::string> names;
  auto* sans = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (sans) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      const GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans, i);
      if (gn->type != GEN_DNS) continue;
      const ASN1_IA5STRING* s = gn->d.dNSName;
      names.push_back(lowercase(std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                                            static_cast<size_t>(ASN1_STRING_length(s)))));
    }
    GENERAL_NAMES_free(sans);
  }
  if (names.empty()) {
    // RFC 6125 §6.4.4: the CN only counts when there is no DNS SAN.
    char cn[256];
    if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn) > 0) {
      names.push_back(lowercase(cn));
    }
  }
  return names;
}

// Reads `<cert>.ocsp` when present. Problems are warnings: a listener without a staple still
// works, clients fall back to asking the responder.
void loadOcsp(const std::string& cert_path, LoadedCertificate& cert, std::time_t now,
              std::vector<std::string>& warnings) {
  const std::string path = cert_path + ".ocsp";
  std::string der;
  std::string error;
  if (!readFile(path, der, error)) {
    if (errno != ENOENT) warnings.push_back(path + ": cannot read OCSP response: " + error);
    return;
  }
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  OCSP_RESPONSE* resp = d2i_OCSP_RESPONSE(nullptr, &p, static_cast<long>(der.size()));
  if (!resp) {
    drainSslErrors();
    warnings.push_back(path + ": not a DER OCSP response; not stapled");
    return;
  }
  OCSP_BASICRESP* basic = nullptr;
  OCSP_CERTID* id = nullptr;
  auto cleanup = [&] {
    if (id) OCSP_CERTID_free(id);
    if (basic) OCSP_BASICRESP_free(basic);
    OCSP_RESPONSE_free(resp);
  };
  if (OCSP_response_status(resp) != OCSP_RESPONSE_STATUS_SUCCESSFUL ||
      !(basic = OCSP_response_get1_basic(resp))) {
    warnings.push_back(path + ": OCSP response is not a successful basic response; not stapled");
    return cleanup();
  }
  // The single response for this certificate: matched by issuer when the chain has it.
  int index = 0;
  if (!cert.chain.empty()) {
    id = OCSP_cert_to_id(nullptr, cert.leaf.get(), cert.chain.front().get());
    index = id ? OCSP_resp_find(basic, id, -1) : -1;
  }
  OCSP_SINGLERESP* single = index >= 0 ? OCSP_resp_get0(basic, index) : nullptr;
  if (!single) {
    warnings.push_back(path + ": OCSP response is not about this certificate; not stapled");
    return cleanup();
  }
  int reason = 0;
  ASN1_GENERALIZEDTIME* revoked_at = nullptr;
  ASN1_GENERALIZEDTIME* this_update = nullptr;
  ASN1_GENERALIZEDTIME* next_update = nullptr;
  const int status = OCSP_single_get0_status(single, &reason, &revoked_at, &this_update, &next_update);
  if (status != V_OCSP_CERTSTATUS_GOOD) {
    warnings.push_back(path + ": OCSP status is " + OCSP_cert_status_str(status) + "; not stapled");
    return cleanup();
  }
  cert.ocsp_next_update = next_update ? asn1TimeToTimeT(next_update) : 0;
  if (cert.ocsp_next_update != 0 && cert.ocsp_next_update <= now) {
    warnings.push_back(path + ": OCSP response expired on " + formatTime(cert.ocsp_next_update) +
                       "; not stapled until it is refreshed");
  }
  cert.ocsp_der = std::move(der);
  cleanup();
}

}  // namespace

std::time_t asn1TimeToTimeT(const ASN1_TIME* t) {
  std::tm tm{};
  if (!t || ASN1_TIME_to_tm(t, &tm) != 1) return 0;
  return timegm(&tm);
}

CertificateLoad loadCertificate(const conf::CertificateConfig& config, std::time_t now) {
  CertificateLoad out;
  LoadedCertificate& cert = out.cert;
  ERR_clear_error();

  std::string pem;
  std::string error;
  if (!readFile(config.cert, pem, error)) {
    out.error = "certificate " + config.cert + ": cannot open: " + error;
    return out;
  }
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  cert.leaf.reset(PEM_read_bio_X509_AUX(bio.get(), nullptr, nullptr, nullptr));
  if (!cert.leaf) {
    out.error = "certificate " + config.cert + ": no PEM certificate found (" + drainSslErrors() + ")";
    return out;
  }
  while (X509* extra = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    cert.chain.emplace_back(extra);
  }
  ERR_clear_error();  // the end of the PEM stream reads as an error

  std::string key_pem;
  if (!readFile(config.key, key_pem, error)) {
    out.error = "key " + config.key + ": cannot open: " + error;
    return out;
  }
  BioPtr key_bio(BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size())));
  cert.key.reset(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  if (!cert.key) {
    out.error = "key " + config.key + ": no unencrypted PEM private key found (" +
                drainSslErrors() + ")";
    return out;
  }
  if (X509_check_private_key(cert.leaf.get(), cert.key.get()) != 1) {
    drainSslErrors();
    out.error = "key " + config.key + " does not match certificate " + config.cert +
                " (the key must be the leaf's, and the leaf must come first in the file)";
    return out;
  }

  cert.dns_names = dnsNamesOf(cert.leaf.get());
  if (cert.dns_names.empty()) {
    out.warnings.push_back("certificate " + config.cert +
                           ": no DNS name (SAN or CN); it is only served as the default");
  }
  const int base_id = EVP_PKEY_get_base_id(cert.key.get());
  cert.key_type = base_id == EVP_PKEY_RSA ? "RSA" : base_id == EVP_PKEY_EC ? "EC" : OBJ_nid2sn(base_id);
  char subject[512];
  X509_NAME_oneline(X509_get_subject_name(cert.leaf.get()), subject, sizeof subject);
  cert.subject = subject;
  cert.not_after = asn1TimeToTimeT(X509_get0_notAfter(cert.leaf.get()));
  const std::time_t not_before = asn1TimeToTimeT(X509_get0_notBefore(cert.leaf.get()));
  if (cert.not_after != 0 && cert.not_after <= now) {
    out.warnings.push_back("certificate " + config.cert + " expired on " + formatTime(cert.not_after) +
                           "; browsers will refuse it");
  } else if (not_before > now) {
    out.warnings.push_back("certificate " + config.cert + " is not valid before " +
                           formatTime(not_before));
  }
  loadOcsp(config.cert, cert, now, out.warnings);
  return out;
}

}  // namespace streamedge::tls
