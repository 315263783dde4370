// Access log: one JSON line per request. Privacy by default: the client address is anonymised
// (IPv4 to /24, IPv6 to /48) unless configured otherwise, the query string is logged without
// the parameters the route drops from the key (tokens, CMCD, session ids), and no cookie,
// User-Agent or Referer is ever logged.
//
// AccessLog owns the file and one writer thread, and is shared by all workers. Workers format
// lines into their own buffer and hand a batch over with append() (every ~100 ms or 32 KiB, see
// Worker::logLine): append() copies the batch into a pooled buffer under a short mutex, and
// that is all: no write(2), no wake-up system call and, once warm, no allocation on a worker.
// While lines keep coming the writer wakes every kWriteDelay and writes what has collected with
// one writev (sooner past kWriteSoonBytes); after an idle period the next append() wakes it. A
// line reaches the file within ~120 ms (the worker's 100 ms flush, then one period).
// Memory is bounded: a batch that would take the bytes waiting for the writer past
// `max_queued_bytes` is dropped whole and its lines counted (droppedLines()), and so are lines
// a failed write loses. reopen() (SIGUSR1, logrotate) is queued in order and done by the writer:
// batches appended before it go to the old file, later ones to the new. flush() waits for what
// was appended before it; the destructor writes everything still queued, then joins the writer.
// Thread-safe.
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "conf/config.h"

namespace streamedge::proxy {

// Writes the client address of `addr` per `mode` into `out` (cleared first): truncate →
// "203.0.113.0" / "2001:db8:1::" ; full → the address ; none → "-".
void anonymizeAddress(const sockaddr* addr, conf::AddressAnonymization mode, std::string& out);

struct AccessLogEntry {
  int64_t time_unix_ms = 0;
  std::string_view vhost;
  std::string_view client;      // already anonymised
  std::string_view method;
  std::string_view path;        // normalised path
  std::string_view query;       // filtered query (dropped parameters removed)
  int status = 0;
  uint64_t bytes = 0;           // body bytes sent
  double duration_ms = 0;
  double ttfb_ms = 0;           // request received → first response byte queued
  std::string_view cache;       // HIT MISS STALE COALESCED PASS (or "-")
  std::string_view origin;      // origin name used, "-" when none
  std::string_view dc;
  std::string_view tls;         // "-" for plain HTTP
};

// Appends one JSON line (with '\n') for `e` to `out`.
void formatAccessLogLine(const AccessLogEntry& e, std::string& out);

class AccessLog {
 public:
  // Bytes that may wait for the writer (a disk stalled for seconds at 100k lines/s).
  static constexpr size_t kDefaultMaxQueuedBytes = 32 << 20;
  // The writer's period while lines keep coming: it wakes by itself, so workers never pay a
  // futex wake-up (plus a context switch where they share a core: measured about as much as the
  // write itself). Short enough that the batches are still in cache when the kernel copies
  // them (50 ms made that copy 4x slower).
  static constexpr std::chrono::milliseconds kWriteDelay{10};
  // Past this many bytes waiting, append() wakes the writer without waiting for kWriteDelay.
  static constexpr size_t kWriteSoonBytes = 4 << 20;

  // `target`: "stderr", "stdout", "off" or a path (opened for append, created 0640).
  explicit AccessLog(std::string target, size_t max_queued_bytes = kDefaultMaxQueuedBytes);
  // Writes every line still queued, then stops the writer.
  ~AccessLog();
  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;

  bool enabled() const { return target_ != "off"; }
  // Opens the target and starts the writer; call once, before the first append(). Returns false
  // (and logs to stderr) if the file could not be opened; nothing is started then.
  bool open();
  // Any thread: the writer reopens the path after writing what was appended before this call (a
  // failed reopen keeps writing to the old file). No-op for stderr, stdout and off.
  void reopen();
  // Any thread: queues `lines` (whole lines, each ending in '\n') for the writer; never blocks
  // on I/O. Dropped (and counted) when the writer is too far behind or was never started.
  void append(std::string_view lines);
  // Any thread: returns once everything appended (and reopened) before the call is written.
  void flush();
  // Any thread: lines lost so far, because the writer was too far behind or a write failed.
  uint64_t droppedLines() const { return dropped_lines_.load(std::memory_order_relaxed); }

 private:
  struct Item {
    std::string lines;
    bool reopen = false;  // a reopen marker, no lines
  };
  void writerLoop();
  // Writer thread: writes `items` in order, reopening at markers.
  void writeItems(std::vector<Item>& items);
  // Opens the path; on success replaces fd_. Writer thread (or open() before it starts).
  bool openFile();

  // const after construction
  const std::string target_;
  const size_t max_queued_bytes_;

  std::mutex mu_;
  std::condition_variable work_cv_;      // the writer waits for work (see writerLoop)
  std::condition_variable written_cv_;   // flush() waits: written_ advanced
  std::vector<Item> queue_;              // guarded by mu_
  std::vector<std::string> spare_;       // guarded by mu_; written buffers, kept for reuse
  size_t queued_bytes_ = 0;              // guarded by mu_; queued + being written
  uint64_t queued_items_ = 0;            // guarded by mu_; items ever queued
  uint64_t written_items_ = 0;           // guarded by mu_; items the writer is done with
  bool started_ = false;                 // guarded by mu_
  bool stopping_ = false;                // guarded by mu_
  bool writer_idle_ = false;             // guarded by mu_; waiting for a first batch, no timeout
  bool write_now_ = false;               // guarded by mu_; flush() or reopen() is waiting
  std::atomic<uint64_t> dropped_lines_{0};

  // writer thread only (open() before the writer starts; the destructor after it stopped)
  int fd_ = -1;
  bool owns_fd_ = false;
  std::thread writer_;
};

}  // namespace streamedge::proxy
