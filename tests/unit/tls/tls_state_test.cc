#include "tls/tls_state.h"

#include <gtest/gtest.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "conf/config_loader.h"
#include "tests/unit/tls/tls_test_certs.h"

namespace streamedge::tls {
namespace {

std::string config(const std::string& dir, const std::string& extra_origin) {
  return R"(
[[listener]]
address = "127.0.0.1:0"
[[listener]]
address = "127.0.0.1:0"
  [[listener.certificate]]
  cert = ")" + dir + R"(/edge.pem"
  key = ")" + dir + R"(/edge.key"
[[origin_group]]
name = "g"
ca_file = ")" + dir + R"(/ca.pem"
  [[origin_group.origin]]
  url = "https://origin.test:8443"
)" + extra_origin + R"(
[[vhost]]
hostnames = ["*"]
  [[vhost.route]]
  prefix = "/"
  origin_group = "g"
)";
}

TEST(TlsState, BuildsListenerAndOriginContextsAndReportsBadOriginFiles) {
  const std::string dir = testing::makeTempDir();
  testing::TestCa ca;
  ca.leaf(dir, "edge", {"edge.test"});
  ASSERT_EQ(writePem(dir + "/ca.pem", dir + "/ca.key", ca.ca.cert.get(), ca.ca.key.get()), "");

  conf::LoadResult loaded = conf::loadConfigText(config(dir, ""), "t.toml");
  ASSERT_TRUE(loaded.ok()) << loaded.errors[0].toString();
  TlsState::Build b = TlsState::build(*loaded.config, nullptr, std::time(nullptr));
  ASSERT_TRUE(b.ok()) << b.errors[0];
  EXPECT_EQ(b.state->listener(0), nullptr);
  ASSERT_NE(b.state->listener(1), nullptr);
  EXPECT_NE(b.state->originContext(loaded.config->origin_groups[0].origins[0]), nullptr);

  // A reload keeps the random ticket keys of a listener on the same address.
  TlsState::Build again = TlsState::build(*loaded.config, b.state.get(), std::time(nullptr));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again.state->listener(1)->tickets(), b.state->listener(1)->tickets());

  loaded = conf::loadConfigText(config(dir, R"(
  [[origin_group.origin]]
  url = "https://other.test"
  ca_file = "/nonexistent/ca.pem"
)"), "t.toml");
  ASSERT_TRUE(loaded.ok()) << loaded.errors[0].toString();
  b = TlsState::build(*loaded.config, nullptr, std::time(nullptr));
  EXPECT_FALSE(b.ok());
  ASSERT_EQ(b.errors.size(), 1u);
  EXPECT_NE(b.errors[0].find("origin_group[0].origin[1] (other.test:443): ca_file /nonexistent/ca.pem"),
            std::string::npos) << b.errors[0];
}

TEST(TlsState, ListsEveryServedCertificateWithItsNotAfterByConfigName) {
  const std::string dir = testing::makeTempDir();
  testing::TestCa ca;
  ca.leaf(dir, "edge", {"edge.test"}, KeyKind::kEcP256, 10 * 86400);
  ca.leaf(dir, "other", {"other.test"}, KeyKind::kRsa2048, 40 * 86400);
  const std::time_t before = std::time(nullptr);
  conf::LoadResult loaded = conf::loadConfigText(R"(
[[listener]]
address = "127.0.0.1:0"
[[listener]]
address = "127.0.0.1:8443"
  [[listener.certificate]]
  cert = ")" + dir + R"(/edge.pem"
  key = ")" + dir + R"(/edge.key"
  [[listener.certificate]]
  cert = ")" + dir + R"(/other.pem"
  key = ")" + dir + R"(/other.key"
[[listener]]
address = "127.0.0.1:9443"
  [[listener.certificate]]
  cert = ")" + dir + R"(/edge.pem"
  key = ")" + dir + R"(/edge.key"
[[origin_group]]
name = "g"
  [[origin_group.origin]]
  url = "http://origin.test"
[[vhost]]
hostnames = ["*"]
  [[vhost.route]]
  prefix = "/"
  origin_group = "g"
)", "t.toml");
  ASSERT_TRUE(loaded.ok()) << loaded.errors[0].toString();
  TlsState::Build b = TlsState::build(*loaded.config, nullptr, std::time(nullptr));
  ASSERT_TRUE(b.ok()) << b.errors[0];
  const std::time_t after = std::time(nullptr);
  const std::vector<TlsState::ListenerCertificate> certs = b.state->listenerCertificates();
  ASSERT_EQ(certs.size(), 3u);
  EXPECT_EQ(certs[0].listener_index, 1u);
  EXPECT_EQ(certs[0].served.certificate, dir + "/edge.pem");
  EXPECT_EQ(certs[1].listener_index, 1u);
  EXPECT_EQ(certs[1].served.certificate, dir + "/other.pem");
  EXPECT_EQ(certs[2].listener_index, 2u);
  EXPECT_EQ(certs[2].served.certificate, dir + "/edge.pem");
  // notAfter = generation time + validity, to the second (X509 times have no fraction).
  EXPECT_GE(certs[0].served.not_after, before + 10 * 86400 - 1);
  EXPECT_LE(certs[0].served.not_after, after + 10 * 86400);
  EXPECT_GE(certs[1].served.not_after, before + 40 * 86400 - 1);
  EXPECT_LE(certs[1].served.not_after, after + 40 * 86400);
  EXPECT_EQ(certs[2].served.not_after, certs[0].served.not_after);
}

// [admin] certificates: the admin listener's contexts, with client_ca asking for and requiring a
// client certificate on every context; a client_ca that is not a PEM CA file is a build error
// that names the admin listener (so -t and a reload refuse it).
TEST(TlsState, BuildsAdminContextsWithClientCertificateVerification) {
  const std::string dir = testing::makeTempDir();
  testing::TestCa ca;
  ca.leaf(dir, "edge", {"edge.test"});
  ca.leaf(dir, "admin", {"admin.test"});
  ASSERT_EQ(writePem(dir + "/ca.pem", dir + "/ca.key", ca.ca.cert.get(), ca.ca.key.get()), "");
  const auto admin = [&](const std::string& extra) {
    return config(dir, "") + "[admin]\naddress = \"127.0.0.1:9901\"\n" + extra +
           "[[admin.certificate]]\ncert = \"" + dir + "/admin.pem\"\nkey = \"" + dir +
           "/admin.key\"\n";
  };

  conf::LoadResult loaded = conf::loadConfigText(config(dir, ""), "t.toml");
  ASSERT_TRUE(loaded.ok()) << loaded.errors[0].toString();
  TlsState::Build b = TlsState::build(*loaded.config, nullptr, std::time(nullptr));
  ASSERT_TRUE(b.ok()) << b.errors[0];
  EXPECT_EQ(b.state->admin(), nullptr) << "plain HTTP admin by default";

  loaded = conf::loadConfigText(admin(""), "t.toml");
  ASSERT_TRUE(loaded.ok()) << loaded.errors[0].toString();
  b = TlsState::build(*loaded.config, nullptr, std::time(nullptr));
  ASSERT_TRUE(b.ok()) << b.errors[0];
  ASSERT_NE(b.state->admin(), nullptr);
  EXPECT_EQ(b.state->admin()->subjectsFor("").front(), "/CN=admin (EC)");
  EXPECT_EQ(SSL_CTX_get_verify_mode(b.state->admin()->defaultContext()), SSL_VERIFY_NONE);
  // The viewer listener is unchanged: no client certificate asked.
  EXPECT_EQ(SSL_CTX_get_verify_mode(b.state->listener(1)->defaultContext()), SSL_VERIFY_NONE);
  // A reload keeps the admin listener's ticket keys.
  TlsState::Build again = TlsState::build(*loaded.config, b.state.get(), std::time(nullptr));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again.state->admin()->tickets(), b.state->admin()->tickets());

  loaded = conf::loadConfigText(admin("client_ca = \"" + dir + "/ca.pem\"\n"), "t.toml");
  ASSERT_TRUE(loaded.ok()) << loaded.errors[0].toString();
  b = TlsState::build(*loaded.config, nullptr, std::time(nullptr));
  ASSERT_TRUE(b.ok()) << b.errors[0];
  SSL_CTX* ctx = b.state->admin()->defaultContext();
  EXPECT_EQ(SSL_CTX_get_verify_mode(ctx), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT);
  STACK_OF(X509_NAME)* names = SSL_CTX_get_client_CA_list(ctx);
  ASSERT_NE(names, nullptr);
  ASSERT_EQ(sk_X509_NAME_num(names), 1);
  char cn[128] = {0};
  X509_NAME_get_text_by_NID(sk_X509_NAME_value(names, 0), NID_commonName, cn, sizeof cn);
  EXPECT_STREQ(cn, "streamedge test CA");

  for (const std::string& bad : {dir + "/nonexistent.pem", dir + "/ca.key"}) {
    loaded = conf::loadConfigText(admin("client_ca = \"" + bad + "\"\n"), "t.toml");
    ASSERT_TRUE(loaded.ok()) << loaded.errors[0].toString();
    b = TlsState::build(*loaded.config, nullptr, std::time(nullptr));
    EXPECT_FALSE(b.ok());
    ASSERT_EQ(b.errors.size(), 1u);
    EXPECT_EQ(b.errors[0].find("admin (127.0.0.1:9901): client_ca " + bad), 0u) << b.errors[0];
  }
}

}  // namespace
}  // namespace streamedge::tls
