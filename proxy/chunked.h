// Incremental decoder for the chunked transfer coding (RFC 9112 §7.1) of origin responses.
// Strict: chunk-size is 1*HEXDIG (at most 15 digits, no overflow), chunk extensions are
// tolerated but bounded, every line ends in CRLF, trailer fields are read and discarded, bare
// LF / CR are errors. One decoder per message; not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>

namespace streamedge::proxy {

class ChunkedDecoder {
 public:
  enum class Status { kNeedMore, kDone, kError };

  // Consumes input. For each run of body bytes calls sink(const uint8_t*, size_t) with pointers
  // into `data`. `consumed` is set to the bytes used; on kDone, bytes after the final CRLF are
  // not consumed (they belong to the next message). On kError, error() says why.
  template <class Sink>
  Status feed(const uint8_t* data, size_t len, size_t& consumed, Sink&& sink);

  const char* error() const { return error_; }
  uint64_t bodyBytes() const { return body_bytes_; }

 private:
  // Advances the state machine over framing bytes; returns how much was consumed and whether a
  // body run [*run_begin, *run_begin + *run_len) was found inside.
  Status step(const uint8_t* data, size_t len, size_t& used, size_t& run_begin, size_t& run_len);

  // kSizeWs: BWS after the size, only a ';' may follow; kTrailerName / kTrailer: name and value
  // of a trailer field line.
  enum class State { kSize, kSizeWs, kExt, kSizeLf, kData, kDataCr, kDataLf, kTrailerLineStart,
                     kTrailerName, kTrailer, kTrailerLf, kFinalLf, kDone };
  State state_ = State::kSize;
  uint64_t remaining_ = 0;    // bytes left in the current chunk
  int size_digits_ = 0;
  size_t line_bytes_ = 0;     // for bounding extensions and trailers
  uint64_t body_bytes_ = 0;
  const char* error_ = "";
};

template <class Sink>
ChunkedDecoder::Status ChunkedDecoder::feed(const uint8_t* data, size_t len, size_t& consumed,
                                            Sink&& sink) {
  consumed = 0;
  while (consumed < len) {
    size_t used = 0, run_begin = 0, run_len = 0;
    Status s = step(data + consumed, len - consumed, used, run_begin, run_len);
    if (run_len) sink(data + consumed + run_begin, run_len);
    consumed += used;
    if (s != Status::kNeedMore) return s;
  }
  return state_ == State::kDone ? Status::kDone : Status::kNeedMore;
}

}  // namespace streamedge::proxy
