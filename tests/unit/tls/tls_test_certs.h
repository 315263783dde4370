// Test certificates made at test time (no key is checked in): a temp dir, a CA, leaves.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <string>
#include <vector>

#include "tls/self_signed.h"

namespace streamedge::tls::testing {

inline std::string makeTempDir() {
  std::string templ = ::testing::TempDir() + "se-tls-XXXXXX";
  char* dir = mkdtemp(templ.data());
  EXPECT_NE(dir, nullptr);
  return templ;
}

struct TestCa {
  GeneratedCertificate ca;
  TestCa() {
    CertificateSpec spec;
    spec.common_name = "streamedge test CA";
    spec.is_ca = true;
    ca = generateCertificate(spec);
    EXPECT_EQ(ca.error, "");
  }
  // Writes <dir>/<name>.pem (leaf + CA) and <dir>/<name>.key; returns the generated leaf.
  GeneratedCertificate leaf(const std::string& dir, const std::string& name,
                            std::vector<std::string> dns, KeyKind kind = KeyKind::kEcP256,
                            long valid_until_seconds = 86400) {
    CertificateSpec spec;
    spec.common_name = name;
    spec.dns_names = std::move(dns);
    spec.key_kind = kind;
    spec.valid_until_seconds = valid_until_seconds;
    if (valid_until_seconds < 0) spec.valid_from_seconds = valid_until_seconds - 86400;
    spec.issuer_cert = ca.cert.get();
    spec.issuer_key = ca.key.get();
    GeneratedCertificate g = generateCertificate(spec);
    EXPECT_EQ(g.error, "");
    EXPECT_EQ(writePem(dir + "/" + name + ".pem", dir + "/" + name + ".key", g.cert.get(),
                       g.key.get(), {ca.cert.get()}),
              "");
    return g;
  }
};

}  // namespace streamedge::tls::testing
