// The cluster scenarios' fixture: one origin simulator, a shared peer key, and up to three
// streamedge peers on 127.0.0.2, .3 and .4 (ports chosen before they start, since each must know
// the others'), each started with a config naming all (or some) of them.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/scenario/scenario_env.h"
#include "tests/support/tls_client.h"
#include "tls/self_signed.h"

namespace streamedge::scenario {

using namespace std::chrono_literals;
using testsupport::HttpConnection;

// A site's PKI in `dir`: site-ca.pem (the CA of the site), other-ca.pem (a CA that signed none
// of the site's certificates) and edge-<i>.pem / edge-<i>.key for hosts[i] (its address as an IP
// SAN, the chain with the site CA). False (with a test failure) when a file cannot be made.
inline bool writeSitePki(const std::string& dir, const std::vector<std::string>& hosts) {
  auto makeCa = [&](const std::string& name) {
    tls::CertificateSpec spec;
    spec.common_name = "streamedge cluster test " + name;
    spec.is_ca = true;
    tls::GeneratedCertificate ca = tls::generateCertificate(spec);
    EXPECT_EQ(ca.error, "");
    EXPECT_EQ(tls::writePem(dir + "/" + name + ".pem", dir + "/" + name + ".key", ca.cert.get(),
                            ca.key.get()),
              "");
    return ca;
  };
  const tls::GeneratedCertificate site = makeCa("site-ca");
  makeCa("other-ca");
  if (!site.cert) return false;
  for (size_t i = 0; i < hosts.size(); ++i) {
    tls::CertificateSpec spec;
    spec.common_name = "edge " + hosts[i];
    spec.ip_addresses = {hosts[i]};
    spec.issuer_cert = site.cert.get();
    spec.issuer_key = site.key.get();
    const tls::GeneratedCertificate leaf = tls::generateCertificate(spec);
    const std::string base = dir + "/edge-" + std::to_string(i);
    if (!leaf.error.empty() ||
        !tls::writePem(base + ".pem", base + ".key", leaf.cert.get(), leaf.key.get(),
                       {site.cert.get()})
             .empty()) {
      ADD_FAILURE() << "cannot write " << base << ".pem: " << leaf.error;
      return false;
    }
  }
  return true;
}

// A port free on `host` now (bound to 0, read, closed): the peers must know each other's ports
// before they start.
inline uint16_t freePort(const std::string& host) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  ::inet_pton(AF_INET, host.c_str(), &a.sin_addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return 0;
  }
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

inline HttpResponse getFrom(const std::string& host, uint16_t port, const std::string& target,
                     const Headers& headers = {}) {
  HttpConnection c;
  if (!c.connect(port, 5s, host)) {
    HttpResponse r;
    r.error = c.error();
    return r;
  }
  return c.request("GET", target, headers, 15s);
}

class ClusterScenarioBase : public ::testing::Test {
 protected:
  static constexpr int kPeers = 3;

  void SetUp() override {
    std::string error;
    auto sim = testsupport::startOriginSim({}, &error);
    ASSERT_TRUE(sim) << error;
    sim_ = std::make_unique<testsupport::OriginSimProcess>(std::move(*sim));
    key_dir_ = std::make_unique<testsupport::TempDir>("streamedge-cluster");
    key_path_ = key_dir_->path() + "/peer.key";
    std::FILE* f = std::fopen(key_path_.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    const std::string hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";
    std::fwrite(hex.data(), 1, hex.size(), f);
    std::fclose(f);
    ::chmod(key_path_.c_str(), 0600);
    for (int i = 0; i < kPeers; ++i) {
      hosts_.push_back("127.0.0." + std::to_string(i + 2));
      ports_.push_back(freePort(hosts_.back()));
      ASSERT_NE(ports_.back(), 0) << "cannot bind " << hosts_.back();
    }
  }

  void TearDown() override {
    for (auto& p : peers_) {
      if (p && p->process.running()) {
        EXPECT_EQ(p->process.stop(), 0) << p->process.logTail();
      }
    }
    if (sim_) sim_->process.stop();
  }

  std::string address(int i) const { return hosts_[i] + ":" + std::to_string(ports_[i]); }
  // Peer i's [admin] address: loopback port 0, or its own host at admin_port_ when set (peers
  // that reach each other's admin listeners, as a site purge needs).
  std::string adminAddress(int i) const {
    return admin_port_ ? hosts_[i] + ":" + std::to_string(admin_port_) : "127.0.0.1:0";
  }

  // Peer i's config; `peers` lists the peer indices it knows (all by default).
  std::string config(int i, std::vector<int> peers = {}, const std::string& extra = "") const {
    if (peers.empty()) {
      for (int k = 0; k < kPeers; ++k) peers.push_back(k);
    }
    std::string list;
    for (int k : peers) list += (list.empty() ? "\"" : ", \"") + address(k) + "\"";
    return "[server]\nworkers = 2\n\n"
           "[admin]\naddress = \"" + adminAddress(i) + "\"\n\n"
           "[[listener]]\naddress = \"" + address(i) + "\"\n\n"
           "[cache.ram]\nsize = \"64MiB\"\n\n"
           "[[origin_group]]\nname = \"main\"\n"
           "  [[origin_group.origin]]\n  url = \"http://127.0.0.1:" +
           std::to_string(sim_->port) + "\"\n\n"
           "[[vhost]]\nhostnames = [\"*\"]\n"
           "  [[vhost.route]]\n  prefix = \"/\"\n  origin_group = \"main\"\n\n"
           "[cluster]\npeers = [" + list + "]\nsecret_file = \"" + key_path_ +
           "\"\nhealth_interval = \"300ms\"\nconnect_timeout = \"500ms\"\ntimeout = \"3s\"\n" +
           extra;
  }

  void startAll(const std::vector<std::string>& configs) {
    startAllUnchecked(configs);
    if (!HasFatalFailure()) waitAllPeersUp();
  }
  // Starts every edge without waiting for their peers to be up (edges that may never be).
  void startAllUnchecked(const std::vector<std::string>& configs) {
    for (size_t i = 0; i < configs.size(); ++i) {
      std::string error;
      auto p = testsupport::startStreamedge(configs[i], &error);
      ASSERT_TRUE(p) << error;
      peers_.push_back(std::make_unique<testsupport::StreamedgeProcess>(std::move(*p)));
    }
  }

  // Each peer checked the others while they were still starting: wait (bounded) until every
  // peer group of every running edge is up again by its health check.
  void waitAllPeersUp() {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    for (size_t i = 0; i < peers_.size(); ++i) {
      if (!peers_[i] || !peers_[i]->process.running()) continue;
      for (;;) {
        const HttpResponse scrape = adminRequest(i, "GET", "/metrics", admin_headers_);
        ASSERT_EQ(scrape.status, 200) << scrape.error << scrape.body;
        const std::string& text = scrape.body;
        size_t pos = 0, peers = 0, up = 0;
        while ((pos = text.find("\nstreamedge_origin_up{group=\"peer:", pos)) != std::string::npos) {
          const size_t eol = text.find('\n', pos + 1);
          ++peers;
          if (text.compare(eol - 2, 2, " 1") == 0) ++up;
          pos = eol;
        }
        if (up == peers) break;
        ASSERT_LT(std::chrono::steady_clock::now(), deadline) << text;
        std::this_thread::sleep_for(50ms);
      }
    }
  }

  double peerOk(int at, int peer) const {
    const std::string text =
        adminRequest(static_cast<size_t>(at), "GET", "/metrics", admin_headers_).body;
    return metricValue(text, "streamedge_peer_requests_total{peer=\"" + address(peer) +
                                 "\",result=\"ok\"}");
  }

  // A request to peer i's admin listener (on its own host when admin_port_ is set).
  HttpResponse adminRequest(size_t i, const std::string& method, const std::string& target,
                            const Headers& headers) const {
    if (admin_tls_) return tlsAdminRequest(i, method, target, headers);
    HttpConnection c;
    if (!c.connect(peers_[i]->admin_port, 5s, admin_port_ ? hosts_[i] : "127.0.0.1")) {
      HttpResponse r;
      r.error = c.error();
      return r;
    }
    return c.request(method, target, headers, 15s);
  }

  // The same over TLS (admin_tls_: the admin listeners have certificates). Status and body only.
  HttpResponse tlsAdminRequest(size_t i, const std::string& method, const std::string& target,
                               const Headers& headers) const {
    HttpResponse r;
    testsupport::TlsKeepAliveClient c;
    if (!c.connect(peers_[i]->admin_port, "", "", admin_port_ ? hosts_[i] : "127.0.0.1")) {
      r.error = "TLS connect to the admin listener failed";
      return r;
    }
    std::string extra;
    for (const auto& [name, value] : headers) extra += name + ": " + value + "\r\n";
    const std::string status_line = c.request(method, target, extra);
    if (status_line.size() < 12) {
      r.error = "no answer over TLS";
      return r;
    }
    r.status = std::atoi(status_line.c_str() + 9);
    const std::string& whole = c.response();
    r.body = whole.substr(whole.find("\r\n\r\n") + 4);
    return r;
  }

  std::unique_ptr<testsupport::OriginSimProcess> sim_;
  std::unique_ptr<testsupport::TempDir> key_dir_;
  std::string key_path_;
  std::vector<std::string> hosts_;
  std::vector<uint16_t> ports_;
  uint16_t admin_port_ = 0;
  bool admin_tls_ = false;  // the admin listeners speak TLS (adminRequest uses TLS)
  Headers admin_headers_;  // with the fixture's own admin requests (a token, when needed)
  std::vector<std::unique_ptr<testsupport::StreamedgeProcess>> peers_;
};

}  // namespace streamedge::scenario
