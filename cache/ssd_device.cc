#include "cache/ssd_device.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

namespace streamedge::cache {

void ssdLogToStderr(std::string_view line) {
  std::fprintf(stderr, "streamedge: ssd: %.*s\n", static_cast<int>(line.size()), line.data());
}

// ---------------------------------------------------------------------------------------------
// AlignedBuffer

size_t hugePageBytes() {
  static const size_t bytes = [] {
    size_t v = 0;
    if (FILE* f = std::fopen("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size", "r")) {
      unsigned long long n = 0;
      if (std::fscanf(f, "%llu", &n) == 1) v = static_cast<size_t>(n);
      std::fclose(f);
    }
    return v;
  }();
  return bytes;
}

namespace {

// Recently freed large mappings, handed to the next buffer of about the same size: SSD reads of
// similar segments follow each other, and a fresh mapping costs the kernel zeroing every page
// (scripts/bench/ssd.sh, encrypted store: 877 → 624–655 µs of CPU per MiB of SSD hits).
// Bounded, so the RSS it adds stays small. When full, the oldest mappings make room for the one
// given back, so the cache follows the sizes in use: kept instead, a one-off buffer (the
// start-up scan's region) filled the budget for good, and every SSD read after it mapped and
// zeroed fresh pages (ssd.sh with encrypt = false: ~15 % of the proxy's CPU).
class MappingCache {
 public:
  static MappingCache& instance() {
    static MappingCache* cache = new MappingCache();  // never destroyed: used at exit
    return *cache;
  }
  // A mapping of at least `len` bytes and at most a quarter more, the most recently given back
  // first (its pages are the likeliest to be in the CPU's caches); {nullptr, 0} if none.
  std::pair<void*, size_t> take(size_t len) {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = free_.size(); i-- > 0;) {
      if (free_[i].second >= len && free_[i].second - len <= len / 4) {
        const auto m = free_[i];
        free_.erase(free_.begin() + static_cast<std::ptrdiff_t>(i));
        bytes_ -= m.second;
        return m;
      }
    }
    return {nullptr, 0};
  }
  // Keeps the mapping for reuse, unmapping the oldest ones beyond the bounds; a mapping larger
  // than the whole budget is unmapped at once.
  void give(void* p, size_t len) {
    std::vector<std::pair<void*, size_t>> drop;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (len > kMaxBytes) {
        drop.emplace_back(p, len);
      } else {
        size_t n = 0;
        while (n < free_.size() && (free_.size() - n >= kMaxMappings || bytes_ + len > kMaxBytes)) {
          bytes_ -= free_[n].second;
          drop.push_back(free_[n++]);
        }
        free_.erase(free_.begin(), free_.begin() + static_cast<std::ptrdiff_t>(n));
        free_.emplace_back(p, len);
        bytes_ += len;
      }
    }
    for (const auto& [q, n] : drop) ::munmap(q, n);  // outside the lock
  }

 private:
  static constexpr size_t kMaxMappings = 16;
  static constexpr size_t kMaxBytes = 40u << 20;
  std::mutex mu_;
  std::vector<std::pair<void*, size_t>> free_;  // guarded by mu_; oldest first
  size_t bytes_ = 0;                             // guarded by mu_
};

// A private anonymous mapping of `len` bytes (a multiple of the page size), its pages faulted
// in; nullptr when the kernel refuses. From a huge page's size on, the mapping starts on a huge
// page boundary and asks for huge pages: each 2 MiB then costs one fault and one TLB entry
// instead of 512, and O_DIRECT pins one page instead of 512. On this project's VM the first
// touch of fresh 4 KiB pages costs ~0.6 ms per MiB more than of a huge page (the host backs
// them one by one), which was most of an SSD hit's CPU beyond AES (scripts/bench/ssd.sh).
void* mapLarge(size_t len) {
  const size_t huge = hugePageBytes();
  if (huge == 0 || len < huge) {
    void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    return p == MAP_FAILED ? nullptr : p;
  }
  // Over-map by one huge page, then cut the unaligned ends off.
  void* raw = ::mmap(nullptr, len + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                     -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  auto* const begin = static_cast<uint8_t*>(raw);
  auto* const p = reinterpret_cast<uint8_t*>(
      (reinterpret_cast<uintptr_t>(begin) + huge - 1) / huge * huge);
  if (p > begin) ::munmap(begin, static_cast<size_t>(p - begin));
  const size_t after = static_cast<size_t>(begin + len + huge - (p + len));
  if (after > 0) ::munmap(p + len, after);
  // Advice only: without transparent huge pages (or with them set to "never") these fail or do
  // nothing, and the pages are faulted in at first use instead.
  (void)::madvise(p, len, MADV_HUGEPAGE);
#ifdef MADV_POPULATE_WRITE
  (void)::madvise(p, len, MADV_POPULATE_WRITE);
#endif
  return p;
}

}  // namespace

AlignedBuffer::AlignedBuffer(size_t size, size_t alignment) : size_(size) {
  if (size == 0) return;
  const size_t rounded = (size + alignment - 1) / alignment * alignment;
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  if (rounded >= kMapThreshold && alignment <= page) {
    const size_t len = (rounded + page - 1) / page * page;
    if (auto [p, mapped] = MappingCache::instance().take(len); p) {
      data_ = static_cast<uint8_t*>(p);
      mapped_ = mapped;
      return;
    }
    void* p = mapLarge(len);
    if (!p) throw std::bad_alloc();
    data_ = static_cast<uint8_t*>(p);
    mapped_ = len;
    return;
  }
  data_ = static_cast<uint8_t*>(std::aligned_alloc(alignment, rounded));
  if (!data_) throw std::bad_alloc();
}

void AlignedBuffer::release() {
  if (mapped_ != 0) {
    MappingCache::instance().give(data_, mapped_);
  } else {
    std::free(data_);
  }
  data_ = nullptr;
  mapped_ = 0;
}

AlignedBuffer::AlignedBuffer(AlignedBuffer&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)),
      size_(std::exchange(o.size_, 0)),
      mapped_(std::exchange(o.mapped_, 0)) {}

AlignedBuffer& AlignedBuffer::operator=(AlignedBuffer&& o) noexcept {
  if (this != &o) {
    release();
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
    mapped_ = std::exchange(o.mapped_, 0);
  }
  return *this;
}

AlignedBuffer::~AlignedBuffer() { release(); }

// ---------------------------------------------------------------------------------------------
// Device

Status Device::checkIo(uint64_t offset, const void* buf, size_t len) const {
  const uint64_t a = io_alignment_;
  if (offset % a != 0 || len % a != 0 || reinterpret_cast<uintptr_t>(buf) % a != 0) {
    return Status(Code::kInvalid, Source::kInternal, "device I/O not aligned");
  }
  if (len == 0 || offset > size_ || len > size_ - offset) {
    return Status(Code::kInvalid, Source::kInternal, "device I/O out of bounds");
  }
  return Status::ok();
}

void Device::recordIo(bool is_write, size_t bytes, bool ok) {
  if (!ok) {
    errors_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  if (is_write) {
    writes_.fetch_add(1, std::memory_order_relaxed);
    written_bytes_.fetch_add(bytes, std::memory_order_relaxed);
  } else {
    reads_.fetch_add(1, std::memory_order_relaxed);
    read_bytes_.fetch_add(bytes, std::memory_order_relaxed);
  }
}

Status Device::read(uint64_t offset, void* buf, size_t len) {
  Status s = checkIo(offset, buf, len);
  if (!s.isOk()) return s;
  s = readImpl(offset, buf, len);
  recordIo(false, len, s.isOk());
  return s;
}

Status Device::write(uint64_t offset, const void* buf, size_t len) {
  Status s = checkIo(offset, buf, len);
  if (!s.isOk()) return s;
  s = writeImpl(offset, buf, len);
  recordIo(true, len, s.isOk());
  return s;
}

DeviceStats Device::stats() const {
  DeviceStats s;
  s.reads = reads_.load(std::memory_order_relaxed);
  s.writes = writes_.load(std::memory_order_relaxed);
  s.read_bytes = read_bytes_.load(std::memory_order_relaxed);
  s.written_bytes = written_bytes_.load(std::memory_order_relaxed);
  s.errors = errors_.load(std::memory_order_relaxed);
  return s;
}

// ---------------------------------------------------------------------------------------------
// MemoryDevice

MemoryDevice::MemoryDevice(uint64_t size, uint32_t io_alignment)
    : Device(size, io_alignment), bytes_(size, 0) {}

Status MemoryDevice::readImpl(uint64_t offset, void* buf, size_t len) {
  std::lock_guard<std::mutex> lock(mu_);
  std::memcpy(buf, bytes_.data() + offset, len);
  return Status::ok();
}

Status MemoryDevice::writeImpl(uint64_t offset, const void* buf, size_t len) {
  std::lock_guard<std::mutex> lock(mu_);
  std::memcpy(bytes_.data() + offset, buf, len);
  return Status::ok();
}

// ---------------------------------------------------------------------------------------------
// FileDevice

namespace {
constexpr uint32_t kFileAlignment = 4096;

std::string errnoText(const char* what, const std::string& path, int err) {
  return std::string(what) + " " + path + ": " + std::strerror(err);
}
}  // namespace

Result<std::unique_ptr<FileDevice>> FileDevice::open(const FileDeviceOptions& options,
                                                     std::string* error) {
  auto fail = [&](Code code, const char* detail, std::string text) -> Status {
    if (error) *error = std::move(text);
    return Status(code, Source::kStorage, detail);
  };
  const int base_flags = O_RDWR | O_CLOEXEC;
  int flags = base_flags | (options.direct_io ? O_DIRECT : 0);
  int fd = ::open(options.path.c_str(), flags | O_CREAT, 0600);
  bool direct = options.direct_io;
  if (fd < 0 && options.direct_io && errno == EINVAL) {
    // tmpfs and some FUSE file systems refuse O_DIRECT at open.
    fd = ::open(options.path.c_str(), base_flags | O_CREAT, 0600);
    direct = false;
    if (fd >= 0 && options.log) {
      options.log("O_DIRECT refused for " + options.path + " (EINVAL): using buffered I/O");
    }
  }
  if (fd < 0) return fail(Code::kIo, "cannot open the SSD store", errnoText("open", options.path, errno));

  // One process at a time: two writers on one log would overwrite each other's regions. A hot
  // upgrade hands the store over by closing it (the lock goes with the descriptor) before the
  // new process opens it; anything else holding it is refused here, never half shared.
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK) {
      return fail(Code::kUnavailable, "the SSD store is in use",
                  options.path + " is in use by another process (it holds its lock); one "
                                 "process at a time may open a store");
    }
    return fail(Code::kIo, "cannot lock the SSD store", errnoText("flock", options.path, err));
  }
  struct stat st{};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return fail(Code::kIo, "cannot stat the SSD store", errnoText("fstat", options.path, err));
  }
  uint64_t size = options.size_bytes / kFileAlignment * kFileAlignment;
  const bool block = S_ISBLK(st.st_mode);
  if (block) {
    uint64_t dev_bytes = 0;
    if (::ioctl(fd, BLKGETSIZE64, &dev_bytes) != 0) {
      const int err = errno;
      ::close(fd);
      return fail(Code::kIo, "cannot size the block device",
                  errnoText("BLKGETSIZE64", options.path, err));
    }
    if (dev_bytes < size) {
      if (options.log) {
        options.log("block device " + options.path + " is smaller than cache.ssd.size: using " +
                    std::to_string(dev_bytes) + " bytes");
      }
      size = dev_bytes / kFileAlignment * kFileAlignment;
    }
  } else if (S_ISREG(st.st_mode)) {
    // Preallocate, so that a full store cannot fail later with ENOSPC in the middle of a
    // region write, and so that extents are contiguous.
    const int rc = ::fallocate(fd, 0, 0, static_cast<off_t>(size));
    if (rc != 0) {
      const int err = errno;
      if (err != EOPNOTSUPP) {
        ::close(fd);
        return fail(Code::kIo, "cannot preallocate the SSD store",
                    errnoText("fallocate", options.path, err));
      }
      if (static_cast<uint64_t>(st.st_size) < size && ::ftruncate(fd, static_cast<off_t>(size)) != 0) {
        const int err2 = errno;
        ::close(fd);
        return fail(Code::kIo, "cannot size the SSD store",
                    errnoText("ftruncate", options.path, err2));
      }
      if (options.log) {
        options.log("fallocate not supported for " + options.path +
                    ": the store file is sparse (ENOSPC possible later)");
      }
    }
  } else {
    ::close(fd);
    return fail(Code::kInvalid, "the SSD store is neither a file nor a block device",
                options.path + ": not a regular file or block device");
  }
  if (size < kFileAlignment) {
    ::close(fd);
    return fail(Code::kInvalid, "the SSD store is too small", options.path + ": too small");
  }
  return std::unique_ptr<FileDevice>(new FileDevice(fd, size, direct, block, options.path));
}

FileDevice::FileDevice(int fd, uint64_t size, bool direct, bool block, std::string path)
    : Device(size, kFileAlignment), fd_(fd), direct_(direct), block_(block), path_(std::move(path)) {}

FileDevice::~FileDevice() { ::close(fd_); }

std::string FileDevice::describe() const {
  std::string out = block_ ? "block device " : "file ";
  out += path_;
  out += direct_ ? " (O_DIRECT)" : " (buffered)";
  return out;
}

Status FileDevice::readImpl(uint64_t offset, void* buf, size_t len) {
  auto* p = static_cast<uint8_t*>(buf);
  while (len > 0) {
    const ssize_t n = ::pread(fd_, p, len, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status(Code::kIo, Source::kStorage, "SSD read failed");
    }
    if (n == 0) return Status(Code::kIo, Source::kStorage, "SSD read past the end");
    p += n;
    offset += static_cast<uint64_t>(n);
    len -= static_cast<size_t>(n);
  }
  return Status::ok();
}

Status FileDevice::writeImpl(uint64_t offset, const void* buf, size_t len) {
  const auto* p = static_cast<const uint8_t*>(buf);
  while (len > 0) {
    const ssize_t n = ::pwrite(fd_, p, len, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status(Code::kIo, Source::kStorage, "SSD write failed");
    }
    if (n == 0) return Status(Code::kIo, Source::kStorage, "SSD write made no progress");
    p += n;
    offset += static_cast<uint64_t>(n);
    len -= static_cast<size_t>(n);
  }
  return Status::ok();
}

}  // namespace streamedge::cache
