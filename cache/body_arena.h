// Memory for whole body blocks that the kernel can send by reference.
//
// A RAM-tier body is kept in fixed-size blocks (Body::kBlockBytes). Blocks of that full size are
// carved out of slabs of shared memory files (memfd): the process writes and reads them through
// one mapping of each slab, and a plaintext connection hands a block to the kernel as (file,
// offset) with sendfile, so the socket takes page references instead of a copy of every byte per
// viewer. TLS and HTTP/2 connections read the same bytes through the mapping.
//
// A freed block's pages are punched out of its file before the block is handed out again: a
// socket that still holds references to those pages (sent but not yet acknowledged) keeps the
// old pages, and the next body written there gets fresh ones. So a block is never rewritten
// under a send in flight, and freed memory goes back to the kernel at once.
//
// When a shared memory file cannot be made (memfd_create, ftruncate or mmap refused), the
// arena says so once and callers fall back to heap blocks, which are sent by copy.
//
// Thread-safety: allocate and free from any thread (one mutex; a call per 256 KiB block).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace streamedge::cache {

struct ArenaBlock {
  uint8_t* data = nullptr;  // the block through the process's mapping
  int fd = -1;              // the slab's shared memory file
  uint64_t offset = 0;      // the block's offset in it
  uint32_t slab = 0;        // for free()
};

class BodyArena {
 public:
  // Slabs of `slab_bytes` (a multiple of `block_bytes`).
  BodyArena(size_t block_bytes, size_t slab_bytes);
  ~BodyArena();
  BodyArena(const BodyArena&) = delete;
  BodyArena& operator=(const BodyArena&) = delete;

  // A block of block_bytes with its pages already in place, or false when no shared memory
  // could be had (the caller uses the heap).
  bool allocate(ArenaBlock* out);
  // Returns the block's pages to the kernel and the block to the free list. A slab that is
  // wholly free is unmapped and closed, unless it is the only one.
  void free(const ArenaBlock& block);

  size_t blockBytes() const { return block_bytes_; }
  // Blocks handed out and not yet freed; slabs mapped (for metrics and tests).
  uint64_t blocksInUse() const;
  size_t slabs() const;

 private:
  struct Slab {
    int fd = -1;
    uint8_t* base = nullptr;
    std::vector<uint32_t> free;  // block indexes
    uint32_t used = 0;
  };
  bool addSlab();  // mu_ held
  void dropSlab(uint32_t index);  // mu_ held

  const size_t block_bytes_;
  const size_t slab_bytes_;
  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Slab>> slabs_;  // null entries: dropped slabs (indexes stay)
  uint64_t in_use_ = 0;
  bool failed_ = false;  // shared memory refused once: heap from then on
};

// The process's arena for body blocks, used while enabled ([cache.ram] sendfile). Disabling
// affects blocks allocated afterwards; blocks already in the arena stay there until freed.
void setBodyArenaEnabled(bool enabled);
bool bodyArenaEnabled();
BodyArena& bodyArena();

}  // namespace streamedge::cache
