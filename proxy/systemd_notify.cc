#include "proxy/systemd_notify.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

#ifdef STREAMEDGE_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

extern char** environ;

namespace streamedge::proxy {

namespace {

// A STATUS= value is one line: a newline would start another assignment.
std::string oneLine(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return out;
}

}  // namespace

SystemdNotifier::SystemdNotifier() {
#ifdef STREAMEDGE_HAVE_SYSTEMD
  const char* socket = std::getenv("NOTIFY_SOCKET");
  active_ = socket != nullptr && *socket != '\0';
  uint64_t usec = 0;
  if (active_ && sd_watchdog_enabled(0, &usec) > 0) watchdog_ = std::chrono::microseconds(usec);
#endif
}

bool SystemdNotifier::send(const std::string& message) {
  if (!active()) return false;
#ifdef STREAMEDGE_HAVE_SYSTEMD
  const int rc = sd_notify(0, message.c_str());
  if (rc > 0) return true;
  // One line, once: a socket that went away must not flood the log every watchdog tick.
  if (!send_failed_logged_) {
    send_failed_logged_ = true;
    std::fprintf(stderr, "streamedge: cannot notify systemd (NOTIFY_SOCKET=%s): %s\n",
                 std::getenv("NOTIFY_SOCKET") ? std::getenv("NOTIFY_SOCKET") : "",
                 rc < 0 ? std::strerror(-rc) : "not sent");
  }
#else
  (void)message;
  (void)send_failed_logged_;
#endif
  return false;
}

void SystemdNotifier::ready(std::string_view status) {
  send("READY=1\nSTATUS=" + oneLine(status));
}

void SystemdNotifier::reloading(std::string_view status) {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  const uint64_t usec = static_cast<uint64_t>(now.tv_sec) * 1'000'000u +
                        static_cast<uint64_t>(now.tv_nsec) / 1000u;
  send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec) + "\nSTATUS=" + oneLine(status));
}

void SystemdNotifier::stopping(std::string_view status) {
  send("STOPPING=1\nSTATUS=" + oneLine(status));
}

void SystemdNotifier::status(std::string_view status) { send("STATUS=" + oneLine(status)); }

void SystemdNotifier::watchdog() {
  if (watchdog_.count() > 0) send("WATCHDOG=1");
}

bool SystemdNotifier::handOverMainPid(pid_t pid, std::string_view status) {
  const bool sent = send("MAINPID=" + std::to_string(pid) + "\nSTATUS=" + oneLine(status));
  handed_over_ = true;
  return sent;
}

void SystemdNotifier::readyAsNewMainProcess(std::string_view status) {
  send("MAINPID=" + std::to_string(::getpid()) + "\nREADY=1\nSTATUS=" + oneLine(status));
}

std::vector<std::string> SystemdNotifier::environmentForNewMainProcess() {
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    if (std::strncmp(*e, "WATCHDOG_PID=", 13) == 0) continue;
    env.emplace_back(*e);
  }
  return env;
}

}  // namespace streamedge::proxy
