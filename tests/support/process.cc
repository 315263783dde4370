#include "tests/support/process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "tests/support/http_client.h"

extern char** environ;

namespace streamedge::testsupport {

namespace {

using SteadyClock = std::chrono::steady_clock;
constexpr auto kPollInterval = std::chrono::milliseconds(10);

int decodeStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  return -1;
}

std::string baseName(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// Port after the last ':' of "host:port" / "[::1]:port" at the end of a line.
std::optional<uint16_t> portOf(std::string_view address) {
  size_t colon = address.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  std::string_view digits = address.substr(colon + 1);
  while (!digits.empty() && (digits.back() == '\r' || digits.back() == ' ')) digits.remove_suffix(1);
  if (digits.empty() || digits.size() > 5) return std::nullopt;
  unsigned v = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  if (v == 0 || v > 65535) return std::nullopt;
  return static_cast<uint16_t>(v);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// TempDir

TempDir::TempDir(std::string_view prefix) {
  const char* tmp = std::getenv("TMPDIR");
  std::string templ = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/" + std::string(prefix) + "-XXXXXX";
  if (mkdtemp(templ.data()) != nullptr) path_ = templ;
}

TempDir::~TempDir() { remove(); }

TempDir& TempDir::operator=(TempDir&& other) noexcept {
  if (this != &other) {
    remove();
    path_ = std::exchange(other.path_, {});
  }
  return *this;
}

std::string TempDir::file(std::string_view name) const { return path_ + "/" + std::string(name); }

void TempDir::remove() {
  if (path_.empty()) return;
  const char* keep = std::getenv("STREAMEDGE_KEEP_TEMP");
  if (keep != nullptr && *keep != '\0' && std::strcmp(keep, "0") != 0) {
    std::fprintf(stderr, "[testsupport] keeping %s\n", path_.c_str());
  } else {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  path_.clear();
}

bool writeFile(const std::string& path, std::string_view contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return false;
  out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
  return static_cast<bool>(out);
}

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// ---------------------------------------------------------------------------------------------
// ChildProcess

ChildProcess::~ChildProcess() { stop(); }

ChildProcess::ChildProcess(ChildProcess&& other) noexcept { *this = std::move(other); }

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
  if (this != &other) {
    stop();
    own_dir_ = std::move(other.own_dir_);
    log_path_ = std::move(other.log_path_);
    pid_ = std::exchange(other.pid_, -1);
    exit_status_ = other.exit_status_;
    last_line_ = std::move(other.last_line_);
  }
  return *this;
}

bool ChildProcess::start(const std::string& executable, const std::vector<std::string>& args,
                         const ChildOptions& options, std::string* error) {
  auto fail = [&](const std::string& msg) {
    if (error != nullptr) *error = msg;
    return false;
  };
  if (pid_ > 0) return fail("already started");
  log_path_ = options.log_path;
  if (log_path_.empty()) {
    own_dir_ = std::make_unique<TempDir>("streamedge-proc");
    if (own_dir_->path().empty()) return fail("cannot create a temp dir");
    log_path_ = own_dir_->file(baseName(executable) + ".log");
  }

  std::vector<std::string> argv_store;
  argv_store.push_back(executable);
  argv_store.insert(argv_store.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_store) argv.push_back(a.data());
  argv.push_back(nullptr);

  std::vector<std::string> env_store;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) env_store.emplace_back(*e);
  for (const std::string& extra : options.env) {
    const std::string name = extra.substr(0, extra.find('=') + 1);
    std::erase_if(env_store, [&](const std::string& e) { return e.rfind(name, 0) == 0; });
    env_store.push_back(extra);
  }
  std::vector<char*> envp;
  for (std::string& e : env_store) envp.push_back(e.data());
  envp.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);

  // The child starts with default dispositions and no blocked signals, whatever the test process
  // did (gtest threads, SIGPIPE ignored by an in-process simulator).
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t all;
  sigfillset(&all);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);

  pid_t pid = -1;
  int rc = posix_spawn(&pid, executable.c_str(), &actions, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return fail("posix_spawn " + executable + ": " + std::strerror(rc));
  pid_ = pid;
  exit_status_.reset();
  return true;
}

bool ChildProcess::running() {
  if (pid_ <= 0) return false;
  int status = 0;
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    exit_status_ = decodeStatus(status);
    pid_ = -1;
    return false;
  }
  if (r < 0 && errno == ECHILD) {
    pid_ = -1;
    return false;
  }
  return true;
}

bool ChildProcess::signal(int sig) { return pid_ > 0 && ::kill(pid_, sig) == 0; }

std::optional<int> ChildProcess::wait(std::chrono::milliseconds timeout) {
  const auto deadline = SteadyClock::now() + timeout;
  // Bounded by the deadline.
  for (;;) {
    if (!running()) return exit_status_;
    if (SteadyClock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

int ChildProcess::stop(std::chrono::milliseconds grace) {
  if (pid_ <= 0) return exit_status_.value_or(-1000);
  if (!running()) return exit_status_.value_or(-1000);
  ::kill(pid_, SIGTERM);
  if (auto status = wait(grace)) return *status;
  ::kill(pid_, SIGKILL);
  int status = 0;
  // SIGKILL cannot be caught; the wait ends as soon as the kernel has torn the child down.
  while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  exit_status_ = decodeStatus(status);
  pid_ = -1;
  return *exit_status_;
}

size_t ChildProcess::logSize() const {
  struct stat st;
  if (log_path_.empty() || ::stat(log_path_.c_str(), &st) != 0) return 0;
  return static_cast<size_t>(st.st_size);
}

std::string ChildProcess::logTail(size_t lines) const {
  std::string text = log();
  size_t pos = text.size();
  if (pos > 0 && text[pos - 1] == '\n') --pos;
  for (size_t n = 0; n < lines && pos > 0; ++n) {
    size_t nl = text.rfind('\n', pos - 1);
    if (nl == std::string::npos) {
      pos = 0;
      break;
    }
    pos = nl;
  }
  return text.substr(pos == 0 ? 0 : pos + 1);
}

bool ChildProcess::findLine(size_t from, const std::function<bool(const std::string&)>& match,
                            std::string* line) const {
  // Read from `from` on: logs of a busy proxy grow, and this runs every poll interval.
  std::ifstream in(log_path_, std::ios::binary);
  if (!in) return false;
  in.seekg(static_cast<std::streamoff>(from));
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  size_t pos = 0;
  // Only complete lines: a line being written must not be parsed half-way.
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) break;
    std::string candidate = text.substr(pos, nl - pos);
    if (match(candidate)) {
      *line = std::move(candidate);
      return true;
    }
    pos = nl + 1;
  }
  return false;
}

std::optional<std::string> ChildProcess::waitForLine(std::string_view substring, std::chrono::milliseconds timeout,
                                                     size_t from) {
  const auto deadline = SteadyClock::now() + timeout;
  auto match = [&](const std::string& l) { return l.find(substring) != std::string::npos; };
  std::string line;
  // Bounded by the deadline; one more look after the child exited.
  for (;;) {
    const bool alive = running();
    if (findLine(from, match, &line)) return line;
    if (!alive || SteadyClock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(kPollInterval);
  }
}

std::optional<std::smatch> ChildProcess::waitForRegex(const std::regex& re, std::chrono::milliseconds timeout,
                                                      size_t from) {
  const auto deadline = SteadyClock::now() + timeout;
  auto match = [&](const std::string& l) { return std::regex_search(l, re); };
  // Bounded by the deadline; one more look after the child exited.
  for (;;) {
    const bool alive = running();
    if (findLine(from, match, &last_line_)) {
      std::smatch m;
      std::regex_search(last_line_, m, re);
      return m;
    }
    if (!alive || SteadyClock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(kPollInterval);
  }
}

// ---------------------------------------------------------------------------------------------
// Starters

std::optional<OriginSimProcess> startOriginSimFrom(const std::string& binary, std::vector<std::string> args,
                                               std::string* error, std::chrono::milliseconds timeout) {
  bool has_listen = false;
  for (const std::string& a : args) has_listen = has_listen || a == "--listen" || a.rfind("--listen=", 0) == 0;
  if (!has_listen) {
    args.insert(args.begin(), "127.0.0.1:0");
    args.insert(args.begin(), "--listen");
  }
  OriginSimProcess sim;
  if (!sim.process.start(binary, args, {}, error)) return std::nullopt;
  auto line = sim.process.waitForLine("origin_sim listening ", timeout);
  std::optional<uint16_t> port;
  if (line) port = portOf(*line);
  if (!port) {
    if (error != nullptr) {
      *error = "origin_sim did not report its port within " + std::to_string(timeout.count()) + " ms; log:\n" +
               sim.process.logTail();
    }
    sim.process.stop(std::chrono::seconds(2));
    return std::nullopt;
  }
  sim.port = *port;
  return sim;
}

uint16_t StreamedgeProcess::port(std::string_view kind, size_t index) const {
  for (const auto& [k, p] : listeners) {
    if (k != kind) continue;
    if (index == 0) return p;
    --index;
  }
  return 0;
}

bool StreamedgeProcess::rewriteConfig(std::string_view config_text) const {
  return writeFile(config_path, config_text);
}

std::optional<StreamedgeProcess> startStreamedgeFrom(const std::string& binary, std::string_view config_text,
                                                 std::string* error, const StreamedgeStartOptions& options) {
  auto fail = [&](const std::string& msg) -> std::optional<StreamedgeProcess> {
    if (error != nullptr) *error = msg;
    return std::nullopt;
  };
  StreamedgeProcess se;
  se.dir = std::make_unique<TempDir>("streamedge-run");
  if (se.dir->path().empty()) return fail("cannot create a temp dir");
  se.config_path = se.dir->file("streamedge.toml");
  if (!writeFile(se.config_path, config_text)) return fail("cannot write " + se.config_path);
  std::vector<std::string> args = {"-c", se.config_path};
  args.insert(args.end(), options.extra_args.begin(), options.extra_args.end());
  ChildOptions child;
  child.log_path = se.dir->file("streamedge.log");
  child.env = options.env;
  std::string spawn_error;
  if (!se.process.start(binary, args, child, &spawn_error)) return fail(spawn_error);

  const auto deadline = SteadyClock::now() + options.timeout;
  // Bounded by the deadline: collect listening lines until http (and admin) are known.
  for (;;) {
    se.listeners.clear();
    std::string text = se.process.log();
    size_t pos = 0;
    while (pos < text.size()) {
      size_t nl = text.find('\n', pos);
      if (nl == std::string::npos) break;
      std::string line = text.substr(pos, nl - pos);
      pos = nl + 1;
      // "streamedge listening <kind> <host>:<port>"
      constexpr std::string_view kPrefix = "streamedge listening ";
      const size_t at = line.find(kPrefix);
      if (at == std::string::npos) continue;
      std::string_view rest = std::string_view(line).substr(at + kPrefix.size());
      const size_t sp = rest.find(' ');
      if (sp == std::string_view::npos || sp == 0) continue;
      std::string_view address = rest.substr(sp + 1);
      address = address.substr(0, address.find(' '));
      if (auto p = portOf(address)) se.listeners.emplace_back(std::string(rest.substr(0, sp)), *p);
    }
    se.http_port = se.port("http");
    se.admin_port = se.port("admin");
    if (se.http_port != 0 && (!options.expect_admin || se.admin_port != 0)) return se;
    const bool alive = se.process.running();
    if (!alive || SteadyClock::now() >= deadline) {
      std::string why = alive ? "did not report its listeners within " + std::to_string(options.timeout.count()) + " ms"
                              : "exited with status " + std::to_string(se.process.exitStatus().value_or(-1));
      std::string tail = se.process.logTail();
      se.process.stop(std::chrono::seconds(2));
      return fail("streamedge " + why + "; log:\n" + tail);
    }
    std::this_thread::sleep_for(kPollInterval);
  }
}

// ---------------------------------------------------------------------------------------------
// Simulator control

std::string urlEncode(std::string_view s) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char ch : s) {
    unsigned char c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/') {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

namespace {

constexpr auto kControlTimeout = std::chrono::seconds(5);

std::optional<std::string> control(uint16_t sim_port, const std::string& target) {
  HttpResponse r = httpGet(sim_port, target, {}, kControlTimeout);
  if (!r.ok() || r.status != 200) return std::nullopt;
  return r.body;
}

}  // namespace

long simCount(uint16_t sim_port, std::string_view path, bool not_modified) {
  auto body = control(sim_port, "/_sim/count?path=" + urlEncode(path) + (not_modified ? "&kind=304" : ""));
  if (!body) return -1;
  try {
    return std::stol(*body);
  } catch (...) {
    return -1;
  }
}

std::map<std::string, long> simCounts(uint16_t sim_port, bool not_modified) {
  std::map<std::string, long> out;
  auto body = control(sim_port, std::string("/_sim/counts") + (not_modified ? "?kind=304" : ""));
  if (!body) return out;
  // The simulator's own flat object: {"path":n,...} with \" and \\ and \u00XX escapes in keys.
  const std::string& s = *body;
  size_t i = s.find('{');
  // Bounded: every round consumes at least one character.
  while (i != std::string::npos && i < s.size()) {
    size_t q = s.find('"', i);
    if (q == std::string::npos) break;
    std::string key;
    size_t j = q + 1;
    for (; j < s.size() && s[j] != '"'; ++j) {
      if (s[j] == '\\' && j + 1 < s.size()) {
        ++j;
        if (s[j] == 'u' && j + 4 < s.size()) {
          key.push_back(static_cast<char>(std::stoi(s.substr(j + 1, 4), nullptr, 16)));
          j += 4;
          continue;
        }
      }
      key.push_back(s[j]);
    }
    size_t colon = s.find(':', j);
    if (colon == std::string::npos) break;
    size_t end = s.find_first_of(",}", colon);
    if (end == std::string::npos) break;
    try {
      out[key] = std::stol(s.substr(colon + 1, end - colon - 1));
    } catch (...) {
      return {};
    }
    i = end + 1;
  }
  return out;
}

bool simReset(uint16_t sim_port, bool faults) {
  return control(sim_port, std::string("/_sim/reset") + (faults ? "?faults=1" : "")).has_value();
}

bool simFault(uint16_t sim_port, std::string_view path, std::string_view mode, int count) {
  return control(sim_port, "/_sim/fault?path=" + urlEncode(path) + "&mode=" + urlEncode(mode) +
                               "&count=" + std::to_string(count))
      .has_value();
}

bool simFaultWith(uint16_t sim_port, std::string_view path, std::string_view mode,
                  std::string_view params, int count) {
  return control(sim_port, "/_sim/fault?path=" + urlEncode(path) + "&mode=" + urlEncode(mode) +
                               "&count=" + std::to_string(count) +
                               (params.empty() ? "" : "&" + std::string(params)))
      .has_value();
}

std::vector<std::string> simRanges(uint16_t sim_port, std::string_view path) {
  std::vector<std::string> out;
  auto body = control(sim_port, "/_sim/ranges?path=" + urlEncode(path));
  if (!body) return out;
  size_t pos = 0;
  // Bounded: every round consumes a line.
  while (pos < body->size()) {
    const size_t nl = body->find('\n', pos);
    const size_t end = nl == std::string::npos ? body->size() : nl;
    out.push_back(body->substr(pos, end - pos));
    pos = end + 1;
  }
  return out;
}

bool simFaultAll(uint16_t sim_port, std::string_view mode) {
  return control(sim_port, "/_sim/fault?all=1&mode=" + urlEncode(mode)).has_value();
}

}  // namespace streamedge::testsupport
