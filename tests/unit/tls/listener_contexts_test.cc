#include "tls/listener_contexts.h"

#include <gtest/gtest.h>
#include <openssl/pem.h>

#include <cstdio>
#include <ctime>

#include "tests/unit/tls/tls_test_certs.h"

namespace streamedge::tls {
namespace {

using testing::TestCa;

conf::ListenerConfig listenerWith(const std::string& dir, const std::vector<std::string>& names) {
  conf::ListenerConfig l;
  l.address = "127.0.0.1:8443";
  for (const std::string& n : names) l.certificates.push_back({dir + "/" + n + ".pem", dir + "/" + n + ".key"});
  return l;
}

std::string joined(const std::vector<std::string>& v) {
  std::string out;
  for (const std::string& s : v) out += s + "\n";
  return out;
}

class ListenerContextsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::makeTempDir();
    ca_.leaf(dir_, "default", {"default.example.com"});
    ca_.leaf(dir_, "exact-ec", {"a.example.com", "b.example.com"});
    ca_.leaf(dir_, "exact-rsa", {"a.example.com", "b.example.com"}, KeyKind::kRsa2048);
    ca_.leaf(dir_, "wild", {"*.wild.example.com"});
  }
  std::string dir_;
  TestCa ca_;
};

TEST_F(ListenerContextsTest, SniSelectsExactThenWildcardThenDefault) {
  auto b = ListenerContexts::build(listenerWith(dir_, {"default", "exact-ec", "exact-rsa", "wild"}),
                                   nullptr, std::time(nullptr));
  ASSERT_TRUE(b.contexts) << joined(b.errors);
  EXPECT_TRUE(b.warnings.empty()) << joined(b.warnings);
  const ListenerContexts& c = *b.contexts;
  // RSA and ECDSA certificates for the same names share one context.
  ASSERT_EQ(c.subjectsFor("a.example.com").size(), 2u);
  EXPECT_NE(c.subjectsFor("a.example.com")[0].find("CN=exact-ec (EC)"), std::string::npos);
  EXPECT_NE(c.subjectsFor("a.example.com")[1].find("CN=exact-rsa (RSA)"), std::string::npos);
  EXPECT_EQ(c.select("B.Example.COM."), c.select("a.example.com"));
  EXPECT_NE(c.subjectsFor("x.wild.example.com")[0].find("CN=wild"), std::string::npos);
  // A wildcard stands for one label only; the bare suffix is not covered either.
  EXPECT_EQ(c.select("y.x.wild.example.com"), c.defaultContext());
  EXPECT_EQ(c.select("wild.example.com"), c.defaultContext());
  EXPECT_EQ(c.select("unknown.example.org"), c.defaultContext());
  EXPECT_EQ(c.select(""), c.defaultContext());
  EXPECT_NE(c.subjectsFor("")[0].find("CN=default"), std::string::npos);
}

// A real handshake over memory BIOs: the servername callback switches the certificate and ALPN
// picks h2 (the client offers h2 and http/1.1), or http/1.1 where the listener has no http2.
std::string handshakeSubject(const ListenerContexts& c, const char* sni, std::string* alpn) {
  SslCtxPtr client_ctx(SSL_CTX_new(TLS_client_method()));
  const unsigned char protos[] = {2, 'h', '2', 8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  SSL_CTX_set_alpn_protos(client_ctx.get(), protos, sizeof protos);
  SslPtr client(SSL_new(client_ctx.get()));
  SslPtr server(SSL_new(c.defaultContext()));
  if (sni) SSL_set_tlsext_host_name(client.get(), sni);
  BIO* client_bio = nullptr;
  BIO* server_bio = nullptr;
  BIO_new_bio_pair(&client_bio, 0, &server_bio, 0);
  SSL_set_bio(client.get(), client_bio, client_bio);
  SSL_set_bio(server.get(), server_bio, server_bio);
  SSL_set_connect_state(client.get());
  SSL_set_accept_state(server.get());
  for (int i = 0; i < 20; ++i) {
    const int a = SSL_do_handshake(client.get());
    const int b = SSL_do_handshake(server.get());
    if (a == 1 && b == 1) break;
  }
  X509* peer = SSL_get0_peer_certificate(client.get());
  if (!peer) return "<no handshake: " + drainSslErrors() + ">";
  char subject[256];
  X509_NAME_oneline(X509_get_subject_name(peer), subject, sizeof subject);
  if (alpn) {
    const unsigned char* p = nullptr;
    unsigned int len = 0;
    SSL_get0_alpn_selected(client.get(), &p, &len);
    alpn->assign(reinterpret_cast<const char*>(p), len);
  }
  return subject;
}

TEST_F(ListenerContextsTest, HandshakeServesTheCertificateSniAsksFor) {
  auto b = ListenerContexts::build(listenerWith(dir_, {"default", "exact-ec", "wild"}), nullptr,
                                   std::time(nullptr));
  ASSERT_TRUE(b.contexts) << joined(b.errors);
  std::string alpn;
  EXPECT_EQ(handshakeSubject(*b.contexts, "a.example.com", &alpn), "/CN=exact-ec");
  EXPECT_EQ(alpn, "h2");
  EXPECT_EQ(handshakeSubject(*b.contexts, "z.wild.example.com", nullptr), "/CN=wild");
  EXPECT_EQ(handshakeSubject(*b.contexts, "other.test", nullptr), "/CN=default");
  EXPECT_EQ(handshakeSubject(*b.contexts, nullptr, nullptr), "/CN=default");
}

TEST_F(ListenerContextsTest, AlpnKeepsToHttp11WhereTheListenerHasNoHttp2) {
  conf::ListenerConfig l = listenerWith(dir_, {"default", "exact-ec"});
  l.http2 = false;
  auto b = ListenerContexts::build(l, nullptr, std::time(nullptr));
  ASSERT_TRUE(b.contexts) << joined(b.errors);
  std::string alpn;
  EXPECT_EQ(handshakeSubject(*b.contexts, "a.example.com", &alpn), "/CN=exact-ec");
  EXPECT_EQ(alpn, "http/1.1");
}

TEST_F(ListenerContextsTest, KeyOfAnotherCertificateIsAnError) {
  conf::ListenerConfig l = listenerWith(dir_, {"default"});
  l.certificates[0].key = dir_ + "/wild.key";
  auto b = ListenerContexts::build(l, nullptr, std::time(nullptr));
  EXPECT_FALSE(b.contexts);
  ASSERT_EQ(b.errors.size(), 1u);
  EXPECT_NE(b.errors[0].find("does not match certificate"), std::string::npos) << b.errors[0];
  EXPECT_NE(b.errors[0].find("certificate[0]"), std::string::npos) << b.errors[0];
}

TEST_F(ListenerContextsTest, MissingFilesAreErrorsNamingThem) {
  conf::ListenerConfig l = listenerWith(dir_, {"default"});
  l.certificates.push_back({dir_ + "/nope.pem", dir_ + "/nope.key"});
  l.certificates.push_back({dir_ + "/default.pem", dir_ + "/nope.key"});
  auto b = ListenerContexts::build(l, nullptr, std::time(nullptr));
  EXPECT_FALSE(b.contexts);
  ASSERT_EQ(b.errors.size(), 2u) << joined(b.errors);
  EXPECT_NE(b.errors[0].find("certificate[1]: certificate " + dir_ + "/nope.pem: cannot open: No such file"),
            std::string::npos) << b.errors[0];
  EXPECT_NE(b.errors[1].find("certificate[2]: key " + dir_ + "/nope.key: cannot open"),
            std::string::npos) << b.errors[1];
}

TEST_F(ListenerContextsTest, ExpiredCertificateIsAWarningNotAnError) {
  ca_.leaf(dir_, "expired", {"old.example.com"}, KeyKind::kEcP256, -3600);
  auto b = ListenerContexts::build(listenerWith(dir_, {"expired"}), nullptr, std::time(nullptr));
  ASSERT_TRUE(b.contexts) << joined(b.errors);
  ASSERT_EQ(b.warnings.size(), 1u);
  EXPECT_NE(b.warnings[0].find("expired on"), std::string::npos) << b.warnings[0];
}

TEST_F(ListenerContextsTest, BadCipherListIsAnError) {
  conf::ListenerConfig l = listenerWith(dir_, {"default"});
  l.tls_ciphers = "NOT-A-CIPHER";
  auto b = ListenerContexts::build(l, nullptr, std::time(nullptr));
  EXPECT_FALSE(b.contexts);
  ASSERT_EQ(b.errors.size(), 1u);
  EXPECT_NE(b.errors[0].find("tls_ciphers"), std::string::npos) << b.errors[0];
}

TEST_F(ListenerContextsTest, TicketKeysCarryOverWhenTheRingIsPassedIn) {
  auto first = ListenerContexts::build(listenerWith(dir_, {"default"}), nullptr, std::time(nullptr));
  ASSERT_TRUE(first.contexts);
  auto second = ListenerContexts::build(listenerWith(dir_, {"default"}), first.contexts->tickets(),
                                        std::time(nullptr));
  ASSERT_TRUE(second.contexts);
  EXPECT_EQ(first.contexts->tickets(), second.contexts->tickets());
}

}  // namespace
}  // namespace streamedge::tls
