// Device: alignment and bounds are checked before any byte moves, I/O is counted, a file store
// is created at its full size, and O_DIRECT falls back to buffered I/O where refused.
#include "cache/ssd_device.h"

#include <gtest/gtest.h>
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

TEST(FileDevice, DirectIoRefusedFallsBackToBufferedWithALogLine) {
  struct stat st{};
  if (::stat("/dev/shm", &st) != 0) GTEST_SKIP() << "no /dev/shm (tmpfs) here";
  TempDir dir("/dev/shm");
  if (!dir.ok()) GTEST_SKIP() << "cannot create a directory in /dev/shm";
  std::vector<std::string> lines;
  FileDeviceOptions o;
  o.path = dir.file("store");
  o.size_bytes = 64 * 1024;
  o.log = [&](std::string_view l) { lines.emplace_back(l); };
  auto dev = FileDevice::open(o);
  ASSERT_TRUE(dev.isOk()) << dev.status().toString();
  if ((*dev)->directIo()) GTEST_SKIP() << "/dev/shm accepts O_DIRECT on this kernel";
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("buffered"), std::string::npos) << lines[0];
  AlignedBuffer buf(4096, 4096);
  std::memset(buf.data(), 1, 4096);
  EXPECT_TRUE((*dev)->write(0, buf.data(), 4096).isOk());
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

}  // namespace
}  // namespace streamedge::cache
