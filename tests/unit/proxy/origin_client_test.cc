// OriginClient against scripted origins: real sockets on 127.0.0.1 (port 0), one thread per
// accepted connection, each request answered by the test's script. The client runs on a libevent
// loop in the test thread; every wait is bounded (the loop runs with a deadline, the origin's
// reads and sleeps poll a stop flag).
#include "proxy/origin_client.h"

#include "proxy/origin_limits.h"
#include "tests/support/dns_server.h"

#include <event2/event.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstring>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace streamedge::proxy {
namespace {

using namespace std::chrono_literals;

// ---- a scripted origin --------------------------------------------------------------------

class ScriptedOrigin {
 public:
  // One accepted connection, as the script sees it.
  class Conn {
   public:
    Conn(int fd, const std::atomic<bool>& stop) : fd_(fd), stop_(stop) {}
    void send(std::string_view data) {
      while (!data.empty()) {
        const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
        if (n <= 0) return;
        data.remove_prefix(static_cast<size_t>(n));
      }
    }
    // Sleeps up to `d`, waking early when the origin stops.
    void sleep(std::chrono::milliseconds d) {
      const auto until = std::chrono::steady_clock::now() + d;
      while (!stop_ && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(5ms);
    }
    // True when the peer closed within `d` (any bytes it sends meanwhile are discarded).
    bool waitForPeerClose(std::chrono::milliseconds d) {
      const auto until = std::chrono::steady_clock::now() + d;
      while (!stop_ && std::chrono::steady_clock::now() < until) {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, 10) > 0) {
          char buf[4096];
          const ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
          if (n <= 0) return true;
        }
      }
      return false;
    }
    // The next request (head and Content-Length body), or nullopt on close/stop.
    std::optional<std::string> readRequest() {
      for (;;) {
        const size_t head_end = pending_.find("\r\n\r\n");
        if (head_end != std::string::npos) {
          size_t body = 0;
          const std::string head = pending_.substr(0, head_end + 4);
          std::string lower = head;
          for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
          const size_t cl = lower.find("\r\ncontent-length:");
          if (cl != std::string::npos) body = std::stoul(lower.substr(cl + 17));
          if (pending_.size() >= head_end + 4 + body) {
            std::string request = pending_.substr(0, head_end + 4 + body);
            pending_.erase(0, head_end + 4 + body);
            return request;
          }
        }
        if (stop_) return std::nullopt;
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, 10) <= 0) continue;
        char buf[4096];
        const ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
        if (n <= 0) return std::nullopt;
        pending_.append(buf, static_cast<size_t>(n));
      }
    }

   private:
    int fd_;
    const std::atomic<bool>& stop_;
    std::string pending_;
  };

  // Answers one request; `conn_index` counts accepted connections from 0, `request_index`
  // requests on this connection. Returns false to close the connection.
  using Script = std::function<bool(Conn& conn, const std::string& request, int conn_index,
                                    int request_index)>;

  explicit ScriptedOrigin(Script script) : script_(std::move(script)) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(::listen(listen_fd_, 16), 0);
    socklen_t len = sizeof(addr);
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { acceptLoop(); });
  }

  ~ScriptedOrigin() {
    stop_ = true;
    acceptor_.join();
    for (std::thread& t : conns_) t.join();
    ::close(listen_fd_);
  }

  uint16_t port() const { return port_; }
  int accepted() const { return accepted_; }
  std::vector<std::string> requests() {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }
  // Set by scripts (through the origin pointer they capture) for the test to observe.
  std::atomic<bool> flag{false};

 private:
  void acceptLoop() {
    while (!stop_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 10) <= 0) continue;
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      const int index = accepted_++;
      conns_.emplace_back([this, fd, index] { serve(fd, index); });
    }
  }

  void serve(int fd, int index) {
    Conn conn(fd, stop_);
    for (int r = 0;; ++r) {
      std::optional<std::string> request = conn.readRequest();
      if (!request) break;
      {
        std::lock_guard<std::mutex> lock(mu_);
        requests_.push_back(*request);
      }
      if (!script_(conn, *request, index, r)) break;
    }
    ::close(fd);
  }

  Script script_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::thread acceptor_;
  std::vector<std::thread> conns_;  // acceptor thread only, joined after it
  std::mutex mu_;
  std::vector<std::string> requests_;
};

// A loopback port nobody listens on (bound, then closed).
uint16_t closedPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

std::string ok(std::string_view body, std::string_view extra_fields = "") {
  return "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" +
         std::string(extra_fields) + "\r\n" + std::string(body);
}

// ---- the client side ----------------------------------------------------------------------

struct Recorder : OriginObserver {
  void onOriginResponse(OriginResponse&& r) override {
    events.push_back("response");
    response = std::move(r);
  }
  void onOriginData(const uint8_t* data, size_t len) override {
    events.push_back("data");
    body.append(reinterpret_cast<const char*>(data), len);
    if (destroy_on_data && owner) owner->reset();
  }
  void onOriginComplete() override {
    events.push_back("complete");
    completed = true;
    if (owner) owner->reset();  // as FillJob does: the fetch dies inside the callback
  }
  void onOriginFailed(Status s) override {
    events.push_back("failed");
    failed = true;
    status = s;
    if (owner) owner->reset();
  }
  bool done() const { return completed || failed; }

  std::vector<std::string> events;
  std::optional<OriginResponse> response;
  std::string body;
  bool completed = false;
  bool failed = false;
  Status status;
  std::unique_ptr<OriginFetch>* owner = nullptr;
  bool destroy_on_data = false;
};

conf::OriginConfig originAt(uint16_t port, const std::string& name) {
  conf::OriginConfig o;
  o.url = "http://127.0.0.1:" + std::to_string(port);
  o.scheme = "http";
  o.host = "127.0.0.1";
  o.port = port;
  o.name = name;
  o.dc = "dc-" + name;
  o.connect_timeout = 1000ms;
  o.first_byte_timeout = 2000ms;
  o.read_timeout = 2000ms;
  o.idle_timeout = 30'000ms;
  o.max_idle_per_worker = 4;
  return o;
}

conf::Config configWith(std::vector<conf::OriginConfig> origins, int retries = 2) {
  conf::Config c;
  conf::OriginGroupConfig g;
  g.name = "media";
  g.origins = std::move(origins);
  g.retries = retries;
  c.origin_groups.push_back(std::move(g));
  return c;
}

class OriginClientTest : public ::testing::Test {
 protected:
  void TearDown() override {
    client_.reset();
    if (base_) event_base_free(base_);
  }

  void makeClient(const conf::Config& config) {
    health_ = std::make_shared<OriginHealth>(config);
    base_ = event_base_new();
    limits_ = std::make_shared<OriginLimits>();
    client_ = std::make_unique<OriginClient>(base_, health_, nullptr, limits_);
  }

  // Runs the loop until `pred` holds or `timeout` passes; returns pred().
  bool runUntil(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 5000ms) {
    struct Ctx {
      const std::function<bool()>* pred;
      std::chrono::steady_clock::time_point deadline;
      event_base* base;
    } ctx{&pred, std::chrono::steady_clock::now() + timeout, base_};
    event* tick = event_new(
        base_, -1, EV_PERSIST,
        [](evutil_socket_t, short, void* arg) {
          auto* c = static_cast<Ctx*>(arg);
          if ((*c->pred)() || std::chrono::steady_clock::now() >= c->deadline) {
            event_base_loopbreak(c->base);
          }
        },
        &ctx);
    const timeval tv{0, 1000};
    event_add(tick, &tv);
    event_base_dispatch(base_);
    event_free(tick);
    return pred();
  }
  void runFor(std::chrono::milliseconds d) { runUntil([] { return false; }, d); }

  // Starts a fetch whose observer owns and destroys it on completion/failure.
  std::unique_ptr<OriginFetch>& fetch(const conf::Config& config, Recorder& rec,
                                      OriginRequest request = defaultRequest()) {
    fetches_.push_back(std::make_unique<std::unique_ptr<OriginFetch>>());
    std::unique_ptr<OriginFetch>& slot = *fetches_.back();
    rec.owner = &slot;
    slot = client_->start(config, 0, std::move(request), rec);
    return slot;
  }

  static OriginRequest defaultRequest() {
    OriginRequest r;
    r.target = "/live/seg1.ts";
    return r;
  }

  event_base* base_ = nullptr;
  std::shared_ptr<OriginHealth> health_;
  std::shared_ptr<OriginLimits> limits_;
  std::unique_ptr<OriginClient> client_;
  std::vector<std::unique_ptr<std::unique_ptr<OriginFetch>>> fetches_;
};

// ---- responses ----------------------------------------------------------------------------

TEST_F(OriginClientTest, ContentLengthBodyIsStreamedAndCompletes) {
  ScriptedOrigin origin([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send("HTTP/1.1 200 OK\r\nContent-Length: 11\r\nCache-Control: max-age=60\r\n"
           "Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n\r\nhello");
    c.sleep(50ms);
    c.send(" world");
    return true;
  });
  conf::OriginConfig o = originAt(origin.port(), "a");
  o.base_path = "/base";
  const conf::Config config = configWith({o});
  makeClient(config);

  OriginRequest request;
  request.target = "/live/seg1.ts?x=1";
  request.host = "cdn.example";
  request.headers = {{"Accept", "*/*"}, {"Via", "1.1 streamedge"}, {"Connection", "close"},
                     {"TE", "trailers"}, {"Upgrade", "h2c"}, {"Host", "evil"},
                     {"Transfer-Encoding", "chunked"}};
  Recorder rec;
  fetch(config, rec, request);
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));

  ASSERT_TRUE(rec.completed) << rec.status.toString();
  ASSERT_TRUE(rec.response);
  EXPECT_EQ(rec.response->status, 200);
  EXPECT_EQ(rec.response->reason, "OK");
  EXPECT_EQ(rec.response->content_length, std::optional<uint64_t>(11));
  EXPECT_TRUE(rec.response->has_body);
  EXPECT_EQ(rec.response->attempts, 1);
  ASSERT_NE(rec.response->origin, nullptr);
  EXPECT_EQ(rec.response->origin->name, "a");
  std::vector<std::string> names;
  for (const auto& [n, v] : rec.response->headers) names.push_back(n);
  EXPECT_EQ(names, std::vector<std::string>{"Cache-Control"});  // hop-by-hop and framing removed
  EXPECT_EQ(rec.body, "hello world");
  EXPECT_GE(std::count(rec.events.begin(), rec.events.end(), "data"), 2);  // streamed, not buffered
  EXPECT_EQ(rec.events.front(), "response");
  EXPECT_EQ(rec.events.back(), "complete");

  const std::vector<std::string> requests = origin.requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0],
            "GET /base/live/seg1.ts?x=1 HTTP/1.1\r\nHost: cdn.example\r\nAccept: */*\r\n"
            "Via: 1.1 streamedge\r\n\r\n");
}

TEST_F(OriginClientTest, HostDefaultsToOriginAuthority) {
  ScriptedOrigin origin([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send(ok("x"));
    return true;
  });
  const conf::Config config = configWith({originAt(origin.port(), "a")});
  makeClient(config);
  Recorder rec;
  fetch(config, rec);
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  ASSERT_EQ(origin.requests().size(), 1u);
  EXPECT_NE(origin.requests()[0].find("\r\nHost: 127.0.0.1:" + std::to_string(origin.port()) +
                                      "\r\n"),
            std::string::npos);
}

TEST_F(OriginClientTest, LargeBodyArrivesWholeAndInOrder) {
  std::string big(3 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + (i * 7919) % 26);
  ScriptedOrigin origin([&](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send(ok(big));
    return true;
  });
  const conf::Config config = configWith({originAt(origin.port(), "a")});
  makeClient(config);
  Recorder rec;
  fetch(config, rec);
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  ASSERT_TRUE(rec.completed) << rec.status.toString();
  EXPECT_EQ(rec.body.size(), big.size());
  EXPECT_TRUE(rec.body == big);
}

TEST_F(OriginClientTest, ChunkedBodyIsDecoded) {
  ScriptedOrigin origin([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
    c.sleep(30ms);
    c.send("6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n");
    return true;
  });
  const conf::Config config = configWith({originAt(origin.port(), "a")});
  makeClient(config);
  Recorder rec;
  fetch(config, rec);
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  ASSERT_TRUE(rec.completed) << rec.status.toString();
  EXPECT_EQ(rec.body, "hello world");
  EXPECT_FALSE(rec.response->content_length);
  for (const auto& [n, v] : rec.response->headers) EXPECT_NE(n, "Transfer-Encoding");

  // A chunked response that completed cleanly leaves a reusable connection.
  Recorder again;
  fetch(config, again);
  ASSERT_TRUE(runUntil([&] { return again.done(); }));
  EXPECT_TRUE(again.completed);
  EXPECT_EQ(origin.accepted(), 1);
}

TEST_F(OriginClientTest, InvalidChunkedBodyFailsAfterResponse) {
  ScriptedOrigin origin([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX\r\n");
    c.waitForPeerClose(2000ms);
    return false;
  });
  const conf::Config config = configWith({originAt(origin.port(), "a")});
  makeClient(config);
  Recorder rec;
  fetch(config, rec);
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  EXPECT_EQ(rec.events.front(), "response");
  ASSERT_TRUE(rec.failed);
  EXPECT_EQ(rec.status.code(), Code::kInvalid);
  EXPECT_EQ(rec.status.source(), Source::kUpstream);
}

TEST_F(OriginClientTest, KeepAliveConnectionIsReusedForSequentialFetches) {
  ScriptedOrigin origin([](ScriptedOrigin::Conn& c, const std::string&, int, int r) {
    c.send(ok("body" + std::to_string(r)));
    return true;
  });
  const conf::Config config = configWith({originAt(origin.port(), "a")});
  makeClient(config);
  for (int i = 0; i < 3; ++i) {
    Recorder rec;
    fetch(config, rec);
    ASSERT_TRUE(runUntil([&] { return rec.done(); }));
    ASSERT_TRUE(rec.completed) << rec.status.toString();
    EXPECT_EQ(rec.body, "body" + std::to_string(i));
  }
  EXPECT_EQ(origin.accepted(), 1);
  EXPECT_EQ(origin.requests().size(), 3u);
}

TEST_F(OriginClientTest, IdleConnectionIsClosedAfterIdleTimeout) {
  ScriptedOrigin origin([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send(ok("x"));
    return true;
  });
  conf::OriginConfig o = originAt(origin.port(), "a");
  o.idle_timeout = 100ms;
  const conf::Config config = configWith({o});
  makeClient(config);
  Recorder first;
  fetch(config, first);
  ASSERT_TRUE(runUntil([&] { return first.done(); }));
  runFor(300ms);
  Recorder second;
  fetch(config, second);
  ASSERT_TRUE(runUntil([&] { return second.done(); }));
  EXPECT_TRUE(second.completed);
  EXPECT_EQ(origin.accepted(), 2);
}

TEST_F(OriginClientTest, DeadPooledConnectionIsRetriedOnAFreshOne) {
  // The origin answers once per connection and drops the second request unanswered, as an
  // origin whose keep-alive timer fired just as our request left.
  ScriptedOrigin origin([](ScriptedOrigin::Conn& c, const std::string&, int, int r) {
    if (r > 0) return false;
    c.send(ok("fresh"));
    return true;
  });
  const conf::Config config = configWith({originAt(origin.port(), "a")}, /*retries=*/0);
  makeClient(config);
  Recorder first;
  fetch(config, first);
  ASSERT_TRUE(runUntil([&] { return first.done(); }));
  ASSERT_TRUE(first.completed);

  Recorder second;
  fetch(config, second);
  ASSERT_TRUE(runUntil([&] { return second.done(); }));
  ASSERT_TRUE(second.completed) << second.status.toString();
  EXPECT_EQ(second.body, "fresh");
  EXPECT_EQ(second.response->attempts, 1);  // transparent: not a failover
  EXPECT_EQ(origin.accepted(), 2);
  EXPECT_EQ(origin.requests().size(), 3u);
  EXPECT_TRUE(health_->isUp(0, 0, std::chrono::steady_clock::now()));
}

TEST_F(OriginClientTest, InterimResponsesAreSkipped) {
  ScriptedOrigin origin([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send("HTTP/1.1 103 Early Hints\r\nLink: </a.ts>; rel=preload\r\n\r\n");
    c.sleep(20ms);
    c.send("HTTP/1.1 100 Continue\r\n\r\n" + ok("ok"));
    return true;
  });
  const conf::Config config = configWith({originAt(origin.port(), "a")});
  makeClient(config);
  Recorder rec;
  fetch(config, rec);
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  ASSERT_TRUE(rec.completed) << rec.status.toString();
  EXPECT_EQ(rec.response->status, 200);
  EXPECT_EQ(rec.body, "ok");
}

TEST_F(OriginClientTest, SwitchingProtocolsIsAFailure) {
  ScriptedOrigin origin([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n");
    c.waitForPeerClose(2000ms);
    return false;
  });
  const conf::Config config = configWith({originAt(origin.port(), "a")});
  makeClient(config);
  Recorder rec;
  fetch(config, rec);
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  ASSERT_TRUE(rec.failed);
  EXPECT_EQ(rec.events, std::vector<std::string>{"failed"});
  EXPECT_EQ(rec.status.code(), Code::kInvalid);
}

TEST_F(OriginClientTest, CloseDelimitedBodyCompletesAtEofAndIsNotReused) {
  ScriptedOrigin origin([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send("HTTP/1.1 200 OK\r\nCache-Control: max-age=1\r\n\r\nabc");
    c.sleep(20ms);
    c.send("def");
    return false;  // close: the end of the body
  });
  const conf::Config config = configWith({originAt(origin.port(), "a")});
  makeClient(config);
  Recorder rec;
  fetch(config, rec);
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  ASSERT_TRUE(rec.completed) << rec.status.toString();
  EXPECT_EQ(rec.body, "abcdef");
  EXPECT_FALSE(rec.response->content_length);
  Recorder again;
  fetch(config, again);
  ASSERT_TRUE(runUntil([&] { return again.done(); }));
  EXPECT_EQ(origin.accepted(), 2);
}

TEST_F(OriginClientTest, HeadAndNotModifiedHaveNoBodyAndKeepTheConnection) {
  ScriptedOrigin origin([](ScriptedOrigin::Conn& c, const std::string& request, int, int) {
    if (request.rfind("HEAD ", 0) == 0) {
      c.send("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
    } else {
      c.send("HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n");
    }
    return true;
  });
  const conf::Config config = configWith({originAt(origin.port(), "a")});
  makeClient(config);
  OriginRequest head = defaultRequest();
  head.method = "HEAD";
  Recorder rec;
  fetch(config, rec, head);
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  ASSERT_TRUE(rec.completed) << rec.status.toString();
  EXPECT_FALSE(rec.response->has_body);
  EXPECT_EQ(rec.events, (std::vector<std::string>{"response", "complete"}));

  OriginRequest conditional = defaultRequest();
  conditional.headers = {{"If-None-Match", "\"v1\""}};
  Recorder rec304;
  fetch(config, rec304, conditional);
  ASSERT_TRUE(runUntil([&] { return rec304.done(); }));
  ASSERT_TRUE(rec304.completed);
  EXPECT_EQ(rec304.response->status, 304);
  EXPECT_FALSE(rec304.response->has_body);
  EXPECT_EQ(origin.accepted(), 1);
}

TEST_F(OriginClientTest, EmptyContentLengthBodyCompletes) {
  ScriptedOrigin origin([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send(ok(""));
    return true;
  });
  const conf::Config config = configWith({originAt(origin.port(), "a")});
  makeClient(config);
  Recorder rec;
  fetch(config, rec);
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  ASSERT_TRUE(rec.completed);
  EXPECT_EQ(rec.response->content_length, std::optional<uint64_t>(0));
  EXPECT_EQ(rec.events, (std::vector<std::string>{"response", "complete"}));
}

TEST_F(OriginClientTest, ForwardedBodyIsSentWithItsLength) {
  ScriptedOrigin origin([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send(ok("created"));
    return true;
  });
  const conf::Config config = configWith({originAt(origin.port(), "a")});
  makeClient(config);
  OriginRequest post = defaultRequest();
  post.method = "POST";
  post.body = "a=1&b=2";
  post.headers = {{"Content-Length", "999"}};  // ours wins; the caller's is dropped
  Recorder rec;
  fetch(config, rec, post);
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  ASSERT_TRUE(rec.completed);
  ASSERT_EQ(origin.requests().size(), 1u);
  EXPECT_EQ(origin.requests()[0], "POST /live/seg1.ts HTTP/1.1\r\nHost: 127.0.0.1:" +
                                      std::to_string(origin.port()) +
                                      "\r\nContent-Length: 7\r\n\r\na=1&b=2");
}

// ---- failover -----------------------------------------------------------------------------

TEST_F(OriginClientTest, ConnectionRefusedFailsOverToNextOrigin) {
  ScriptedOrigin b([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send(ok("from b"));
    return true;
  });
  const conf::Config config = configWith({originAt(closedPort(), "a"), originAt(b.port(), "b")});
  makeClient(config);
  Recorder rec;
  fetch(config, rec);
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  ASSERT_TRUE(rec.completed) << rec.status.toString();
  EXPECT_EQ(rec.body, "from b");
  EXPECT_EQ(rec.response->attempts, 2);
  EXPECT_EQ(rec.response->origin->name, "b");
}

TEST_F(OriginClientTest, ServerErrorFailsOverToNextOrigin) {
  ScriptedOrigin a([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy");
    return true;
  });
  ScriptedOrigin b([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send(ok("from b"));
    return true;
  });
  const conf::Config config = configWith({originAt(a.port(), "a"), originAt(b.port(), "b")});
  makeClient(config);
  Recorder rec;
  fetch(config, rec);
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  ASSERT_TRUE(rec.completed) << rec.status.toString();
  EXPECT_EQ(rec.response->status, 200);
  EXPECT_EQ(rec.body, "from b");
  EXPECT_EQ(rec.response->attempts, 2);
  EXPECT_EQ(a.requests().size(), 1u);
  EXPECT_EQ(rec.events.front(), "response");  // the 503 never reached the observer
}

TEST_F(OriginClientTest, ServerErrorOnLastAttemptIsDelivered) {
  auto failing = [](int status) {
    return [status](ScriptedOrigin::Conn& c, const std::string&, int, int) {
      c.send("HTTP/1.1 " + std::to_string(status) + " Bad\r\nContent-Length: 3\r\n\r\nerr");
      return true;
    };
  };
  ScriptedOrigin a(failing(503));
  ScriptedOrigin b(failing(502));
  ScriptedOrigin c(failing(500));  // beyond retries=1: never asked
  const conf::Config config = configWith(
      {originAt(a.port(), "a"), originAt(b.port(), "b"), originAt(c.port(), "c")},
      /*retries=*/1);
  makeClient(config);
  Recorder rec;
  fetch(config, rec);
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  ASSERT_TRUE(rec.completed) << rec.status.toString();
  EXPECT_EQ(rec.response->status, 502);
  EXPECT_EQ(rec.response->origin->name, "b");
  EXPECT_EQ(rec.response->attempts, 2);
  EXPECT_EQ(rec.body, "err");
  EXPECT_EQ(c.accepted(), 0);
}

TEST_F(OriginClientTest, ClientErrorIsANormalResponse) {
  ScriptedOrigin a([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send("HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno");
    return true;
  });
  ScriptedOrigin b([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send(ok("b"));
    return true;
  });
  const conf::Config config = configWith({originAt(a.port(), "a"), originAt(b.port(), "b")});
  makeClient(config);
  Recorder rec;
  fetch(config, rec);
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  ASSERT_TRUE(rec.completed);
  EXPECT_EQ(rec.response->status, 404);
  EXPECT_EQ(b.accepted(), 0);
}

TEST_F(OriginClientTest, NonIdempotentRequestIsNotResentAfterServerError) {
  ScriptedOrigin a([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send("HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n");
    return true;
  });
  ScriptedOrigin b([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send(ok("b"));
    return true;
  });
  const conf::Config config = configWith({originAt(a.port(), "a"), originAt(b.port(), "b")});
  makeClient(config);
  OriginRequest post = defaultRequest();
  post.method = "POST";
  post.body = "x";
  Recorder rec;
  fetch(config, rec, post);
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  ASSERT_TRUE(rec.completed);
  EXPECT_EQ(rec.response->status, 503);
  EXPECT_EQ(b.accepted(), 0);
}

TEST_F(OriginClientTest, FirstByteTimeoutFailsOver) {
  ScriptedOrigin a([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.waitForPeerClose(3000ms);  // never answers
    return false;
  });
  ScriptedOrigin b([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send(ok("b"));
    return true;
  });
  conf::OriginConfig slow = originAt(a.port(), "a");
  slow.first_byte_timeout = 150ms;
  const conf::Config config = configWith({slow, originAt(b.port(), "b")});
  makeClient(config);
  Recorder rec;
  const auto t0 = std::chrono::steady_clock::now();
  fetch(config, rec);
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  ASSERT_TRUE(rec.completed) << rec.status.toString();
  EXPECT_EQ(rec.response->origin->name, "b");
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 140ms);
}

TEST_F(OriginClientTest, FirstByteTimeoutOnLastOriginFails) {
  ScriptedOrigin a([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.waitForPeerClose(3000ms);
    return false;
  });
  conf::OriginConfig slow = originAt(a.port(), "a");
  slow.first_byte_timeout = 100ms;
  const conf::Config config = configWith({slow});
  makeClient(config);
  Recorder rec;
  fetch(config, rec);
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  ASSERT_TRUE(rec.failed);
  EXPECT_EQ(rec.status.code(), Code::kTimeout);
  EXPECT_EQ(rec.status.source(), Source::kUpstream);
  EXPECT_EQ(rec.events, std::vector<std::string>{"failed"});
}

TEST_F(OriginClientTest, AllOriginsRefusingFailsWithConnectStatus) {
  const conf::Config config =
      configWith({originAt(closedPort(), "a"), originAt(closedPort(), "b")});
  makeClient(config);
  Recorder rec;
  fetch(config, rec);
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  ASSERT_TRUE(rec.failed);
  EXPECT_EQ(rec.status.code(), Code::kConnect);
  EXPECT_EQ(rec.status.source(), Source::kUpstream);
}

TEST_F(OriginClientTest, DownOriginIsSkippedUnlessAllAreDown) {
  ScriptedOrigin a([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send(ok("a"));
    return true;
  });
  ScriptedOrigin b([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send(ok("b"));
    return true;
  });
  conf::Config config = configWith({originAt(a.port(), "a"), originAt(b.port(), "b")});
  config.origin_groups[0].health_check.enabled = true;  // checked, but by this test's hand
  config.origin_groups[0].health_check.fall = 1;
  makeClient(config);
  const auto now = std::chrono::steady_clock::now();
  for (int i = 0; i < 3; ++i) health_->recordFailure(0, 0, now);
  Recorder rec;
  fetch(config, rec);
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  ASSERT_TRUE(rec.completed);
  EXPECT_EQ(rec.body, "b");
  EXPECT_EQ(a.accepted(), 0);

  // Passive signals never take the last eligible origin out; an active check does.
  for (int i = 0; i < 3; ++i) health_->recordFailure(0, 1, now);
  EXPECT_TRUE(health_->isUp(0, 1, now));
  health_->recordCheck(0, 1, false, now, "test");
  EXPECT_FALSE(health_->isUp(0, 1, now));
  Recorder all_down;
  fetch(config, all_down);
  ASSERT_TRUE(runUntil([&] { return all_down.done(); }));
  ASSERT_TRUE(all_down.completed);
  EXPECT_EQ(all_down.body, "a");  // all down: priority order
  // A success during the ejection does not cut it short (it ends at its back-off).
  EXPECT_FALSE(health_->isUp(0, 0, std::chrono::steady_clock::now()));
}

TEST_F(OriginClientTest, RepeatedFailuresMarkTheOriginDown) {
  ScriptedOrigin b([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send(ok("b"));
    return true;
  });
  const conf::Config config = configWith({originAt(closedPort(), "a"), originAt(b.port(), "b")});
  makeClient(config);
  for (int i = 0; i < 3; ++i) {
    Recorder rec;
    fetch(config, rec);
    ASSERT_TRUE(runUntil([&] { return rec.done(); }));
    ASSERT_TRUE(rec.completed);
    EXPECT_EQ(rec.response->attempts, 2);
  }
  EXPECT_FALSE(health_->isUp(0, 0, std::chrono::steady_clock::now()));
  Recorder rec;
  fetch(config, rec);
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  EXPECT_EQ(rec.response->attempts, 1);  // a is skipped now
}

// TLS to origins needs the contexts the server builds (tls::TlsState, see the TLS scenario tests);
// a client without them fails https attempts as a local error, never as plain HTTP.
TEST_F(OriginClientTest, HttpsOriginWithoutTlsContextFailsWithAClearStatus) {
  conf::OriginConfig tls = originAt(closedPort(), "tls");
  tls.scheme = "https";
  const conf::Config config = configWith({tls});
  makeClient(config);
  Recorder rec;
  fetch(config, rec);
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  ASSERT_TRUE(rec.failed);
  EXPECT_EQ(rec.status.code(), Code::kInternal);
  EXPECT_NE(std::string(rec.status.detail()).find("https"), std::string::npos);
  EXPECT_TRUE(health_->isUp(0, 0, std::chrono::steady_clock::now()));
}

TEST_F(OriginClientTest, OriginNameIsResolvedAsynchronously) {
  // "localhost" comes from /etc/hosts through evdns; the origin listens on 127.0.0.1.
  ScriptedOrigin origin([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send(ok("named"));
    return true;
  });
  conf::OriginConfig o = originAt(origin.port(), "named");
  o.host = "localhost";
  const conf::Config config = configWith({o});
  makeClient(config);
  for (int i = 0; i < 2; ++i) {  // the second one uses the cached address or the pool
    Recorder rec;
    fetch(config, rec);
    ASSERT_TRUE(runUntil([&] { return rec.done(); }));
    ASSERT_TRUE(rec.completed) << rec.status.toString();
    EXPECT_EQ(rec.body, "named");
  }
}

TEST_F(OriginClientTest, UnknownGroupFailsFromTheLoopNotFromStart) {
  const conf::Config config = configWith({originAt(closedPort(), "a")});
  makeClient(config);
  Recorder rec;
  std::unique_ptr<OriginFetch> f = client_->start(config, 7, defaultRequest(), rec);
  EXPECT_TRUE(rec.events.empty());  // never inside start()
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  EXPECT_EQ(rec.status.code(), Code::kInternal);
}

TEST_F(OriginClientTest, RequestWithLineBreakInAFieldIsNeverSent) {
  ScriptedOrigin origin([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send(ok("x"));
    return true;
  });
  const conf::Config config = configWith({originAt(origin.port(), "a")});
  makeClient(config);
  OriginRequest bad = defaultRequest();
  bad.headers = {{"X-A", "1\r\nX-Injected: 1"}};
  Recorder rec;
  fetch(config, rec, bad);
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  EXPECT_TRUE(rec.failed);
  EXPECT_EQ(origin.accepted(), 0);
}

// ---- framing violations -------------------------------------------------------------------

TEST_F(OriginClientTest, BodyCutShortFailsAfterResponse) {
  ScriptedOrigin origin([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
    return false;
  });
  const conf::Config config = configWith({originAt(origin.port(), "a")});
  makeClient(config);
  Recorder rec;
  fetch(config, rec);
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  ASSERT_TRUE(rec.failed);
  EXPECT_EQ(rec.events, (std::vector<std::string>{"response", "data", "failed"}));
  EXPECT_EQ(rec.body, "0123456789");
  EXPECT_EQ(rec.status.code(), Code::kClosed);
  EXPECT_EQ(rec.status.source(), Source::kUpstream);
  EXPECT_STREQ(rec.status.detail(), "body cut short");
}

TEST_F(OriginClientTest, BodyReadTimeoutFailsAfterResponse) {
  ScriptedOrigin origin([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123");
    c.waitForPeerClose(3000ms);
    return false;
  });
  conf::OriginConfig o = originAt(origin.port(), "a");
  o.read_timeout = 150ms;
  const conf::Config config = configWith({o});
  makeClient(config);
  Recorder rec;
  fetch(config, rec);
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  ASSERT_TRUE(rec.failed);
  EXPECT_EQ(rec.events.front(), "response");
  EXPECT_EQ(rec.status.code(), Code::kTimeout);
}

// ---- resume after the first byte ----------------------------------------------------------

std::string patternBody(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7 + i / 251) % 26);
  return s;
}

// The value of a request field (case-insensitive name), "" when absent.
std::string requestField(const std::string& request, std::string_view name) {
  std::string lower = request;
  for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  std::string key = "\r\n";
  for (char ch : name) key += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  key += ':';
  const size_t at = lower.find(key);
  if (at == std::string::npos) return "";
  size_t from = at + key.size();
  while (from < request.size() && request[from] == ' ') ++from;
  return request.substr(from, request.find("\r\n", from) - from);
}

// A 206 of `body` from `first` on, as an origin holding the same representation answers.
std::string partial(const std::string& body, size_t first, std::string_view fields) {
  return "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes " + std::to_string(first) + "-" +
         std::to_string(body.size() - 1) + "/" + std::to_string(body.size()) +
         "\r\nContent-Length: " + std::to_string(body.size() - first) + "\r\n" +
         std::string(fields) + "\r\n" + body.substr(first);
}

size_t countOf(const std::vector<std::string>& v, std::string_view s) {
  return static_cast<size_t>(std::count(v.begin(), v.end(), s));
}

TEST_F(OriginClientTest, BodyBrokenMidwayGoesOnFromTheNextOriginWithRangeAndIfMatch) {
  const std::string body = patternBody(10000);
  ScriptedOrigin primary([&](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send("HTTP/1.1 200 OK\r\nContent-Length: 10000\r\nETag: \"v1\"\r\n\r\n" + body.substr(0, 4000));
    return false;  // closed mid-body
  });
  ScriptedOrigin secondary([&](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send(partial(body, 4000, "ETag: \"v1\"\r\n"));
    return true;
  });
  const conf::Config config =
      configWith({originAt(primary.port(), "a"), originAt(secondary.port(), "b")});
  makeClient(config);
  Recorder rec;
  fetch(config, rec);
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  ASSERT_TRUE(rec.completed) << rec.status.toString();
  EXPECT_EQ(rec.body, body);
  EXPECT_EQ(countOf(rec.events, "response"), 1u);
  EXPECT_EQ(rec.events.front(), "response");
  EXPECT_EQ(rec.events.back(), "complete");
  ASSERT_EQ(secondary.requests().size(), 1u);
  const std::string ranged = secondary.requests()[0];
  EXPECT_EQ(ranged.rfind("GET /live/seg1.ts HTTP/1.1\r\n", 0), 0u) << ranged;
  EXPECT_EQ(requestField(ranged, "Range"), "bytes=4000-");
  EXPECT_EQ(requestField(ranged, "If-Match"), "\"v1\"");
  EXPECT_EQ(requestField(ranged, "If-Unmodified-Since"), "");
}

TEST_F(OriginClientTest, ResumeRequestUsesIfUnmodifiedSinceWithoutAStrongEtag) {
  const std::string body = patternBody(3000);
  const std::string lm = "Last-Modified: Mon, 01 Jan 2024 00:00:00 GMT\r\n";
  ScriptedOrigin primary([&](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send("HTTP/1.1 200 OK\r\nContent-Length: 3000\r\nETag: W/\"weak\"\r\n" + lm + "\r\n" +
           body.substr(0, 1000));
    return false;
  });
  ScriptedOrigin secondary([&](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send(partial(body, 1000, lm));
    return true;
  });
  const conf::Config config =
      configWith({originAt(primary.port(), "a"), originAt(secondary.port(), "b")});
  makeClient(config);
  Recorder rec;
  fetch(config, rec);
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  ASSERT_TRUE(rec.completed) << rec.status.toString();
  EXPECT_EQ(rec.body, body);
  ASSERT_EQ(secondary.requests().size(), 1u);
  EXPECT_EQ(requestField(secondary.requests()[0], "If-Unmodified-Since"),
            "Mon, 01 Jan 2024 00:00:00 GMT");
  EXPECT_EQ(requestField(secondary.requests()[0], "If-Match"), "");
}

TEST_F(OriginClientTest, ResumeAnsweredWithTheWholeBodyIsAbortedNotSpliced) {
  const std::string body = patternBody(5000);
  ScriptedOrigin primary([&](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send("HTTP/1.1 200 OK\r\nContent-Length: 5000\r\nETag: \"v1\"\r\n\r\n" + body.substr(0, 2000));
    return false;
  });
  ScriptedOrigin secondary([&](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send(ok(body, "ETag: \"v1\"\r\n"));  // no range support
    return true;
  });
  const conf::Config config =
      configWith({originAt(primary.port(), "a"), originAt(secondary.port(), "b")});
  makeClient(config);
  Recorder rec;
  fetch(config, rec);
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  ASSERT_TRUE(rec.failed);
  EXPECT_EQ(rec.body, body.substr(0, 2000));
  EXPECT_EQ(countOf(rec.events, "response"), 1u);
}

TEST_F(OriginClientTest, ResumeWithOtherValidatorsIsAborted) {
  const std::string body = patternBody(5000);
  ScriptedOrigin primary([&](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send("HTTP/1.1 200 OK\r\nContent-Length: 5000\r\nETag: \"v1\"\r\n\r\n" + body.substr(0, 2000));
    return false;
  });
  ScriptedOrigin secondary([&](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send(partial(body, 2000, "ETag: \"v2\"\r\n"));  // ignores If-Match: another version
    return true;
  });
  const conf::Config config =
      configWith({originAt(primary.port(), "a"), originAt(secondary.port(), "b")});
  makeClient(config);
  Recorder rec;
  fetch(config, rec);
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  ASSERT_TRUE(rec.failed);
  EXPECT_EQ(rec.body, body.substr(0, 2000));
}

TEST_F(OriginClientTest, BodyWithoutValidatorsIsNotResumed) {
  ScriptedOrigin primary([&](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
    return false;
  });
  ScriptedOrigin secondary([&](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send(ok("unused"));
    return true;
  });
  const conf::Config config =
      configWith({originAt(primary.port(), "a"), originAt(secondary.port(), "b")});
  makeClient(config);
  Recorder rec;
  fetch(config, rec);
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  ASSERT_TRUE(rec.failed);
  EXPECT_EQ(rec.status.code(), Code::kClosed);
  EXPECT_EQ(secondary.accepted(), 0);
}

TEST_F(OriginClientTest, HeadAndPostAreNeverResumed) {
  ScriptedOrigin primary([&](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send("HTTP/1.1 200 OK\r\nContent-Length: 100\r\nETag: \"v1\"\r\n\r\n0123456789");
    return false;
  });
  ScriptedOrigin secondary([&](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send(ok("unused"));
    return true;
  });
  const conf::Config config =
      configWith({originAt(primary.port(), "a"), originAt(secondary.port(), "b")});
  makeClient(config);
  Recorder rec;
  OriginRequest post = defaultRequest();
  post.method = "POST";
  post.body = "x=1";
  fetch(config, rec, post);
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  ASSERT_TRUE(rec.failed);
  EXPECT_EQ(secondary.accepted(), 0);
}

TEST_F(OriginClientTest, ResumeAttemptsZeroTurnsResumeOff) {
  const std::string body = patternBody(500);
  ScriptedOrigin primary([&](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send("HTTP/1.1 200 OK\r\nContent-Length: 500\r\nETag: \"v1\"\r\n\r\n" + body.substr(0, 100));
    return false;
  });
  ScriptedOrigin secondary([&](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send(partial(body, 100, "ETag: \"v1\"\r\n"));
    return true;
  });
  conf::Config config = configWith({originAt(primary.port(), "a"), originAt(secondary.port(), "b")});
  config.origin_groups[0].resume_attempts = 0;
  makeClient(config);
  Recorder rec;
  fetch(config, rec);
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  ASSERT_TRUE(rec.failed);
  EXPECT_EQ(secondary.accepted(), 0);
}

TEST_F(OriginClientTest, ChunkedBodyResumesAtTheDecodedOffset) {
  const std::string body = patternBody(5000);
  ScriptedOrigin primary([&](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    // 3000 body bytes in three chunks, then the connection dies: N counts body bytes only.
    c.send("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nETag: \"v1\"\r\n\r\n"
           "3e8\r\n" + body.substr(0, 1000) + "\r\n7d0\r\n" + body.substr(1000, 2000) + "\r\n");
    return false;
  });
  ScriptedOrigin secondary([&](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    std::string rest = body.substr(3000);
    c.send("HTTP/1.1 206 Partial Content\r\nETag: \"v1\"\r\nContent-Range: bytes 3000-4999/5000\r\n"
           "Transfer-Encoding: chunked\r\n\r\n7d0\r\n" + rest + "\r\n0\r\n\r\n");
    return true;
  });
  const conf::Config config =
      configWith({originAt(primary.port(), "a"), originAt(secondary.port(), "b")});
  makeClient(config);
  Recorder rec;
  fetch(config, rec);
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  ASSERT_TRUE(rec.completed) << rec.status.toString();
  EXPECT_EQ(rec.body, body);
  ASSERT_EQ(secondary.requests().size(), 1u);
  EXPECT_EQ(requestField(secondary.requests()[0], "Range"), "bytes=3000-");
}

TEST_F(OriginClientTest, BodySlowerThanMinRateResumesElsewhere) {
  const std::string body = patternBody(8000);
  ScriptedOrigin primary([&](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send("HTTP/1.1 200 OK\r\nContent-Length: 8000\r\nETag: \"v1\"\r\n\r\n" + body.substr(0, 2000));
    // Then a trickle: 10 bytes every 50 ms (200 B/s), far below min_rate, never a read timeout.
    for (size_t off = 2000; off < 2400 && !c.waitForPeerClose(50ms); off += 10) {
      c.send(body.substr(off, 10));
    }
    return false;
  });
  ScriptedOrigin secondary([&](ScriptedOrigin::Conn& c, const std::string& request, int, int) {
    size_t from = std::stoul(requestField(request, "Range").substr(6));
    c.send(partial(body, from, "ETag: \"v1\"\r\n"));
    return true;
  });
  conf::Config config = configWith({originAt(primary.port(), "a"), originAt(secondary.port(), "b")});
  config.origin_groups[0].min_rate = 20000;
  config.origin_groups[0].min_rate_window = 200ms;
  makeClient(config);
  Recorder rec;
  const auto started = std::chrono::steady_clock::now();
  fetch(config, rec);
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  ASSERT_TRUE(rec.completed) << rec.status.toString();
  EXPECT_LT(std::chrono::steady_clock::now() - started, 1500ms) << "not the read timeout";
  EXPECT_EQ(rec.body, body);
  ASSERT_EQ(secondary.requests().size(), 1u);
}

TEST_F(OriginClientTest, BreakWhilePausedIsResumedOnlyAfterResumeFromTheDeliveredOffset) {
  const std::string body = patternBody(6000);
  ScriptedOrigin primary([&](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send("HTTP/1.1 200 OK\r\nContent-Length: 6000\r\nETag: \"v1\"\r\n\r\n" + body.substr(0, 1000));
    c.sleep(100ms);
    c.send(body.substr(1000, 1500));
    return false;
  });
  ScriptedOrigin secondary([&](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send(partial(body, 2500, "ETag: \"v1\"\r\n"));
    return true;
  });
  const conf::Config config =
      configWith({originAt(primary.port(), "a"), originAt(secondary.port(), "b")});
  makeClient(config);
  Recorder rec;
  std::unique_ptr<OriginFetch>& f = fetch(config, rec);
  ASSERT_TRUE(runUntil([&] { return !rec.body.empty(); }));
  f->pause();
  runFor(400ms);  // the rest and the close arrive meanwhile; nothing is reported while paused
  EXPECT_FALSE(rec.done());
  EXPECT_EQ(secondary.accepted(), 0);
  EXPECT_LT(rec.body.size(), 2500u);
  f->resume();
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  ASSERT_TRUE(rec.completed) << rec.status.toString();
  EXPECT_EQ(rec.body, body);
  ASSERT_EQ(secondary.requests().size(), 1u);
  EXPECT_EQ(requestField(secondary.requests()[0], "Range"), "bytes=2500-");
}

TEST_F(OriginClientTest, PauseBetweenOriginsHoldsTheResumedBodyUntilResume) {
  const std::string body = patternBody(6000);
  ScriptedOrigin primary([&](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send("HTTP/1.1 200 OK\r\nContent-Length: 6000\r\nETag: \"v1\"\r\n\r\n" + body.substr(0, 1000));
    return false;
  });
  ScriptedOrigin secondary([&](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.sleep(150ms);  // the observer pauses while this origin is being asked
    c.send(partial(body, 1000, "ETag: \"v1\"\r\n"));
    return true;
  });
  // A first-byte timeout shorter than the pause: a paused resumed body runs no timer.
  conf::OriginConfig b = originAt(secondary.port(), "b");
  b.first_byte_timeout = 300ms;
  const conf::Config config = configWith({originAt(primary.port(), "a"), b});
  makeClient(config);
  Recorder rec;
  std::unique_ptr<OriginFetch>& f = fetch(config, rec);
  ASSERT_TRUE(runUntil([&] { return secondary.accepted() > 0; }));
  ASSERT_EQ(rec.body.size(), 1000u);
  f->pause();
  runFor(700ms);
  EXPECT_EQ(rec.body.size(), 1000u) << "nothing delivered while paused";
  EXPECT_FALSE(rec.done());
  f->resume();
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  ASSERT_TRUE(rec.completed) << rec.status.toString();
  EXPECT_EQ(rec.body, body);
}

TEST_F(OriginClientTest, FailedResumeAttemptTriesTheNextOriginWithinTheAttemptBudget) {
  const std::string body = patternBody(4000);
  ScriptedOrigin primary([&](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send("HTTP/1.1 200 OK\r\nContent-Length: 4000\r\nETag: \"v1\"\r\n\r\n" + body.substr(0, 1000));
    return false;
  });
  ScriptedOrigin broken([&](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send("HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n");
    return true;
  });
  ScriptedOrigin third([&](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send(partial(body, 1000, "ETag: \"v1\"\r\n"));
    return true;
  });
  const conf::Config config = configWith({originAt(primary.port(), "a"),
                                          originAt(broken.port(), "b"),
                                          originAt(third.port(), "c")});
  makeClient(config);
  Recorder rec;
  fetch(config, rec);
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  ASSERT_TRUE(rec.completed) << rec.status.toString();
  EXPECT_EQ(rec.body, body);
  EXPECT_EQ(broken.requests().size(), 1u);
  EXPECT_EQ(third.requests().size(), 1u);
}

TEST_F(OriginClientTest, ResumeGivesUpWhenItsAttemptsAreUsed) {
  const std::string body = patternBody(4000);
  ScriptedOrigin primary([&](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send("HTTP/1.1 200 OK\r\nContent-Length: 4000\r\nETag: \"v1\"\r\n\r\n" + body.substr(0, 1000));
    return false;
  });
  ScriptedOrigin broken([&](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send("HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n");
    return true;
  });
  ScriptedOrigin third([&](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send(partial(body, 1000, "ETag: \"v1\"\r\n"));
    return true;
  });
  conf::Config config = configWith({originAt(primary.port(), "a"), originAt(broken.port(), "b"),
                                    originAt(third.port(), "c")});
  config.origin_groups[0].resume_attempts = 1;
  makeClient(config);
  Recorder rec;
  fetch(config, rec);
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  ASSERT_TRUE(rec.failed);
  EXPECT_EQ(rec.body, body.substr(0, 1000));
  EXPECT_EQ(third.accepted(), 0);
}

TEST_F(OriginClientTest, BodyLongerThanContentLengthFailsAndIsNotReused) {
  ScriptedOrigin origin([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA");
    return true;
  });
  const conf::Config config = configWith({originAt(origin.port(), "a")});
  makeClient(config);
  Recorder rec;
  fetch(config, rec);
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  ASSERT_TRUE(rec.failed);
  EXPECT_EQ(rec.events, (std::vector<std::string>{"response", "data", "failed"}));
  EXPECT_EQ(rec.body, "hello");
  EXPECT_EQ(rec.status.code(), Code::kInvalid);

  Recorder again;
  fetch(config, again);
  ASSERT_TRUE(runUntil([&] { return again.done(); }));
  EXPECT_EQ(origin.accepted(), 2);
}

TEST_F(OriginClientTest, BytesAfterACompleteBodyDropThePooledConnection) {
  std::atomic<bool> extra_sent{false};
  ScriptedOrigin origin([&](ScriptedOrigin::Conn& c, const std::string&, int, int r) {
    c.send(ok("hello"));
    if (r == 0) {
      c.sleep(50ms);
      c.send("EXTRA");
      extra_sent = true;
    }
    return true;
  });
  const conf::Config config = configWith({originAt(origin.port(), "a")});
  makeClient(config);
  Recorder rec;
  fetch(config, rec);
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  ASSERT_TRUE(rec.completed);  // the object matched its framing when it completed
  ASSERT_TRUE(runUntil([&] { return extra_sent.load(); }));
  runFor(100ms);  // the stray bytes reach the idle connection
  Recorder again;
  fetch(config, again);
  ASSERT_TRUE(runUntil([&] { return again.done(); }));
  ASSERT_TRUE(again.completed) << again.status.toString();
  EXPECT_EQ(again.body, "hello");
  EXPECT_EQ(origin.accepted(), 2);
}

TEST_F(OriginClientTest, InvalidResponseHeadFailsAndClosesTheConnection) {
  ScriptedOrigin origin([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello");
    c.sleep(20ms);
    return true;
  });
  const conf::Config config = configWith({originAt(origin.port(), "a")});
  makeClient(config);
  Recorder rec;
  fetch(config, rec);
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  ASSERT_TRUE(rec.failed);
  EXPECT_EQ(rec.events, std::vector<std::string>{"failed"});
  EXPECT_EQ(rec.status.code(), Code::kInvalid);
  EXPECT_EQ(rec.status.source(), Source::kUpstream);

  Recorder again;
  fetch(config, again);
  ASSERT_TRUE(runUntil([&] { return again.done(); }));
  EXPECT_EQ(origin.accepted(), 2);  // never reused
}

TEST_F(OriginClientTest, InvalidResponseHeadFailsOverToNextOrigin) {
  ScriptedOrigin a([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send("HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\nhello");
    return true;
  });
  ScriptedOrigin b([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send(ok("b"));
    return true;
  });
  const conf::Config config = configWith({originAt(a.port(), "a"), originAt(b.port(), "b")});
  makeClient(config);
  Recorder rec;
  fetch(config, rec);
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  ASSERT_TRUE(rec.completed);
  EXPECT_EQ(rec.body, "b");
}

// ---- cancellation -------------------------------------------------------------------------

TEST_F(OriginClientTest, DestroyingTheFetchMidBodyStopsCallbacks) {
  ScriptedOrigin origin([&](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send("HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n0123456789");
    c.sleep(100ms);
    c.send("abcdefghij");
    return true;
  });
  const conf::Config config = configWith({originAt(origin.port(), "a")});
  makeClient(config);
  Recorder rec;
  rec.destroy_on_data = true;
  fetch(config, rec);
  ASSERT_TRUE(runUntil([&] { return !rec.body.empty(); }));
  ASSERT_EQ(*rec.owner, nullptr);
  runFor(300ms);
  EXPECT_EQ(rec.events, (std::vector<std::string>{"response", "data"}));

  // The half-read connection was closed, not pooled.
  Recorder again;
  fetch(config, again);
  ASSERT_TRUE(runUntil([&] { return again.done(); }));
  EXPECT_EQ(origin.accepted(), 2);
}

TEST_F(OriginClientTest, DestroyingTheFetchBeforeTheLoopRunsNeverCallsBack) {
  ScriptedOrigin origin([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send(ok("x"));
    return true;
  });
  const conf::Config config = configWith({originAt(origin.port(), "a")});
  makeClient(config);
  Recorder rec;
  std::unique_ptr<OriginFetch> f = client_->start(config, 0, defaultRequest(), rec);
  f.reset();
  runFor(100ms);
  EXPECT_TRUE(rec.events.empty());
}

TEST_F(OriginClientTest, DestroyingTheFetchWhileConnectingOrWaitingNeverCallsBack) {
  ScriptedOrigin origin([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.sleep(100ms);
    c.send(ok("late"));
    return true;
  });
  const conf::Config config = configWith({originAt(origin.port(), "a")});
  makeClient(config);
  Recorder rec;
  std::unique_ptr<OriginFetch> f = client_->start(config, 0, defaultRequest(), rec);
  runUntil([&] { return origin.requests().size() == 1; });
  f.reset();
  runFor(300ms);
  EXPECT_TRUE(rec.events.empty());
}

TEST_F(OriginClientTest, ClientDestroyedBeforeItsFetchesIsSafe) {
  ScriptedOrigin origin([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.sleep(50ms);
    c.send(ok("x"));
    return true;
  });
  const conf::Config config = configWith({originAt(origin.port(), "a")});
  makeClient(config);
  Recorder rec;
  std::unique_ptr<OriginFetch> f = client_->start(config, 0, defaultRequest(), rec);
  runUntil([&] { return origin.requests().size() == 1; });
  client_.reset();
  runFor(100ms);
  f.reset();
  EXPECT_TRUE(rec.events.empty());
}

TEST_F(OriginClientTest, CloseIdleDropsPooledConnections) {
  ScriptedOrigin origin([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send(ok("x"));
    return true;
  });
  const conf::Config config = configWith({originAt(origin.port(), "a")});
  makeClient(config);
  Recorder first;
  fetch(config, first);
  ASSERT_TRUE(runUntil([&] { return first.done(); }));
  client_->closeIdle();
  Recorder second;
  fetch(config, second);
  ASSERT_TRUE(runUntil([&] { return second.done(); }));
  EXPECT_EQ(origin.accepted(), 2);
}

// ---- origin protection --------------------------------------------------------------------

// Counts the requests a scripted origin is answering at once (and the most it ever was).
struct ConcurrencyProbe {
  std::atomic<int> now{0};
  std::atomic<int> max{0};
  void enter() {
    const int v = ++now;
    int m = max.load();
    while (v > m && !max.compare_exchange_weak(m, v)) {
    }
  }
  void leave() { --now; }
};

OriginSlot* slotOf(OriginLimits& limits, const std::string& origin) {
  return limits.slot("media", origin, "dc-" + origin);
}

TEST_F(OriginClientTest, ConcurrencyCapQueuesTheRestAndTheOriginNeverSeesMore) {
  ConcurrencyProbe probe;
  ScriptedOrigin origin([&probe](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    probe.enter();
    c.sleep(100ms);
    probe.leave();
    c.send(ok("capped"));
    return true;
  });
  conf::OriginConfig o = originAt(origin.port(), "a");
  o.max_concurrent_requests = 2;
  o.queue_size = 10;
  const conf::Config config = configWith({o});
  makeClient(config);
  std::vector<Recorder> recs(6);
  for (Recorder& r : recs) fetch(config, r);
  ASSERT_TRUE(runUntil([&] {
    return std::all_of(recs.begin(), recs.end(), [](const Recorder& r) { return r.done(); });
  }));
  for (const Recorder& r : recs) {
    ASSERT_TRUE(r.completed) << r.status.toString();
    EXPECT_EQ(r.body, "capped");
  }
  EXPECT_EQ(probe.max.load(), 2);
  OriginSlot* slot = slotOf(*limits_, "a");
  EXPECT_EQ(slot->in_flight.load(), 0);
  EXPECT_EQ(slot->queued.load(), 0);
  EXPECT_EQ(slot->queued_total.load(), 4u);
  EXPECT_EQ(slot->max_in_flight_seen.load(), 2);
  EXPECT_LE(slot->connections.load(), 2);  // pooled and reused, never more than the cap
}

TEST_F(OriginClientTest, FullQueueAnswersBusyAtOnce) {
  ScriptedOrigin origin([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.sleep(300ms);
    c.send(ok("x"));
    return true;
  });
  conf::OriginConfig o = originAt(origin.port(), "a");
  o.max_concurrent_requests = 1;
  o.queue_size = 1;
  const conf::Config config = configWith({o});
  makeClient(config);
  Recorder first, second, third;
  fetch(config, first);
  fetch(config, second);
  fetch(config, third);
  ASSERT_TRUE(runUntil([&] { return third.done(); }, 200ms));  // long before the origin answers
  ASSERT_TRUE(third.failed);
  EXPECT_EQ(third.status.code(), Code::kBusy);
  EXPECT_TRUE(third.events == std::vector<std::string>{"failed"});
  ASSERT_TRUE(runUntil([&] { return first.done() && second.done(); }));
  EXPECT_TRUE(first.completed);
  EXPECT_TRUE(second.completed);
  EXPECT_EQ(slotOf(*limits_, "a")->rejected_overflow.load(), 1u);
  EXPECT_EQ(origin.requests().size(), 2u);
}

TEST_F(OriginClientTest, QueueTimeoutAnswersBusy) {
  ScriptedOrigin origin([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.sleep(600ms);
    c.send(ok("x"));
    return true;
  });
  conf::OriginConfig o = originAt(origin.port(), "a");
  o.max_concurrent_requests = 1;
  o.queue_timeout = 100ms;
  const conf::Config config = configWith({o});
  makeClient(config);
  Recorder first, second;
  fetch(config, first);
  fetch(config, second);
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(runUntil([&] { return second.done(); }, 2000ms));
  const auto waited = std::chrono::steady_clock::now() - t0;
  ASSERT_TRUE(second.failed);
  EXPECT_EQ(second.status.code(), Code::kBusy);
  EXPECT_GE(waited, 90ms);
  EXPECT_LT(waited, 500ms);
  EXPECT_EQ(slotOf(*limits_, "a")->rejected_timeout.load(), 1u);
  ASSERT_TRUE(runUntil([&] { return first.done(); }));
  EXPECT_TRUE(first.completed);
  EXPECT_EQ(origin.requests().size(), 1u);  // the busy one never reached the origin
}

TEST_F(OriginClientTest, BusyOriginSendsTheFetchToAnotherOfTheSamePriority) {
  ConcurrencyProbe probe;
  auto script = [&probe](const char* body) {
    return [&probe, body](ScriptedOrigin::Conn& c, const std::string&, int, int) {
      probe.enter();
      c.sleep(200ms);
      probe.leave();
      c.send(ok(body));
      return true;
    };
  };
  ScriptedOrigin a(script("a"));
  ScriptedOrigin b(script("b"));
  ScriptedOrigin c(script("c"));  // lower priority: never needed
  conf::OriginConfig oa = originAt(a.port(), "a");
  conf::OriginConfig ob = originAt(b.port(), "b");
  conf::OriginConfig oc = originAt(c.port(), "c");
  oa.max_concurrent_requests = ob.max_concurrent_requests = 1;
  oc.priority = 2;
  const conf::Config config = configWith({oa, ob, oc});
  makeClient(config);
  Recorder r1, r2, r3;
  fetch(config, r1);
  fetch(config, r2);
  fetch(config, r3);  // both priority-1 origins busy: queued at the first, not sent to c
  ASSERT_TRUE(runUntil([&] { return r1.done() && r2.done() && r3.done(); }));
  ASSERT_TRUE(r1.completed && r2.completed && r3.completed);
  std::vector<std::string> bodies{r1.body, r2.body, r3.body};
  std::sort(bodies.begin(), bodies.end());
  // The second went to b at once; the third waited for a (its first choice), never to c.
  EXPECT_EQ(bodies, (std::vector<std::string>{"a", "a", "b"}));
  EXPECT_EQ(c.requests().size(), 0u);
  EXPECT_EQ(probe.max.load(), 2);
}

TEST_F(OriginClientTest, CapIsSharedByEveryClientOfTheSameLimits) {
  ConcurrencyProbe probe;
  ScriptedOrigin origin([&probe](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    probe.enter();
    c.sleep(100ms);
    probe.leave();
    c.send(ok("shared"));
    return true;
  });
  conf::OriginConfig o = originAt(origin.port(), "a");
  o.max_concurrent_requests = 1;
  const conf::Config config = configWith({o});
  makeClient(config);
  // A second worker's client on the same loop, sharing the limits (as workers share them).
  OriginClient other(base_, health_, nullptr, limits_);
  std::vector<Recorder> recs(4);
  for (size_t i = 0; i < recs.size(); ++i) {
    if (i % 2 == 0) {
      fetch(config, recs[i]);
    } else {
      fetches_.push_back(std::make_unique<std::unique_ptr<OriginFetch>>());
      recs[i].owner = fetches_.back().get();
      *fetches_.back() = other.start(config, 0, defaultRequest(), recs[i]);
    }
  }
  ASSERT_TRUE(runUntil([&] {
    return std::all_of(recs.begin(), recs.end(), [](const Recorder& r) { return r.done(); });
  }));
  for (const Recorder& r : recs) EXPECT_TRUE(r.completed) << r.status.toString();
  EXPECT_EQ(probe.max.load(), 1);
  fetches_.clear();
}

TEST_F(OriginClientTest, ConnectionCapClosesAnotherClientsIdleConnectionForAWaiter) {
  ScriptedOrigin origin([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send(ok("conn"));
    return true;
  });
  conf::OriginConfig o = originAt(origin.port(), "a");
  o.max_connections = 1;
  const conf::Config config = configWith({o});
  makeClient(config);
  Recorder first;
  fetch(config, first);
  ASSERT_TRUE(runUntil([&] { return first.done(); }));
  ASSERT_TRUE(first.completed);
  EXPECT_EQ(slotOf(*limits_, "a")->connections.load(), 1);  // idle in this client's pool
  OriginClient other(base_, health_, nullptr, limits_);
  Recorder second;
  std::unique_ptr<OriginFetch> f = other.start(config, 0, defaultRequest(), second);
  second.owner = &f;
  ASSERT_TRUE(runUntil([&] { return second.done(); }));
  ASSERT_TRUE(second.completed) << second.status.toString();
  EXPECT_EQ(origin.accepted(), 2);
  EXPECT_EQ(slotOf(*limits_, "a")->connections.load(), 1);
  other.closeIdle();
  EXPECT_EQ(slotOf(*limits_, "a")->connections.load(), 0);
}

TEST_F(OriginClientTest, ExhaustedRetryBudgetReportsTheFailureInsteadOfRetrying) {
  ScriptedOrigin b([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send(ok("b"));
    return true;
  });
  conf::Config config = configWith({originAt(closedPort(), "a"), originAt(b.port(), "b")});
  config.origin_groups[0].retry_budget = 0.5;
  config.origin_groups[0].retry_budget_min = 0;
  makeClient(config);
  // Two requests in the window allow one retry (0.5 × 2); the rest fail where they are.
  std::vector<Recorder> recs(4);
  for (Recorder& r : recs) {
    fetch(config, r);
  }
  ASSERT_TRUE(runUntil([&] {
    return std::all_of(recs.begin(), recs.end(), [](const Recorder& r) { return r.done(); });
  }));
  int served = 0;
  for (const Recorder& r : recs) {
    if (r.completed) {
      ++served;
    } else {
      EXPECT_EQ(r.status.code(), Code::kConnect);
    }
  }
  GroupBudget* budget = limits_->budget("media");
  EXPECT_EQ(budget->retried.load() + budget->budget_exhausted.load(), 4u);
  EXPECT_LE(budget->retried.load(), 2u);
  EXPECT_GE(budget->budget_exhausted.load(), 2u);
  EXPECT_EQ(static_cast<uint64_t>(served), budget->retried.load());
  EXPECT_EQ(b.requests().size(), budget->retried.load());  // the secondary is not flooded
}

TEST_F(OriginClientTest, BudgetOffRetriesEveryFailure) {
  ScriptedOrigin b([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send(ok("b"));
    return true;
  });
  conf::Config config = configWith({originAt(closedPort(), "a"), originAt(b.port(), "b")});
  config.origin_groups[0].retry_budget = 0;
  config.origin_groups[0].retry_budget_min = 0;
  makeClient(config);
  std::vector<Recorder> recs(4);
  for (Recorder& r : recs) fetch(config, r);
  ASSERT_TRUE(runUntil([&] {
    return std::all_of(recs.begin(), recs.end(), [](const Recorder& r) { return r.done(); });
  }));
  for (const Recorder& r : recs) EXPECT_TRUE(r.completed) << r.status.toString();
  EXPECT_EQ(limits_->budget("media")->budget_exhausted.load(), 0u);
}

TEST_F(OriginClientTest, RetryDeadlineEndsTheAttemptsBeforeTheFirstByte) {
  ScriptedOrigin a([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.waitForPeerClose(3000ms);  // never answers
    return false;
  });
  ScriptedOrigin b([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send(ok("b"));
    return true;
  });
  conf::Config config = configWith({originAt(a.port(), "a"), originAt(b.port(), "b")});
  config.origin_groups[0].retry_deadline = 200ms;  // shorter than a's first_byte_timeout (2 s)
  makeClient(config);
  Recorder rec;
  const auto t0 = std::chrono::steady_clock::now();
  fetch(config, rec);
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  const auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_TRUE(rec.failed);
  EXPECT_EQ(rec.status.code(), Code::kTimeout);
  EXPECT_GE(took, 190ms);
  EXPECT_LT(took, 1000ms);
  EXPECT_EQ(b.requests().size(), 0u);
}

OriginRequest playlistRequest(Millis hedge_after) {
  OriginRequest r;
  r.target = "/live/index.m3u8";
  r.hedge_after = hedge_after;
  return r;
}

TEST_F(OriginClientTest, HedgeAnswersWhenTheFirstOriginIsSlowAndTheLoserIsClosed) {
  std::atomic<bool> a_closed{false};
  ScriptedOrigin a([&a_closed](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    a_closed = c.waitForPeerClose(4000ms);  // never answers; the hedge's win closes us
    return false;
  });
  ScriptedOrigin b([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send(ok("#EXTM3U from b\n"));
    return true;
  });
  conf::OriginConfig slow = originAt(a.port(), "a");
  slow.first_byte_timeout = 5000ms;  // a failover (not a hedge) would take this long
  const conf::Config config = configWith({slow, originAt(b.port(), "b")});
  makeClient(config);
  Recorder rec;
  const auto t0 = std::chrono::steady_clock::now();
  fetch(config, rec, playlistRequest(100ms));
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  const auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_TRUE(rec.completed) << rec.status.toString();
  EXPECT_EQ(rec.body, "#EXTM3U from b\n");
  EXPECT_EQ(rec.response->origin->name, "b");
  EXPECT_GE(took, 90ms);
  EXPECT_LT(took, 2500ms);  // usually ~100 ms; a connect's SYN may be retried after 1 s
  EXPECT_EQ(std::count(rec.events.begin(), rec.events.end(), "response"), 1);
  GroupBudget* budget = limits_->budget("media");
  EXPECT_EQ(budget->hedges_started.load(), 1u);
  EXPECT_EQ(budget->hedges_won.load(), 1u);
  EXPECT_EQ(budget->hedges_lost.load(), 0u);
  ASSERT_TRUE(runUntil([&] { return a_closed.load(); }, 4500ms));
  EXPECT_EQ(slotOf(*limits_, "a")->in_flight.load(), 0);
  EXPECT_EQ(slotOf(*limits_, "a")->connections.load(), 0);  // closed, never pooled
}

TEST_F(OriginClientTest, HedgeLosesWhenTheFirstOriginAnswersFirst) {
  std::atomic<bool> b_closed{false};
  ScriptedOrigin a([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.sleep(200ms);
    c.send(ok("#EXTM3U from a\n"));
    return true;
  });
  ScriptedOrigin b([&b_closed](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    b_closed = c.waitForPeerClose(2000ms);
    return false;
  });
  const conf::Config config = configWith({originAt(a.port(), "a"), originAt(b.port(), "b")});
  makeClient(config);
  Recorder rec;
  fetch(config, rec, playlistRequest(50ms));
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  ASSERT_TRUE(rec.completed) << rec.status.toString();
  EXPECT_EQ(rec.body, "#EXTM3U from a\n");
  GroupBudget* budget = limits_->budget("media");
  EXPECT_EQ(budget->hedges_started.load(), 1u);
  EXPECT_EQ(budget->hedges_won.load(), 0u);
  EXPECT_EQ(budget->hedges_lost.load(), 1u);
  ASSERT_TRUE(runUntil([&] { return b_closed.load(); }, 2500ms));
  EXPECT_EQ(slotOf(*limits_, "b")->connections.load(), 0);
}

TEST_F(OriginClientTest, HedgeCarriesTheFetchWhenTheFirstOriginFails) {
  ScriptedOrigin a([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.sleep(150ms);
    c.send("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
    return true;
  });
  ScriptedOrigin b([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.sleep(300ms);
    c.send(ok("b"));
    return true;
  });
  const conf::Config config = configWith({originAt(a.port(), "a"), originAt(b.port(), "b")});
  makeClient(config);
  Recorder rec;
  fetch(config, rec, playlistRequest(50ms));
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  ASSERT_TRUE(rec.completed) << rec.status.toString();
  EXPECT_EQ(rec.body, "b");
  EXPECT_EQ(b.requests().size(), 1u);  // the hedge, not a second failover request
  EXPECT_EQ(limits_->budget("media")->hedges_won.load(), 1u);
}

TEST_F(OriginClientTest, NoHedgeWithoutHedgeAfterOrForOtherMethods) {
  ScriptedOrigin a([](ScriptedOrigin::Conn& c, const std::string& request, int, int) {
    c.sleep(150ms);
    c.send(request.rfind("HEAD ", 0) == 0 ? "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n"
                                          : ok("a"));
    return true;
  });
  ScriptedOrigin b([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send(ok("b"));
    return true;
  });
  const conf::Config config = configWith({originAt(a.port(), "a"), originAt(b.port(), "b")});
  makeClient(config);
  Recorder plain;
  fetch(config, plain, playlistRequest(Millis(0)));
  OriginRequest head = playlistRequest(20ms);
  head.method = "HEAD";
  Recorder headrec;
  fetch(config, headrec, head);
  ASSERT_TRUE(runUntil([&] { return plain.done() && headrec.done(); }));
  EXPECT_EQ(plain.body, "a");
  EXPECT_TRUE(headrec.completed);
  EXPECT_EQ(b.requests().size(), 0u);
  EXPECT_EQ(limits_->budget("media")->hedges_started.load(), 0u);
}

// A hosts file that gives `name` the addresses listed, in order.
struct HostsFile {
  explicit HostsFile(const std::string& lines) {
    char tmpl[] = "/tmp/streamedge_hostsXXXXXX";
    const int fd = ::mkstemp(tmpl);
    path = tmpl;
    EXPECT_EQ(::write(fd, lines.data(), lines.size()), static_cast<ssize_t>(lines.size()));
    ::close(fd);
  }
  ~HostsFile() { ::unlink(path.c_str()); }
  std::string path;
};

TEST_F(OriginClientTest, EveryAddressOfANameIsTriedBeforeTheNextOrigin) {
  ScriptedOrigin origin([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send(ok("second address"));
    return true;
  });
  ScriptedOrigin other([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send(ok("other origin"));
    return true;
  });
  // ::1 and 127.0.0.2 refuse (the origin listens on 127.0.0.1 only); 127.0.0.1 answers.
  HostsFile hosts("::1 multi.test\n127.0.0.2 multi.test\n127.0.0.1 multi.test\n");
  conf::OriginConfig o = originAt(origin.port(), "named");
  o.host = "multi.test";
  const conf::Config config = configWith({o, originAt(other.port(), "other")});
  health_ = std::make_shared<OriginHealth>(config);
  base_ = event_base_new();
  limits_ = std::make_shared<OriginLimits>();
  client_ = std::make_unique<OriginClient>(base_, health_, nullptr, limits_);
  client_->setHostsFile(hosts.path);
  for (int i = 0; i < 2; ++i) {  // the second from the name cache, or the pool
    Recorder rec;
    fetch(config, rec);
    ASSERT_TRUE(runUntil([&] { return rec.done(); }));
    ASSERT_TRUE(rec.completed) << rec.status.toString();
    EXPECT_EQ(rec.body, "second address");
    EXPECT_EQ(rec.response->attempts, 1);
  }
  EXPECT_EQ(other.requests().size(), 0u);
  EXPECT_EQ(slotOf(*limits_, "named")->connections.load(), 1);  // the failed tries gave theirs back
}

TEST_F(OriginClientTest, NameWhoseAddressesAllRefuseFailsOverToTheNextOrigin) {
  ScriptedOrigin other([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send(ok("other origin"));
    return true;
  });
  HostsFile hosts("127.0.0.2 dead.test\n127.0.0.3 dead.test\n");
  conf::OriginConfig o = originAt(closedPort(), "named");
  o.host = "dead.test";
  const conf::Config config = configWith({o, originAt(other.port(), "other")});
  health_ = std::make_shared<OriginHealth>(config);
  base_ = event_base_new();
  limits_ = std::make_shared<OriginLimits>();
  client_ = std::make_unique<OriginClient>(base_, health_, nullptr, limits_);
  client_->setHostsFile(hosts.path);
  Recorder rec;
  fetch(config, rec);
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  ASSERT_TRUE(rec.completed) << rec.status.toString();
  EXPECT_EQ(rec.body, "other origin");
  EXPECT_EQ(rec.response->attempts, 2);
  EXPECT_EQ(slotOf(*limits_, "named")->connections.load(), 0);
}

// A real DNS server on 127.0.0.1: a TTL of 0 (never cached) and a name that does not resolve
// each cost a bounded number of questions per fetch, never a loop of lookups.
TEST_F(OriginClientTest, ATtlOfZeroAndAnUnknownNameAskTheServerABoundedNumberOfTimes) {
  test::DnsServer dns;
  dns.set("zero.test", {"127.0.0.1"}, 0);
  ScriptedOrigin origin([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send(ok("by name"));
    return true;
  });
  ScriptedOrigin other([](ScriptedOrigin::Conn& c, const std::string&, int, int) {
    c.send(ok("other origin"));
    return true;
  });
  conf::OriginConfig named = originAt(origin.port(), "named");
  named.host = "zero.test";
  conf::Config config = configWith({named, originAt(other.port(), "other")});
  config.dns.nameservers = {dns.address()};
  config.dns.hosts_file = "";
  health_ = std::make_shared<OriginHealth>(config);
  base_ = event_base_new();
  limits_ = std::make_shared<OriginLimits>();
  client_ = std::make_unique<OriginClient>(base_, health_, nullptr, limits_);
  for (int i = 0; i < 3; ++i) {
    Recorder rec;
    fetch(config, rec);
    ASSERT_TRUE(runUntil([&] { return rec.done(); }));
    ASSERT_TRUE(rec.completed) << rec.status.toString();
    EXPECT_EQ(rec.body, "by name");
  }
  // At most two lookups per fetch (before a pooled connection, then for a new one).
  EXPECT_LE(dns.questions("zero.test", "A"), 6);
  EXPECT_EQ(other.requests().size(), 0u);

  // A name that does not resolve: the fetch fails over at once, after one lookup.
  conf::OriginConfig missing = originAt(origin.port(), "missing");
  missing.host = "missing.test";
  conf::Config config2 = configWith({missing, originAt(other.port(), "other")});
  config2.dns = config.dns;
  Recorder rec;
  fetch(config2, rec);
  ASSERT_TRUE(runUntil([&] { return rec.done(); }));
  ASSERT_TRUE(rec.completed) << rec.status.toString();
  EXPECT_EQ(rec.body, "other origin");
  EXPECT_LE(dns.questions("missing.test", "A"), 2);
}

}  // namespace
}  // namespace streamedge::proxy
