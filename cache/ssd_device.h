// Device: the byte store under the SSD tier (CacheLib Navy's Device seam). The public read() and
// write() are synchronous, check bounds and alignment, and count; subclasses implement readImpl()
// and writeImpl(). MemoryDevice is a real in-RAM device for unit tests; FileDevice is a
// preallocated file or a block device, opened with O_DIRECT where the file system allows it.
// The asynchronous engines (ssd_io_engine.h) either call read()/write() from their threads or,
// for io_uring, use fd() directly and report through checkIo() and recordIo().
//
// Thread-safety: all methods are thread-safe; concurrent I/O to disjoint ranges is the normal
// case. Ownership: a Device owns its fd or memory.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "conf/status.h"

namespace streamedge::cache {

// Log sink of the SSD tier: one line, without the "streamedge: " prefix or a newline.
using SsdLogFn = std::function<void(std::string_view line)>;
// Writes "streamedge: ssd: <line>" to stderr.
void ssdLogToStderr(std::string_view line);

struct DeviceStats {
  uint64_t reads = 0;
  uint64_t writes = 0;
  uint64_t read_bytes = 0;
  uint64_t written_bytes = 0;
  uint64_t errors = 0;
};

// The size of a transparent huge page (2 MiB on x86-64), 0 when the kernel has none. Read
// buffers from this size on start on a huge page boundary (AlignedBuffer).
size_t hugePageBytes();

// An aligned heap buffer for device I/O (O_DIRECT needs buffer, offset and length aligned).
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  AlignedBuffer(size_t size, size_t alignment);
  AlignedBuffer(AlignedBuffer&& o) noexcept;
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  ~AlignedBuffer();

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

  // From this size on a buffer is its own anonymous mapping, returned to the kernel when freed:
  // SSD read buffers live on inside cached objects for any time, and taking them from the
  // worker's malloc arena left that arena holding hundreds of MiB of free holes between them.
  static constexpr size_t kMapThreshold = 1 << 20;

 private:
  void release();

  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  size_t mapped_ = 0;  // length of the mapping; 0 when the buffer came from malloc
};

class Device {
 public:
  virtual ~Device() = default;
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  uint64_t size() const { return size_; }
  // Offsets, lengths and buffer addresses of every I/O must be multiples of this.
  uint32_t ioAlignment() const { return io_alignment_; }

  // Reads/writes exactly `len` bytes at `offset`. Errors: kInvalid (misaligned or out of
  // bounds: a caller bug, nothing is done), kIo (the device failed or was short).
  Status read(uint64_t offset, void* buf, size_t len);
  Status write(uint64_t offset, const void* buf, size_t len);

  // For engines that bypass read()/write(): the same check, and the same counters.
  Status checkIo(uint64_t offset, const void* buf, size_t len) const;
  void recordIo(bool is_write, size_t bytes, bool ok);

  // The fd for asynchronous engines; -1 when the device is not a file (MemoryDevice).
  virtual int fd() const { return -1; }
  // "memory", "file", "file (buffered)", "block device", for logs and /status.
  virtual std::string describe() const = 0;

  DeviceStats stats() const;

 protected:
  Device(uint64_t size, uint32_t io_alignment) : size_(size), io_alignment_(io_alignment) {}
  virtual Status readImpl(uint64_t offset, void* buf, size_t len) = 0;
  virtual Status writeImpl(uint64_t offset, const void* buf, size_t len) = 0;

 private:
  const uint64_t size_;
  const uint32_t io_alignment_;
  std::atomic<uint64_t> reads_{0};
  std::atomic<uint64_t> writes_{0};
  std::atomic<uint64_t> read_bytes_{0};
  std::atomic<uint64_t> written_bytes_{0};
  std::atomic<uint64_t> errors_{0};
};

// RAM-backed device with the same alignment rules as a file device. For tests; bytes() lets a
// test corrupt the store.
class MemoryDevice final : public Device {
 public:
  explicit MemoryDevice(uint64_t size, uint32_t io_alignment = 4096);

  std::string describe() const override { return "memory"; }
  // Direct access for tests (not synchronised with concurrent I/O).
  std::vector<uint8_t>& bytes() { return bytes_; }

 private:
  Status readImpl(uint64_t offset, void* buf, size_t len) override;
  Status writeImpl(uint64_t offset, const void* buf, size_t len) override;

  std::mutex mu_;  // the test device is not a place to prove lock-free byte copies
  std::vector<uint8_t> bytes_;
};

struct FileDeviceOptions {
  std::string path;
  uint64_t size_bytes = 0;  // a regular file is created/extended and preallocated to this
  bool direct_io = true;    // try O_DIRECT; buffered (with a log line) when refused
  SsdLogFn log = ssdLogToStderr;
};

class FileDevice final : public Device {
 public:
  // Opens (creating if needed) a regular file and preallocates it with fallocate (ftruncate
  // where the file system cannot), or opens a block device and uses min(size, device size).
  // Errors: kIo (open/fallocate/stat failed: the detail names the step, `error` the errno
  // text), kInvalid (not a regular file or block device, or smaller than one alignment unit),
  // kUnavailable (another open of it holds its exclusive lock: flock, released when the device
  // is destroyed).
  static Result<std::unique_ptr<FileDevice>> open(const FileDeviceOptions& options,
                                                  std::string* error = nullptr);
  ~FileDevice() override;

  int fd() const override { return fd_; }
  std::string describe() const override;
  bool directIo() const { return direct_; }
  bool blockDevice() const { return block_; }

 private:
  FileDevice(int fd, uint64_t size, bool direct, bool block, std::string path);
  Status readImpl(uint64_t offset, void* buf, size_t len) override;
  Status writeImpl(uint64_t offset, const void* buf, size_t len) override;

  const int fd_;
  const bool direct_;
  const bool block_;
  const std::string path_;
};

}  // namespace streamedge::cache
