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
