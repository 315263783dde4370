#include "proxy/log_retention.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>

namespace streamedge::proxy {
namespace {

// "dir/name" → ("dir", "name"); a bare name is in ".".
void splitPath(const std::string& path, std::string& dir, std::string& base) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) {
    dir = ".";
    base = path;
  } else {
    dir = slash == 0 ? "/" : path.substr(0, slash);
    base = path.substr(slash + 1);
  }
}

std::string join(const std::string& dir, const std::string& name) {
  return dir == "/" ? "/" + name : dir + "/" + name;
}

}  // namespace

bool isRotatedLogName(const std::string& name, const std::string& base) {
  return !base.empty() && name.size() > base.size() && name.compare(0, base.size(), base) == 0 &&
         (name[base.size()] == '.' || name[base.size()] == '-');
}

LogRetentionResult removeRotatedLogs(const std::string& log_path, conf::Millis max_age,
                                     WallTime now, const std::vector<std::string>& keep,
                                     const std::vector<std::string>& keep_prefixes) {
  LogRetentionResult result;
  if (max_age.count() <= 0 || log_path.empty() || log_path == "stderr" || log_path == "stdout" ||
      log_path == "off") {
    return result;
  }
  std::string dir, base;
  splitPath(log_path, dir, base);
  if (base.empty()) return result;
  // The protected names of this directory.
  std::vector<std::string> keep_names{base}, keep_bases;
  for (const std::string& k : keep) {
    std::string d, b;
    splitPath(k, d, b);
    if (d == dir) keep_names.push_back(b);
  }
  for (const std::string& k : keep_prefixes) {
    std::string d, b;
    splitPath(k, d, b);
    if (d == dir && !b.empty()) keep_bases.push_back(b);
  }
  std::unique_ptr<DIR, int (*)(DIR*)> listing(::opendir(dir.c_str()), ::closedir);
  if (!listing) {
    result.errors.push_back(dir + ": cannot list: " + std::strerror(errno));
    return result;
  }
  const WallTime cutoff = now - std::chrono::duration_cast<WallTime::duration>(max_age);
  while (const dirent* entry = ::readdir(listing.get())) {
    const std::string name = entry->d_name;
    if (!isRotatedLogName(name, base)) continue;
    if (std::find(keep_names.begin(), keep_names.end(), name) != keep_names.end()) continue;
    if (std::any_of(keep_bases.begin(), keep_bases.end(), [&](const std::string& b) {
          return name == b || isRotatedLogName(name, b);
        })) {
      continue;
    }
    const std::string path = join(dir, name);
    struct stat st {};
    // lstat: a symlink is never followed nor deleted, only regular files are ours to judge.
    if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    const WallTime modified = WallTime(std::chrono::duration_cast<WallTime::duration>(
        std::chrono::seconds(st.st_mtim.tv_sec) + std::chrono::nanoseconds(st.st_mtim.tv_nsec)));
    if (modified > cutoff) continue;
    if (::unlink(path.c_str()) == 0) {
      result.removed.push_back(path);
    } else if (errno != ENOENT) {
      result.errors.push_back(path + ": " + std::strerror(errno));
    }
  }
  std::sort(result.removed.begin(), result.removed.end());
  return result;
}

}  // namespace streamedge::proxy
