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

Status replaceFileDurably(const std::string& path, const std::vector<uint8_t>& bytes,
                          int* replaced) {
  if (replaced) *replaced = -1;
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Status(Code::kIo, Source::kStorage, "cannot create the temporary file");
  size_t done = 0;
  bool written = true;
  while (written && done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      written = false;
    } else {
      done += static_cast<size_t>(n);
    }
  }
  if (!written || ::fsync(fd) != 0) {
    ::close(fd);
    ::unlink(tmp.c_str());
    return Status(Code::kIo, Source::kStorage, "writing or syncing the temporary file failed");
  }
  ::close(fd);
  const int old_fd = replaced ? ::open(path.c_str(), O_WRONLY | O_CLOEXEC) : -1;
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    if (old_fd >= 0) ::close(old_fd);
    ::unlink(tmp.c_str());
    return Status(Code::kIo, Source::kStorage, "renaming the temporary file failed");
  }
  if (replaced) *replaced = old_fd;
  return syncParentDirectory(path);
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
