// One conformance suite for every IoEngine backend (io_uring and the pread/pwrite pool), on a
// real file through the real engine: bytes round-trip, callbacks run only from poll(), the
// completion fd wakes a loop, more requests than the queue depth all complete, bad requests
// are refused up front, and destruction with I/O in flight is safe.
#include "cache/ssd_io_engine.h"

#include <gtest/gtest.h>
#include <poll.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tests/unit/cache/ssd_test_util.h"

namespace streamedge::cache {
namespace {

using namespace std::chrono_literals;
using testing::TempDir;

constexpr uint64_t kDeviceBytes = 1024 * 1024;

std::unique_ptr<IoEngine> makeEngine(const std::string& backend, Device& dev, unsigned depth) {
  Result<std::unique_ptr<IoEngine>> r =
      backend == "io_uring" ? makeUringEngine(dev, depth) : makeThreadPoolEngine(dev, 2);
  return r.isOk() ? std::move(*r) : nullptr;
}

class IoEngineConformance : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(dir_.ok());
    FileDeviceOptions o;
    o.path = dir_.file("store");
    o.size_bytes = kDeviceBytes;
    auto dev = FileDevice::open(o);
    ASSERT_TRUE(dev.isOk()) << dev.status().toString();
    device_ = std::move(*dev);
    engine_ = makeEngine(GetParam(), *device_, 8);
    if (!engine_) GTEST_SKIP() << GetParam() << " unavailable here";
  }

  // Polls until `done` or a 5 s deadline.
  void waitFor(const bool& done) {
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (!done && std::chrono::steady_clock::now() < deadline) engine_->wait(100ms);
    ASSERT_TRUE(done) << "no completion within 5 s";
  }

  TempDir dir_;
  std::unique_ptr<FileDevice> device_;
  std::unique_ptr<IoEngine> engine_;
};

TEST_P(IoEngineConformance, ReportsItsBackend) {
  EXPECT_EQ(std::string(engine_->backendName()), GetParam());
  EXPECT_GE(engine_->completionFd(), 0);
}

TEST_P(IoEngineConformance, WrittenBytesReadBack) {
  AlignedBuffer in(16384, 4096), out(16384, 4096);
  for (size_t i = 0; i < in.size(); ++i) in.data()[i] = static_cast<uint8_t>(i * 31 + 7);
  bool wrote = false, read = false;
  Status ws, rs;
  ASSERT_TRUE(engine_->write(32768, in.data(), in.size(), [&](Status s) { ws = s; wrote = true; }).isOk());
  waitFor(wrote);
  ASSERT_TRUE(ws.isOk()) << ws.toString();
  ASSERT_TRUE(engine_->read(32768, out.data(), out.size(), [&](Status s) { rs = s; read = true; }).isOk());
  waitFor(read);
  ASSERT_TRUE(rs.isOk()) << rs.toString();
  EXPECT_EQ(std::memcmp(in.data(), out.data(), in.size()), 0);
  const DeviceStats st = device_->stats();
  EXPECT_EQ(st.writes, 1u);
  EXPECT_EQ(st.reads, 1u);
  EXPECT_EQ(st.read_bytes, 16384u);
}

TEST_P(IoEngineConformance, CallbacksRunOnlyFromPoll) {
  AlignedBuffer buf(4096, 4096);
  bool done = false;
  ASSERT_TRUE(engine_->read(0, buf.data(), 4096, [&](Status) { done = true; }).isOk());
  EXPECT_FALSE(done);  // never from inside read()
  EXPECT_EQ(engine_->pending(), 1u);
  // The completion fd becomes readable: what a libevent EV_READ event waits for.
  struct pollfd pfd{engine_->completionFd(), POLLIN, 0};
  ASSERT_EQ(::poll(&pfd, 1, 5000), 1);
  EXPECT_FALSE(done);
  waitFor(done);
  EXPECT_EQ(engine_->pending(), 0u);
}

TEST_P(IoEngineConformance, MoreRequestsThanTheQueueDepthAllComplete) {
  constexpr int kOps = 100;  // queue depth 8
  std::vector<AlignedBuffer> bufs;
  for (int i = 0; i < kOps; ++i) {
    bufs.emplace_back(4096, 4096);
    std::memset(bufs.back().data(), i, 4096);
  }
  int completed = 0, failed = 0;
  for (int i = 0; i < kOps; ++i) {
    ASSERT_TRUE(engine_->write(uint64_t(i) * 4096, bufs[i].data(), 4096, [&](Status s) {
      ++completed;
      if (!s.isOk()) ++failed;
    }).isOk());
  }
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (completed < kOps && std::chrono::steady_clock::now() < deadline) engine_->wait(100ms);
  ASSERT_EQ(completed, kOps);
  EXPECT_EQ(failed, 0);
  // Read them all back concurrently and check each block's fill byte.
  std::vector<AlignedBuffer> outs;
  for (int i = 0; i < kOps; ++i) outs.emplace_back(4096, 4096);
  completed = 0;
  for (int i = 0; i < kOps; ++i) {
    ASSERT_TRUE(engine_->read(uint64_t(i) * 4096, outs[i].data(), 4096, [&](Status s) {
      ++completed;
      if (!s.isOk()) ++failed;
    }).isOk());
  }
  while (completed < kOps && std::chrono::steady_clock::now() < deadline) engine_->wait(100ms);
  ASSERT_EQ(completed, kOps);
  EXPECT_EQ(failed, 0);
  for (int i = 0; i < kOps; ++i) {
    EXPECT_EQ(outs[i].data()[0], static_cast<uint8_t>(i));
    EXPECT_EQ(outs[i].data()[4095], static_cast<uint8_t>(i));
  }
}

TEST_P(IoEngineConformance, BadRequestsAreRefusedWithoutACallback) {
  AlignedBuffer buf(8192, 4096);
  bool called = false;
  auto cb = [&](Status) { called = true; };
  EXPECT_EQ(engine_->read(1, buf.data(), 4096, cb).code(), Code::kInvalid);
  EXPECT_EQ(engine_->read(0, buf.data() + 1, 4096, cb).code(), Code::kInvalid);
  EXPECT_EQ(engine_->read(0, buf.data(), 100, cb).code(), Code::kInvalid);
  EXPECT_EQ(engine_->write(kDeviceBytes, buf.data(), 4096, cb).code(), Code::kInvalid);
  EXPECT_EQ(engine_->pending(), 0u);
  engine_->poll();
  EXPECT_FALSE(called);
}

TEST_P(IoEngineConformance, PostedCallbacksRunFromTheNextPoll) {
  bool ran = false;
  engine_->post([&](Status s) { ran = s.isOk(); });
  EXPECT_FALSE(ran);
  struct pollfd pfd{engine_->completionFd(), POLLIN, 0};
  ASSERT_EQ(::poll(&pfd, 1, 1000), 1);
  EXPECT_EQ(engine_->poll(), 1u);
  EXPECT_TRUE(ran);
}

TEST_P(IoEngineConformance, ACallbackMayStartTheNextIo) {
  AlignedBuffer a(4096, 4096), b(4096, 4096);
  std::memset(a.data(), 0xab, 4096);
  bool second = false;
  ASSERT_TRUE(engine_->write(0, a.data(), 4096, [&](Status s) {
    ASSERT_TRUE(s.isOk());
    ASSERT_TRUE(engine_->read(0, b.data(), 4096, [&](Status s2) { second = s2.isOk(); }).isOk());
  }).isOk());
  waitFor(second);
  EXPECT_EQ(b.data()[100], 0xab);
}

TEST_P(IoEngineConformance, DestructionWithIoInFlightIsSafe) {
  // The buffers belong to the callbacks: the engine must not free them under the kernel.
  bool called = false;
  for (int i = 0; i < 32; ++i) {
    auto buf = std::make_shared<AlignedBuffer>(65536, 4096);
    ASSERT_TRUE(engine_->read(uint64_t(i % 16) * 65536, buf->data(), 65536,
                              [buf, &called](Status) { called = true; }).isOk());
  }
  engine_.reset();
  EXPECT_FALSE(called);
}

INSTANTIATE_TEST_SUITE_P(Backends, IoEngineConformance, ::testing::Values("io_uring", "threads"),
                         [](const auto& info) { return info.param == "io_uring" ? std::string("IoUring") : std::string("Threads"); });

TEST(IoEngineFactory, AutoFallsBackToThreadsAndSaysSo) {
  MemoryDevice dev(64 * 1024);  // no fd: io_uring cannot serve it
  std::vector<std::string> lines;
  IoEngineOptions o;
  o.log = [&](std::string_view l) { lines.emplace_back(l); };
  auto e = makeIoEngine(dev, o);
  ASSERT_TRUE(e.isOk());
  EXPECT_STREQ((*e)->backendName(), "threads");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("thread pool"), std::string::npos) << lines[0];
}

TEST(IoEngineFactory, ForcedIoUringIsAnErrorWhereUnavailable) {
  MemoryDevice dev(64 * 1024);
  IoEngineOptions o;
  o.backend = conf::IoBackend::kIoUring;
  o.log = nullptr;
  auto e = makeIoEngine(dev, o);
  ASSERT_FALSE(e.isOk());
  EXPECT_EQ(e.status().code(), Code::kUnavailable);
}

TEST(IoEngineFactory, ForcedThreadsUsesThePool) {
  TempDir dir;
  FileDeviceOptions fo;
  fo.path = dir.file("store");
  fo.size_bytes = 64 * 1024;
  auto dev = FileDevice::open(fo);
  ASSERT_TRUE(dev.isOk());
  IoEngineOptions o;
  o.backend = conf::IoBackend::kThreads;
  auto e = makeIoEngine(**dev, o);
  ASSERT_TRUE(e.isOk());
  EXPECT_STREQ((*e)->backendName(), "threads");
}

}  // namespace
}  // namespace streamedge::cache
