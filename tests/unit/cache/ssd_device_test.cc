// Device: alignment and bounds are checked before any byte moves, I/O is counted, a file store
// is created at its full size, and O_DIRECT falls back to buffered I/O where refused.
#include "cache/ssd_device.h"

#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "tests/unit/cache/ssd_test_util.h"

namespace streamedge::cache {
namespace {

using testing::TempDir;

TEST(MemoryDevice, MisalignedOrOutOfBoundsIoIsRefusedBeforeAnyByteMoves) {
  MemoryDevice dev(64 * 1024);
  AlignedBuffer buf(8192, 4096);
  EXPECT_EQ(dev.write(100, buf.data(), 4096).code(), Code::kInvalid);      // offset
  EXPECT_EQ(dev.write(0, buf.data(), 100).code(), Code::kInvalid);         // length
  EXPECT_EQ(dev.write(0, buf.data() + 8, 4096).code(), Code::kInvalid);    // buffer
  EXPECT_EQ(dev.read(64 * 1024, buf.data(), 4096).code(), Code::kInvalid); // past the end
  EXPECT_EQ(dev.read(60 * 1024, buf.data(), 8192).code(), Code::kInvalid); // straddles the end
  EXPECT_EQ(dev.read(0, buf.data(), 0).code(), Code::kInvalid);
  const DeviceStats s = dev.stats();
  EXPECT_EQ(s.reads + s.writes + s.errors, 0u);
}

TEST(MemoryDevice, RoundTripsAndCounts) {
  MemoryDevice dev(64 * 1024);
  AlignedBuffer in(4096, 4096), out(4096, 4096);
  for (size_t i = 0; i < 4096; ++i) in.data()[i] = static_cast<uint8_t>(i * 7);
  ASSERT_TRUE(dev.write(8192, in.data(), 4096).isOk());
  ASSERT_TRUE(dev.read(8192, out.data(), 4096).isOk());
  EXPECT_EQ(std::memcmp(in.data(), out.data(), 4096), 0);
  const DeviceStats s = dev.stats();
  EXPECT_EQ(s.writes, 1u);
  EXPECT_EQ(s.reads, 1u);
  EXPECT_EQ(s.written_bytes, 4096u);
  EXPECT_EQ(s.read_bytes, 4096u);
  EXPECT_EQ(dev.fd(), -1);
}

TEST(FileDevice, IsCreatedPreallocatedAtItsFullSize) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  FileDeviceOptions o;
  o.path = dir.file("store");
  o.size_bytes = 1024 * 1024 + 100;  // rounded down to the alignment
  auto dev = FileDevice::open(o);
  ASSERT_TRUE(dev.isOk()) << dev.status().toString();
  EXPECT_EQ((*dev)->size(), 1024u * 1024u);
  struct stat st{};
  ASSERT_EQ(::stat(o.path.c_str(), &st), 0);
  EXPECT_GE(static_cast<uint64_t>(st.st_size), 1024u * 1024u);
  EXPECT_GE(static_cast<uint64_t>(st.st_blocks) * 512, 1024u * 1024u) << "not preallocated";
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "the store must not be readable by others";
  EXPECT_GE((*dev)->fd(), 0);
}

TEST(FileDevice, RoundTripsWithAndWithoutDirectIo) {
  TempDir dir;
  for (bool direct : {true, false}) {
    FileDeviceOptions o;
    o.path = dir.file(direct ? "direct" : "buffered");
    o.size_bytes = 64 * 1024;
    o.direct_io = direct;
    auto dev = FileDevice::open(o);
    ASSERT_TRUE(dev.isOk());
    if (!direct) {
      EXPECT_FALSE((*dev)->directIo());
    }
    AlignedBuffer in(16384, 4096), out(16384, 4096);
    for (size_t i = 0; i < in.size(); ++i) in.data()[i] = static_cast<uint8_t>(i ^ 0x5a);
    ASSERT_TRUE((*dev)->write(16384, in.data(), in.size()).isOk());
    ASSERT_TRUE((*dev)->read(16384, out.data(), out.size()).isOk());
    EXPECT_EQ(std::memcmp(in.data(), out.data(), in.size()), 0);
    std::printf("[          ] %s\n", (*dev)->describe().c_str());
  }
}

// A large read buffer (an SSD entry of a 2 MiB segment and its head) starts on a huge page
// boundary, so the kernel can back it with huge pages; every byte of it is usable, O_DIRECT reads
// into it, also when it is a freed one handed out again (the mapping cache).
TEST(AlignedBuffer, LargeBuffersStartOnAHugePageAndTakeDirectIo) {
  const size_t len = (2u << 20) + 8192;
  const size_t huge = hugePageBytes();
  TempDir dir;
  FileDeviceOptions o;
  o.path = dir.file("store");
  o.size_bytes = 4u << 20;
  auto dev = FileDevice::open(o);
  ASSERT_TRUE(dev.isOk()) << dev.status().toString();
  AlignedBuffer in(len, 4096);
  for (size_t i = 0; i < len; ++i) in.data()[i] = static_cast<uint8_t>(i * 31 + (i >> 12));
  ASSERT_TRUE((*dev)->write(4096, in.data(), len).isOk());
  for (int round = 0; round < 2; ++round) {
    AlignedBuffer out(len, 4096);
    ASSERT_EQ(out.size(), len);
    if (huge != 0) {
      EXPECT_EQ(reinterpret_cast<uintptr_t>(out.data()) % huge, 0u) << "round " << round;
    }
    std::memset(out.data(), 0xee, len);
    ASSERT_TRUE((*dev)->read(4096, out.data(), len).isOk());
    EXPECT_EQ(std::memcmp(in.data(), out.data(), len), 0) << "round " << round;
  }
}

// A freed large buffer is handed to the next one of its size also when the mapping cache was
// full of other sizes: the oldest make room. (A cache full of sizes no read asks for, such as the
// start-up scan's region buffer, once made every SSD read map and zero fresh pages.) A reused
// mapping still holds the bytes written into it; a fresh one is zeroed by the kernel.
TEST(AlignedBuffer, AFreedBufferIsReusedAfterOtherSizesFilledTheCache) {
  {
    std::vector<AlignedBuffer> others;
    // 1.5 MiB each, more of them than the cache keeps (by count and by bytes)
    for (int i = 0; i < 24; ++i) others.emplace_back(size_t{3} << 19, 4096);
  }  // all given back: the cache is full of mappings no larger read can use
  const size_t len = (3u << 20) + 12288;  // a size no other test asks for
  {
    AlignedBuffer first(len, 4096);
    std::memset(first.data(), 0x5a, len);
  }
  AlignedBuffer again(len, 4096);
  EXPECT_EQ(again.data()[0], 0x5a);
  EXPECT_EQ(again.data()[len - 1], 0x5a);
}

// A ramfs mounted on a fresh directory (ramfs has no direct I/O: open(O_DIRECT) fails with
// EINVAL), unmounted again at the end. Needs CAP_SYS_ADMIN (root, as CI runs): ok() is false
// without it.
class RamfsMount {
 public:
  RamfsMount() {
    if (!dir_.ok()) return;
    mounted_ = ::mount("streamedge-test", dir_.path().c_str(), "ramfs", 0, "mode=0700") == 0;
  }
  ~RamfsMount() {
    if (mounted_) ::umount2(dir_.path().c_str(), MNT_DETACH);
  }
  bool ok() const { return mounted_; }
  std::string file(const std::string& name) const { return dir_.file(name); }

 private:
  TempDir dir_;
  bool mounted_ = false;
};

TEST(FileDevice, DirectIoRefusedFallsBackToBufferedWithALogLine) {
  RamfsMount ramfs;
  if (!ramfs.ok()) GTEST_SKIP() << "cannot mount a ramfs here (needs CAP_SYS_ADMIN)";
  std::vector<std::string> lines;
  FileDeviceOptions o;
  o.path = ramfs.file("store");
  o.size_bytes = 64 * 1024;
  o.log = [&](std::string_view l) { lines.emplace_back(l); };
  {
    auto dev = FileDevice::open(o);
    ASSERT_TRUE(dev.isOk()) << dev.status().toString();
    EXPECT_FALSE((*dev)->directIo());
    // One clear line for the fallback (ramfs also cannot preallocate, which is logged apart).
    int fallback_lines = 0;
    for (const std::string& l : lines) {
      if (l.find("O_DIRECT refused") != std::string::npos) {
        ++fallback_lines;
        EXPECT_NE(l.find("buffered I/O"), std::string::npos) << l;
      }
    }
    EXPECT_EQ(fallback_lines, 1) << ::testing::PrintToString(lines);
    // Buffered I/O keeps the device's contract: the same alignment rules, the bytes round-trip.
    AlignedBuffer in(8192, 4096), out(8192, 4096);
    for (size_t i = 0; i < in.size(); ++i) in.data()[i] = static_cast<uint8_t>(i * 13 + 1);
    ASSERT_TRUE((*dev)->write(4096, in.data(), in.size()).isOk());
    ASSERT_TRUE((*dev)->read(4096, out.data(), out.size()).isOk());
    EXPECT_EQ(std::memcmp(in.data(), out.data(), in.size()), 0);
    EXPECT_EQ((*dev)->write(100, in.data(), 4096).code(), Code::kInvalid);
    EXPECT_EQ((*dev)->size(), 64u * 1024u);
  }
}

TEST(FileDevice, ADirectoryIsNotAStore) {
  TempDir dir;
  FileDeviceOptions o;
  o.path = dir.path();
  o.size_bytes = 64 * 1024;
  std::string error;
  auto dev = FileDevice::open(o, &error);
  ASSERT_FALSE(dev.isOk());
  EXPECT_FALSE(error.empty());
}

// A hot upgrade hands the store from one process to the next by closing it first; anything else
// opening it meanwhile (a second instance on the same path) must be refused, not share the log.
TEST(FileDevice, OnlyOneOpenAtATimeHoldsTheStore) {
  TempDir dir;
  FileDeviceOptions o;
  o.path = dir.file("store");
  o.size_bytes = 64 * 1024;
  auto first = FileDevice::open(o);
  ASSERT_TRUE(first.isOk()) << first.status().toString();
  std::string error;
  auto second = FileDevice::open(o, &error);
  ASSERT_FALSE(second.isOk());
  EXPECT_EQ(second.status().code(), Code::kUnavailable);
  EXPECT_NE(error.find("in use by another process"), std::string::npos) << error;
  first->reset();  // closed: the lock goes with it
  auto third = FileDevice::open(o, &error);
  EXPECT_TRUE(third.isOk()) << error;
}

}  // namespace
}  // namespace streamedge::cache
