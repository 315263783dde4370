// TLS scenarios with the real binary and real clients (openssl s_client, curl): protocol
// versions, SNI, ALPN, session resumption, OCSP stapling, reload, HSTS, the HTTPS redirect and
// verified TLS to origins. Certificates are generated at test time (tls/self_signed.h).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "tests/support/http_client.h"
#include "tests/support/origin_sim.h"
#include "tests/support/process.h"
#include "tests/support/tls_client.h"
#include "tls/self_signed.h"

namespace streamedge::scenario {
namespace {

using namespace std::chrono_literals;

struct CommandResult {
  int status = -1;
  std::string output;  // stdout and stderr
};

CommandResult run(const std::string& command) {
  CommandResult r;
  FILE* p = ::popen(("timeout 20 " + command + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// A CA and leaves, written as PEM into a temp dir.
struct Pki {
  testsupport::TempDir dir{"streamedge-tls"};
  tls::GeneratedCertificate ca;
  explicit Pki(const std::string& ca_name = "ca") {
    tls::CertificateSpec spec;
    spec.common_name = "streamedge scenario " + ca_name;
    spec.is_ca = true;
    ca = tls::generateCertificate(spec);
    EXPECT_EQ(tls::writePem(path(ca_name + ".pem"), path(ca_name + ".key"), ca.cert.get(), ca.key.get()), "");
  }
  std::string path(const std::string& name) const { return dir.file(name); }
  void leaf(const std::string& name, std::vector<std::string> dns, std::vector<std::string> ips = {},
            tls::KeyKind kind = tls::KeyKind::kEcP256) {
    tls::CertificateSpec spec;
    spec.common_name = name;
    spec.dns_names = std::move(dns);
    spec.ip_addresses = std::move(ips);
    spec.key_kind = kind;
    spec.issuer_cert = ca.cert.get();
    spec.issuer_key = ca.key.get();
    tls::GeneratedCertificate g = tls::generateCertificate(spec);
    ASSERT_EQ(g.error, "");
    ASSERT_EQ(tls::writePem(path(name + ".pem"), path(name + ".key"), g.cert.get(), g.key.get(), {ca.cert.get()}), "");
  }
};

class TlsScenarioTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pki_.leaf("default", {"localhost"}, {"127.0.0.1"});
    pki_.leaf("video", {"video.example.com"});
    pki_.leaf("video-rsa", {"video.example.com"}, {}, tls::KeyKind::kRsa2048);
    pki_.leaf("wild", {"*.cdn.example.net"});
    pki_.leaf("origin", {"origin.test"}, {"127.0.0.1"});
    pki_.leaf("reloaded", {"localhost"}, {"127.0.0.1"});
    std::string error;
    sim_ = testsupport::startOriginSim({"--name", "plain-origin"}, &error);
    ASSERT_TRUE(sim_) << error;
    tls_sim_ = testsupport::startOriginSim({"--name", "tls-origin", "--tls-cert", pki_.path("origin.pem"),
                                            "--tls-key", pki_.path("origin.key")},
                                           &error);
    ASSERT_TRUE(tls_sim_) << error;
    startProxy(certificates("default"));
  }

  void TearDown() override {
    if (proxy_ && proxy_->process.running()) {
      EXPECT_EQ(proxy_->process.stop(15s), 0) << proxy_->process.logTail(80);
    }
  }

  std::string certificates(const std::string& first) const {
    std::string out;
    for (const std::string& name : {first, std::string("video"), std::string("video-rsa"), std::string("wild")}) {
      out += "  [[listener.certificate]]\n  cert = \"" + pki_.path(name + ".pem") + "\"\n  key = \"" +
             pki_.path(name + ".key") + "\"\n";
    }
    return out;
  }

  std::string config(const std::string& certs) const {
    const std::string plain = "http://127.0.0.1:" + std::to_string(sim_->port);
    const std::string tls = "https://127.0.0.1:" + std::to_string(tls_sim_->port);
    const std::string tls_named = tls;  // by name: SNI and host-name check use tls_server_name
    return "[server]\nworkers = 2\n[admin]\naddress = \"127.0.0.1:0\"\n"
           "[log]\naccess_log = \"off\"\n"
           "[[listener]]\naddress = \"127.0.0.1:0\"\n"
           "[[listener]]\naddress = \"127.0.0.1:0\"\n" + certs +
           "[[listener]]\naddress = \"127.0.0.1:0\"\nredirect_https = true\nhttps_port = 8443\n"
           "[[origin_group]]\nname = \"main\"\n  [[origin_group.origin]]\n  url = \"" + plain + "\"\n"
           "[[origin_group]]\nname = \"tls\"\nca_file = \"" + pki_.path("ca.pem") + "\"\n"
           "  [[origin_group.origin]]\n  url = \"" + tls + "\"\n"
           "[[origin_group]]\nname = \"tls-by-name\"\nca_file = \"" + pki_.path("ca.pem") + "\"\n"
           "  [[origin_group.origin]]\n  url = \"" + tls_named + "\"\n  tls_server_name = \"origin.test\"\n"
           "[[origin_group]]\nname = \"badfirst\"\nca_file = \"" + other_ca_.path("other-ca.pem") + "\"\n"
           "  [[origin_group.origin]]\n  url = \"" + tls + "\"\n  name = \"untrusted\"\n  priority = 1\n"
           "  [[origin_group.origin]]\n  url = \"" + plain + "\"\n  name = \"fallback\"\n  priority = 2\n"
           "[[origin_group]]\nname = \"bad\"\nretries = 0\n"
           "  [[origin_group.origin]]\n  url = \"" + tls + "\"\n  ca_file = \"" + other_ca_.path("other-ca.pem") + "\"\n"
           "[[vhost]]\nhostnames = [\"*\"]\nhsts = \"max-age=31536000\"\n"
           "  [[vhost.route]]\n  prefix = \"/\"\n  origin_group = \"main\"\n"
           "[[vhost]]\nhostnames = [\"tls-origin.test\"]\n  [[vhost.route]]\n  prefix = \"/\"\n  origin_group = \"tls\"\n"
           "[[vhost]]\nhostnames = [\"tls-named.test\"]\n  [[vhost.route]]\n  prefix = \"/\"\n  origin_group = \"tls-by-name\"\n"
           "[[vhost]]\nhostnames = [\"badfirst.test\"]\n  [[vhost.route]]\n  prefix = \"/\"\n  origin_group = \"badfirst\"\n"
           "[[vhost]]\nhostnames = [\"bad.test\"]\n  [[vhost.route]]\n  prefix = \"/\"\n  origin_group = \"bad\"\n";
  }

  void startProxy(const std::string& certs) {
    std::string error;
    proxy_ = testsupport::startStreamedge(config(certs), &error);
    ASSERT_TRUE(proxy_) << error;
    https_port_ = proxy_->port("https");
    redirect_port_ = proxy_->port("http", 1);
    ASSERT_NE(https_port_, 0) << proxy_->process.logTail();
  }

  std::string sClient(const std::string& args) const {
    return run("openssl s_client -connect 127.0.0.1:" + std::to_string(https_port_) + " -CAfile " +
               pki_.path("ca.pem") + " " + args + " </dev/null").output;
  }
  // Like sClient, but sends one request and reads until the server closes: a TLS 1.3 session
  // ticket arrives after the handshake, so a client that hangs up at once may never see it.
  std::string sClientWithRequest(const std::string& args) const {
    return run("printf 'GET /obj/tls-sess?size=10 HTTP/1.1\\r\\nHost: localhost\\r\\n"
               "Connection: close\\r\\n\\r\\n' | openssl s_client -ign_eof -connect 127.0.0.1:" +
               std::to_string(https_port_) + " -CAfile " + pki_.path("ca.pem") + " " + args)
        .output;
  }
  std::string curl(const std::string& host, const std::string& target, const std::string& args = "") const {
    const std::string port = std::to_string(https_port_);
    return run("curl -sS -D - -o /dev/null -w 'size=%{size_download}\\n' --cacert " + pki_.path("ca.pem") +
               " --resolve " + host + ":" + port + ":127.0.0.1 " + args + " https://" + host + ":" + port + target)
        .output;
  }

  // The TLS origin simulator's request counter, read over HTTPS.
  std::string tlsSimCount(const std::string& path) const {
    return run("curl -sS --cacert " + pki_.path("ca.pem") + " 'https://127.0.0.1:" +
               std::to_string(tls_sim_->port) + "/_sim/count?path=" + path + "'").output;
  }

  Pki pki_;
  Pki other_ca_{"other-ca"};
  std::optional<testsupport::OriginSimProcess> sim_;
  std::optional<testsupport::OriginSimProcess> tls_sim_;
  std::optional<testsupport::StreamedgeProcess> proxy_;
  uint16_t https_port_ = 0;
  uint16_t redirect_port_ = 0;
};

TEST_F(TlsScenarioTest, Tls13And12HandshakesSucceedAndOlderVersionsAreRefused) {
  std::string out = sClient("-tls1_3 -servername localhost -verify_return_error");
  EXPECT_TRUE(contains(out, "Protocol  : TLSv1.3") || contains(out, "TLSv1.3, Cipher is")) << out;
  EXPECT_TRUE(contains(out, "Verify return code: 0 (ok)")) << out;
  out = sClient("-tls1_2 -servername localhost -verify_return_error");
  EXPECT_TRUE(contains(out, "Protocol  : TLSv1.2")) << out;
  EXPECT_TRUE(contains(out, "Cipher    : ECDHE-")) << out;
  for (const char* old : {"-tls1_1", "-tls1"}) {
    // SECLEVEL=0 lets the client offer them at all; the server must still refuse.
    CommandResult r = run("openssl s_client -connect 127.0.0.1:" + std::to_string(https_port_) + " " + old +
                          " -cipher DEFAULT@SECLEVEL=0 </dev/null");
    EXPECT_NE(r.status, 0) << old << ": " << r.output;
    EXPECT_FALSE(contains(r.output, "Cipher is ECDHE")) << old << ": " << r.output;
  }
}

TEST_F(TlsScenarioTest, SniPicksTheCertificateByExactWildcardAndDefault) {
  EXPECT_TRUE(contains(sClient("-servername video.example.com -tls1_3"), "subject=CN = video\n"));
  EXPECT_TRUE(contains(sClient("-servername a.cdn.example.net"), "subject=CN = wild"));
  EXPECT_TRUE(contains(sClient("-servername b.a.cdn.example.net"), "subject=CN = default"));
  EXPECT_TRUE(contains(sClient("-servername unknown.example.org"), "subject=CN = default"));
  EXPECT_TRUE(contains(sClient("-noservername"), "subject=CN = default"));
  // RSA and ECDSA side by side: an RSA-only TLS 1.2 client gets the RSA certificate.
  const std::string rsa = sClient("-servername video.example.com -tls1_2 -cipher ECDHE-RSA-AES128-GCM-SHA256");
  EXPECT_TRUE(contains(rsa, "subject=CN = video-rsa")) << rsa;
  const std::string ec = sClient("-servername video.example.com -tls1_2 -cipher ECDHE-ECDSA-AES128-GCM-SHA256");
  EXPECT_TRUE(contains(ec, "subject=CN = video\n")) << ec;
}

TEST_F(TlsScenarioTest, AlpnPrefersH2AndKeepsHttp11) {
  std::string out = sClient("-servername localhost -alpn h2,http/1.1");
  EXPECT_TRUE(contains(out, "ALPN protocol: h2")) << out;
  out = sClient("-servername localhost -alpn http/1.1,h2");  // the server's preference wins
  EXPECT_TRUE(contains(out, "ALPN protocol: h2")) << out;
  out = sClient("-servername localhost -alpn http/1.1");
  EXPECT_TRUE(contains(out, "ALPN protocol: http/1.1")) << out;
}

TEST_F(TlsScenarioTest, CurlFetchesOverHttpsWithHstsAndLargeBodies) {
  std::string out = curl("video.example.com", "/obj/tls-small?size=2000", "--http1.1");
  EXPECT_TRUE(contains(out, "HTTP/1.1 200")) << out;
  EXPECT_TRUE(contains(out, "Strict-Transport-Security: max-age=31536000")) << out;
  EXPECT_TRUE(contains(out, "size=2000\n")) << out;
  out = curl("video.example.com", "/obj/tls-big?size=2000000", "--http1.1");
  EXPECT_TRUE(contains(out, "size=2000000\n")) << out;
  out = curl("video.example.com", "/obj/tls-big?size=2000000", "--http1.1");  // a hit, by reference
  EXPECT_TRUE(contains(out, "X-Cache: HIT")) << out;
  EXPECT_TRUE(contains(out, "size=2000000\n")) << out;
  // Plain HTTP never carries HSTS.
  testsupport::HttpResponse plain = testsupport::httpGet(proxy_->http_port, "/obj/tls-small?size=2000");
  EXPECT_EQ(plain.status, 200);
  EXPECT_FALSE(contains(plain.raw_head, "Strict-Transport-Security"));
}

TEST_F(TlsScenarioTest, PlainListenerRedirectsToHttps) {
  testsupport::HttpResponse r =
      testsupport::httpGet(redirect_port_, "/live/master.m3u8?x=1", {{"Host", "video.example.com:8080"}});
  EXPECT_EQ(r.status, 301);
  EXPECT_TRUE(contains(r.raw_head, "Location: https://video.example.com:8443/live/master.m3u8?x=1\r\n"))
      << r.raw_head;
}

TEST_F(TlsScenarioTest, SessionsResumeByTicketAndBySessionCache) {
  const std::string sess = pki_.path("ticket.sess");
  for (const char* version : {"-tls1_3", "-tls1_2"}) {
    std::string first =
        sClientWithRequest(std::string(version) + " -servername localhost -sess_out " + sess);
    EXPECT_TRUE(contains(first, "New, TLSv1.")) << first;
    std::string second =
        sClientWithRequest(std::string(version) + " -servername localhost -sess_in " + sess);
    EXPECT_TRUE(contains(second, "Reused, TLSv1.")) << version << " ticket: " << second;
  }
  // Without tickets TLS 1.2 resumes from the server-side session cache.
  const std::string cache = pki_.path("cache.sess");
  std::string first = sClient("-tls1_2 -no_ticket -servername localhost -sess_out " + cache);
  EXPECT_TRUE(contains(first, "New, TLSv1.2")) << first;
  std::string second = sClient("-tls1_2 -no_ticket -servername localhost -sess_in " + cache);
  EXPECT_TRUE(contains(second, "Reused, TLSv1.2")) << "cache: " << second;
}

using testsupport::TlsKeepAliveClient;

TEST_F(TlsScenarioTest, ReloadChangesTheCertificateWithoutDroppingAnOpenConnection) {
  TlsKeepAliveClient before;
  ASSERT_TRUE(before.connect(https_port_));
  EXPECT_EQ(before.subject(), "/CN=default");
  EXPECT_EQ(before.get("/obj/reload-a?size=100"), "HTTP/1.1 200 OK");

  // A key that does not match: the reload fails, the old certificate stays.
  std::string broken = certificates("default");
  broken.replace(broken.find(pki_.path("default.key")), pki_.path("default.key").size(), pki_.path("wild.key"));
  ASSERT_TRUE(proxy_->rewriteConfig(config(broken)));
  ASSERT_TRUE(proxy_->process.signal(SIGHUP));
  ASSERT_TRUE(proxy_->process.waitForLine("does not match certificate", 10s)) << proxy_->process.logTail();
  EXPECT_TRUE(contains(sClient("-servername localhost"), "subject=CN = default"));

  ASSERT_TRUE(proxy_->rewriteConfig(config(certificates("reloaded"))));
  ASSERT_TRUE(proxy_->process.signal(SIGHUP));
  ASSERT_TRUE(proxy_->process.waitForLine("streamedge: reloaded", 10s)) << proxy_->process.logTail();
  std::this_thread::sleep_for(300ms);  // the workers pick the snapshot up from their inbox
  EXPECT_TRUE(contains(sClient("-servername localhost"), "subject=CN = reloaded"));
  // The connection opened before the reload keeps working.
  EXPECT_EQ(before.get("/obj/reload-b?size=100"), "HTTP/1.1 200 OK");
  TlsKeepAliveClient after;
  ASSERT_TRUE(after.connect(https_port_));
  EXPECT_EQ(after.subject(), "/CN=reloaded");
}

TEST_F(TlsScenarioTest, OcspResponseIsStapledWhenPresent) {
  // A real OCSP response from the openssl CLI acting as responder for the test CA.
  const std::string d = pki_.dir.path();
  const std::string script =
      "cd " + d + " && serial=$(openssl x509 -in default.pem -noout -serial | cut -d= -f2) && "
      "end=$(date -u -d \"$(openssl x509 -in default.pem -noout -enddate | cut -d= -f2)\" +%y%m%d%H%M%SZ) && "
      "printf 'V\\t%s\\t\\t%s\\tunknown\\t/CN=default\\n' \"$end\" \"$serial\" > index.txt && "
      "openssl ocsp -issuer ca.pem -cert default.pem -reqout req.der -no_nonce && "
      "openssl ocsp -index index.txt -rsigner ca.pem -rkey ca.key -CA ca.pem -reqin req.der "
      "-respout default.pem.ocsp -ndays 1";
  CommandResult made = run("sh -c '" + [&] {
    std::string s;
    for (char c : script) s += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return s;
  }() + "'");
  ASSERT_EQ(made.status, 0) << made.output;
  // Picked up by a reload, like a refreshed certificate.
  ASSERT_TRUE(proxy_->process.signal(SIGHUP));
  ASSERT_TRUE(proxy_->process.waitForLine("streamedge: reloaded", 10s)) << proxy_->process.logTail();
  std::this_thread::sleep_for(300ms);
  const std::string out = sClient("-servername localhost -status");
  EXPECT_TRUE(contains(out, "OCSP Response Status: successful")) << out;
  EXPECT_TRUE(contains(out, "Cert Status: good")) << out;
  // Names without an OCSP file get no staple.
  EXPECT_TRUE(contains(sClient("-servername video.example.com -status"), "OCSP response: no response sent"));
}

TEST_F(TlsScenarioTest, OriginsOverTlsAreVerifiedAndAFailedVerificationFailsOver) {
  auto via = [&](const std::string& host, const std::string& target) {
    return testsupport::httpGet(proxy_->http_port, target, {{"Host", host}}, 15s);
  };
  testsupport::HttpResponse r = via("tls-origin.test", "/obj/tls-origin-a?size=5000");
  EXPECT_EQ(r.status, 200) << proxy_->process.logTail();
  EXPECT_EQ(r.body.size(), 5000u);
  EXPECT_EQ(tlsSimCount("/obj/tls-origin-a"), "1\n");
  // By name (SNI + host-name check against the SAN), several fetches over the pool.
  for (int i = 0; i < 3; ++i) {
    r = via("tls-named.test", "/obj/tls-named-" + std::to_string(i) + "?size=100");
    EXPECT_EQ(r.status, 200) << proxy_->process.logTail();
  }
  // An origin whose certificate our CA did not sign: the next origin serves, with a clear log.
  r = via("badfirst.test", "/obj/tls-badfirst?size=100");
  EXPECT_EQ(r.status, 200) << proxy_->process.logTail();
  EXPECT_EQ(testsupport::simCount(sim_->port, "/obj/tls-badfirst"), 1);
  EXPECT_EQ(tlsSimCount("/obj/tls-badfirst"), "0\n");
  EXPECT_TRUE(proxy_->process.waitForLine("certificate verification failed", 5s)) << proxy_->process.logTail();
  // No other origin: 502, never an unverified fetch.
  r = via("bad.test", "/obj/tls-bad?size=100");
  EXPECT_EQ(r.status, 502);
  EXPECT_EQ(tlsSimCount("/obj/tls-bad"), "0\n");
  // Both refusals are counted as TLS failures, not as refused connections.
  const std::string m = testsupport::httpGet(proxy_->admin_port, "/metrics").body;
  double tls_errors = 0;
  for (size_t pos = 0; (pos = m.find("\nstreamedge_origin_errors_total{", pos)) != std::string::npos;) {
    const size_t eol = m.find('\n', pos + 1);
    const std::string line = m.substr(pos + 1, eol - pos - 1);
    if (line.find("reason=\"tls\"") != std::string::npos) {
      tls_errors += std::stod(line.substr(line.rfind(' ') + 1));
    }
    pos = eol;
  }
  EXPECT_GE(tls_errors, 2.0) << m;
}

// Active health checks of https origins use the origin TLS contexts: a trusted origin passes its
// checks over TLS, one whose certificate is not trusted is marked down with the reason.
TEST_F(TlsScenarioTest, HealthChecksOfHttpsOriginsVerifyTheCertificate) {
  ASSERT_EQ(proxy_->process.stop(15s), 0);
  const std::string tls = "https://127.0.0.1:" + std::to_string(tls_sim_->port);
  const std::string config =
      "[server]\nworkers = 1\n[admin]\naddress = \"127.0.0.1:0\"\n[log]\naccess_log = \"off\"\n"
      "[[listener]]\naddress = \"127.0.0.1:0\"\n"
      "[[origin_group]]\nname = \"main\"\n"
      "  [origin_group.health_check]\n  path = \"/healthz\"\n  interval = \"200ms\"\n"
      "  fall = 2\n  rise = 1\n"
      "  [[origin_group.origin]]\n  url = \"" + tls + "\"\n  name = \"trusted\"\n"
      "  ca_file = \"" + pki_.path("ca.pem") + "\"\n"
      "  [[origin_group.origin]]\n  url = \"" + tls + "\"\n  name = \"untrusted\"\n  priority = 2\n"
      "  ca_file = \"" + other_ca_.path("other-ca.pem") + "\"\n"
      "[[vhost]]\nhostnames = [\"*\"]\n  [[vhost.route]]\n  prefix = \"/\"\n  origin_group = \"main\"\n";
  std::string error;
  proxy_ = testsupport::startStreamedge(config, &error);
  ASSERT_TRUE(proxy_) << error;
  ASSERT_TRUE(proxy_->process.waitForLine("origin untrusted (dc -, group main) is down (active)", 10s))
      << proxy_->process.logTail();
  EXPECT_NE(proxy_->process.log().find("TLS: certificate verification failed"), std::string::npos)
      << proxy_->process.logTail();
  const std::string status = testsupport::httpGet(proxy_->admin_port, "/status").body;
  EXPECT_NE(status.find("\"origin\":\"trusted\",\"dc\":\"\",\"priority\":1,\"up\":true"),
            std::string::npos) << status;
  EXPECT_NE(status.find("\"origin\":\"untrusted\",\"dc\":\"\",\"priority\":2,\"up\":false"),
            std::string::npos) << status;
  EXPECT_EQ(proxy_->process.log().find("origin trusted (dc -, group main) is down"), std::string::npos)
      << proxy_->process.logTail();
  // The trusted origin's checks passed over TLS (its success count is not zero).
  const size_t trusted = status.find("\"origin\":\"trusted\"");
  ASSERT_NE(trusted, std::string::npos) << status;
  const std::string key = "\"check_successes\":";
  const size_t successes = status.find(key, trusted);
  ASSERT_NE(successes, std::string::npos) << status;
  EXPECT_GE(std::atoi(status.c_str() + successes + key.size()), 1) << status;
}

}  // namespace
}  // namespace streamedge::scenario
