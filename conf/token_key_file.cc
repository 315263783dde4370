#include "conf/token_key_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace streamedge::conf {
namespace {

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Overwrites a buffer that held key material (not optimised away: volatile stores).
void wipe(char* p, size_t n) {
  volatile char* v = p;
  for (size_t i = 0; i < n; ++i) v[i] = 0;
}

std::string modeText(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

}  // namespace

bool readTokenKeyFile(const std::string& path, std::string& secret, std::string& error) {
  secret.clear();
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    error = std::string("cannot open: ") + std::strerror(errno);
    return false;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    error = std::string("cannot stat: ") + std::strerror(errno);
    ::close(fd);
    return false;
  }
  if (!S_ISREG(st.st_mode)) {
    error = "not a regular file";
    ::close(fd);
    return false;
  }
  if (st.st_mode & (S_IWGRP | S_IWOTH)) {
    error = "is writable by other users (mode " + modeText(st.st_mode) +
            "): anyone who can change the key can sign tokens; chmod 0600 or 0640";
    ::close(fd);
    return false;
  }
  if (st.st_mode & S_IROTH) {
    error = "is readable by every user (mode " + modeText(st.st_mode) +
            "): anyone who can read the key can sign tokens; chmod 0600 or 0640";
    ::close(fd);
    return false;
  }
  char buf[160];
  size_t n = 0;
  while (n < sizeof buf) {
    const ssize_t r = ::read(fd, buf + n, sizeof buf - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      error = std::string("cannot read: ") + std::strerror(errno);
      ::close(fd);
      wipe(buf, sizeof buf);
      return false;
    }
    if (r == 0) break;
    n += static_cast<size_t>(r);
  }
  ::close(fd);
  bool ok = false;
  if (n == kTokenKeyBytes) {
    // Exactly 32 bytes: raw (64 hex digits cannot be 32 bytes long).
    secret.assign(buf, n);
    ok = true;
  } else {
    size_t end = n;
    while (end > 0 && (buf[end - 1] == '\n' || buf[end - 1] == '\r' || buf[end - 1] == ' ' ||
                       buf[end - 1] == '\t')) {
      --end;
    }
    if (end == 2 * kTokenKeyBytes) {
      secret.resize(kTokenKeyBytes);
      ok = true;
      for (size_t i = 0; ok && i < kTokenKeyBytes; ++i) {
        const int hi = hexValue(buf[2 * i]);
        const int lo = hexValue(buf[2 * i + 1]);
        if (hi < 0 || lo < 0) {
          ok = false;
        } else {
          secret[i] = static_cast<char>(hi << 4 | lo);
        }
      }
    }
  }
  wipe(buf, sizeof buf);
  if (!ok) {
    wipe(secret.data(), secret.size());
    secret.clear();
    error = "expected 32 raw bytes or 64 hex digits (openssl rand -hex 32 > FILE), got " +
            std::to_string(static_cast<long long>(st.st_size)) + " bytes";
    return false;
  }
  return true;
}

}  // namespace streamedge::conf
