// Listeners on reload, with the real binary: SIGHUP binds the listeners a config adds (plain and
// TLS), stops accepting on the ones it removes while their connections drain, keeps the sockets
// of the ones it keeps (with new certificates or options), and fails cleanly, keeping
// everything, when an added address cannot be bound (in use, or a privileged port after the
// switch to [server] user without CAP_NET_BIND_SERVICE; with it, such a port binds).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "tests/scenario/scenario_env.h"
#include "tests/support/http_client.h"
#include "tests/support/origin_sim.h"
#include "tests/support/process.h"
#include "tests/support/tls_client.h"
#include "tls/self_signed.h"

namespace streamedge::scenario {
namespace {

using namespace std::chrono_literals;

std::string plainListener(const std::string& address) {
  return "[[listener]]\naddress = \"" + address + "\"\n";
}

// True when a TCP connect to host:port is refused (nothing listens there).
bool refused(const std::string& host, uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  inet_pton(AF_INET, host.c_str(), &sa.sin_addr);
  const int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  const int err = errno;
  ::close(fd);
  return rc != 0 && err == ECONNREFUSED;
}

// Polls (every 20 ms, up to `timeout`) until `done` holds.
template <typename F>
bool eventually(F done, std::chrono::milliseconds timeout = 5s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
}

class ListenerReloadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ca_ = makeCa();
    leaf("first");
    leaf("second");
    std::string error;
    sim_ = testsupport::startOriginSim({"--name", "dc-a"}, &error);
    ASSERT_TRUE(sim_) << error;
  }

  void TearDown() override {
    if (!proxy_ || !proxy_->process.running()) return;
    EXPECT_EQ(proxy_->process.stop(15s), 0) << proxy_->process.logTail(80);
    const std::string log = proxy_->process.log();
    for (const char* bad : {"runtime error", "Sanitizer", "Segmentation"}) {
      EXPECT_EQ(log.find(bad), std::string::npos) << bad << " in the proxy log:\n" << log;
    }
  }

  tls::GeneratedCertificate makeCa() {
    tls::CertificateSpec spec;
    spec.common_name = "listener reload ca";
    spec.is_ca = true;
    tls::GeneratedCertificate ca = tls::generateCertificate(spec);
    EXPECT_EQ(tls::writePem(dir_.file("ca.pem"), dir_.file("ca.key"), ca.cert.get(), ca.key.get()), "");
    return ca;
  }

  void leaf(const std::string& name) {
    tls::CertificateSpec spec;
    spec.common_name = name;
    spec.dns_names = {"localhost"};
    spec.ip_addresses = {"127.0.0.1"};
    spec.issuer_cert = ca_.cert.get();
    spec.issuer_key = ca_.key.get();
    tls::GeneratedCertificate g = tls::generateCertificate(spec);
    ASSERT_EQ(g.error, "");
    ASSERT_EQ(tls::writePem(dir_.file(name + ".pem"), dir_.file(name + ".key"), g.cert.get(), g.key.get(),
                            {ca_.cert.get()}),
              "");
  }

  std::string tlsListener(const std::string& address, const std::string& cert) const {
    return "[[listener]]\naddress = \"" + address + "\"\n  [[listener.certificate]]\n  cert = \"" +
           dir_.file(cert + ".pem") + "\"\n  key = \"" + dir_.file(cert + ".key") + "\"\n";
  }

  std::string config(const std::string& listeners, const std::string& server_extra = "") const {
    return "[server]\nworkers = 2\ndrain_timeout = \"2s\"\n" + server_extra +
           "\n[admin]\naddress = \"127.0.0.1:0\"\n\n[log]\naccess_log = \"off\"\n\n" + listeners +
           "\n[[origin_group]]\nname = \"main\"\n"
           "  [[origin_group.origin]]\n  url = \"http://127.0.0.1:" + std::to_string(sim_->port) +
           "\"\n  dc = \"dc-a\"\n\n"
           "[[vhost]]\nhostnames = [\"*\"]\n"
           "  [[vhost.route]]\n  prefix = \"/\"\n  origin_group = \"main\"\n";
  }

  void startWith(const std::string& text, const std::string& binary = STREAMEDGE_BINARY) {
    std::string error;
    proxy_ = testsupport::startStreamedgeFrom(binary, text, &error);
    ASSERT_TRUE(proxy_) << error;
  }

  // Rewrites the config, sends SIGHUP and waits for the line that says it took (or, with
  // `expect_ok` false, that it was refused). Returns the log offset before the signal.
  size_t reload(const std::string& text, bool expect_ok = true) {
    EXPECT_TRUE(proxy_->rewriteConfig(text));
    const size_t from = proxy_->process.logSize();
    EXPECT_TRUE(proxy_->process.signal(SIGHUP));
    const char* line = expect_ok ? "streamedge: reloaded" : "failed; the running config, listeners";
    EXPECT_TRUE(proxy_->process.waitForLine(line, 10s, from)) << proxy_->process.logTail();
    return from;
  }

  // The port of the next "streamedge listening <kind> HOST:PORT" line at or after `from`.
  uint16_t printedPort(const std::string& kind, size_t from) {
    auto line = proxy_->process.waitForLine("streamedge listening " + kind + " ", 5s, from);
    if (!line) return 0;
    return static_cast<uint16_t>(std::stoi(line->substr(line->rfind(':') + 1)));
  }

  std::string metrics() { return testsupport::httpGet(proxy_->admin_port, "/metrics").body; }
  std::string status() { return testsupport::httpGet(proxy_->admin_port, "/status").body; }
  HttpResponse get(uint16_t port, const std::string& target) {
    return testsupport::httpGet(port, target, {}, 10s);
  }

  testsupport::TempDir dir_{"streamedge-listeners"};
  tls::GeneratedCertificate ca_;
  std::optional<testsupport::OriginSimProcess> sim_;
  std::optional<testsupport::StreamedgeProcess> proxy_;
};

TEST_F(ListenerReloadTest, ReloadBindsAddedPlainAndTlsListenersThatAnswer) {
  ASSERT_NO_FATAL_FAILURE(startWith(config(plainListener("127.0.0.1:0"))));
  const uint16_t first = proxy_->http_port;
  const size_t from = reload(config(plainListener("127.0.0.1:0") + plainListener("127.0.0.1:0") +
                                    tlsListener("127.0.0.1:0", "first")));
  const uint16_t added_http = printedPort("http", from);
  const uint16_t added_https = printedPort("https", from);
  ASSERT_NE(added_http, 0) << proxy_->process.logTail();
  ASSERT_NE(added_https, 0) << proxy_->process.logTail();
  EXPECT_NE(added_http, first);
  EXPECT_TRUE(proxy_->process.waitForLine("listener 127.0.0.1:0#2 added, listening on 127.0.0.1:" +
                                              std::to_string(added_https), 1s, from))
      << proxy_->process.logTail();

  // Workers take the new sockets from their inbox; a connection before that waits in the backlog.
  const HttpResponse plain = get(added_http, "/obj/lr/added-plain?size=1000");
  EXPECT_EQ(plain.status, 200) << plain.error;
  EXPECT_EQ(plain.body, testsupport::simBody("/obj/lr/added-plain", 1000));
  testsupport::TlsKeepAliveClient tls;
  ASSERT_TRUE(tls.connect(added_https));
  EXPECT_EQ(tls.subject(), "/CN=first");
  EXPECT_EQ(tls.get("/obj/lr/added-tls?size=1000"), "HTTP/1.1 200 OK");
  // The listener that was there keeps answering.
  EXPECT_EQ(get(first, "/obj/lr/first?size=10").status, 200);

  // Three listeners, each with its own gauge; the TLS one counts the open connection.
  const std::string m = metrics();
  EXPECT_TRUE(sample(m, "streamedge_connections_active{listener=\"127.0.0.1:0\"}").has_value()) << m;
  EXPECT_TRUE(sample(m, "streamedge_connections_active{listener=\"127.0.0.1:0#1\"}").has_value()) << m;
  EXPECT_EQ(sample(m, "streamedge_connections_active{listener=\"127.0.0.1:0#2\"}"), 1.0) << m;
  EXPECT_TRUE(sample(m, "streamedge_tls_certificate_expiry_timestamp_seconds{listener=\"127.0.0.1:0#2\","
                        "certificate=\"" + dir_.file("first.pem") + "\"}").has_value()) << m;
  const std::string s = status();
  EXPECT_NE(s.find("\"bound\":\"127.0.0.1:" + std::to_string(added_https) + "\",\"tls\":true,"
                   "\"state\":\"accepting\",\"connections\":1"), std::string::npos) << s;
  const std::string ready = testsupport::httpGet(proxy_->admin_port, "/readyz").body;
  EXPECT_NE(ready.find("listeners: ok (3 bound)"), std::string::npos) << ready;
}

TEST_F(ListenerReloadTest, RemovedListenerRefusesNewConnectionsAndDrainsItsOpenOnes) {
  // Two port-0 listeners: by occurrence, a config with one keeps the first, removes the second.
  ASSERT_NO_FATAL_FAILURE(startWith(config(plainListener("127.0.0.1:0") + plainListener("127.0.0.1:0"))));
  const uint16_t kept = proxy_->port("http", 0);
  const uint16_t removed = proxy_->port("http", 1);
  ASSERT_NE(removed, 0);

  // On the listener to be removed: an idle keep-alive connection, a request waiting on a slow
  // origin (its head comes 800 ms after the request), and a long body (10 s at 100 kB/s)
  // that the 2 s drain timeout cuts.
  testsupport::HttpConnection idle;
  ASSERT_TRUE(idle.connect(removed));
  ASSERT_EQ(idle.request("GET", "/obj/lr/idle?size=10").status, 200);
  testsupport::HttpConnection slow;
  ASSERT_TRUE(slow.connect(removed));
  ASSERT_TRUE(slow.sendRaw("GET /obj/lr/slow?size=300000&delay_ms=800 HTTP/1.1\r\nHost: a\r\n\r\n"));
  testsupport::HttpConnection endless;
  ASSERT_TRUE(endless.connect(removed));
  ASSERT_TRUE(endless.sendRaw("GET /obj/lr/endless?size=1000000&rate=100000 HTTP/1.1\r\nHost: a\r\n\r\n"));
  ASSERT_TRUE(eventually([&] {
    return testsupport::simCount(sim_->port, "/obj/lr/slow") == 1 &&
           testsupport::simCount(sim_->port, "/obj/lr/endless") == 1;
  })) << "the requests never reached the origin";

  const auto reloaded_at = std::chrono::steady_clock::now();
  const size_t from = reload(config(plainListener("127.0.0.1:0")));
  EXPECT_TRUE(proxy_->process.waitForLine("listener 127.0.0.1:0#1 removed", 1s, from)) << proxy_->process.logTail();

  // New connections to it are refused at once (once the workers took the update).
  EXPECT_TRUE(eventually([&] { return refused("127.0.0.1", removed); }, 2s));
  // The request in flight completes, whole, and its connection closes after it.
  const HttpResponse r = slow.readResponse(10s);
  EXPECT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, testsupport::simBody("/obj/lr/slow", 300000));
  EXPECT_EQ(r.header("Connection"), "close");
  // The idle keep-alive connection was closed.
  EXPECT_TRUE(idle.waitForClose(2s));
  // The long answer is cut at the drain timeout: a closed connection, never a body taken as whole.
  const HttpResponse cut = endless.readResponse(10s);
  const auto cut_after = std::chrono::steady_clock::now() - reloaded_at;
  EXPECT_TRUE(cut.truncated) << cut.error << " " << cut.body_bytes;
  EXPECT_LT(cut.body_bytes, 1000000u);
  EXPECT_GE(cut_after, 1500ms);
  EXPECT_LT(cut_after, 6s);
  EXPECT_TRUE(proxy_->process.waitForLine("of removed listeners at the drain deadline", 1s, from))
      << proxy_->process.logTail();

  // The kept listener is untouched; the removed one's gauge is gone once it drained.
  EXPECT_EQ(get(kept, "/obj/lr/kept?size=10").status, 200);
  std::string m;
  EXPECT_TRUE(eventually([&] {
    m = metrics();
    return !sample(m, "streamedge_connections_active{listener=\"127.0.0.1:0#1\"}").has_value();
  })) << m;
  EXPECT_TRUE(sample(m, "streamedge_connections_active{listener=\"127.0.0.1:0\"}").has_value()) << m;
  const std::string s = status();
  EXPECT_EQ(s.find("127.0.0.1:0#1"), std::string::npos) << s;
  EXPECT_EQ(metricValue(m, "streamedge_config_reloads_total", "result=\"failed\""), 0) << m;
}

TEST_F(ListenerReloadTest, KeptListenersKeepTheirSocketsWhenTheFirstIsRemovedAndTakeNewCertificates) {
  // 127.0.0.2 is a loopback address too: another key than 127.0.0.1:0, so it can go alone.
  ASSERT_NO_FATAL_FAILURE(startWith(config(plainListener("127.0.0.2:0") + plainListener("127.0.0.1:0") +
                                           tlsListener("127.0.0.1:0", "first"))));
  const uint16_t dropped = proxy_->port("http", 0);
  const uint16_t plain = proxy_->port("http", 1);
  const uint16_t https = proxy_->port("https", 0);
  ASSERT_NE(https, 0);

  testsupport::HttpConnection keep;
  ASSERT_TRUE(keep.connect(plain));
  ASSERT_EQ(keep.request("GET", "/obj/lr/keep-a?size=10").status, 200);
  testsupport::TlsKeepAliveClient tls_before;
  ASSERT_TRUE(tls_before.connect(https));
  EXPECT_EQ(tls_before.subject(), "/CN=first");
  ASSERT_EQ(tls_before.get("/obj/lr/tls-a?size=10"), "HTTP/1.1 200 OK");

  // The first listener goes (the others move up a position), the TLS one gets another
  // certificate and the plain one a new backlog.
  const size_t from = reload(config(plainListener("127.0.0.1:0") + "backlog = 64\n" +
                                    tlsListener("127.0.0.1:0", "second")));
  EXPECT_EQ(proxy_->process.log().find("streamedge listening", from), std::string::npos)
      << "a kept listener was bound again:\n" << proxy_->process.logTail();
  EXPECT_TRUE(eventually([&] { return refused("127.0.0.2", dropped); }, 2s));

  // Connections opened before the reload go on over the same sockets.
  const HttpResponse again = keep.request("GET", "/obj/lr/keep-b?size=10");
  EXPECT_EQ(again.status, 200) << again.error;
  EXPECT_FALSE(again.closed);
  EXPECT_EQ(tls_before.get("/obj/lr/tls-b?size=10"), "HTTP/1.1 200 OK");
  // New handshakes on the kept TLS listener see the new certificate (its contexts moved with it
  // to its new position, not to the listener now at its old one).
  testsupport::TlsKeepAliveClient tls_after;
  ASSERT_TRUE(tls_after.connect(https));
  EXPECT_EQ(tls_after.subject(), "/CN=second");
  EXPECT_EQ(tls_after.get("/obj/lr/tls-c?size=10"), "HTTP/1.1 200 OK");
  EXPECT_EQ(get(plain, "/obj/lr/plain-new?size=10").status, 200);

  // Metric labels stayed with their listeners: the plain one counts `keep`, the TLS one both
  // TLS clients (the one-shot GET's close may take a moment to be seen).
  std::string m;
  EXPECT_TRUE(eventually([&] {
    m = metrics();
    return sample(m, "streamedge_connections_active{listener=\"127.0.0.1:0\"}") == 1.0 &&
           sample(m, "streamedge_connections_active{listener=\"127.0.0.1:0#2\"}") == 2.0;
  })) << m;
  EXPECT_FALSE(sample(m, "streamedge_connections_active{listener=\"127.0.0.2:0\"}").has_value()) << m;
  EXPECT_TRUE(sample(m, "streamedge_tls_certificate_expiry_timestamp_seconds{listener=\"127.0.0.1:0#2\","
                        "certificate=\"" + dir_.file("second.pem") + "\"}").has_value()) << m;
  EXPECT_EQ(m.find("first.pem"), std::string::npos) << m;
}

TEST_F(ListenerReloadTest, AnAddressInUseFailsTheReloadAndEveryListenerKeepsAnswering) {
  ASSERT_NO_FATAL_FAILURE(startWith(config(plainListener("127.0.0.1:0") + plainListener("127.0.0.1:0"))));
  const uint16_t a = proxy_->port("http", 0);
  const uint16_t b = proxy_->port("http", 1);

  // Another process's socket (no SO_REUSEPORT): the address cannot be shared.
  const int blocker = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(blocker, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  ASSERT_EQ(::listen(blocker, 8), 0);
  socklen_t len = sizeof sa;
  ASSERT_EQ(::getsockname(blocker, reinterpret_cast<sockaddr*>(&sa), &len), 0);
  const std::string taken = "127.0.0.1:" + std::to_string(ntohs(sa.sin_port));

  // Drops b and adds the taken address: refused as a whole, b stays.
  const std::string next = config(plainListener("127.0.0.1:0") + plainListener(taken));
  const size_t from = reload(next, false);
  EXPECT_TRUE(proxy_->process.waitForLine("cannot listen on " + taken + ": Address already in use", 1s, from))
      << proxy_->process.logTail();
  EXPECT_EQ(get(a, "/obj/lr/in-use-a?size=10").status, 200);
  EXPECT_EQ(get(b, "/obj/lr/in-use-b?size=10").status, 200);
  std::string m = metrics();
  EXPECT_EQ(metricValue(m, "streamedge_config_reloads_total", "result=\"failed\""), 1) << m;
  EXPECT_TRUE(sample(m, "streamedge_connections_active{listener=\"127.0.0.1:0#1\"}").has_value()) << m;
  EXPECT_EQ(proxy_->process.log().find("streamedge listening", from), std::string::npos);

  // Once the address is free, the same config loads.
  ::close(blocker);
  const size_t from2 = reload(next);
  EXPECT_EQ(printedPort("http", from2), ntohs(sa.sin_port));
  EXPECT_EQ(get(ntohs(sa.sin_port), "/obj/lr/in-use-c?size=10").status, 200);
  EXPECT_TRUE(eventually([&] { return refused("127.0.0.1", b); }, 2s));
  EXPECT_EQ(get(a, "/obj/lr/in-use-d?size=10").status, 200);
}

TEST_F(ListenerReloadTest, APrivilegedPortAfterTheUserSwitchFailsTheReloadWithTheReason) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root: the switch happens only in a process started as root";
  const passwd* nobody = ::getpwnam("nobody");
  if (nobody == nullptr) GTEST_SKIP() << "no user nobody on this system";
  if (::access("/usr/bin/setpriv", X_OK) != 0) GTEST_SKIP() << "no setpriv(1)";
  // Root without CAP_NET_BIND_SERVICE (a container may run so): the switch to nobody keeps no
  // capability, so a reload cannot bind a port below 1024.
  const std::string wrapper = dir_.file("no-bind-cap.sh");
  ASSERT_TRUE(testsupport::writeFile(wrapper, "#!/bin/sh\nexec /usr/bin/setpriv --bounding-set "
                                              "-net_bind_service -- " STREAMEDGE_BINARY " \"$@\"\n"));
  ASSERT_EQ(::chmod(wrapper.c_str(), 0755), 0);
  const std::string listeners = plainListener("127.0.0.1:0");
  ASSERT_NO_FATAL_FAILURE(startWith(config(listeners, "user = \"nobody\"\n"), wrapper));
  ASSERT_TRUE(proxy_->process.waitForLine("running as user nobody", 10s)) << proxy_->process.logTail();
  // The reload reads the config as nobody.
  ASSERT_EQ(::chmod(proxy_->dir->path().c_str(), 0755), 0);
  ASSERT_EQ(::chmod(proxy_->config_path.c_str(), 0644), 0);

  const size_t from = reload(config(listeners + plainListener("127.0.0.1:1023"), "user = \"nobody\"\n"),
                             false);
  EXPECT_TRUE(proxy_->process.waitForLine("cannot listen on 127.0.0.1:1023: Permission denied (port 1023 "
                                          "is below", 1s, from))
      << proxy_->process.logTail();
  EXPECT_TRUE(proxy_->process.waitForLine("needs root or CAP_NET_BIND_SERVICE", 1s, from));
  EXPECT_TRUE(proxy_->process.running());
  EXPECT_EQ(get(proxy_->http_port, "/obj/lr/user?size=10").status, 200);
  EXPECT_EQ(metricValue(metrics(), "streamedge_config_reloads_total", "result=\"failed\""), 1);
}

// A port below 1024 on 127.0.0.1 that nothing listens on now (0 when none is found or this
// process may not bind one). Probed by binding it, so another process may still take it before
// the proxy does; the caller then sees a failed reload with the reason in the log.
uint16_t freePrivilegedPort() {
  for (uint16_t port = 1023; port >= 900; --port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return 0;
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const bool bound = ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
    const int err = errno;
    ::close(fd);
    if (bound) return port;
    if (err == EACCES) return 0;
  }
  return 0;
}

TEST_F(ListenerReloadTest, AReloadAfterTheUserSwitchBindsAPrivilegedPortWhileTheCapabilityIsKept) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root: the switch happens only in a process started as root";
  if (::getpwnam("nobody") == nullptr) GTEST_SKIP() << "no user nobody on this system";
  const uint16_t low = freePrivilegedPort();
  if (low == 0) GTEST_SKIP() << "no free port below 1024 on 127.0.0.1, or no CAP_NET_BIND_SERVICE here";
  // Started as root holding CAP_NET_BIND_SERVICE: the switch to nobody keeps that one
  // capability (as the systemd unit's AmbientCapabilities= does), so the reload may bind it.
  const std::string listeners = plainListener("127.0.0.1:0");
  ASSERT_NO_FATAL_FAILURE(startWith(config(listeners, "user = \"nobody\"\n")));
  ASSERT_TRUE(proxy_->process.waitForLine("running as user nobody", 10s)) << proxy_->process.logTail();
  ASSERT_EQ(::chmod(proxy_->dir->path().c_str(), 0755), 0);
  ASSERT_EQ(::chmod(proxy_->config_path.c_str(), 0644), 0);

  const std::string address = "127.0.0.1:" + std::to_string(low);
  const size_t from = reload(config(listeners + plainListener(address), "user = \"nobody\"\n"));
  EXPECT_EQ(printedPort("http", from), low) << proxy_->process.logTail();
  const HttpResponse r = get(low, "/obj/lr/low-port?size=1000");
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.body, testsupport::simBody("/obj/lr/low-port", 1000));
  EXPECT_EQ(get(proxy_->http_port, "/obj/lr/low-port-first?size=10").status, 200);

  // And removed again: the privileged socket is closed, nothing else changes.
  reload(config(listeners, "user = \"nobody\"\n"));
  EXPECT_TRUE(eventually([&] { return refused("127.0.0.1", low); }, 2s));
  EXPECT_EQ(get(proxy_->http_port, "/obj/lr/low-port-after?size=10").status, 200);
  EXPECT_EQ(metricValue(metrics(), "streamedge_config_reloads_total", "result=\"failed\""), 0);
}

TEST_F(ListenerReloadTest, KeepAliveClientsUnderLoadLoseNothingWhileReloadsAddAndRemoveListeners) {
  ASSERT_NO_FATAL_FAILURE(startWith(config(plainListener("127.0.0.1:0") + plainListener("127.0.0.2:0"))));
  const uint16_t kept = proxy_->port("http", 0);
  const uint16_t doomed = proxy_->port("http", 1);

  // Four keep-alive clients on the kept listener and two on the one to be removed, each going
  // until told to stop (bounded: 5000 requests, 2 ms apart, or 20 s each). On the kept listener nothing may
  // fail; on the removed one every answer that arrives is whole, the connection then closes
  // and new ones are refused.
  struct Tally {
    std::atomic<int> ok{0};
    std::atomic<int> failed{0};
    std::atomic<int> refused{0};
    std::string first_error;  // written by one thread at most (under `failed`'s first increment)
  };
  std::atomic<bool> stop{false};
  Tally on_kept;
  Tally on_doomed;
  auto client = [&](uint16_t port, const std::string& host, Tally& tally, int index) {
    testsupport::HttpConnection conn;
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    for (int i = 0; i < 5000 && !stop.load() && std::chrono::steady_clock::now() < deadline; ++i) {
      std::this_thread::sleep_for(2ms);
      if (!conn.isOpen() && !conn.connect(port, 2s, host)) {
        ++tally.refused;
        continue;
      }
      const std::string path = "/obj/lr/load-" + std::to_string(index) + "-" + std::to_string(i % 20);
      const HttpResponse r = conn.request("GET", path + "?size=20000", {}, 10s);
      if (r.ok() && r.status == 200 && r.body == testsupport::simBody(path, 20000)) {
        ++tally.ok;
      } else if (r.status == 0 && r.body_bytes == 0 && !r.truncated && r.closed) {
        // Closed between two requests (an idle keep-alive connection of a removed listener):
        // the request was never taken, the client reconnects.
      } else if (tally.failed++ == 0) {
        tally.first_error = std::to_string(r.status) + " " + r.error + (r.truncated ? " truncated" : "");
      }
    }
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) threads.emplace_back(client, kept, "127.0.0.1", std::ref(on_kept), i);
  for (int i = 0; i < 2; ++i) threads.emplace_back(client, doomed, "127.0.0.2", std::ref(on_doomed), 10 + i);

  std::this_thread::sleep_for(300ms);
  // Add one, then remove the second, then add and remove a third: the kept one keeps serving.
  reload(config(plainListener("127.0.0.1:0") + plainListener("127.0.0.2:0") + plainListener("127.0.0.3:0")));
  std::this_thread::sleep_for(300ms);
  reload(config(plainListener("127.0.0.1:0") + plainListener("127.0.0.3:0")));
  std::this_thread::sleep_for(300ms);
  reload(config(plainListener("127.0.0.1:0")));
  std::this_thread::sleep_for(300ms);
  stop = true;
  for (std::thread& t : threads) t.join();

  EXPECT_EQ(on_kept.failed.load(), 0) << on_kept.first_error;
  EXPECT_EQ(on_kept.refused.load(), 0);
  EXPECT_GT(on_kept.ok.load(), 20);
  EXPECT_EQ(on_doomed.failed.load(), 0) << on_doomed.first_error;
  EXPECT_GT(on_doomed.ok.load(), 0);
  EXPECT_GT(on_doomed.refused.load(), 0) << "the removed listener still accepted connections";
  EXPECT_EQ(metricValue(metrics(), "streamedge_config_reloads_total", "result=\"failed\""), 0);
}

}  // namespace
}  // namespace streamedge::scenario
