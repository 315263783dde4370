// SystemdNotifier: tells the service manager (systemd, Type=notify) what the process is doing,
// through sd_notify(3) of libsystemd: READY=1 once the listeners are bound and the workers run,
// RELOADING=1 / READY=1 around a SIGHUP reload, STOPPING=1 at a graceful stop, STATUS= lines for
// `systemctl status`, WATCHDOG=1 pings, and MAINPID= when a hot upgrade hands the service to a
// new process.
//
// Without NOTIFY_SOCKET in the environment (not started by systemd), or in a build without
// libsystemd (-DSTREAMEDGE_SYSTEMD=OFF), every call does nothing. Main thread only.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

namespace streamedge::proxy {

class SystemdNotifier {
 public:
  // Reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID once. The variables stay in the
  // environment, so that the new binary of a hot upgrade finds them too.
  SystemdNotifier();

  // True when messages go somewhere (NOTIFY_SOCKET set, built with libsystemd, not handed over).
  bool active() const { return active_ && !handed_over_; }

  // READY=1 with a STATUS= line: at start once serving, and after every reload (good or not).
  void ready(std::string_view status);
  // RELOADING=1 and MONOTONIC_USEC= (which systemd >= 253 requires for Type=notify-reload; 252
  // ignores it): at the start of a reload, before the config is read.
  void reloading(std::string_view status);
  // STOPPING=1: at the start of a graceful stop.
  void stopping(std::string_view status);
  // A STATUS= line alone.
  void status(std::string_view status);

  // The watchdog interval systemd asked for (WatchdogSec=, through WATCHDOG_USEC, for this
  // process), zero when there is none. Ping at a fraction of it.
  std::chrono::microseconds watchdogInterval() const { return watchdog_; }
  // WATCHDOG=1. The caller pings only while the workers are healthy (see Server).
  void watchdog();

  // Hot upgrade: `pid` (the new process, a child of this one in the same cgroup) is the
  // service's main process from now on. Sends MAINPID=<pid> (with a STATUS= line); afterwards
  // this process sends nothing more: its own drain must not read as the service stopping.
  // False when systemd could not be told (not active, or the send failed).
  bool handOverMainPid(pid_t pid, std::string_view status);
  // Hot upgrade, old process: the new one has told systemd itself (readyAsNewMainProcess);
  // from now on this process sends nothing (no STOPPING=1 for its drain, no watchdog pings).
  void handedOver() { handed_over_ = true; }
  // Hot upgrade, new process: MAINPID=<this pid>, READY=1 and a STATUS= line in one message.
  // systemd takes MAINPID= from a process of the unit's cgroup when NotifyAccess=all (or from
  // root); the old process, still the main one until then, stops notifying once it hears the
  // new one is ready.
  void readyAsNewMainProcess(std::string_view status);

  // The environment for the new binary of a hot upgrade: this process's, without WATCHDOG_PID
  // (it names this process, so the new one would otherwise think the watchdog is not meant for
  // it and never ping). Pass it to execve().
  static std::vector<std::string> environmentForNewMainProcess();

 private:
  bool send(const std::string& message);

  bool active_ = false;
  bool handed_over_ = false;
  bool send_failed_logged_ = false;
  std::chrono::microseconds watchdog_{0};
};

}  // namespace streamedge::proxy
