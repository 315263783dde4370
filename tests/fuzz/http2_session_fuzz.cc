// libFuzzer target: the HTTP/2 framing of a real server (proxy/http2_session.cc, nghttp2 under
// our callbacks, and the exchanges its streams start). A streamedge server runs in this process
// on loopback with a cleartext HTTP/2 listener (h2c, prior knowledge) and an origin that refuses
// connections (fills fail fast); each input is sent after the client preface on a new
// connection, whose answer is read until the server closes it or a short deadline passes. Any
// crash or sanitizer report in the server's threads fails the run. Seeds (frames made with
// Python's h2) are in tests/fuzz/corpus/http2_session.
#include <arpa/inet.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "conf/config_loader.h"
#include "proxy/server.h"

namespace {

using Clock = std::chrono::steady_clock;

// A loopback port nothing listens on at the moment of asking.
uint16_t freePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  uint16_t port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  ::close(fd);
  return port;
}

int connectTo(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) return fd;
  if (fd >= 0) ::close(fd);
  return -1;
}

struct Edge {
  uint16_t port = 0;
  std::thread thread;
};
Edge* g_edge = nullptr;

void stopEdge() {
  if (!g_edge) return;
  ::raise(SIGTERM);  // the server drains and run() returns
  if (g_edge->thread.joinable()) g_edge->thread.join();
}

void startEdge() {
  evthread_use_pthreads();
  g_edge = new Edge();
  g_edge->port = freePort();
  const uint16_t origin = freePort();  // nothing listens: every fill fails at once
  const std::string config =
      "[server]\nworkers = 1\nheader_timeout = \"1s\"\nidle_timeout = \"1s\"\n"
      "[admin]\naddress = \"127.0.0.1:" + std::to_string(freePort()) + "\"\n"
      "[log]\naccess_log = \"off\"\n"
      "[cache.ram]\nsize = \"16MiB\"\n"
      "[[listener]]\naddress = \"127.0.0.1:" + std::to_string(g_edge->port) + "\"\nh2c = true\n"
      "[[origin_group]]\nname = \"main\"\n  [[origin_group.origin]]\n"
      "  url = \"http://127.0.0.1:" + std::to_string(origin) + "\"\n"
      "[[vhost]]\nhostnames = [\"*\"]\n  [[vhost.route]]\n  prefix = \"/\"\n"
      "  origin_group = \"main\"\n";
  streamedge::conf::LoadResult loaded = streamedge::conf::loadConfigText(config, "fuzz");
  if (!loaded.ok()) {
    std::fprintf(stderr, "http2_session_fuzz: config refused\n");
    std::abort();
  }
  g_edge->thread = std::thread([cfg = loaded.config] {
    streamedge::proxy::Server server(cfg, "");
    server.run();
  });
  // Up when it accepts (bounded).
  for (int attempt = 0; attempt < 200; ++attempt) {
    const int fd = connectTo(g_edge->port);
    if (fd >= 0) {
      ::close(fd);
      std::atexit(stopEdge);
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  std::fprintf(stderr, "http2_session_fuzz: the server did not start\n");
  std::abort();
}

constexpr char kPreface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  startEdge();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int fd = connectTo(g_edge->port);
  if (fd < 0) return 0;
  std::string bytes(kPreface, sizeof kPreface - 1);
  bytes.append(reinterpret_cast<const char*>(data), size);
  size_t sent = 0;
  while (sent < bytes.size()) {
    const ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server closed (a connection error): fine
    sent += static_cast<size_t>(n);
  }
  ::shutdown(fd, SHUT_WR);
  // The answer, until the server closes or 200 ms pass (bounded: streams waiting on a refused
  // origin or an idle session end on their own; this only paces the inputs).
  const auto deadline = Clock::now() + std::chrono::milliseconds(200);
  char buf[65536];
  while (Clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 20) <= 0) continue;
    if (::recv(fd, buf, sizeof buf, 0) <= 0) break;
  }
  ::close(fd);
  return 0;
}
