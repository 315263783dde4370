// Process harness for scenario tests: temporary directories, child processes whose stdout and
// stderr go to a log file that tests scan for lines, starters for the origin simulator and the
// streamedge binary (parsing the ports they print), and helpers for the simulator's /_sim/
// control endpoints.
//
// Thread-safety: none of these types are shared between threads. Ownership: a TempDir removes its
// directory on destruction (set STREAMEDGE_KEEP_TEMP=1 to keep it and print its path); a
// ChildProcess stops (SIGTERM, then SIGKILL after a deadline) and reaps its child on destruction.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace streamedge::testsupport {

class TempDir {
 public:
  explicit TempDir(std::string_view prefix = "streamedge-test");
  ~TempDir();
  TempDir(TempDir&& other) noexcept : path_(std::exchange(other.path_, {})) {}
  TempDir& operator=(TempDir&& other) noexcept;
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  // Empty when mkdtemp failed.
  const std::string& path() const { return path_; }
  // path() + "/" + name.
  std::string file(std::string_view name) const;

 private:
  void remove();
  std::string path_;
};

// Writes (replaces) a file; false on error.
bool writeFile(const std::string& path, std::string_view contents);
// The whole file, or "" when it cannot be read.
std::string readFile(const std::string& path);

struct ChildOptions {
  std::string log_path;          // empty: a log in a TempDir the ChildProcess owns
  std::vector<std::string> env;  // extra "NAME=value" entries on top of this process's environment
};

class ChildProcess {
 public:
  ChildProcess() = default;
  ~ChildProcess();
  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // Starts `executable` with `args` (argv[0] is the executable), stdin from /dev/null, stdout and
  // stderr appended to the log file, default signal dispositions and an empty signal mask.
  bool start(const std::string& executable, const std::vector<std::string>& args,
             const ChildOptions& options = {}, std::string* error = nullptr);

  pid_t pid() const { return pid_; }
  // Reaps the child if it has exited. False once it has been reaped (or never started).
  bool running();
  // Exit status once reaped: the exit code, or -signal when a signal ended it.
  std::optional<int> exitStatus() const { return exit_status_; }
  bool signal(int sig);
  // Waits up to `timeout` for the child to exit by itself; its status, or nullopt.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  // SIGTERM, up to `grace` for it to exit, then SIGKILL; always reaps. Returns the exit status
  // (see exitStatus()), or the stored one when it was already reaped; -1000 when never started.
  int stop(std::chrono::milliseconds grace = std::chrono::seconds(10));

  // Polls the log every 10 ms until a complete line at or after byte `from` contains
  // `substring` (or matches `re`), the timeout passes, or the child exits (checked once more
  // after the exit). Returns the line, without its newline.
  std::optional<std::string> waitForLine(std::string_view substring, std::chrono::milliseconds timeout,
                                         size_t from = 0);
  // GCC 12 reports a false -Wmaybe-uninitialized inside <regex> when a std::regex is
  // *constructed* at -O2 with sanitizers (our STREAMEDGE_SANITIZE build); prefer waitForLine()
  // and parse the line, or construct the regex in a file built without -Werror.
  std::optional<std::smatch> waitForRegex(const std::regex& re, std::chrono::milliseconds timeout,
                                          size_t from = 0);

  const std::string& logPath() const { return log_path_; }
  std::string log() const { return readFile(log_path_); }
  // Current log size: pass it as `from` to wait only for lines written after now.
  size_t logSize() const;
  // The last `lines` lines of the log, for failure messages.
  std::string logTail(size_t lines = 40) const;

 private:
  bool findLine(size_t from, const std::function<bool(const std::string&)>& match, std::string* line) const;

  std::unique_ptr<TempDir> own_dir_;
  std::string log_path_;
  pid_t pid_ = -1;
  std::optional<int> exit_status_;
  // Kept alive for waitForRegex's std::smatch, which points into it.
  std::string last_line_;
};

// The origin simulator as a child process, with the port it printed.
struct OriginSimProcess {
  ChildProcess process;
  uint16_t port = 0;
};

// Starts `binary` with `args` (adds "--listen 127.0.0.1:0" unless args has --listen) and waits for
// "origin_sim listening HOST:PORT". nullopt (with `error`) on failure.
std::optional<OriginSimProcess> startOriginSimFrom(const std::string& binary, std::vector<std::string> args = {},
                                               std::string* error = nullptr,
                                               std::chrono::milliseconds timeout = std::chrono::seconds(10));

struct StreamedgeStartOptions {
  bool expect_admin = true;  // also wait for "streamedge listening admin HOST:PORT"
  std::chrono::milliseconds timeout = std::chrono::seconds(20);
  std::vector<std::string> extra_args;  // appended after "-c CONFIG"
  std::vector<std::string> env;         // extra "NAME=value"
};

// streamedge as a child process: its temp dir (config and log), and the ports it printed as
// "streamedge listening <kind> <host>:<port>" lines.
struct StreamedgeProcess {
  std::unique_ptr<TempDir> dir;  // destroyed after `process` (declared first)
  ChildProcess process;
  std::string config_path;
  uint16_t http_port = 0;   // the first "http" listener
  uint16_t admin_port = 0;  // the first "admin" listener; 0 when not expected and not printed
  std::vector<std::pair<std::string, uint16_t>> listeners;  // every kind/port printed so far

  // The index-th port printed for `kind` ("http", "https", "admin"), or 0.
  uint16_t port(std::string_view kind, size_t index = 0) const;
  // Rewrites the config file (e.g. before SIGHUP).
  bool rewriteConfig(std::string_view config_text) const;
};

// Writes `config_text` to a temp file, starts `binary -c FILE`, waits for the http (and admin)
// listening lines. nullopt (with `error`, including the log tail) on failure.
std::optional<StreamedgeProcess> startStreamedgeFrom(const std::string& binary, std::string_view config_text,
                                                 std::string* error = nullptr,
                                                 const StreamedgeStartOptions& options = {});

// Where the binary paths are compiled in (the scenario_tests target defines ORIGIN_SIM_BINARY and
// STREAMEDGE_BINARY): startOriginSim({"--name", "dc-a"}, &error), startStreamedge(config, &error).
#ifdef ORIGIN_SIM_BINARY
inline std::optional<OriginSimProcess> startOriginSim(std::vector<std::string> args = {},
                                                      std::string* error = nullptr) {
  return startOriginSimFrom(ORIGIN_SIM_BINARY, std::move(args), error);
}
#endif
#ifdef STREAMEDGE_BINARY
inline std::optional<StreamedgeProcess> startStreamedge(std::string_view config_text, std::string* error = nullptr,
                                                        const StreamedgeStartOptions& options = {}) {
  return startStreamedgeFrom(STREAMEDGE_BINARY, config_text, error, options);
}
#endif

// ---- The simulator's control endpoints (GET over a fresh connection to 127.0.0.1:sim_port).

// Requests counted for `path` (exact, no query); with not_modified, those answered 304. -1 on error.
long simCount(uint16_t sim_port, std::string_view path, bool not_modified = false);
// Every counted path → count (or 304 count). Empty on error.
std::map<std::string, long> simCounts(uint16_t sim_port, bool not_modified = false);
// Zeroes the counters (and, with faults, disarms every fault).
bool simReset(uint16_t sim_port, bool faults = false);
// Arms `mode` (500|503|hang|reset|short|long|off) for the next `count` requests to `path`.
bool simFault(uint16_t sim_port, std::string_view path, std::string_view mode, int count = 1);
// Arms a mode with its parameters, e.g. "after=1048576" or "after=1048576&rate=20000" or
// "preconditions=0" (query text added as is).
bool simFaultWith(uint16_t sim_port, std::string_view path, std::string_view mode,
                  std::string_view params, int count = 1);
// The Range requests the simulator got for `path`, one "<Range>|<If-Match>|<If-Unmodified-Since>"
// each, in order. Empty on error (or none).
std::vector<std::string> simRanges(uint16_t sim_port, std::string_view path);
// Every non-control request fails with `mode` until simFaultAll(port, "off").
bool simFaultAll(uint16_t sim_port, std::string_view mode);
// Percent-encodes everything but unreserved characters and '/'.
std::string urlEncode(std::string_view s);

}  // namespace streamedge::testsupport
