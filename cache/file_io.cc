#include "cache/file_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace streamedge::cache {

Result<std::vector<uint8_t>> readWholeFile(const std::string& path, uint64_t max_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return Status(Code::kNotFound, Source::kStorage, "no such file");
    return Status(Code::kIo, Source::kStorage, "cannot open the file");
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || st.st_size < 0 || static_cast<uint64_t>(st.st_size) > max_bytes) {
    ::close(fd);
    return Status(Code::kIo, Source::kStorage, "cannot stat the file (or it is too large)");
  }
  std::vector<uint8_t> bytes(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  if (done != bytes.size()) return Status(Code::kIo, Source::kStorage, "reading the file failed");
  return bytes;
}

Status syncParentDirectory(const std::string& path) {
  const size_t slash = path.rfind('/');
  const std::string dir =
      slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status(Code::kIo, Source::kStorage, "cannot open the file's directory");
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return Status(Code::kIo, Source::kStorage, "fsync of the file's directory failed");
  return Status::ok();
}

}  // namespace streamedge::cache
