// Status and Result<T>: the error vocabulary of every module below main().
//
// A Status carries a code, the side that caused it (downstream viewer, upstream origin, storage,
// internal), whether retrying elsewhere may help, and a static detail string (never owned, never
// formatted per request, so building one never allocates). Result<T> is a value or a Status.
// Both are plain values: thread-compatible, cheap to copy.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace streamedge {

enum class Code {
  kOk,
  kInvalid,       // malformed input (request, response, config value)
  kTooLarge,      // a limit was exceeded
  kNotFound,
  kTimeout,
  kConnect,       // could not connect
  kClosed,        // peer closed or reset
  kIo,            // storage or socket I/O failed
  kCorrupt,       // checksum / authentication failure
  kUnavailable,   // nothing to serve from (all origins down)
  kBusy,          // a protective limit was reached (origin at its concurrency cap, queue full)
  kInternal,
};

enum class Source { kNone, kDownstream, kUpstream, kStorage, kInternal };

class Status {
 public:
  constexpr Status() = default;
  constexpr Status(Code code, Source source, const char* detail, bool retryable = false)
      : code_(code), source_(source), retryable_(retryable), detail_(detail) {}

  static constexpr Status ok() { return Status(); }

  constexpr bool isOk() const { return code_ == Code::kOk; }
  constexpr Code code() const { return code_; }
  constexpr Source source() const { return source_; }
  constexpr bool retryable() const { return retryable_; }
  constexpr const char* detail() const { return detail_; }

  // "upstream timeout: first byte not received in time" — for logs, never for viewers.
  std::string toString() const;

 private:
  Code code_ = Code::kOk;
  Source source_ = Source::kNone;
  bool retryable_ = false;
  const char* detail_ = "";
};

const char* codeName(Code code);
const char* sourceName(Source source);

// A value or a Status that is not ok.
template <class T>
class Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : status_(status) { assert(!status.isOk()); }  // NOLINT

  bool isOk() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  T& value() & { assert(isOk()); return *value_; }
  const T& value() const& { assert(isOk()); return *value_; }
  T&& value() && { assert(isOk()); return std::move(*value_); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() { return value(); }
  const T& operator*() const { return value(); }

 private:
  std::optional<T> value_;
  Status status_{Code::kInternal, Source::kInternal, "unset result"};
};

}  // namespace streamedge
