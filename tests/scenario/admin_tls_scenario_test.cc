// The admin listener over TLS with the real binary: with [admin] certificates it speaks TLS only
// (a plain HTTP request gets no answer), with client_ca every client, probes included, must
// present a certificate from that CA (none, or one from another CA, fails the handshake), the
// bearer tokens and scopes still apply inside, a purge over it is audited, without tokens the
// audit log names the client certificate, and a reload serves new admin certificates to new
// connections.
#include <gtest/gtest.h>

#include <csignal>
#include <fstream>
#include <sstream>
#include <string>

#include "tests/scenario/scenario_env.h"
#include "tests/support/tls_client.h"
#include "tls/self_signed.h"

namespace streamedge::scenario {
namespace {

using namespace std::chrono_literals;
using testsupport::TlsKeepAliveClient;

constexpr const char* kOpsToken = "ops-secret";
constexpr const char* kOpsHash = "32323cfa9ec9d62750daad0836a4cf3d7b60d23723b7852a529667deed01669f";

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class AdminTlsScenarioTest : public ScenarioTest {
 protected:
  void SetUp() override {
    // A refused handshake closes the connection under the client's next write.
    std::signal(SIGPIPE, SIG_IGN);
    std::string error;
    sim_ = testsupport::startOriginSim({"--name", "dc-a"}, &error);
    ASSERT_TRUE(sim_) << error;
    dir_.emplace("streamedge-admin-tls");
    audit_ = dir_->file("audit.log");
    ca_ = makeCa("admin test ca", "ca");
    rogue_ca_ = makeCa("some other ca", "rogue-ca");
    ASSERT_NO_FATAL_FAILURE(leaf(ca_, "admin-server"));
    ASSERT_NO_FATAL_FAILURE(leaf(ca_, "admin-server-2"));
    ASSERT_NO_FATAL_FAILURE(leaf(ca_, "admin-client"));
    ASSERT_NO_FATAL_FAILURE(leaf(rogue_ca_, "rogue-client"));
  }

  tls::GeneratedCertificate makeCa(const std::string& cn, const std::string& file) {
    tls::CertificateSpec spec;
    spec.common_name = cn;
    spec.is_ca = true;
    tls::GeneratedCertificate ca = tls::generateCertificate(spec);
    EXPECT_EQ(ca.error, "");
    EXPECT_EQ(tls::writePem(dir_->file(file + ".pem"), dir_->file(file + ".key"), ca.cert.get(),
                            ca.key.get()),
              "");
    return ca;
  }

  void leaf(const tls::GeneratedCertificate& ca, const std::string& name) {
    tls::CertificateSpec spec;
    spec.common_name = name;
    spec.dns_names = {"localhost"};
    spec.ip_addresses = {"127.0.0.1"};
    spec.issuer_cert = ca.cert.get();
    spec.issuer_key = ca.key.get();
    tls::GeneratedCertificate g = tls::generateCertificate(spec);
    ASSERT_EQ(g.error, "");
    ASSERT_EQ(tls::writePem(pem(name), key(name), g.cert.get(), g.key.get(), {ca.cert.get()}), "");
  }
  std::string pem(const std::string& name) const { return dir_->file(name + ".pem"); }
  std::string key(const std::string& name) const { return dir_->file(name + ".key"); }

  std::string config(bool tokens, bool client_ca, const std::string& server_cert) const {
    std::string c =
        "[server]\nworkers = 2\n\n"
        "[admin]\naddress = \"127.0.0.1:0\"\n";
    if (client_ca) c += "client_ca = \"" + pem("ca") + "\"\n";
    c += "[[admin.certificate]]\ncert = \"" + pem(server_cert) + "\"\nkey = \"" + key(server_cert) +
         "\"\n";
    if (tokens) {
      c += "[[admin.token]]\nname = \"ops\"\nsha256 = \"" + std::string(kOpsHash) +
           "\"\nscopes = [\"all\"]\n";
    }
    c += "\n[[listener]]\naddress = \"127.0.0.1:0\"\n\n"
         "[log]\naccess_log = \"off\"\naudit = \"" + audit_ + "\"\n\n"
         "[[origin_group]]\nname = \"main\"\n"
         "  [[origin_group.origin]]\n  url = \"http://127.0.0.1:" + std::to_string(simPort()) +
         "\"\n\n"
         "[[vhost]]\nname = \"tv\"\nhostnames = [\"*\"]\n"
         "  [[vhost.route]]\n  prefix = \"/\"\n  origin_group = \"main\"\n";
    return c;
  }

  void startProxy(const std::string& text) {
    proxy_.reset();
    std::string error;
    proxy_ = testsupport::startStreamedge(text, &error);
    ASSERT_TRUE(proxy_) << error;
    ASSERT_NE(proxy_->admin_port, 0);
  }

  // The status line of one request on a new TLS connection presenting `client` ("" = no
  // certificate); "" when the handshake or the request failed.
  std::string tlsStatus(const std::string& client, const std::string& method,
                        const std::string& target, const std::string& headers = "",
                        std::string* response = nullptr) {
    TlsKeepAliveClient c;
    if (!c.connect(proxy_->admin_port, client.empty() ? "" : pem(client),
                   client.empty() ? "" : key(client))) {
      return "";
    }
    const std::string status = c.request(method, target, headers);
    if (response) *response = c.response();
    return status;
  }
  std::string serverSubject() {
    TlsKeepAliveClient c;
    if (!c.connect(proxy_->admin_port, pem("admin-client"), key("admin-client"))) return "";
    return c.get("/healthz").empty() ? "" : c.subject();
  }

  std::string audit_;
  tls::GeneratedCertificate ca_;
  tls::GeneratedCertificate rogue_ca_;
};

TEST_F(AdminTlsScenarioTest, ClientCertificatesAreRequiredAndTokensStillApplyInside) {
  ASSERT_NO_FATAL_FAILURE(startProxy(config(/*tokens=*/true, /*client_ca=*/true, "admin-server")));
  // TLS only: a plain HTTP request, even to a probe, gets no answer.
  const HttpResponse plain = testsupport::httpRequest(proxy_->admin_port, "GET", "/healthz", {}, 5s);
  EXPECT_NE(plain.status, 200) << plain.raw_head;
  EXPECT_EQ(plain.body.find("ok"), std::string::npos);
  // No client certificate, or one from another CA: the handshake fails, nothing is served.
  EXPECT_EQ(tlsStatus("", "GET", "/healthz"), "");
  EXPECT_EQ(tlsStatus("rogue-client", "GET", "/healthz"), "");
  // A certificate from client_ca: the probes answer, everything else still needs a token.
  EXPECT_EQ(tlsStatus("admin-client", "GET", "/healthz"), "HTTP/1.1 200 OK");
  EXPECT_EQ(tlsStatus("admin-client", "GET", "/status"), "HTTP/1.1 401 Unauthorized");
  const std::string bearer = std::string("Authorization: Bearer ") + kOpsToken + "\r\n";
  EXPECT_EQ(tlsStatus("admin-client", "GET", "/status", bearer), "HTTP/1.1 200 OK");
  // Fill one object, purge its vhost over TLS.
  ASSERT_EQ(get("/obj/admin-tls/a.ts?size=1000").status, 200);
  ASSERT_EQ(get("/obj/admin-tls/a.ts?size=1000").header("X-Cache"), "HIT");
  std::string answer;
  EXPECT_EQ(tlsStatus("admin-client", "POST", "/purge?host=tv", bearer, &answer), "HTTP/1.1 200 OK");
  EXPECT_NE(answer.find("\"vhost\":\"tv\",\"objects\":1,"), std::string::npos) << answer;
  EXPECT_EQ(get("/obj/admin-tls/a.ts?size=1000").header("X-Cache"), "MISS");
  EXPECT_EQ(originCount("/obj/admin-tls/a.ts"), 2);

  const std::string audit = slurp(audit_);  // written before the answer was sent
  EXPECT_NE(audit.find("\"who\":\"-\",\"client\":\"127.0.0.1\",\"action\":\"refused\",\"method\":"
                       "\"GET\",\"path\":\"/status\""),
            std::string::npos) << audit;
  EXPECT_NE(audit.find("\"who\":\"ops\",\"client\":\"127.0.0.1\",\"action\":\"purge\""),
            std::string::npos) << audit;
  EXPECT_EQ(audit.find(kOpsToken), std::string::npos);
}

TEST_F(AdminTlsScenarioTest, WithoutTokensTheAuditLogNamesTheClientCertificateAndReloadSwapsCerts) {
  ASSERT_NO_FATAL_FAILURE(startProxy(config(/*tokens=*/false, /*client_ca=*/true, "admin-server")));
  EXPECT_EQ(serverSubject(), "/CN=admin-server");
  EXPECT_EQ(tlsStatus("rogue-client", "POST", "/purge?host=tv"), "");
  std::string answer;
  EXPECT_EQ(tlsStatus("admin-client", "POST", "/purge?host=tv", "", &answer), "HTTP/1.1 200 OK");
  EXPECT_NE(answer.find("\"objects\":0,"), std::string::npos) << answer;
  const std::string audit = slurp(audit_);
  EXPECT_NE(audit.find("\"who\":\"cert:admin-client\",\"client\":\"127.0.0.1\",\"action\":\"purge\""),
            std::string::npos) << audit;
  EXPECT_EQ(audit.find("rogue"), std::string::npos) << "a failed handshake is no request: " << audit;

  // A reload with another admin certificate: new connections get it.
  ASSERT_TRUE(proxy_->rewriteConfig(config(false, true, "admin-server-2")));
  const size_t from = proxy_->process.logSize();
  ASSERT_TRUE(proxy_->process.signal(SIGHUP));
  ASSERT_TRUE(proxy_->process.waitForLine("streamedge: reloaded", 10s, from)) << proxyLog();
  EXPECT_EQ(serverSubject(), "/CN=admin-server-2");
  EXPECT_EQ(tlsStatus("admin-client", "GET", "/status"), "HTTP/1.1 200 OK");
  // A reload that drops the certificates keeps TLS (never falls back to plain HTTP) and says so.
  const size_t from2 = proxy_->process.logSize();
  std::string text = config(false, false, "admin-server-2");
  const size_t cert_at = text.find("[[admin.certificate]]");
  text.erase(cert_at, text.find("\n[[listener]]") - cert_at);
  ASSERT_TRUE(proxy_->rewriteConfig(text));
  ASSERT_TRUE(proxy_->process.signal(SIGHUP));
  ASSERT_TRUE(proxy_->process.waitForLine("streamedge: reloaded", 10s, from2)) << proxyLog();
  EXPECT_TRUE(proxy_->process.waitForLine("take effect at the next restart", 1s, from2));
  EXPECT_NE(testsupport::httpRequest(proxy_->admin_port, "GET", "/healthz", {}, 5s).status, 200);
  EXPECT_EQ(tlsStatus("admin-client", "GET", "/healthz"), "HTTP/1.1 200 OK");
}

}  // namespace
}  // namespace streamedge::scenario
