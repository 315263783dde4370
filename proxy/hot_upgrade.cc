#include "proxy/hot_upgrade.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <utility>

namespace streamedge::proxy {

namespace {

std::string joinPath(std::string_view dir, std::string_view name) {
  std::string out(dir);
  if (out.empty()) out = ".";
  if (out.back() != '/') out += '/';
  out += name;
  return out;
}

bool isExecutableFile(const std::string& path) {
  struct stat st{};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

bool parseFd(std::string_view text, int& out) {
  if (text.empty() || text.size() > 9) return false;
  int value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < 0) return false;
  out = value;
  return true;
}

// A descriptor worth adopting: an open socket, stream, listening.
bool isListeningStreamSocket(int fd) {
  int type = 0;
  int listening = 0;
  socklen_t len = sizeof type;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM) return false;
  len = sizeof listening;
  return ::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 && listening == 1;
}

void closeAll(std::vector<int>& fds) {
  for (int fd : fds) {
    if (fd >= 0) ::close(fd);
  }
  fds.clear();
}

// Keeps the usable descriptors of `group` (close-on-exec again), closes and reports the rest.
void screen(SocketGroup& group, const char* what, std::vector<std::string>* warnings) {
  std::vector<int> kept;
  for (int fd : group.fds) {
    if (isListeningStreamSocket(fd)) {
      ::fcntl(fd, F_SETFD, FD_CLOEXEC);
      kept.push_back(fd);
      continue;
    }
    if (warnings) {
      warnings->push_back(std::string("upgrade: inherited descriptor ") + std::to_string(fd) +
                          " for " + what + " " + group.key +
                          " is not a listening socket; ignored");
    }
    // Not ours to close unless it is a socket: a stray number may name something else.
    int type = 0;
    socklen_t len = sizeof type;
    if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0) ::close(fd);
  }
  group.fds = std::move(kept);
}

constexpr std::string_view kMessageNames[] = {"store", "store-free", "ready", "go", "failed", "abort",
                                             "taken"};

}  // namespace

std::string startedExecutable(std::string_view argv0, std::string_view cwd,
                              std::string_view path_env) {
  if (argv0.empty()) return "";
  if (argv0.find('/') != std::string_view::npos) {
    if (argv0.front() == '/') return std::string(argv0);
    if (cwd.empty()) return "";
    std::string rel(argv0);
    while (rel.rfind("./", 0) == 0) rel.erase(0, 2);
    return joinPath(cwd, rel);
  }
  // Found through PATH, like execvp(); an empty entry means the working directory.
  size_t start = 0;
  while (start <= path_env.size()) {
    size_t end = path_env.find(':', start);
    if (end == std::string_view::npos) end = path_env.size();
    std::string_view dir = path_env.substr(start, end - start);
    std::string candidate = dir.empty() ? joinPath(cwd, argv0) : joinPath(dir, argv0);
    if (!candidate.empty() && candidate.front() != '/') candidate = joinPath(cwd, candidate);
    if (isExecutableFile(candidate)) return candidate;
    start = end + 1;
  }
  return "";
}

std::string startedExecutable(const char* argv0) {
  char cwd[4096];
  const char* dir = ::getcwd(cwd, sizeof cwd) ? cwd : "";
  const char* path = std::getenv("PATH");
  return startedExecutable(argv0 ? argv0 : "", dir, path ? path : "/usr/local/bin:/usr/bin:/bin");
}

std::string formatSocketGroups(const std::vector<SocketGroup>& groups) {
  std::string out;
  for (const SocketGroup& g : groups) {
    if (!out.empty()) out += ';';
    out += g.key;
    out += '=';
    for (size_t i = 0; i < g.fds.size(); ++i) {
      if (i > 0) out += ',';
      out += std::to_string(g.fds[i]);
    }
  }
  return out;
}

bool parseSocketGroups(std::string_view text, std::vector<SocketGroup>& out, std::string* why) {
  out.clear();
  auto fail = [&](std::string reason) {
    out.clear();
    if (why) *why = std::move(reason);
    return false;
  };
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find(';', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view item = text.substr(start, end - start);
    const size_t eq = item.rfind('=');
    if (eq == std::string_view::npos || eq == 0) return fail("no key=fds in \"" + std::string(item) + "\"");
    SocketGroup g;
    g.key = std::string(item.substr(0, eq));
    std::string_view fds = item.substr(eq + 1);
    size_t f = 0;
    while (f <= fds.size()) {
      size_t comma = fds.find(',', f);
      if (comma == std::string_view::npos) comma = fds.size();
      int fd = -1;
      if (!parseFd(fds.substr(f, comma - f), fd)) {
        return fail("bad descriptor in \"" + std::string(item) + "\"");
      }
      g.fds.push_back(fd);
      f = comma + 1;
    }
    out.push_back(std::move(g));
    start = end + 1;
  }
  return true;
}

// --- Inheritance ------------------------------------------------------------------------------

Inheritance::~Inheritance() {
  closeUntaken();
  if (control_fd_ >= 0) ::close(control_fd_);
}

Inheritance::Inheritance(Inheritance&& other) noexcept
    : control_fd_(other.control_fd_),
      listeners_(std::move(other.listeners_)),
      admin_(std::move(other.admin_)) {
  other.control_fd_ = -1;
  other.listeners_.clear();
  other.admin_.reset();
}

Inheritance& Inheritance::operator=(Inheritance&& other) noexcept {
  if (this != &other) {
    closeUntaken();
    if (control_fd_ >= 0) ::close(control_fd_);
    control_fd_ = other.control_fd_;
    listeners_ = std::move(other.listeners_);
    admin_ = std::move(other.admin_);
    other.control_fd_ = -1;
    other.listeners_.clear();
    other.admin_.reset();
  }
  return *this;
}

Inheritance Inheritance::fromEnvironment(std::vector<std::string>* warnings) {
  Inheritance in;
  const char* control = std::getenv(kUpgradeFdEnv);
  const char* listen = std::getenv(kListenFdsEnv);
  const char* admin = std::getenv(kAdminFdEnv);
  int control_fd = -1;
  if (control && !parseFd(control, control_fd)) {
    if (warnings) warnings->push_back(std::string("upgrade: ignoring ") + kUpgradeFdEnv + "=" + control);
    control_fd = -1;
  }
  if (control_fd >= 0) {
    int type = 0;
    socklen_t len = sizeof type;
    if (::getsockopt(control_fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_SEQPACKET) {
      if (warnings) {
        warnings->push_back(std::string("upgrade: ") + kUpgradeFdEnv + "=" + control +
                            " is not the control socket; ignored");
      }
      control_fd = -1;
    } else {
      ::fcntl(control_fd, F_SETFD, FD_CLOEXEC);
    }
  }
  // Sockets without a control socket are not ours to take: some other launcher set them.
  if (control_fd >= 0) {
    std::string why;
    if (listen && !parseSocketGroups(listen, in.listeners_, &why) && warnings) {
      warnings->push_back(std::string("upgrade: ") + kListenFdsEnv + ": " + why + "; binding afresh");
    }
    for (SocketGroup& g : in.listeners_) screen(g, "listener", warnings);
    std::vector<SocketGroup> admin_groups;
    if (admin && !parseSocketGroups(admin, admin_groups, &why) && warnings) {
      warnings->push_back(std::string("upgrade: ") + kAdminFdEnv + ": " + why + "; binding afresh");
    }
    if (!admin_groups.empty()) {
      in.admin_ = std::move(admin_groups.front());
      screen(*in.admin_, "admin listener", warnings);
    }
  }
  in.control_fd_ = control_fd;
  ::unsetenv(kUpgradeFdEnv);
  ::unsetenv(kListenFdsEnv);
  ::unsetenv(kAdminFdEnv);
  return in;
}

Inheritance Inheritance::forTest(int control_fd, std::vector<SocketGroup> listeners,
                                 std::optional<SocketGroup> admin) {
  Inheritance in;
  in.control_fd_ = control_fd;
  in.listeners_ = std::move(listeners);
  in.admin_ = std::move(admin);
  return in;
}

int Inheritance::takeControl() {
  const int fd = control_fd_;
  control_fd_ = -1;
  return fd;
}

std::vector<int> Inheritance::takeListener(const std::string& key) {
  for (SocketGroup& g : listeners_) {
    if (g.key == key && !g.fds.empty()) return std::exchange(g.fds, {});
  }
  return {};
}

int Inheritance::takeAdmin(const std::string& key) {
  if (!admin_ || admin_->key != key || admin_->fds.empty()) return -1;
  const int fd = admin_->fds.front();
  admin_->fds.erase(admin_->fds.begin());
  closeAll(admin_->fds);  // one admin socket is all there is
  return fd;
}

std::vector<std::string> Inheritance::closeUntaken() {
  std::vector<std::string> keys;
  for (SocketGroup& g : listeners_) {
    if (g.fds.empty()) continue;
    keys.push_back(g.key);
    closeAll(g.fds);
  }
  if (admin_ && !admin_->fds.empty()) {
    keys.push_back("admin " + admin_->key);
    closeAll(admin_->fds);
  }
  return keys;
}

// --- control messages -------------------------------------------------------------------------

std::string encodeControlMessage(UpgradeMessage type, std::string_view detail) {
  const size_t index = static_cast<size_t>(type);
  if (index >= std::size(kMessageNames)) return "invalid";
  std::string out(kMessageNames[index]);
  if (!detail.empty()) {
    out += ' ';
    out.append(detail.substr(0, kMaxControlMessage - out.size()));
  }
  return out;
}

ControlMessage decodeControlMessage(std::string_view bytes) {
  ControlMessage m;
  const size_t sp = bytes.find(' ');
  const std::string_view name = bytes.substr(0, sp);
  for (size_t i = 0; i < std::size(kMessageNames); ++i) {
    if (name == kMessageNames[i]) {
      m.type = static_cast<UpgradeMessage>(i);
      break;
    }
  }
  if (sp != std::string_view::npos) m.detail = std::string(bytes.substr(sp + 1));
  return m;
}

bool sendControlMessage(int fd, UpgradeMessage type, std::string_view detail) {
  if (fd < 0) return false;
  const std::string text = encodeControlMessage(type, detail);
  for (;;) {
    const ssize_t n = ::send(fd, text.data(), text.size(), MSG_NOSIGNAL);
    if (n == static_cast<ssize_t>(text.size())) return true;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      // A tiny message on an idle socket: the buffer is never full for long.
      pollfd p{fd, POLLOUT, 0};
      if (::poll(&p, 1, 1000) <= 0) return false;
      continue;
    }
    return false;
  }
}

std::optional<ControlMessage> receiveControlMessage(int fd, std::chrono::milliseconds timeout,
                                                    std::string* why) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[kMaxControlMessage];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      if (why) *why = "no answer within " + std::to_string(timeout.count()) + " ms";
      return std::nullopt;
    }
    pollfd p{fd, POLLIN, 0};
    const int rc = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
    if (rc < 0 && errno != EINTR) {
      if (why) *why = std::string("poll: ") + std::strerror(errno);
      return std::nullopt;
    }
    if (rc <= 0) continue;
    const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) return decodeControlMessage(std::string_view(buf, static_cast<size_t>(n)));
    if (n == 0) {
      if (why) *why = "the other process closed the control socket";
      return std::nullopt;
    }
    if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
    if (why) *why = std::string("recv: ") + std::strerror(errno);
    return std::nullopt;
  }
}

// --- starting the new process -----------------------------------------------------------------

pid_t spawnProcess(const std::string& binary, const std::vector<std::string>& argv,
                   const std::vector<std::string>& env, const std::vector<int>& inherit_fds,
                   std::string* why) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<char*> envp;
  for (const std::string& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&actions);
  posix_spawnattr_init(&attr);
  // dup2(fd, fd) in the child clears FD_CLOEXEC there (POSIX.1-2024; glibc ≥ 2.29): the parent's
  // descriptors stay close-on-exec, so nothing leaks into any other child meanwhile.
  for (int fd : inherit_fds) posix_spawn_file_actions_adddup2(&actions, fd, fd);
  sigset_t empty;
  sigemptyset(&empty);
  sigset_t all;
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, binary.c_str(), &actions, &attr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    if (why) *why = "cannot start " + binary + ": " + std::strerror(rc);
    return -1;
  }
  return pid;
}

std::string describeExit(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const char* name = ::strsignal(sig);
    return "was killed by signal " + std::to_string(sig) + (name ? std::string(" (") + name + ")" : "");
  }
  return "ended (status " + std::to_string(status) + ")";
}

}  // namespace streamedge::proxy
