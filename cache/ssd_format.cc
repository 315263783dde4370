#include "cache/ssd_format.h"

#define XXH_STATIC_LINKING_ONLY  // XXH3_state_t on the stack
#include <xxhash.h>

#include <chrono>
#include <cstddef>
#include <cstring>
#include <string>

namespace streamedge::cache::ssd {
namespace {

void put32(std::vector<uint8_t>& out, uint32_t v) {
  const size_t at = out.size();
  out.resize(at + 4);
  std::memcpy(out.data() + at, &v, 4);
}
void put64(std::vector<uint8_t>& out, uint64_t v) {
  const size_t at = out.size();
  out.resize(at + 8);
  std::memcpy(out.data() + at, &v, 8);
}
void putString(std::vector<uint8_t>& out, const std::string& s) {
  put32(out, static_cast<uint32_t>(s.size()));
  out.insert(out.end(), s.begin(), s.end());
}

class Reader {
 public:
  Reader(const uint8_t* p, size_t n) : p_(p), n_(n) {}
  bool u32(uint32_t* v) { return take(v, 4); }
  bool u64(uint64_t* v) { return take(v, 8); }
  bool i64(int64_t* v) { return take(v, 8); }
  bool str(std::string* s) {
    uint32_t len = 0;
    if (!u32(&len) || len > n_) return false;
    s->assign(reinterpret_cast<const char*>(p_), len);
    p_ += len;
    n_ -= len;
    return true;
  }
  bool done() const { return n_ == 0; }

 private:
  bool take(void* v, size_t len) {
    if (n_ < len) return false;
    std::memcpy(v, p_, len);
    p_ += len;
    n_ -= len;
    return true;
  }
  const uint8_t* p_;
  size_t n_;
};

constexpr uint32_t kFlagMustRevalidate = 1;
constexpr uint32_t kFlagNoCache = 2;
constexpr uint32_t kFlagExplicitLifetime = 4;
constexpr uint32_t kFlagHasContentLength = 8;

}  // namespace

uint64_t regionHeaderChecksum(const RegionHeader& h) {
  return XXH3_64bits(&h, offsetof(RegionHeader, checksum));
}

uint64_t entryChecksum(const CacheKey& key, const CacheKey& primary, const uint8_t* head,
                       size_t head_bytes, const uint8_t* body, size_t body_bytes) {
  XXH3_state_t state;
  XXH3_64bits_reset(&state);
  const uint64_t fixed[6] = {key.hi, key.lo, head_bytes, body_bytes, primary.hi, primary.lo};
  XXH3_64bits_update(&state, fixed, sizeof(fixed));
  XXH3_64bits_update(&state, head, head_bytes);
  XXH3_64bits_update(&state, body, body_bytes);
  return XXH3_64bits_digest(&state);
}

uint64_t chunkedMetaChecksum(const CacheKey& key, const CacheKey& primary, const uint8_t* head,
                             size_t head_bytes, uint64_t body_bytes, const uint8_t* table,
                             size_t table_bytes) {
  XXH3_state_t state;
  XXH3_64bits_reset(&state);
  // kEntryFlagChunked first: never equal to an unchunked entry's checksum of the same content.
  const uint64_t fixed[7] = {kEntryFlagChunked, key.hi,     key.lo,    head_bytes,
                             body_bytes,        primary.hi, primary.lo};
  XXH3_64bits_update(&state, fixed, sizeof(fixed));
  XXH3_64bits_update(&state, head, head_bytes);
  XXH3_64bits_update(&state, table, table_bytes);
  return XXH3_64bits_digest(&state);
}

uint64_t chunkChecksum(const CacheKey& key, uint32_t index, uint32_t count, const uint8_t* data,
                       size_t len) {
  XXH3_state_t state;
  XXH3_64bits_reset(&state);
  const uint64_t fixed[3] = {key.hi, key.lo, (uint64_t{count} << 32) | index};
  XXH3_64bits_update(&state, fixed, sizeof(fixed));
  XXH3_64bits_update(&state, data, len);
  return XXH3_64bits_digest(&state);
}

void chunkNonce(const uint8_t* entry_nonce, uint32_t index, uint8_t* out) {
  std::memcpy(out, entry_nonce, kNonceBytes);
  uint32_t tail = 0;
  std::memcpy(&tail, out + kNonceBytes - 4, 4);
  tail ^= index + 1;
  std::memcpy(out + kNonceBytes - 4, &tail, 4);
}

void chunkAad(const uint8_t* entry_header, uint32_t index, uint32_t count, uint8_t* out) {
  std::memcpy(out, entry_header, sizeof(EntryHeader));
  std::memcpy(out + sizeof(EntryHeader), &index, 4);
  std::memcpy(out + sizeof(EntryHeader) + 4, &count, 4);
}

bool sealChunkedEntry(uint8_t* p, uint16_t flags, uint32_t key_id, const uint8_t* nonce,
                      const CacheKey& key, const CacheKey& primary, size_t head_bytes,
                      uint64_t body_bytes, const EntryCipher* cipher, uint64_t* checksum) {
  const bool enc = cipher != nullptr;
  const size_t meta_head = sizeof(EntryMeta) + head_bytes;
  const ChunkedLayout l = chunkedLayout(meta_head, body_bytes, enc);
  EntryHeader h{};
  h.magic = kEntryMagic;
  h.flags = static_cast<uint16_t>(flags | kEntryFlagChunked | (enc ? kEntryFlagEncrypted : 0));
  h.header_bytes = sizeof(EntryHeader);
  h.entry_bytes = static_cast<uint32_t>(l.entry_bytes);
  h.sealed_bytes = static_cast<uint32_t>(meta_head);
  if (enc) std::memcpy(h.nonce, nonce, kNonceBytes);
  h.key_id = enc ? key_id : 0;
  // The header is final before any seal: it is every seal's AAD.
  std::memcpy(p, &h, sizeof(h));
  uint8_t* body = p + l.body_at;
  uint8_t* table = p + l.table_at;
  for (uint32_t i = 0; i < l.chunks; ++i) {
    uint8_t* data = body + chunkBegin(i);
    const size_t len = chunkEnd(i, body_bytes) - chunkBegin(i);
    uint8_t* entry = table + size_t{i} * l.table_entry;
    if (enc) {
      uint8_t chunk_nonce[kNonceBytes];
      uint8_t aad[kChunkAadBytes];
      chunkNonce(h.nonce, i, chunk_nonce);
      chunkAad(p, i, l.chunks, aad);
      if (!cipher->seal(chunk_nonce, aad, sizeof(aad), data, len, entry)) return false;
    } else {
      const uint64_t sum = chunkChecksum(key, i, l.chunks, data, len);
      std::memcpy(entry, &sum, sizeof(sum));
    }
  }
  uint8_t* meta_at = p + sizeof(EntryHeader);
  EntryMeta m;
  std::memcpy(&m, meta_at, sizeof(m));
  m.checksum = chunkedMetaChecksum(key, primary, meta_at + sizeof(EntryMeta), head_bytes,
                                   body_bytes, table, size_t{l.chunks} * l.table_entry);
  std::memcpy(meta_at, &m, sizeof(m));
  *checksum = m.checksum;
  if (enc &&
      !cipher->seal(h.nonce, p, sizeof(EntryHeader), meta_at, meta_head, p + l.meta_tag_at)) {
    return false;
  }
  const size_t used = l.body_at + body_bytes;
  std::memset(p + used, 0, l.entry_bytes - used);
  return true;
}

bool openChunkedEntry(uint8_t* p, size_t avail, const EntryCipher* cipher, ChunkedView* view,
                      const char** why) {
  EntryHeader h;
  std::memcpy(&h, p, sizeof(h));
  const bool enc = cipher != nullptr;
  if (h.sealed_bytes < sizeof(EntryMeta) || h.entry_bytes > avail ||
      sizeof(EntryHeader) + uint64_t{h.sealed_bytes} + (enc ? kTagBytes : 0) > h.entry_bytes) {
    *why = "bad entry header";
    return false;
  }
  uint8_t* meta_at = p + sizeof(EntryHeader);
  if (enc && !cipher->open(h.nonce, p, sizeof(EntryHeader), meta_at, h.sealed_bytes,
                           meta_at + h.sealed_bytes)) {
    *why = "authentication tag mismatch";
    return false;
  }
  EntryMeta m;
  std::memcpy(&m, meta_at, sizeof(m));
  if (m.head_bytes != h.sealed_bytes - sizeof(EntryMeta) || m.body_bytes > h.entry_bytes) {
    *why = "entry lengths inconsistent";
    return false;
  }
  const ChunkedLayout l = chunkedLayout(h.sealed_bytes, m.body_bytes, enc);
  if (l.entry_bytes != h.entry_bytes) {
    *why = "entry lengths inconsistent";
    return false;
  }
  const CacheKey key{m.key_hi, m.key_lo};
  const CacheKey primary{m.primary_hi, m.primary_lo};
  if (chunkedMetaChecksum(key, primary, meta_at + sizeof(EntryMeta), m.head_bytes, m.body_bytes,
                          p + l.table_at, size_t{l.chunks} * l.table_entry) != m.checksum) {
    *why = "checksum mismatch";
    return false;
  }
  view->meta = m;
  view->layout = l;
  return true;
}

bool openChunk(uint8_t* p, const ChunkedView& view, uint32_t index, const EntryCipher* cipher) {
  const ChunkedLayout& l = view.layout;
  if (index >= l.chunks) return false;
  uint8_t* data = p + l.body_at + chunkBegin(index);
  const size_t len = chunkEnd(index, view.meta.body_bytes) - chunkBegin(index);
  const uint8_t* entry = p + l.table_at + size_t{index} * l.table_entry;
  if (cipher) {
    uint8_t chunk_nonce[kNonceBytes];
    uint8_t aad[kChunkAadBytes];
    chunkNonce(p + offsetof(EntryHeader, nonce), index, chunk_nonce);
    chunkAad(p, index, l.chunks, aad);
    return cipher->open(chunk_nonce, aad, sizeof(aad), data, len, entry);
  }
  uint64_t sum = 0;
  std::memcpy(&sum, entry, sizeof(sum));
  return chunkChecksum(CacheKey{view.meta.key_hi, view.meta.key_lo}, index, l.chunks, data, len) ==
         sum;
}

std::vector<uint8_t> encodeHead(const ResponseHead& head, const Freshness& f) {
  std::vector<uint8_t> out;
  out.reserve(96 + head.reason.size() + head.wire.size() + 8 * head.headers.size());
  put64(out, static_cast<uint64_t>(
                 std::chrono::duration_cast<std::chrono::nanoseconds>(f.response_time.time_since_epoch()).count()));
  put64(out, static_cast<uint64_t>(f.corrected_initial_age.count()));
  put64(out, static_cast<uint64_t>(f.lifetime.count()));
  put64(out, static_cast<uint64_t>(f.stale_while_revalidate.count()));
  put64(out, static_cast<uint64_t>(f.stale_if_error.count()));
  uint32_t flags = 0;
  if (f.must_revalidate) flags |= kFlagMustRevalidate;
  if (f.no_cache) flags |= kFlagNoCache;
  if (f.explicit_lifetime) flags |= kFlagExplicitLifetime;
  if (head.content_length) flags |= kFlagHasContentLength;
  put32(out, flags);
  put32(out, static_cast<uint32_t>(head.status));
  put64(out, head.content_length.value_or(0));
  putString(out, head.reason);
  put32(out, static_cast<uint32_t>(head.headers.size()));
  for (const auto& [name, value] : head.headers) {
    putString(out, name);
    putString(out, value);
  }
  return out;
}

bool decodeHead(const uint8_t* data, size_t len, ResponseHead* head, Freshness* f) {
  Reader r(data, len);
  int64_t response_ns = 0, age = 0, lifetime = 0, swr = 0, sie = 0;
  uint32_t flags = 0, status = 0, count = 0;
  uint64_t content_length = 0;
  if (!r.i64(&response_ns) || !r.i64(&age) || !r.i64(&lifetime) || !r.i64(&swr) || !r.i64(&sie) ||
      !r.u32(&flags) || !r.u32(&status) || !r.u64(&content_length) || !r.str(&head->reason) ||
      !r.u32(&count)) {
    return false;
  }
  f->response_time = WallTime(std::chrono::duration_cast<WallTime::duration>(
      std::chrono::nanoseconds(response_ns)));
  f->corrected_initial_age = conf::Seconds(age);
  f->lifetime = conf::Seconds(lifetime);
  f->stale_while_revalidate = conf::Seconds(swr);
  f->stale_if_error = conf::Seconds(sie);
  f->must_revalidate = flags & kFlagMustRevalidate;
  f->no_cache = flags & kFlagNoCache;
  f->explicit_lifetime = flags & kFlagExplicitLifetime;
  head->status = static_cast<int>(status);
  if (flags & kFlagHasContentLength) {
    head->content_length = content_length;
  } else {
    head->content_length.reset();
  }
  head->headers.clear();
  if (count > len / 8) return false;  // each header needs at least two length fields
  head->headers.reserve(count);
  for (uint32_t i = 0; i < count; ++i) {
    std::string name, value;
    if (!r.str(&name) || !r.str(&value)) return false;
    head->headers.emplace_back(std::move(name), std::move(value));
  }
  if (!r.done()) return false;
  head->buildWire();
  return true;
}

}  // namespace streamedge::cache::ssd
