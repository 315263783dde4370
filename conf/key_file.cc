#include "conf/key_file.h"

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

KeyFileError readKeyFile(const std::string& path, KeyFileAccess access,
                         std::string_view what_it_allows, std::string& secret, std::string& error) {
  secret.clear();
  auto fail = [&](KeyFileError kind, std::string text) {
    error = std::move(text);
    return kind;
  };
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return fail(KeyFileError::kIo, std::string("cannot open: ") + std::strerror(errno));
  struct stat st {};
  std::string refused;
  if (::fstat(fd, &st) != 0) {
    refused = std::string("cannot stat: ") + std::strerror(errno);
  } else if (!S_ISREG(st.st_mode)) {
    refused = "not a regular file";
  } else if (access == KeyFileAccess::kOwnerAndGroupOnly && (st.st_mode & (S_IWGRP | S_IWOTH))) {
    refused = "is writable by other users (mode " + modeText(st.st_mode) +
              "): anyone who can change the key can " + std::string(what_it_allows) +
              "; chmod 0600 or 0640";
  } else if (access == KeyFileAccess::kOwnerAndGroupOnly && (st.st_mode & S_IROTH)) {
    refused = "is readable by every user (mode " + modeText(st.st_mode) +
              "): anyone who can read the key can " + std::string(what_it_allows) +
              "; chmod 0600 or 0640";
  }
  if (!refused.empty()) {
    ::close(fd);
    return fail(KeyFileError::kAccess, std::move(refused));
  }
  char buf[160];
  size_t n = 0;
  while (n < sizeof buf) {
    const ssize_t r = ::read(fd, buf + n, sizeof buf - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      const int err = errno;
      ::close(fd);
      wipe(buf, sizeof buf);
      return fail(KeyFileError::kIo, std::string("cannot read: ") + std::strerror(err));
    }
    if (r == 0) break;
    n += static_cast<size_t>(r);
  }
  ::close(fd);
  bool ok = false;
  if (n == kKeyFileBytes) {
    // Exactly 32 bytes: raw (64 hex digits cannot be 32 bytes long).
    secret.assign(buf, n);
    ok = true;
  } else {
    size_t end = n;
    while (end > 0 && (buf[end - 1] == '\n' || buf[end - 1] == '\r' || buf[end - 1] == ' ' ||
                       buf[end - 1] == '\t')) {
      --end;
    }
    if (end == 2 * kKeyFileBytes) {
      secret.resize(kKeyFileBytes);
      ok = true;
      for (size_t i = 0; ok && i < kKeyFileBytes; ++i) {
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
    return fail(KeyFileError::kContent,
                "expected 32 raw bytes or 64 hex digits (openssl rand -hex 32 > FILE), got " +
                    std::to_string(static_cast<long long>(st.st_size)) +
                    " bytes");
  }
  return KeyFileError::kNone;
}

}  // namespace streamedge::conf
