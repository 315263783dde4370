// Hot binary upgrade (SIGUSR2), the parts both processes share: which binary to start, the
// listening sockets the old process hands over as inherited descriptors (named in environment
// variables, the way systemd's LISTEN_FDS names its sockets), the control socket's messages,
// and starting the new process. The Server runs the protocol (proxy/server_upgrade.cc):
//
//   old                                   new (same arguments, the sockets inherited)
//   spawn ────────────────────────────▶   config, TLS, listeners (adopt/bind), admin socket
//                                 ◀────   "store"    (only with [cache.ssd])
//   stop SSD reads/writes, seal the open
//   region, write the checkpoint, close
//   "store-free" ─────────────────────▶   open the store (warm, from the checkpoint)
//                                         workers started, not accepting yet
//                                 ◀────   "ready <pid>"
//   "go" ─────────────────────────────▶   accept; MAINPID=<pid> READY=1 to systemd
//   stop accepting, drain              ◀────   "taken"
//   exit (not before "taken": systemd must know the new main pid before the old one exits)
//
// A "failed <reason>" from the new process, its exit, or no "ready" within [server]
// upgrade_timeout: the old one sends "abort <why>", stops it (SIGTERM, then SIGKILL), reopens
// its store if it had handed it over, and serves on. The new process stops on "abort"; if the
// control socket closes without one and its parent is gone (the old process died), it serves.
//
// Stateless helpers (thread-safe) except Inheritance, which is main-thread only.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace streamedge::proxy {

// Environment variables of the new process. Values: see formatSocketGroups(); the control
// socket's descriptor number.
inline constexpr const char* kListenFdsEnv = "STREAMEDGE_LISTEN_FDS";
inline constexpr const char* kAdminFdEnv = "STREAMEDGE_ADMIN_FD";
inline constexpr const char* kUpgradeFdEnv = "STREAMEDGE_UPGRADE_FD";

// The binary a hot upgrade starts when [server] upgrade_binary is empty: argv[0] as the process
// was started, made absolute against the working directory at start (`cwd`) when it holds a
// '/', else looked up in `path_env` (PATH) as the shell did. Not /proc/self/exe: once a package
// upgrade has replaced the file, that link names the deleted old binary, and the "upgrade"
// would start the old version again. A symbolic link is kept as a link (re-read at the
// upgrade), so an alternatives-style switch is followed. "" when nothing fits.
std::string startedExecutable(std::string_view argv0, std::string_view cwd,
                              std::string_view path_env);
// The same for this process (getcwd(), getenv("PATH")), at start.
std::string startedExecutable(const char* argv0);

// The sockets of one listener: its identity (listenerKey(), e.g. "127.0.0.1:0" as configured,
// canonical) and one descriptor per worker of the old process.
struct SocketGroup {
  std::string key;
  std::vector<int> fds;
};
// "<key>=<fd>,<fd>;<key>=<fd>", in the old config's order. Keys hold no ';' or '='.
std::string formatSocketGroups(const std::vector<SocketGroup>& groups);
// The inverse. False (with `why`) on anything malformed: no group is then used.
bool parseSocketGroups(std::string_view text, std::vector<SocketGroup>& out, std::string* why);

// What a new process of a hot upgrade received. Main thread only.
class Inheritance {
 public:
  Inheritance() = default;
  ~Inheritance();  // closes whatever was not taken
  Inheritance(Inheritance&& other) noexcept;
  Inheritance& operator=(Inheritance&& other) noexcept;
  Inheritance(const Inheritance&) = delete;
  Inheritance& operator=(const Inheritance&) = delete;

  // Reads the three variables and removes them from the environment (before any thread
  // exists: unsetenv is not thread-safe). Descriptors that are not listening stream sockets
  // are left out, with a line in `warnings`; those kept are made close-on-exec again.
  static Inheritance fromEnvironment(std::vector<std::string>* warnings);

  // Started by a hot upgrade (the control socket is there).
  bool upgrading() const { return control_fd_ >= 0; }
  int controlFd() const { return control_fd_; }
  // Hands the control socket to the caller (who closes it); -1 when there is none.
  int takeControl();

  // The descriptors of the first group not taken yet whose key is `key` (a repeated address
  // matches by occurrence, as reloads do); empty when there is none. The caller owns them.
  std::vector<int> takeListener(const std::string& key);
  // The admin socket if its key is `key`; -1 otherwise. The caller owns it.
  int takeAdmin(const std::string& key);
  // Closes the sockets nobody took (listeners the new config dropped); their keys.
  std::vector<std::string> closeUntaken();

  // Tests: an inheritance over given descriptors (owned from here on).
  static Inheritance forTest(int control_fd, std::vector<SocketGroup> listeners,
                             std::optional<SocketGroup> admin);

 private:
  int control_fd_ = -1;
  std::vector<SocketGroup> listeners_;  // fds emptied once taken
  std::optional<SocketGroup> admin_;
};

// The control socket's messages (one SOCK_SEQPACKET datagram each, text).
enum class UpgradeMessage {
  kStore,      // new → old: hand me the SSD store
  kStoreFree,  // old → new: closed (checkpoint written), or there was none: open it
  kReady,      // new → old: serving as soon as you let go; detail: the new pid
  kGo,         // old → new: I stop accepting now; accept and tell systemd
  kFailed,     // new → old: cannot become ready; detail: why (it exits)
  kAbort,      // old → new: the upgrade is off (timeout, the old one stops); detail: why
  kTaken,      // new → old: systemd has been told (MAINPID); the old one may exit
  kInvalid,    // anything else
};
struct ControlMessage {
  UpgradeMessage type = UpgradeMessage::kInvalid;
  std::string detail;
};
inline constexpr size_t kMaxControlMessage = 4096;
std::string encodeControlMessage(UpgradeMessage type, std::string_view detail = {});
ControlMessage decodeControlMessage(std::string_view bytes);
// One message; a detail longer than fits is cut. False when it could not be sent.
bool sendControlMessage(int fd, UpgradeMessage type, std::string_view detail = {});
// One message, waiting up to `timeout` (poll; EINTR retried). nullopt with `why` on EOF (the
// peer closed or exited), error or timeout.
std::optional<ControlMessage> receiveControlMessage(int fd, std::chrono::milliseconds timeout,
                                                    std::string* why);

// Starts `binary` with `argv` (argv[0] included) and `env`, inheriting exactly `inherit_fds`
// (their FD_CLOEXEC is cleared in the child only), with an empty signal mask and default
// signal actions. posix_spawn: an exec failure (missing file, not executable) is reported
// here. Returns the pid, or -1 with `why`.
pid_t spawnProcess(const std::string& binary, const std::vector<std::string>& argv,
                   const std::vector<std::string>& env, const std::vector<int>& inherit_fds,
                   std::string* why);

// "exited with status 1", "was killed by signal 9 (Killed)", for a waitpid() status.
std::string describeExit(int wait_status);

}  // namespace streamedge::proxy
