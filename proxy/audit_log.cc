#include "proxy/audit_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "proxy/json_text.h"

namespace streamedge::proxy {

namespace {

void appendField(std::string& out, std::string_view name, std::string_view value) {
  out += ",\"";
  out += name;
  out += "\":";
  appendJsonString(out, value);
}

}  // namespace

std::string formatAuditLine(const AuditEvent& e) {
  std::string out = "{\"time\":\"";
  appendUtcTimeMs(out, e.time_unix_ms);
  out += '"';
  appendField(out, "who", e.who.empty() ? std::string_view("-") : e.who);
  appendField(out, "client", e.client);
  appendField(out, "action", e.action);
  appendField(out, "method", e.method);
  appendField(out, "path", e.path);
  for (const auto& [name, value] : e.params) appendField(out, name, value);
  appendField(out, "result", e.result);
  out += ",\"status\":" + std::to_string(e.status);
  if (e.objects >= 0) out += ",\"objects\":" + std::to_string(e.objects);
  if (!e.detail.empty()) appendField(out, "detail", e.detail);
  out += "}\n";
  return out;
}

AuditLog::~AuditLog() {
  if (fd_ >= 0) ::close(fd_);
}

bool AuditLog::open() {
  if (path_.empty()) return true;
  const int fd = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) {
    std::fprintf(stderr, "streamedge: cannot open audit log %s: %s\n", path_.c_str(),
                 std::strerror(errno));
    return false;
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
  return true;
}

void AuditLog::reopen() {
  if (path_.empty()) return;
  open();  // on failure the old descriptor stays: lines still go somewhere
}

void AuditLog::record(const AuditEvent& e) {
  if (path_.empty()) return;
  const std::string line = formatAuditLine(e);
  std::lock_guard<std::mutex> lock(mu_);
  // One write(2) per line: O_APPEND makes it atomic with respect to other appenders.
  ssize_t n = -1;
  if (fd_ >= 0) {
    do {
      n = ::write(fd_, line.data(), line.size());
    } while (n < 0 && errno == EINTR);
  }
  if (n != static_cast<ssize_t>(line.size())) {
    failed_.fetch_add(1, std::memory_order_relaxed);
    std::fprintf(stderr, "streamedge: audit log %s: line not written: %s\n", path_.c_str(),
                 n < 0 ? std::strerror(errno) : "short write");
  }
}

}  // namespace streamedge::proxy
