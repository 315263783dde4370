// Chunked transfer coding decoder (RFC 9112 §7.1).
//
//   chunked-body = *chunk last-chunk trailer-section CRLF
//   chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//   last-chunk   = 1*("0") [ chunk-ext ] CRLF
//
// Framing bytes are walked one at a time (they are a handful per chunk); chunk data is handed
// out as one run per step() call, pointing into the caller's buffer. Every line must end in
// CRLF: a bare CR or bare LF anywhere in the framing is an error, because a peer that ends
// lines differently from us is exactly how chunked bodies get smuggled. Chunk extensions are
// skipped, not interpreted; they are checked only for what could confuse line framing (CR, LF,
// other controls) and bounded with the size line. Trailer fields are checked for field-line
// syntax and discarded (we never forward trailers).
#include "proxy/chunked.h"

#include "conf/http_token.h"

namespace streamedge::proxy {
namespace {

using conf::isTchar;

constexpr int kMaxSizeDigits = 15;              // 60 bits: cannot overflow uint64_t
constexpr size_t kMaxSizeLineBytes = 4096;      // chunk-size + extensions, before CRLF
constexpr size_t kMaxTrailerBytes = 16 * 1024;  // after last-chunk, incl. the final CRLF

inline int hexValue(uint8_t c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Controls other than HTAB, and DEL: never allowed in an extension or a trailer value.
inline bool isForbiddenCtl(uint8_t c) { return (c < 0x20 && c != '\t') || c == 0x7F; }

}  // namespace

ChunkedDecoder::Status ChunkedDecoder::step(const uint8_t* data, size_t len, size_t& used,
                                            size_t& run_begin, size_t& run_len) {
  run_begin = 0;
  run_len = 0;
  used = 0;
  if (error_[0] != '\0') return Status::kError;
  if (state_ == State::kDone) return Status::kDone;

  size_t i = 0;
  auto fail = [&](const char* why) {
    error_ = why;
    used = i;
    return Status::kError;
  };

  while (i < len) {
    if (state_ == State::kData) {
      const uint64_t avail = len - i;
      const size_t n = static_cast<size_t>(remaining_ < avail ? remaining_ : avail);
      run_begin = i;
      run_len = n;
      remaining_ -= n;
      body_bytes_ += n;
      i += n;
      if (remaining_ == 0) state_ = State::kDataCr;
      used = i;
      return Status::kNeedMore;
    }

    const uint8_t c = data[i];
    switch (state_) {
      case State::kSize: {
        // The CR that ends the line is not counted against the line limit.
        if (c != '\r' && ++line_bytes_ > kMaxSizeLineBytes) return fail("chunk size line too long");
        const int v = hexValue(c);
        if (v >= 0) {
          if (size_digits_ == kMaxSizeDigits) return fail("chunk size has more than 15 digits");
          remaining_ = (remaining_ << 4) | static_cast<uint64_t>(v);
          ++size_digits_;
        } else if (size_digits_ == 0) {
          if (c == '\n') return fail("bare LF where chunk size expected");
          return fail("chunk size is not hex");
        } else if (c == '\r') {
          state_ = State::kSizeLf;
        } else if (c == ';') {
          state_ = State::kExt;
        } else if (c == ' ' || c == '\t') {
          state_ = State::kSizeWs;  // BWS before ';' (§7.1.1)
        } else if (c == '\n') {
          return fail("bare LF after chunk size");
        } else {
          return fail("invalid character after chunk size");
        }
        break;
      }
      case State::kSizeWs:
        if (++line_bytes_ > kMaxSizeLineBytes) return fail("chunk size line too long");
        if (c == ';') {
          state_ = State::kExt;
        } else if (c != ' ' && c != '\t') {
          return fail("whitespace after chunk size without extension");
        }
        break;
      case State::kExt:
        if (c != '\r' && ++line_bytes_ > kMaxSizeLineBytes) return fail("chunk extension too long");
        if (c == '\r') {
          state_ = State::kSizeLf;
        } else if (c == '\n') {
          return fail("bare LF in chunk extension");
        } else if (isForbiddenCtl(c)) {
          return fail("control character in chunk extension");
        }
        break;
      case State::kSizeLf:
        if (c != '\n') return fail("bare CR in chunk size line");
        line_bytes_ = 0;
        // A size of zero is the last-chunk; the trailer section follows.
        state_ = remaining_ == 0 ? State::kTrailerLineStart : State::kData;
        break;
      case State::kDataCr:
        if (c != '\r') return fail("missing CRLF after chunk data");
        state_ = State::kDataLf;
        break;
      case State::kDataLf:
        if (c != '\n') return fail("bare CR after chunk data");
        state_ = State::kSize;
        size_digits_ = 0;
        remaining_ = 0;
        line_bytes_ = 0;
        break;
      case State::kTrailerLineStart:
        if (++line_bytes_ > kMaxTrailerBytes) return fail("trailer section too large");
        if (c == '\r') {
          state_ = State::kFinalLf;
        } else if (c == '\n') {
          return fail("bare LF in trailer section");
        } else if (c == ' ' || c == '\t') {
          return fail("obs-fold in trailer section");
        } else if (isTchar(c)) {
          state_ = State::kTrailerName;
        } else {
          return fail("invalid trailer field name");
        }
        break;
      case State::kTrailerName:
        if (++line_bytes_ > kMaxTrailerBytes) return fail("trailer section too large");
        if (c == ':') {
          state_ = State::kTrailer;
        } else if (c == ' ' || c == '\t') {
          return fail("whitespace before colon in trailer field");
        } else if (!isTchar(c)) {
          return fail("invalid trailer field name");
        }
        break;
      case State::kTrailer:
        if (++line_bytes_ > kMaxTrailerBytes) return fail("trailer section too large");
        if (c == '\r') {
          state_ = State::kTrailerLf;
        } else if (c == '\n') {
          return fail("bare LF in trailer field");
        } else if (isForbiddenCtl(c)) {
          return fail("control character in trailer field");
        }
        break;
      case State::kTrailerLf:
        if (++line_bytes_ > kMaxTrailerBytes) return fail("trailer section too large");
        if (c != '\n') return fail("bare CR in trailer field");
        state_ = State::kTrailerLineStart;
        break;
      case State::kFinalLf:
        if (++line_bytes_ > kMaxTrailerBytes) return fail("trailer section too large");
        if (c != '\n') return fail("bare CR at end of chunked body");
        state_ = State::kDone;
        used = i + 1;
        return Status::kDone;
      case State::kData:
      case State::kDone:
        break;  // handled above
    }
    ++i;
  }
  used = i;
  return Status::kNeedMore;
}

}  // namespace streamedge::proxy
