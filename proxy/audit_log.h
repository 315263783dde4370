// Audit log: one JSON line per admin action that changes something (a purge) and per refused
// admin request, appended to a file of its own ([log] audit; "" = off), separate from the access
// log. Each line says who (the token's configured name, never the token), from where (the admin
// client's address), what (action, method, path, the purge's parameters), when (UTC, ms) and
// the result (HTTP status, objects removed or marked, reason).
//
// The file is opened O_APPEND (each line is one write(2), so concurrent writers and logrotate's
// copytruncate never interleave a line) and reopened on SIGUSR1 with the access log. Lines are
// written synchronously: admin actions are rare, and an audit line must be on disk (in the page
// cache) before the action is answered. A failed write is counted (failedLines) and reported on
// stderr. Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace streamedge::proxy {

struct AuditEvent {
  int64_t time_unix_ms = 0;
  std::string_view who;      // token name, "anonymous" or "" (no/unknown token)
  std::string_view client;   // the admin client's address
  std::string_view action;   // "purge", "refused"
  std::string_view method;
  std::string_view path;
  // What the action was about (e.g. {"kind","prefix"}, {"host","a.example"}), in order.
  std::vector<std::pair<std::string_view, std::string_view>> params;
  std::string_view result;   // "ok", "refused", "error"
  int status = 0;
  int64_t objects = -1;      // objects removed or marked; < 0: not applicable
  std::string_view detail;   // reason of a refusal or an error
};

// One JSON line (with '\n') for `e`.
std::string formatAuditLine(const AuditEvent& e);

class AuditLog {
 public:
  // `path`: a file, "" = off.
  explicit AuditLog(std::string path) : path_(std::move(path)) {}
  ~AuditLog();
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  // Opens (creates, mode 0640) the file. False (and a message on stderr) when it cannot be.
  bool open();
  // Reopens the file by its path (after logrotate moved it). Keeps the old descriptor when the
  // path cannot be opened.
  void reopen();
  bool enabled() const { return !path_.empty(); }
  const std::string& path() const { return path_; }
  void record(const AuditEvent& e);
  uint64_t failedLines() const { return failed_.load(std::memory_order_relaxed); }

 private:
  const std::string path_;
  std::mutex mu_;
  int fd_ = -1;  // guarded by mu_
  std::atomic<uint64_t> failed_{0};
};

}  // namespace streamedge::proxy
