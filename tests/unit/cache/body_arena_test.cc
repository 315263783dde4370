// The shared-memory arena for body blocks (cache/body_arena.h): blocks are reachable both through
// the mapping and through (fd, offset); a freed block's pages go back to the kernel, and bytes a
// socket took by reference (sendfile) stay the old bytes even when the block is handed out again
// and rewritten; slabs come and go with use; Body hands out file runs for whole blocks only.
#include "cache/body_arena.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "cache/object.h"

namespace streamedge::cache {
namespace {

constexpr size_t kBlock = Body::kBlockBytes;

std::string readAt(int fd, uint64_t offset, size_t n) {
  std::string out(n, '\0');
  const ssize_t got = ::pread(fd, out.data(), n, static_cast<off_t>(offset));
  out.resize(got > 0 ? static_cast<size_t>(got) : 0);
  return out;
}

TEST(BodyArena, ABlockIsTheSameBytesThroughTheMappingAndTheFile) {
  BodyArena arena(kBlock, 4 * kBlock);
  ArenaBlock a;
  ASSERT_TRUE(arena.allocate(&a));
  EXPECT_GE(a.fd, 0);
  EXPECT_EQ(a.offset % kBlock, 0u);
  std::memset(a.data, 'x', kBlock);
  std::memcpy(a.data + 1000, "streamedge", 10);
  const std::string back = readAt(a.fd, a.offset, kBlock);
  ASSERT_EQ(back.size(), kBlock);
  EXPECT_EQ(back.compare(1000, 10, "streamedge"), 0);
  EXPECT_EQ(back[0], 'x');
  EXPECT_EQ(arena.blocksInUse(), 1u);
  arena.free(a);
  EXPECT_EQ(arena.blocksInUse(), 0u);
}

TEST(BodyArena, AFreedBlockComesBackWithFreshZeroedPages) {
  BodyArena arena(kBlock, kBlock);  // one block per slab: the same block is handed out again
  ArenaBlock a;
  ASSERT_TRUE(arena.allocate(&a));
  std::memset(a.data, 0x5a, kBlock);
  const int fd = a.fd;
  const uint64_t offset = a.offset;
  arena.free(a);  // the only slab stays
  ArenaBlock b;
  ASSERT_TRUE(arena.allocate(&b));
  EXPECT_EQ(b.fd, fd);
  EXPECT_EQ(b.offset, offset);
  EXPECT_EQ(b.data[0], 0);
  EXPECT_EQ(b.data[kBlock - 1], 0);
  arena.free(b);
}

// A connected loopback TCP pair: the test decides when the receiver reads.
struct TcpPair {
  int sender = -1;
  int receiver = -1;
  TcpPair() {
    // Room for a whole block in flight without the receiver reading (accepted sockets inherit
    // the listener's receive buffer).
    constexpr int kRoom = 1 << 20;
    const int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ::setsockopt(lfd, SOL_SOCKET, SO_RCVBUF, &kRoom, sizeof kRoom);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(lfd, 1) != 0 ||
        ::getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      ::close(lfd);
      return;
    }
    sender = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    ::setsockopt(sender, SOL_SOCKET, SO_SNDBUF, &kRoom, sizeof kRoom);
    const int rc = ::connect(sender, reinterpret_cast<sockaddr*>(&a), sizeof a);
    if (rc == 0 || errno == EINPROGRESS) {
      receiver = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
      pollfd p{sender, POLLOUT, 0};
      ::poll(&p, 1, 2000);  // connected
    }
    ::close(lfd);
  }
  ~TcpPair() {
    if (sender >= 0) ::close(sender);
    if (receiver >= 0) ::close(receiver);
  }
};

TEST(BodyArena, BytesASocketTookByReferenceSurviveTheBlockBeingFreedAndRewritten) {
  BodyArena arena(kBlock, kBlock);
  TcpPair pair;
  ASSERT_GE(pair.receiver, 0);
  ArenaBlock a;
  ASSERT_TRUE(arena.allocate(&a));
  for (size_t i = 0; i < kBlock; ++i) a.data[i] = static_cast<uint8_t>(i * 7 + 3);
  const std::string original(reinterpret_cast<const char*>(a.data), kBlock);
  // Into the socket by page reference; the receiver has not read a byte yet.
  off_t off = static_cast<off_t>(a.offset);
  size_t sent = 0;
  for (int calls = 0; calls < 64 && sent < kBlock; ++calls) {
    const ssize_t n = ::sendfile(pair.sender, a.fd, &off, kBlock - sent);
    if (n < 0 && errno == EAGAIN) {
      pollfd p{pair.sender, POLLOUT, 0};
      ::poll(&p, 1, 100);
      continue;
    }
    ASSERT_GT(n, 0) << std::strerror(errno);
    sent += static_cast<size_t>(n);
  }
  ASSERT_EQ(sent, kBlock);
  // Freed and handed out again (the same block: one per slab), and overwritten.
  arena.free(a);
  ArenaBlock b;
  ASSERT_TRUE(arena.allocate(&b));
  ASSERT_EQ(b.offset, a.offset);
  std::memset(b.data, 0xee, kBlock);
  std::string got;
  char buf[65536];
  for (int reads = 0; reads < 1000 && got.size() < kBlock; ++reads) {
    pollfd p{pair.receiver, POLLIN, 0};
    if (::poll(&p, 1, 2000) <= 0) break;
    const ssize_t n = ::recv(pair.receiver, buf, sizeof buf, 0);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  ASSERT_EQ(got.size(), kBlock);
  EXPECT_TRUE(got == original) << "the socket sent bytes written after the block was freed";
  arena.free(b);
}

TEST(BodyArena, SlabsAreAddedWhenFullAndDroppedWhenEmptyButOneStays) {
  BodyArena arena(kBlock, 2 * kBlock);
  std::vector<ArenaBlock> blocks(5);
  for (auto& b : blocks) ASSERT_TRUE(arena.allocate(&b));
  EXPECT_EQ(arena.slabs(), 3u);
  EXPECT_EQ(arena.blocksInUse(), 5u);
  for (auto& b : blocks) arena.free(b);
  EXPECT_EQ(arena.blocksInUse(), 0u);
  EXPECT_EQ(arena.slabs(), 1u);
  ArenaBlock again;
  ASSERT_TRUE(arena.allocate(&again));  // the kept slab (or a new one) serves
  EXPECT_EQ(arena.slabs(), 1u);
  arena.free(again);
}

TEST(BodyArena, ABodyHandsOutFileRunsForWholeBlocksOnlyAndPinsOutliveIt) {
  const bool was = bodyArenaEnabled();
  setBodyArenaEnabled(true);
  const uint64_t in_use = bodyArena().blocksInUse();
  const size_t size = 2 * kBlock + 1000;  // two whole blocks and a 1000-byte tail block
  std::string bytes(size, '\0');
  for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<char>('a' + i % 26);
  void* pin = nullptr;
  Body::FileRun file;
  {
    Ref<Body> body = Ref<Body>::make(std::optional<uint64_t>(size));
    body->append(reinterpret_cast<const uint8_t*>(bytes.data()), size);
    body->freeze();
    EXPECT_EQ(bodyArena().blocksInUse(), in_use + 2);
    const uint8_t* data = nullptr;
    // Inside the second block: the run's file offset is the block's plus the offset in it.
    const size_t n = body->peekPinned(kBlock + 100, &data, &pin, &file);
    ASSERT_EQ(n, kBlock - 100);
    ASSERT_GE(file.fd, 0);
    EXPECT_EQ(readAt(file.fd, file.offset, 26), bytes.substr(kBlock + 100, 26));
    EXPECT_EQ(std::memcmp(data, bytes.data() + kBlock + 100, 26), 0);
    // The tail block is sized to the body and lives on the heap: no file run.
    void* tail_pin = nullptr;
    Body::FileRun tail;
    EXPECT_EQ(body->peekPinned(2 * kBlock, &data, &tail_pin, &tail), 1000u);
    EXPECT_EQ(tail.fd, -1);
    Body::unpin(tail_pin);
  }
  // The body is gone; the pinned block is not.
  EXPECT_EQ(bodyArena().blocksInUse(), in_use + 1);
  EXPECT_EQ(readAt(file.fd, file.offset, 26), bytes.substr(kBlock + 100, 26));
  Body::unpin(pin);
  EXPECT_EQ(bodyArena().blocksInUse(), in_use);
  setBodyArenaEnabled(was);
}

TEST(BodyArena, WithTheArenaOffBodiesUseTheHeap) {
  const bool was = bodyArenaEnabled();
  setBodyArenaEnabled(false);
  const uint64_t in_use = bodyArena().blocksInUse();
  Ref<Body> body = Ref<Body>::make(std::optional<uint64_t>(kBlock));
  const std::string bytes(kBlock, 'q');
  body->append(reinterpret_cast<const uint8_t*>(bytes.data()), kBlock);
  EXPECT_EQ(bodyArena().blocksInUse(), in_use);
  const uint8_t* data = nullptr;
  void* pin = nullptr;
  Body::FileRun file;
  EXPECT_EQ(body->peekPinned(0, &data, &pin, &file), kBlock);
  EXPECT_EQ(file.fd, -1);
  Body::unpin(pin);
  setBodyArenaEnabled(was);
}

}  // namespace
}  // namespace streamedge::cache
