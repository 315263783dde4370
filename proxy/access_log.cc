#include "proxy/access_log.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstdio>
#include <cstring>
#include <ctime>

namespace streamedge::proxy {

void anonymizeAddress(const sockaddr* addr, conf::AddressAnonymization mode, std::string& out) {
  out.clear();
  if (mode == conf::AddressAnonymization::kNone || addr == nullptr) {
    out = "-";
    return;
  }
  char buf[INET6_ADDRSTRLEN];
  if (addr->sa_family == AF_INET) {
    in_addr a = reinterpret_cast<const sockaddr_in*>(addr)->sin_addr;
    if (mode == conf::AddressAnonymization::kTruncate) {
      a.s_addr &= htonl(0xFFFFFF00u);  // keep the /24
    }
    inet_ntop(AF_INET, &a, buf, sizeof buf);
  } else if (addr->sa_family == AF_INET6) {
    in6_addr a = reinterpret_cast<const sockaddr_in6*>(addr)->sin6_addr;
    const bool v4mapped = IN6_IS_ADDR_V4MAPPED(&a);
    if (v4mapped) {
      in_addr v4;
      std::memcpy(&v4, a.s6_addr + 12, 4);
      if (mode == conf::AddressAnonymization::kTruncate) v4.s_addr &= htonl(0xFFFFFF00u);
      inet_ntop(AF_INET, &v4, buf, sizeof buf);
      out = buf;
      return;
    }
    if (mode == conf::AddressAnonymization::kTruncate) {
      std::memset(a.s6_addr + 6, 0, 10);  // keep the /48
    }
    inet_ntop(AF_INET6, &a, buf, sizeof buf);
  } else {
    out = "-";
    return;
  }
  out = buf;
}

namespace {

// The line is formatted on the request path (ClientConnection::onResponseDone), so it is written
// through a raw pointer into space reserved once for its worst case: no printf, no per-character
// capacity checks, no allocation once the worker's buffer has grown (metrics/README.md, "Cost on
// the hot path").
constexpr std::array<bool, 256> kNeedsEscape = [] {
  std::array<bool, 256> t{};
  for (int c = 0; c < 0x20; ++c) t[static_cast<size_t>(c)] = true;
  t['"'] = t['\\'] = t[0x7f] = true;
  return t;
}();

class LineWriter {
 public:
  explicit LineWriter(char* at) : p_(at) {}
  char* end() const { return p_; }

  template <size_t N>
  void literal(const char (&s)[N]) {
    std::memcpy(p_, s, N - 1);
    p_ += N - 1;
  }
  void raw(std::string_view s) {
    std::memcpy(p_, s.data(), s.size());
    p_ += s.size();
  }
  // A JSON string; `dash_if_empty` writes "-" for an empty value.
  void string(std::string_view s, bool dash_if_empty = false) {
    if (s.empty() && dash_if_empty) s = "-";
    *p_++ = '"';
    for (const char ch : s) {
      const auto c = static_cast<unsigned char>(ch);
      if (!kNeedsEscape[c]) {
        *p_++ = ch;
        continue;
      }
      *p_++ = '\\';
      switch (c) {
        case '"': *p_++ = '"'; break;
        case '\\': *p_++ = '\\'; break;
        case '\n': *p_++ = 'n'; break;
        case '\r': *p_++ = 'r'; break;
        case '\t': *p_++ = 't'; break;
        default: {
          static constexpr char kHex[] = "0123456789abcdef";
          const char esc[5] = {'u', '0', '0', kHex[c >> 4], kHex[c & 0xf]};
          std::memcpy(p_, esc, sizeof esc);
          p_ += sizeof esc;
        }
      }
    }
    *p_++ = '"';
  }
  void integer(int64_t v) { p_ = std::to_chars(p_, p_ + 20, v).ptr; }
  // Three fixed decimals ("1.500"), from integer microseconds.
  void millis(double ms) {
    const auto us = static_cast<int64_t>(ms <= 0 ? 0 : ms * 1000.0 + 0.5);
    integer(us / 1000);
    const auto frac = static_cast<int>(us % 1000);
    p_[0] = '.';
    p_[1] = static_cast<char>('0' + frac / 100);
    p_[2] = static_cast<char>('0' + frac / 10 % 10);
    p_[3] = static_cast<char>('0' + frac % 10);
    p_ += 4;
  }
  // "2023-11-14T22:13:20.123Z". The part up to the seconds changes once a second: each thread
  // keeps the last one it formatted.
  void time(int64_t unix_ms) {
    thread_local int64_t cached_second = INT64_MIN;
    thread_local char cached[32];
    thread_local size_t cached_len = 0;
    const int64_t second = unix_ms >= 0 ? unix_ms / 1000 : (unix_ms - 999) / 1000;
    if (second != cached_second) {
      time_t secs = static_cast<time_t>(second);
      tm t{};
      gmtime_r(&secs, &t);
      const int n = std::snprintf(cached, sizeof cached, "%04d-%02d-%02dT%02d:%02d:%02d.",
                                  t.tm_year + 1900, t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min,
                                  t.tm_sec);
      cached_len = n > 0 ? std::min(static_cast<size_t>(n), sizeof cached - 1) : 0;
      cached_second = second;
    }
    raw(std::string_view(cached, cached_len));
    const auto ms = static_cast<int>(unix_ms - second * 1000);
    p_[0] = static_cast<char>('0' + ms / 100);
    p_[1] = static_cast<char>('0' + ms / 10 % 10);
    p_[2] = static_cast<char>('0' + ms % 10);
    p_[3] = 'Z';
    p_ += 4;
  }

 private:
  char* p_;
};

}  // namespace

void formatAccessLogLine(const AccessLogEntry& e, std::string& out) {
  // Worst case: every string character escaped as \u00XX (6 bytes), "-" for empty ones, the
  // field names and numbers in kFixed.
  constexpr size_t kFixed = 320;
  const size_t strings = e.vhost.size() + e.client.size() + e.method.size() + e.path.size() +
                         e.query.size() + e.cache.size() + e.origin.size() + e.dc.size() +
                         e.tls.size();
  const size_t start = out.size();
  out.resize(start + kFixed + 6 * strings);
  LineWriter w(out.data() + start);
  w.literal("{\"time\":\"");
  w.time(e.time_unix_ms);
  w.literal("\",\"vhost\":");
  w.string(e.vhost, true);
  w.literal(",\"client\":");
  w.string(e.client);
  w.literal(",\"method\":");
  w.string(e.method);
  w.literal(",\"path\":");
  w.string(e.path);
  w.literal(",\"query\":");
  w.string(e.query);
  w.literal(",\"status\":");
  w.integer(e.status);
  w.literal(",\"bytes\":");
  w.integer(static_cast<int64_t>(e.bytes));
  w.literal(",\"duration_ms\":");
  w.millis(e.duration_ms);
  w.literal(",\"ttfb_ms\":");
  w.millis(e.ttfb_ms);
  w.literal(",\"cache\":");
  w.string(e.cache, true);
  w.literal(",\"origin\":");
  w.string(e.origin, true);
  w.literal(",\"dc\":");
  w.string(e.dc, true);
  w.literal(",\"tls\":");
  w.string(e.tls, true);
  w.literal("}\n");
  out.resize(static_cast<size_t>(w.end() - out.data()));
}

namespace {

// Batches kept for reuse, and the largest one kept: enough for the batches of one kWriteDelay
// at full speed (workers hand over ~32 KiB at a time) without holding on to a burst's memory.
constexpr size_t kSpareBuffers = 64;
constexpr size_t kSpareCapacity = 64 << 10;

size_t countLines(std::string_view s) {
  return static_cast<size_t>(std::count(s.begin(), s.end(), '\n'));
}

}  // namespace

AccessLog::AccessLog(std::string target, size_t max_queued_bytes)
    : target_(std::move(target)), max_queued_bytes_(max_queued_bytes) {}

AccessLog::~AccessLog() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  work_cv_.notify_one();
  // The writer leaves only once the queue is empty: every line appended before now is written.
  if (writer_.joinable()) writer_.join();
  if (owns_fd_ && fd_ >= 0) ::close(fd_);
}

bool AccessLog::open() {
  if (target_ == "off") return true;
  if (target_ == "stderr") {
    fd_ = STDERR_FILENO;
  } else if (target_ == "stdout") {
    fd_ = STDOUT_FILENO;
  } else if (!openFile()) {
    return false;
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (!started_) {
    started_ = true;
    writer_ = std::thread([this] { writerLoop(); });
  }
  return true;
}

bool AccessLog::openFile() {
  int fd = ::open(target_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) {
    std::fprintf(stderr, "streamedge: cannot open access log %s: %s\n", target_.c_str(),
                 std::strerror(errno));
    return false;
  }
  if (owns_fd_ && fd_ >= 0) ::close(fd_);
  fd_ = fd;
  owns_fd_ = true;
  return true;
}

void AccessLog::reopen() {
  if (target_ == "off" || target_ == "stderr" || target_ == "stdout") return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!started_) return;
    queue_.push_back(Item{{}, true});
    ++queued_items_;
    write_now_ = true;
  }
  work_cv_.notify_one();
}

void AccessLog::append(std::string_view lines) {
  if (lines.empty()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!started_ || stopping_ || queued_bytes_ + lines.size() > max_queued_bytes_) {
      if (enabled()) dropped_lines_.fetch_add(countLines(lines), std::memory_order_relaxed);
      return;
    }
    Item item;
    if (!spare_.empty()) {
      item.lines = std::move(spare_.back());
      spare_.pop_back();
    }
    // A copy: the worker keeps its own buffer (and its capacity) for the next batch. At most a
    // few hundred KiB per second per worker, in the same cache lines the worker just wrote.
    item.lines.assign(lines.data(), lines.size());
    const bool was_below = queued_bytes_ < kWriteSoonBytes;
    queued_bytes_ += lines.size();
    queue_.push_back(std::move(item));
    ++queued_items_;
    // Under steady traffic the writer is in its kWriteDelay sleep and wakes by itself.
    if (!writer_idle_ && !(was_below && queued_bytes_ >= kWriteSoonBytes)) return;
  }
  work_cv_.notify_one();
}

void AccessLog::flush() {
  std::unique_lock<std::mutex> lock(mu_);
  const uint64_t target = queued_items_;
  if (written_items_ >= target || !started_) return;
  write_now_ = true;
  work_cv_.notify_one();
  written_cv_.wait(lock, [&] { return written_items_ >= target; });
}

void AccessLog::writerLoop() {
  pthread_setname_np(pthread_self(), "se-access-log");
  std::vector<Item> batch;
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    // One period: batches appended meanwhile need no wake-up (the worker pays nothing).
    work_cv_.wait_for(lock, kWriteDelay,
                      [&] { return stopping_ || write_now_ || queued_bytes_ >= kWriteSoonBytes; });
    write_now_ = false;
    if (queue_.empty()) {
      if (stopping_) break;  // everything is written
      // A whole period without a batch: sleep until append() wakes us for the next one, then
      // let others join it for a period.
      writer_idle_ = true;
      work_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      writer_idle_ = false;
      continue;
    }
    batch.swap(queue_);
    lock.unlock();
    writeItems(batch);
    size_t bytes = 0;
    for (const Item& item : batch) bytes += item.lines.size();
    lock.lock();
    queued_bytes_ -= bytes;
    written_items_ += batch.size();
    for (Item& item : batch) {
      if (item.reopen || spare_.size() >= kSpareBuffers) continue;
      if (item.lines.capacity() > kSpareCapacity) continue;
      item.lines.clear();
      spare_.push_back(std::move(item.lines));
    }
    batch.clear();
    written_cv_.notify_all();
  }
}

void AccessLog::writeItems(std::vector<Item>& items) {
  // Runs of batches between reopen markers go out in one writev each (64 batches at most).
  std::array<iovec, 64> iov;
  size_t i = 0;
  while (i < items.size()) {
    if (items[i].reopen) {
      openFile();  // on failure the old file stays (and the error is on stderr)
      ++i;
      continue;
    }
    int count = 0;
    while (i < items.size() && !items[i].reopen && count < static_cast<int>(iov.size())) {
      iov[static_cast<size_t>(count)] = {items[i].lines.data(), items[i].lines.size()};
      ++count;
      ++i;
    }
    int first = 0;
    while (first < count) {
      const ssize_t n = fd_ >= 0 ? ::writev(fd_, iov.data() + first, count - first) : -1;
      if (n < 0) {
        if (fd_ >= 0 && errno == EINTR) continue;
        // A full disk must not stop serving: the rest of this run is lost, and counted.
        uint64_t lost = 0;
        for (int k = first; k < count; ++k) {
          const iovec& v = iov[static_cast<size_t>(k)];
          lost += countLines(std::string_view(static_cast<const char*>(v.iov_base), v.iov_len));
        }
        dropped_lines_.fetch_add(lost, std::memory_order_relaxed);
        break;
      }
      auto done = static_cast<size_t>(n);
      while (first < count && done >= iov[static_cast<size_t>(first)].iov_len) {
        done -= iov[static_cast<size_t>(first)].iov_len;
        ++first;
      }
      if (first < count) {
        iovec& v = iov[static_cast<size_t>(first)];
        v.iov_base = static_cast<char*>(v.iov_base) + done;
        v.iov_len -= done;
      }
    }
  }
}

}  // namespace streamedge::proxy
