// libFuzzer target: chunked decoder. The first input byte seeds how the rest is split into
// pieces; the rest is decoded whole and piecewise, which must agree exactly (status, body,
// consumed bytes). Output never exceeds input, and body runs always point into the piece fed.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include "proxy/chunked.h"

namespace {

using streamedge::proxy::ChunkedDecoder;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

struct Result {
  ChunkedDecoder::Status status = ChunkedDecoder::Status::kNeedMore;
  std::string body;
  size_t consumed = 0;
};

// Feeds [data, data+size) in pieces whose lengths come from a tiny LCG seeded by `seed`
// (seed 0: one piece).
Result decode(const uint8_t* data, size_t size, uint8_t seed) {
  ChunkedDecoder dec;
  Result r;
  uint32_t state = seed;
  size_t pos = 0;
  while (true) {
    size_t len = size - pos;
    if (seed != 0) {
      state = state * 1103515245u + 12345u;
      len = std::min<size_t>(len, (state >> 16) % 9);  // 0..8 bytes, empty pieces included
    }
    size_t consumed = 0;
    const uint8_t* base = data + pos;
    size_t out_before = r.body.size();
    r.status = dec.feed(base, len, consumed, [&](const uint8_t* p, size_t n) {
      check(n > 0 && p >= base && p + n <= base + len);
      r.body.append(reinterpret_cast<const char*>(p), n);
    });
    check(consumed <= len);
    check(r.body.size() - out_before <= consumed);
    if (r.status == ChunkedDecoder::Status::kNeedMore) check(consumed == len);
    if (r.status == ChunkedDecoder::Status::kError) check(dec.error()[0] != '\0');
    pos += consumed;
    r.consumed = pos;
    if (r.status != ChunkedDecoder::Status::kNeedMore || pos == size) break;
  }
  check(dec.bodyBytes() == r.body.size());
  check(r.body.size() <= r.consumed);
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t seed = data[0];
  ++data;
  --size;
  const Result whole = decode(data, size, 0);
  const Result split = decode(data, size, seed == 0 ? 1 : seed);
  check(whole.status == split.status);
  if (whole.status != ChunkedDecoder::Status::kError) {
    check(whole.body == split.body && whole.consumed == split.consumed);
  }
  if (whole.status == ChunkedDecoder::Status::kDone) {
    // A complete chunked body ends with CRLF CRLF (last-chunk line + empty trailer line).
    check(whole.consumed >= 5 && data[whole.consumed - 1] == '\n' &&
          data[whole.consumed - 2] == '\r');
  }
  return 0;
}
