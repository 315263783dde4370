// Running under systemd: the real binary talks sd_notify to a datagram socket the test owns
// (standing in for systemd's NOTIFY_SOCKET): READY=1 once serving, RELOADING=1 then READY=1 on
// SIGHUP (also when the new config is refused), WATCHDOG=1 pings that stop while a worker loop
// is stuck, STOPPING=1 on SIGTERM. And [server] user: started as root, the process serves as
// that user, every thread of it, with no capability but CAP_NET_BIND_SERVICE.
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstring>
#include <dirent.h>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/scenario/scenario_env.h"

namespace streamedge::scenario {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// A unix datagram socket bound to a path: what systemd listens on for sd_notify messages.
class NotifySocket {
 public:
  explicit NotifySocket(const std::string& path) : path_(path) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path) return;
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    if (fd_ >= 0 && ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~NotifySocket() {
    if (fd_ >= 0) ::close(fd_);
    ::unlink(path_.c_str());
  }
  bool ok() const { return fd_ >= 0; }

  // The next message, or nullopt after `timeout`.
  std::optional<std::string> next(std::chrono::milliseconds timeout) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return std::nullopt;
    char buf[4096];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n < 0) return std::nullopt;
    return std::string(buf, static_cast<size_t>(n));
  }

  // Reads messages until one contains `part` (skipping watchdog pings and others, which are
  // kept in `seen`), for at most `timeout`.
  std::optional<std::string> waitFor(std::string_view part, std::chrono::milliseconds timeout,
                                     std::vector<std::string>* seen = nullptr) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      std::optional<std::string> m = next(std::max(left, 1ms));
      if (!m) return std::nullopt;
      if (m->find(part) != std::string::npos) return m;
      if (seen) seen->push_back(*m);
    }
    return std::nullopt;
  }

 private:
  std::string path_;
  int fd_ = -1;
};

// Assignments of one message: "READY=1\nSTATUS=..." → the value of `key`, or nullopt.
std::optional<std::string> field(const std::string& message, std::string_view key) {
  std::istringstream in(message);
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() > key.size() && line.compare(0, key.size(), key) == 0 && line[key.size()] == '=') {
      return line.substr(key.size() + 1);
    }
  }
  return std::nullopt;
}

class SystemdTest : public ScenarioTest {
 protected:
  void SetUp() override {
    std::string error;
    sim_ = testsupport::startOriginSim({"--name", "dc-a"}, &error);
    ASSERT_TRUE(sim_) << error;
    dir_.emplace("streamedge-systemd");
  }

  std::string config(const std::string& server_extra = "", const std::string& admin_extra = "",
                     const std::string& access_log = "off", const std::string& top_extra = "") {
    return "[server]\nworkers = 2\n" + server_extra +
           "\n[admin]\naddress = \"127.0.0.1:0\"\n" + admin_extra +
           "\n[[listener]]\naddress = \"127.0.0.1:0\"\n"
           "\n[cache.ram]\nsize = \"16MiB\"\n"
           "\n[log]\naccess_log = \"" + access_log + "\"\n" + top_extra +
           "\n[[origin_group]]\nname = \"main\"\n"
           "  [[origin_group.origin]]\n  url = \"http://127.0.0.1:" + std::to_string(simPort()) +
           "\"\n  dc = \"dc-a\"\n  priority = 1\n"
           "\n[[vhost]]\nhostnames = [\"*\"]\n  [[vhost.route]]\n  prefix = \"/\"\n"
           "  origin_group = \"main\"\n";
  }

  void startWith(const std::string& text, std::vector<std::string> env = {}) {
    std::string error;
    testsupport::StreamedgeStartOptions options;
    options.env = std::move(env);
    proxy_ = testsupport::startStreamedge(text, &error, options);
    ASSERT_TRUE(proxy_) << error;
  }
};

TEST_F(SystemdTest, NotifiesReadyReloadingAndStopping) {
#ifndef STREAMEDGE_HAVE_SYSTEMD
  GTEST_SKIP() << "built with -DSTREAMEDGE_SYSTEMD=OFF: no sd_notify";
#endif
  NotifySocket notify(dir_->file("notify.sock"));
  ASSERT_TRUE(notify.ok()) << std::strerror(errno);
  ASSERT_NO_FATAL_FAILURE(startWith(config(), {"NOTIFY_SOCKET=" + dir_->file("notify.sock")}));

  // READY=1 comes once the listeners are bound and the workers run: the port answers by then.
  std::optional<std::string> ready = notify.waitFor("READY=1", 10s);
  ASSERT_TRUE(ready) << proxyLog();
  EXPECT_NE(field(*ready, "STATUS").value_or("").find("serving: 2 workers, 1 listeners"),
            std::string::npos)
      << *ready;
  EXPECT_EQ(get("/obj/sd/a.ts?size=1000").status, 200);

  // SIGHUP: RELOADING=1 (with the monotonic time systemd >= 253 wants), then READY=1.
  ASSERT_TRUE(proxy_->process.signal(SIGHUP));
  std::optional<std::string> reloading = notify.waitFor("RELOADING=1", 10s);
  ASSERT_TRUE(reloading) << proxyLog();
  const std::optional<std::string> usec = field(*reloading, "MONOTONIC_USEC");
  ASSERT_TRUE(usec) << *reloading;
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  const long long now_us = static_cast<long long>(now.tv_sec) * 1'000'000 + now.tv_nsec / 1000;
  EXPECT_LE(std::stoll(*usec), now_us);
  EXPECT_GT(std::stoll(*usec), now_us - 10'000'000);
  ready = notify.waitFor("READY=1", 10s);
  ASSERT_TRUE(ready) << proxyLog();
  EXPECT_EQ(field(*ready, "STATUS").value_or("").find("failed"), std::string::npos) << *ready;

  // A refused config: still RELOADING=1 then READY=1 (the old config serves), and the status
  // says the reload failed.
  ASSERT_TRUE(proxy_->rewriteConfig("[server]\nworkers = \"many\"\n"));
  ASSERT_TRUE(proxy_->process.signal(SIGHUP));
  ASSERT_TRUE(notify.waitFor("RELOADING=1", 10s)) << proxyLog();
  ready = notify.waitFor("READY=1", 10s);
  ASSERT_TRUE(ready) << proxyLog();
  EXPECT_NE(field(*ready, "STATUS").value_or("").find("the last reload failed"), std::string::npos)
      << *ready;
  EXPECT_EQ(get("/obj/sd/a.ts?size=1000").status, 200);

  // SIGTERM: STOPPING=1, then a clean exit.
  ASSERT_TRUE(proxy_->process.signal(SIGTERM));
  std::optional<std::string> stopping = notify.waitFor("STOPPING=1", 10s);
  ASSERT_TRUE(stopping) << proxyLog();
  EXPECT_NE(field(*stopping, "STATUS").value_or("").find("stopping"), std::string::npos) << *stopping;
  EXPECT_EQ(proxy_->process.wait(15s), std::optional<int>(0)) << proxyLog();
}

TEST_F(SystemdTest, WatchdogPingsStopWhileAWorkerIsStuck) {
#ifndef STREAMEDGE_HAVE_SYSTEMD
  GTEST_SKIP() << "built with -DSTREAMEDGE_SYSTEMD=OFF: no sd_notify";
#endif
  NotifySocket notify(dir_->file("notify.sock"));
  ASSERT_TRUE(notify.ok()) << std::strerror(errno);
  // WatchdogSec=0.9s: pings every 300 ms. No WATCHDOG_PID: meant for whichever process reads it.
  ASSERT_NO_FATAL_FAILURE(startWith(
      config("", "health_stall_bound = \"600ms\"\ndebug_endpoints = true\n"),
      {"NOTIFY_SOCKET=" + dir_->file("notify.sock"), "WATCHDOG_USEC=900000"}));
  ASSERT_TRUE(notify.waitFor("READY=1", 10s)) << proxyLog();
  // Pings arrive regularly while healthy.
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(notify.waitFor("WATCHDOG=1", 2s)) << "ping " << i;

  // Worker 1 stuck for 2.5 s: /healthz fails after 600 ms, and the pings stop until it runs.
  const HttpResponse block = testsupport::httpRequest(proxy_->admin_port, "POST",
                                                      "/debug/block-worker?ms=2500&worker=1", {}, 5s);
  ASSERT_EQ(block.status, 202) << block.body;
  const auto blocked_at = Clock::now();
  std::optional<std::string> unhealthy = notify.waitFor("STATUS=unhealthy", 3s);
  ASSERT_TRUE(unhealthy) << proxyLog();
  EXPECT_NE(unhealthy->find("worker 1"), std::string::npos) << *unhealthy;
  // From there, no ping until the worker runs again (2.5 s after the block began).
  std::optional<std::string> ping = notify.waitFor("WATCHDOG=1", 5s);
  ASSERT_TRUE(ping) << "pings did not come back after the worker ran again\n" << proxyLog();
  EXPECT_GE(Clock::now() - blocked_at, 2300ms) << "a ping came while worker 1 was stuck";
  // And the status says serving again.
  EXPECT_TRUE(notify.waitFor("STATUS=serving", 3s)) << proxyLog();
}

TEST_F(SystemdTest, WithoutNotifySocketNothingIsSentAndTheProxyRuns) {
  // No NOTIFY_SOCKET (started by hand or by another supervisor): the notifier is silent and
  // costs nothing; the log has no complaint about systemd.
  ASSERT_NO_FATAL_FAILURE(startWith(config()));
  EXPECT_EQ(get("/obj/sd/b.ts?size=100").status, 200);
  ASSERT_TRUE(proxy_->process.signal(SIGHUP));
  ASSERT_TRUE(proxy_->process.waitForLine("reloaded", 10s)) << proxyLog();
  EXPECT_EQ(proxy_->process.log().find("systemd"), std::string::npos) << proxyLog();
}

// --- [server] user ------------------------------------------------------------------------------

struct Ids {
  std::vector<unsigned long> uid;  // real, effective, saved, filesystem
  std::vector<unsigned long> gid;
  std::string groups;
  std::string cap_prm, cap_eff, cap_amb;
};

std::optional<Ids> idsOf(const std::string& status_path) {
  std::ifstream in(status_path);
  if (!in) return std::nullopt;
  Ids ids;
  std::string line;
  auto numbers = [](const std::string& rest) {
    std::vector<unsigned long> out;
    std::istringstream s(rest);
    unsigned long v = 0;
    while (s >> v) out.push_back(v);
    return out;
  };
  auto value = [](const std::string& rest) {
    const size_t at = rest.find_first_not_of(" \t");
    return at == std::string::npos ? std::string() : rest.substr(at);
  };
  while (std::getline(in, line)) {
    if (line.rfind("Uid:", 0) == 0) ids.uid = numbers(line.substr(4));
    if (line.rfind("Gid:", 0) == 0) ids.gid = numbers(line.substr(4));
    if (line.rfind("Groups:", 0) == 0) ids.groups = value(line.substr(7));
    if (line.rfind("CapPrm:", 0) == 0) ids.cap_prm = value(line.substr(7));
    if (line.rfind("CapEff:", 0) == 0) ids.cap_eff = value(line.substr(7));
    if (line.rfind("CapAmb:", 0) == 0) ids.cap_amb = value(line.substr(7));
  }
  return ids;
}

TEST_F(SystemdTest, StartedAsRootServesAsTheConfiguredUser) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root: the switch happens only in a process started as root";
  const passwd* nobody = ::getpwnam("nobody");
  if (nobody == nullptr) GTEST_SKIP() << "no user nobody on this system";
  const uid_t uid = nobody->pw_uid;
  const gid_t gid = nobody->pw_gid;

  // The SSD store lives where only root may go: the process must open it before switching.
  const std::string root_only = dir_->file("root-only");
  ASSERT_EQ(::mkdir(root_only.c_str(), 0700), 0);
  // The access log directory belongs to the user: the log is opened (and reopened) as the user.
  ASSERT_EQ(::chmod(dir_->path().c_str(), 0755), 0);
  const std::string logs = dir_->file("logs");
  ASSERT_EQ(::mkdir(logs.c_str(), 0755), 0);
  ASSERT_EQ(::chown(logs.c_str(), uid, gid), 0);
  const std::string ssd = "\n[cache.ssd]\npath = \"" + root_only + "/store\"\nsize = \"8MiB\"\n"
                          "region_size = \"1MiB\"\nencrypt = false\n";
  const std::string text = config("user = \"nobody\"\n", "", logs + "/access.log", ssd);
  ASSERT_NO_FATAL_FAILURE(startWith(text));
  ASSERT_TRUE(proxy_->process.waitForLine("running as user nobody", 10s)) << proxyLog();

  EXPECT_EQ(get("/obj/user/a.ts?size=1000").status, 200);

  // Every thread (workers, the SSD writer started before the switch, the log writer): real,
  // effective, saved and filesystem ids are nobody's; only CAP_NET_BIND_SERVICE (bit 10) is left.
  const std::string task_dir = "/proc/" + std::to_string(proxy_->process.pid()) + "/task";
  DIR* tasks = ::opendir(task_dir.c_str());
  ASSERT_NE(tasks, nullptr);
  int threads = 0;
  while (dirent* e = ::readdir(tasks)) {
    if (e->d_name[0] == '.') continue;
    std::optional<Ids> ids = idsOf(task_dir + "/" + e->d_name + "/status");
    if (!ids) continue;  // the thread ended meanwhile
    ++threads;
    SCOPED_TRACE(std::string("thread ") + e->d_name);
    EXPECT_EQ(ids->uid, std::vector<unsigned long>(4, uid));
    EXPECT_EQ(ids->gid, std::vector<unsigned long>(4, gid));
    std::istringstream groups(ids->groups);
    for (unsigned long g = 0; groups >> g;) EXPECT_NE(g, 0ul) << "still in group root: " << ids->groups;
    const unsigned long long eff = std::stoull(ids->cap_eff, nullptr, 16);
    EXPECT_EQ(eff & ~(1ull << 10), 0ull) << "CapEff " << ids->cap_eff;
    const unsigned long long prm = std::stoull(ids->cap_prm, nullptr, 16);
    EXPECT_EQ(prm & ~(1ull << 10), 0ull) << "CapPrm " << ids->cap_prm;
  }
  ::closedir(tasks);
  EXPECT_GE(threads, 3);
  std::optional<Ids> main_ids = idsOf("/proc/" + std::to_string(proxy_->process.pid()) + "/status");
  ASSERT_TRUE(main_ids);
  EXPECT_EQ(main_ids->cap_prm, "0000000000000400");
  EXPECT_EQ(main_ids->cap_eff, "0000000000000400");
  EXPECT_EQ(main_ids->cap_amb, "0000000000000400");

  // The access log was created by the user.
  struct stat st{};
  bool logged = false;
  for (int i = 0; i < 50 && !logged; ++i) {
    logged = ::stat((logs + "/access.log").c_str(), &st) == 0 && st.st_size > 0;
    if (!logged) std::this_thread::sleep_for(50ms);
  }
  ASSERT_TRUE(logged) << proxyLog();
  EXPECT_EQ(st.st_uid, uid);

  // A reload reads the config again as the user: it works when the file is readable.
  ASSERT_EQ(::chmod(proxy_->dir->path().c_str(), 0755), 0);
  ASSERT_EQ(::chmod(proxy_->config_path.c_str(), 0644), 0);
  const size_t from = proxy_->process.logSize();
  ASSERT_TRUE(proxy_->process.signal(SIGHUP));
  ASSERT_TRUE(proxy_->process.waitForLine("reloaded", 10s, from)) << proxyLog();
  EXPECT_EQ(get("/obj/user/a.ts?size=1000").header("X-Cache"), "HIT");
}

TEST_F(SystemdTest, AUserSwitchWithoutRootIsRefusedAtStart) {
  if (::geteuid() == 0) GTEST_SKIP() << "runs as root: the switch would succeed";
  const passwd* nobody = ::getpwnam("nobody");
  if (nobody == nullptr) GTEST_SKIP() << "no user nobody on this system";
  if (::geteuid() == nobody->pw_uid) GTEST_SKIP() << "runs as nobody: nothing to switch";
  testsupport::ChildProcess child;
  const std::string path = dir_->file("user.toml");
  ASSERT_TRUE(testsupport::writeFile(path, config("user = \"nobody\"\n")));
  ASSERT_TRUE(child.start(STREAMEDGE_BINARY, {"-c", path}));
  EXPECT_EQ(child.wait(15s), std::optional<int>(1)) << child.logTail();
  EXPECT_NE(child.log().find("needs the process to start as root"), std::string::npos) << child.logTail();
}

}  // namespace
}  // namespace streamedge::scenario
