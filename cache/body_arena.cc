#include "cache/body_arena.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "cache/object.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14
#endif

namespace streamedge::cache {

BodyArena::BodyArena(size_t block_bytes, size_t slab_bytes)
    : block_bytes_(block_bytes), slab_bytes_(slab_bytes / block_bytes * block_bytes) {}

BodyArena::~BodyArena() {
  for (auto& slab : slabs_) {
    if (!slab) continue;
    ::munmap(slab->base, slab_bytes_);
    ::close(slab->fd);
  }
}

bool BodyArena::addSlab() {
  const int fd = ::memfd_create("streamedge-bodies", MFD_CLOEXEC);
  if (fd < 0) {
    std::fprintf(stderr, "streamedge: memfd_create failed (%s): bodies are sent by copy\n",
                 std::strerror(errno));
    return false;
  }
  if (::ftruncate(fd, static_cast<off_t>(slab_bytes_)) != 0) {
    std::fprintf(stderr, "streamedge: sizing a body slab failed (%s): bodies are sent by copy\n",
                 std::strerror(errno));
    ::close(fd);
    return false;
  }
  void* base = ::mmap(nullptr, slab_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) {
    std::fprintf(stderr, "streamedge: mapping a body slab failed (%s): bodies are sent by copy\n",
                 std::strerror(errno));
    ::close(fd);
    return false;
  }
  auto slab = std::make_unique<Slab>();
  slab->fd = fd;
  slab->base = static_cast<uint8_t*>(base);
  const auto blocks = static_cast<uint32_t>(slab_bytes_ / block_bytes_);
  slab->free.reserve(blocks);
  for (uint32_t i = blocks; i > 0; --i) slab->free.push_back(i - 1);  // lowest index first
  for (auto& s : slabs_) {
    if (!s) {
      s = std::move(slab);
      return true;
    }
  }
  slabs_.push_back(std::move(slab));
  return true;
}

void BodyArena::dropSlab(uint32_t index) {
  Slab& slab = *slabs_[index];
  ::munmap(slab.base, slab_bytes_);
  ::close(slab.fd);
  slabs_[index].reset();
}

bool BodyArena::allocate(ArenaBlock* out) {
  std::unique_lock<std::mutex> lock(mu_);
  if (failed_) return false;
  Slab* slab = nullptr;
  uint32_t slab_index = 0;
  // Fullest slab first, so that emptier ones can drain and be dropped.
  for (uint32_t i = 0; i < slabs_.size(); ++i) {
    Slab* s = slabs_[i].get();
    if (s && !s->free.empty() && (!slab || s->used > slab->used)) {
      slab = s;
      slab_index = i;
    }
  }
  if (!slab) {
    if (!addSlab()) {
      failed_ = true;
      return false;
    }
    for (uint32_t i = 0; i < slabs_.size(); ++i) {
      if (slabs_[i] && slabs_[i]->used == 0 && !slabs_[i]->free.empty()) {
        slab = slabs_[i].get();
        slab_index = i;
        break;
      }
    }
  }
  const uint32_t block = slab->free.back();
  slab->free.pop_back();
  ++slab->used;
  ++in_use_;
  out->fd = slab->fd;
  out->offset = uint64_t{block} * block_bytes_;
  out->data = slab->base + out->offset;
  out->slab = slab_index;
  lock.unlock();
  // The block's pages now, in one call, instead of a fault per page while the body is written.
  // Older kernels refuse the advice: the faults then do it.
  ::madvise(out->data, block_bytes_, MADV_POPULATE_WRITE);
  return true;
}

void BodyArena::free(const ArenaBlock& block) {
  // Outside the lock: the pages go back to the kernel, and a socket still sending from them
  // keeps its own references to the old pages.
  if (::fallocate(block.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  static_cast<off_t>(block.offset), static_cast<off_t>(block_bytes_)) != 0) {
    // Never reuse a block whose pages may still be in a send: leak it (counted as in use).
    std::fprintf(stderr, "streamedge: releasing a body block failed (%s)\n", std::strerror(errno));
    return;
  }
  std::lock_guard<std::mutex> lock(mu_);
  Slab& slab = *slabs_[block.slab];
  slab.free.push_back(static_cast<uint32_t>(block.offset / block_bytes_));
  --slab.used;
  --in_use_;
  if (slab.used == 0) {
    size_t live = 0;
    for (const auto& s : slabs_) live += s ? 1 : 0;
    if (live > 1) dropSlab(block.slab);
  }
}

uint64_t BodyArena::blocksInUse() const {
  std::lock_guard<std::mutex> lock(mu_);
  return in_use_;
}

size_t BodyArena::slabs() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = 0;
  for (const auto& s : slabs_) n += s ? 1 : 0;
  return n;
}

namespace {
std::atomic<bool> g_arena_enabled{false};
}  // namespace

void setBodyArenaEnabled(bool enabled) { g_arena_enabled.store(enabled, std::memory_order_relaxed); }
bool bodyArenaEnabled() { return g_arena_enabled.load(std::memory_order_relaxed); }

BodyArena& bodyArena() {
  static BodyArena* arena = new BodyArena(Body::kBlockBytes, size_t{64} << 20);  // never freed:
  return *arena;  // blocks may be released by threads still running at exit
}

}  // namespace streamedge::cache
