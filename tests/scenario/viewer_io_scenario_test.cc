// The plaintext viewer I/O path (proxy/client_connection.cc): responses are written at once when
// the socket takes them, the write event is armed only when it does not, and reads go through
// the connection's own read event. These tests drive the slow paths with real sockets: a
// viewer whose receive buffer is tiny (the first write hits EAGAIN), a viewer that stops
// reading mid-body and comes back, a burst of pipelined requests, and a request head that
// arrives a few bytes at a time.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "tests/scenario/scenario_env.h"

namespace streamedge::scenario {
namespace {

using Clock = std::chrono::steady_clock;

// A raw viewer socket with a chosen receive buffer, so that the test decides when bytes are read.
class RawViewer {
 public:
  RawViewer(uint16_t port, int rcvbuf) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return;
    if (rcvbuf > 0) {
      // Beyond net.core.rmem_max only with privilege (CI runs as root); else the plain limit.
      if (::setsockopt(fd_, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) != 0) {
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
      }
    }
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~RawViewer() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool ok() const { return fd_ >= 0; }
  bool send(const std::string& bytes) {
    size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (n <= 0) return false;
      done += static_cast<size_t>(n);
    }
    return true;
  }
  // Reads until `want` bytes are in `out` in all, the peer closes, or `timeout` passes.
  void readUntil(std::string& out, size_t want, std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    char buf[65536];
    while (out.size() < want && Clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (::poll(&p, 1, static_cast<int>(std::max<int64_t>(1, left.count()))) <= 0) continue;
      const size_t room = std::min(sizeof buf, want - out.size());
      const ssize_t n = ::recv(fd_, buf, room, 0);
      if (n <= 0) return;
      out.append(buf, static_cast<size_t>(n));
    }
  }

 private:
  int fd_ = -1;
};

// The head's length (through the empty line) in `bytes`, or 0 when it is not complete.
size_t headLength(const std::string& bytes) {
  const size_t end = bytes.find("\r\n\r\n");
  return end == std::string::npos ? 0 : end + 4;
}

std::string request(const std::string& target) {
  return "GET " + target + " HTTP/1.1\r\nHost: edge\r\n\r\n";
}

class ViewerIoTest : public ScenarioTest {
 protected:
  // A cached object of `size` bytes at `path` (one miss, then a hit to be sure).
  void cache(const std::string& path, size_t size) {
    const std::string target = path + "?size=" + std::to_string(size);
    ASSERT_EQ(get(target).status, 200);
    const HttpResponse hit = get(target);
    ASSERT_EQ(hit.status, 200);
    ASSERT_EQ(hit.header("X-Cache"), "HIT");
  }
};

TEST_F(ViewerIoTest, AViewerWithATinyReceiveBufferGetsEveryByteOfAHit) {
  constexpr size_t kSize = 2 * 1024 * 1024;
  cache("/obj/io/tiny.ts", kSize);
  RawViewer v(port(), 4096);
  ASSERT_TRUE(v.ok());
  ASSERT_TRUE(v.send(request("/obj/io/tiny.ts?size=" + std::to_string(kSize))));
  // Nothing is read for a while: the edge's first write fills the socket and the rest waits
  // for the write event.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  std::string got;
  v.readUntil(got, 64 * 1024, std::chrono::seconds(10));
  const size_t head = headLength(got);
  ASSERT_GT(head, 0u) << got.substr(0, 200);
  ASSERT_NE(got.find("Content-Length: " + std::to_string(kSize)), std::string::npos);
  v.readUntil(got, head + kSize, std::chrono::seconds(20));
  ASSERT_EQ(got.size(), head + kSize);
  EXPECT_TRUE(got.compare(head, kSize, testsupport::simBody("/obj/io/tiny.ts", kSize)) == 0);
  // The connection is still good for the next request.
  ASSERT_TRUE(v.send(request("/obj/io/tiny.ts?size=" + std::to_string(kSize))));
  std::string again;
  v.readUntil(again, head + kSize, std::chrono::seconds(20));
  EXPECT_EQ(again.size(), head + kSize);
}

TEST_F(ViewerIoTest, AViewerThatStopsReadingMidBodyAndComesBackGetsTheRestExactly) {
  constexpr size_t kSize = 6 * 1024 * 1024;
  cache("/obj/io/pause.ts", kSize);
  RawViewer v(port(), 16 * 1024);
  ASSERT_TRUE(v.ok());
  ASSERT_TRUE(v.send(request("/obj/io/pause.ts?size=" + std::to_string(kSize))));
  std::string got;
  v.readUntil(got, 300 * 1024, std::chrono::seconds(10));
  ASSERT_GE(got.size(), 300u * 1024);
  // Away for 1.5 s (within the send timeout), then back.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const size_t head = headLength(got);
  ASSERT_GT(head, 0u);
  v.readUntil(got, head + kSize, std::chrono::seconds(20));
  ASSERT_EQ(got.size(), head + kSize);
  EXPECT_TRUE(got.compare(head, kSize, testsupport::simBody("/obj/io/pause.ts", kSize)) == 0);
}

TEST_F(ViewerIoTest, FortyPipelinedRequestsInOneWriteAreAnsweredInOrder) {
  constexpr int kRequests = 40;  // more than the responses written inside one callback
  for (int i = 0; i < 4; ++i) cache("/obj/io/pipe" + std::to_string(i) + ".m3u8", 1000 + 100 * i);
  RawViewer v(port(), 0);
  ASSERT_TRUE(v.ok());
  std::string burst;
  std::vector<std::string> bodies;
  for (int i = 0; i < kRequests; ++i) {
    const int k = i % 4;
    const std::string path = "/obj/io/pipe" + std::to_string(k) + ".m3u8";
    burst += request(path + "?size=" + std::to_string(1000 + 100 * k));
    bodies.push_back(testsupport::simBody(path, 1000 + 100 * k));
  }
  ASSERT_TRUE(v.send(burst));
  std::string got;
  // Read until every response head and body has arrived (bounded by the deadline).
  const auto deadline = Clock::now() + std::chrono::seconds(15);
  size_t at = 0;
  int answered = 0;
  while (answered < kRequests && Clock::now() < deadline) {
    v.readUntil(got, got.size() + 1, std::chrono::milliseconds(200));
    while (answered < kRequests) {
      const size_t end = got.find("\r\n\r\n", at);
      if (end == std::string::npos) break;
      const size_t body_at = end + 4;
      const std::string& body = bodies[static_cast<size_t>(answered)];
      if (got.size() < body_at + body.size()) break;
      EXPECT_EQ(got.compare(at, 15, "HTTP/1.1 200 OK"), 0) << answered;
      EXPECT_TRUE(got.compare(body_at, body.size(), body) == 0) << "response " << answered;
      at = body_at + body.size();
      ++answered;
    }
  }
  EXPECT_EQ(answered, kRequests);
  EXPECT_EQ(got.size(), at) << "nothing after the last response";
}

TEST_F(ViewerIoTest, ARequestHeadArrivingAFewBytesAtATimeIsServed) {
  cache("/obj/io/slowhead.m3u8", 2048);
  RawViewer v(port(), 0);
  ASSERT_TRUE(v.ok());
  const std::string req = request("/obj/io/slowhead.m3u8?size=2048");
  // 7 bytes every 20 ms: about 1 s in all, well inside the header timeout.
  for (size_t i = 0; i < req.size(); i += 7) {
    ASSERT_TRUE(v.send(req.substr(i, 7)));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::string got;
  v.readUntil(got, 4096, std::chrono::seconds(5));
  const size_t head = headLength(got);
  ASSERT_GT(head, 0u) << got;
  EXPECT_EQ(got.compare(0, 15, "HTTP/1.1 200 OK"), 0) << got.substr(0, 100);
  ASSERT_EQ(got.size(), head + 2048);
  EXPECT_TRUE(got.compare(head, 2048, testsupport::simBody("/obj/io/slowhead.m3u8", 2048)) == 0);
}

// A listener without h2c (the default) reads the HTTP/2 preface as what it is in HTTP/1.1: a
// request it refuses, and the connection is closed.
TEST_F(ViewerIoTest, TheHttp2PrefaceOnAListenerWithoutH2cIsRefusedAsHttp11) {
  RawViewer v(port(), 0);
  ASSERT_TRUE(v.ok());
  ASSERT_TRUE(v.send(std::string("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")));
  std::string got;
  v.readUntil(got, 1 << 16, std::chrono::seconds(5));
  ASSERT_GE(got.size(), 12u) << got;
  EXPECT_EQ(got.compare(0, 9, "HTTP/1.1 "), 0) << got;
  EXPECT_TRUE(got[9] == '4' || got[9] == '5') << got;
  EXPECT_NE(got.find("Connection: close"), std::string::npos) << got;
}

// Whole body blocks go out with sendfile (cache/body_arena.h): the socket holds references to
// their pages, not copies. A viewer asks for a hit and reads nothing while the edge hands the
// whole answer to its socket and finishes the response; the object is then purged (its blocks
// are freed) and other objects are written into the freed blocks. When the viewer reads, every
// byte must still be the first object's.
TEST_F(ViewerIoTest, BytesQueuedBySendfileStayRightWhenTheirBlocksAreFreedAndReused) {
  constexpr size_t kSize = 1024 * 1024;  // four whole blocks
  const std::string path = "/obj/io/freed.ts";
  cache(path, kSize);
  // Its four whole blocks are in shared memory.
  EXPECT_GE(metricValue(testsupport::httpGet(proxy_->admin_port, "/metrics").body,
                        "streamedge_body_shared_memory_bytes"),
            static_cast<double>(kSize));
  RawViewer v(port(), 4 * 1024 * 1024);  // the whole answer fits in the two socket buffers
  ASSERT_TRUE(v.ok());
  ASSERT_TRUE(v.send(request(path + "?size=" + std::to_string(kSize))));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the edge sends it all
  const HttpResponse purged = testsupport::httpRequest(
      proxy_->admin_port, "POST", "/purge?host=*&prefix=/obj/io/freed", {},
      std::chrono::seconds(10));
  ASSERT_EQ(purged.status, 200) << purged.body;
  for (int i = 0; i < 4; ++i) cache("/obj/io/refill" + std::to_string(i) + ".ts", kSize);
  std::string got;
  v.readUntil(got, 4096, std::chrono::seconds(10));
  const size_t head = headLength(got);
  ASSERT_GT(head, 0u);
  v.readUntil(got, head + kSize, std::chrono::seconds(20));
  ASSERT_EQ(got.size(), head + kSize);
  EXPECT_TRUE(got.compare(head, kSize, testsupport::simBody(path, kSize)) == 0)
      << "bytes in the socket changed after their block was freed";
  EXPECT_EQ(get(path + "?size=" + std::to_string(kSize)).header("X-Cache"), "MISS");  // purged
}

// [cache.ram] sendfile = false: heap blocks, sent by copy; the same bytes arrive.
TEST_F(ViewerIoTest, WithSendfileOffHitsAreSentByCopyAndArriveWhole) {
  start("", "64MiB", "", "sendfile = false");
  constexpr size_t kSize = 3 * 1024 * 1024 + 123;
  cache("/obj/io/copied.ts", kSize);
  RawViewer v(port(), 8192);
  ASSERT_TRUE(v.ok());
  ASSERT_TRUE(v.send(request("/obj/io/copied.ts?size=" + std::to_string(kSize))));
  std::string got;
  v.readUntil(got, 4096, std::chrono::seconds(10));
  const size_t head = headLength(got);
  ASSERT_GT(head, 0u);
  v.readUntil(got, head + kSize, std::chrono::seconds(20));
  ASSERT_EQ(got.size(), head + kSize);
  EXPECT_TRUE(got.compare(head, kSize, testsupport::simBody("/obj/io/copied.ts", kSize)) == 0);
  EXPECT_EQ(metricValue(testsupport::httpGet(proxy_->admin_port, "/metrics").body,
                        "streamedge_body_shared_memory_bytes"),
            0.0);
}

}  // namespace
}  // namespace streamedge::scenario
