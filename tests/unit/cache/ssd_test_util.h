// Helpers for the SSD tier's unit tests: a temp directory removed at the end, file bytes.
#pragma once

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace streamedge::cache::testing {

// mkdtemp under `parent` ($TMPDIR or /tmp by default); removed recursively on destruction.
class TempDir {
 public:
  explicit TempDir(std::string parent = "") {
    if (parent.empty()) {
      const char* env = std::getenv("TMPDIR");
      parent = env && *env ? env : "/tmp";
    }
    std::string tmpl = parent + "/streamedge-ssd-XXXXXX";
    if (::mkdtemp(tmpl.data())) path_ = tmpl;
  }
  ~TempDir() {
    if (!path_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(path_, ec);
    }
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  bool ok() const { return !path_.empty(); }
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline std::vector<uint8_t> readFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Overwrites bytes of a file in place (buffered, then fsync: O_DIRECT readers see it).
inline bool patchFile(const std::string& path, uint64_t offset, const std::vector<uint8_t>& bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = ::pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(offset)) ==
                      static_cast<ssize_t>(bytes.size()) &&
                  ::fsync(fd) == 0;
  ::close(fd);
  return ok;
}

inline size_t countOccurrences(const std::vector<uint8_t>& hay, const std::string& needle) {
  size_t n = 0;
  auto it = hay.begin();
  while (true) {
    it = std::search(it, hay.end(), needle.begin(), needle.end());
    if (it == hay.end()) return n;
    ++n;
    ++it;
  }
}

inline int64_t findBytes(const std::vector<uint8_t>& hay, const std::string& needle) {
  auto it = std::search(hay.begin(), hay.end(), needle.begin(), needle.end());
  return it == hay.end() ? -1 : static_cast<int64_t>(it - hay.begin());
}

}  // namespace streamedge::cache::testing
