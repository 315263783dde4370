// Both sides of a hot binary upgrade (SIGUSR2): the Server's members for it. The protocol, the
// environment variables and the helpers are described in hot_upgrade.h.
#include <event2/http.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "proxy/server.h"

namespace streamedge::proxy {

namespace {

constexpr timeval kUpgradeTick{0, 50 * 1000};
// After "go": how long the old process keeps its idle connections open (see commitUpgrade).
constexpr std::chrono::milliseconds kHandOverGrace{2000};
// After a "failed" message or the control socket's end, the new process exits by itself; it
// gets this long before SIGTERM (it may be closing the SSD store it had opened).
constexpr std::chrono::milliseconds kExitGrace{5000};
// SIGTERM → SIGKILL: its graceful stop writes its store's checkpoint.
constexpr std::chrono::milliseconds kTermGrace{10'000};
// SIGKILL → stop waiting for it (the store's lock then tells whether it can be reopened).
constexpr std::chrono::milliseconds kKillGrace{5000};
// After "go", at exit: how long the old process waits for the new one's "taken".
constexpr std::chrono::milliseconds kAckWait{5000};

bool isUpgradeVariable(const std::string& entry) {
  for (const char* name : {kListenFdsEnv, kAdminFdEnv, kUpgradeFdEnv}) {
    const size_t n = std::strlen(name);
    if (entry.size() > n && entry.compare(0, n, name) == 0 && entry[n] == '=') return true;
  }
  return false;
}

long long millisSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start)
      .count();
}

std::string jsonText(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char esc[8];
      std::snprintf(esc, sizeof esc, "\\u%04x", c);
      out += esc;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

}  // namespace

// --- the new process -------------------------------------------------------------------------

bool Server::receiveStore(std::string& why) {
  std::fprintf(stderr, "streamedge: upgrade: asking pid %d for the SSD store\n",
               static_cast<int>(upgraded_from_));
  const auto started = std::chrono::steady_clock::now();
  if (!sendControlMessage(upgrade_control_fd_, UpgradeMessage::kStore)) {
    why = "upgrade: cannot ask the old process for the SSD store (control socket closed)";
    return false;
  }
  std::string detail;
  const std::optional<ControlMessage> reply =
      receiveControlMessage(upgrade_control_fd_, config_->server.upgrade_timeout, &detail);
  if (!reply) {
    why = "upgrade: the old process did not hand over the SSD store: " + detail;
    return false;
  }
  if (reply->type == UpgradeMessage::kAbort) {
    why = "upgrade: called off by the old process: " + reply->detail;
    return false;
  }
  if (reply->type != UpgradeMessage::kStoreFree) {
    why = "upgrade: unexpected answer from the old process: " +
          encodeControlMessage(reply->type, reply->detail);
    return false;
  }
  std::fprintf(stderr, "streamedge: upgrade: the old process closed the SSD store (%lld ms); "
               "opening it\n", millisSince(started));
  return true;
}

void Server::awaitGo() {
  if (!sendControlMessage(upgrade_control_fd_, UpgradeMessage::kReady, std::to_string(::getpid()))) {
    std::fprintf(stderr, "streamedge: upgrade: cannot tell the old process that this one is "
                 "ready (control socket closed); stopping\n");
    closeUpgradeControl();
    beginStop();
    return;
  }
  upgrade_control_event_ = event_new(base_, upgrade_control_fd_, EV_READ | EV_PERSIST, goCb, this);
  event_add(upgrade_control_event_, nullptr);
  std::fprintf(stderr, "streamedge: upgrade: ready; waiting for pid %d to stop accepting\n",
               static_cast<int>(upgraded_from_));
}

void Server::goCb(evutil_socket_t fd, short, void* arg) {
  auto* self = static_cast<Server*>(arg);
  char buf[kMaxControlMessage];
  const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
  if (n > 0) {
    const ControlMessage m = decodeControlMessage(std::string_view(buf, static_cast<size_t>(n)));
    if (m.type == UpgradeMessage::kGo) return self->startServingAfterUpgrade();
    if (m.type == UpgradeMessage::kAbort) {
      std::fprintf(stderr, "streamedge: upgrade: called off by the old process (%s); stopping\n",
                   m.detail.c_str());
      self->closeUpgradeControl();
      return self->beginStop();
    }
    std::fprintf(stderr, "streamedge: upgrade: unexpected message from the old process ignored: %s\n",
                 encodeControlMessage(m.type, m.detail).c_str());
    return;
  }
  // Closed without a word: the old process is gone (it crashed, or was killed), or it is
  // still there and gave up. Gone: nobody serves but this process, so it does.
  self->closeUpgradeControl();
  if (::getppid() != self->upgraded_from_) {
    std::fprintf(stderr, "streamedge: upgrade: the old process (pid %d) exited before letting go; "
                 "serving\n", static_cast<int>(self->upgraded_from_));
    return self->startServingAfterUpgrade();
  }
  std::fprintf(stderr, "streamedge: upgrade: the old process closed the control socket; stopping\n");
  self->beginStop();
}

void Server::startServingAfterUpgrade() {
  if (stopping_) return closeUpgradeControl();
  for (auto& worker : workers_) {
    Worker* w = worker.get();
    w->post([w] { w->enableAccepting(); });
  }
  if (!acceptAdmin()) {
    std::fprintf(stderr, "streamedge: upgrade: %s; the admin listener is unavailable\n",
                 last_start_error_.c_str());
  }
  printRunning();
  // The new main process tells systemd itself: MAINPID (accepted from a process of the unit
  // with NotifyAccess=all), READY=1, and from now on the watchdog pings.
  notifier_.readyAsNewMainProcess(servingStatus());
  // Only now may the old process exit: were its exit seen first, systemd would take the
  // service for stopped. (Its notifications are handled before exits it learns of later.)
  sendControlMessage(upgrade_control_fd_, UpgradeMessage::kTaken);
  closeUpgradeControl();
  startWatchdog();
  std::fprintf(stderr, "streamedge: upgrade: serving as pid %d (took over from pid %d)\n",
               static_cast<int>(::getpid()), static_cast<int>(upgraded_from_));
}

void Server::awaitHandOverAck() {
  if (handover_fd_ < 0) return;
  std::string why;
  const auto started = std::chrono::steady_clock::now();
  // Usually long there: the new process says it at once, and this one drained meanwhile.
  const std::optional<ControlMessage> m = receiveControlMessage(handover_fd_, kAckWait, &why);
  if (!m || m->type != UpgradeMessage::kTaken) {
    std::fprintf(stderr, "streamedge: upgrade: no word from the new process that it took over "
                 "(%s); exiting anyway\n", m ? encodeControlMessage(m->type, m->detail).c_str() : why.c_str());
  } else if (millisSince(started) > 100) {
    std::fprintf(stderr, "streamedge: upgrade: waited %lld ms for the new process to take over\n",
                 millisSince(started));
  }
  ::close(handover_fd_);
  handover_fd_ = -1;
}

void Server::closeUpgradeControl() {
  if (upgrade_control_event_) event_free(upgrade_control_event_);
  upgrade_control_event_ = nullptr;
  if (upgrade_control_fd_ >= 0) ::close(upgrade_control_fd_);
  upgrade_control_fd_ = -1;
}

// --- the old process -------------------------------------------------------------------------

void Server::startUpgrade() {
  if (upgrade_control_fd_ >= 0) {
    std::fprintf(stderr, "streamedge: upgrade refused: this process is still taking over from "
                 "pid %d\n", static_cast<int>(::getppid()));
    return;
  }
  if (stopping_) {
    std::fprintf(stderr, "streamedge: upgrade refused: this process is stopping\n");
    return;
  }
  if (upgrade_) {
    std::fprintf(stderr, "streamedge: upgrade refused: an upgrade is in progress (new process "
                 "pid %d); SIGUSR2 ignored\n", static_cast<int>(upgrade_->pid));
    return;
  }
  const std::string binary =
      config_->server.upgrade_binary.empty() ? launch_.executable : config_->server.upgrade_binary;
  auto refuse = [&](const std::string& why) {
    ++upgrades_failed_;
    last_upgrade_error_ = why;
    std::fprintf(stderr, "streamedge: upgrade failed: %s; this process (pid %d) keeps serving\n",
                 why.c_str(), static_cast<int>(::getpid()));
    notifier_.status("serving; the last upgrade failed: " + why);
  };
  if (binary.empty()) {
    return refuse("cannot tell which binary this process was started from (argv[0] names none); "
                  "set [server] upgrade_binary");
  }
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
    return refuse(std::string("socketpair: ") + std::strerror(errno));
  }
  // Exactly these descriptors are inherited: every socket of every current listener, the
  // admin socket, and the new process's end of the control socket.
  std::vector<SocketGroup> listeners;
  std::vector<int> inherit;
  for (const ListenerEntry& e : listener_table_.current()) {
    const auto it = bound_.find(e.id);
    if (it == bound_.end()) continue;
    listeners.push_back(SocketGroup{e.key, it->second.fds});
    inherit.insert(inherit.end(), it->second.fds.begin(), it->second.fds.end());
  }
  std::vector<std::string> env;
  for (std::string& e : SystemdNotifier::environmentForNewMainProcess()) {
    if (!isUpgradeVariable(e)) env.push_back(std::move(e));
  }
  env.push_back(std::string(kListenFdsEnv) + "=" + formatSocketGroups(listeners));
  if (admin_fd_ >= 0 && admin_bound_) {
    env.push_back(std::string(kAdminFdEnv) + "=" +
                  formatSocketGroups({SocketGroup{admin_key_, {admin_fd_}}}));
    inherit.push_back(admin_fd_);
  }
  env.push_back(std::string(kUpgradeFdEnv) + "=" + std::to_string(pair[1]));
  inherit.push_back(pair[1]);
  std::vector<std::string> argv{binary};
  argv.insert(argv.end(), launch_.args.begin(), launch_.args.end());

  std::string why;
  const pid_t pid = spawnProcess(binary, argv, env, inherit, &why);
  ::close(pair[1]);
  if (pid < 0) {
    ::close(pair[0]);
    return refuse(why);
  }
  evutil_make_socket_nonblocking(pair[0]);
  upgrade_ = std::make_unique<UpgradeRun>();
  UpgradeRun& u = *upgrade_;
  u.pid = pid;
  u.binary = binary;
  u.control_fd = pair[0];
  u.deadline = std::chrono::steady_clock::now() + config_->server.upgrade_timeout;
  u.control_event = event_new(base_, u.control_fd, EV_READ | EV_PERSIST, upgradeControlCb, this);
  event_add(u.control_event, nullptr);
  u.timer = event_new(base_, -1, EV_PERSIST, upgradeTimerCb, this);
  event_add(u.timer, &kUpgradeTick);
  std::fprintf(stderr, "streamedge: upgrade: started %s as pid %d with %zu listener(s) handed "
               "over; it has %lld ms to be ready\n", binary.c_str(), static_cast<int>(pid),
               listeners.size(), static_cast<long long>(config_->server.upgrade_timeout.count()));
  notifier_.status("upgrading: new process pid " + std::to_string(pid) + " starting (" + binary + ")");
}

void Server::upgradeControlCb(evutil_socket_t fd, short, void* arg) {
  auto* self = static_cast<Server*>(arg);
  // Bounded: the new process sends a handful of messages in its whole life.
  for (int i = 0; i < 16 && self->upgrade_ && self->upgrade_->control_fd == fd; ++i) {
    char buf[kMaxControlMessage];
    const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      self->onUpgradeMessage(decodeControlMessage(std::string_view(buf, static_cast<size_t>(n))));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    // The new process closed it: it exited (or is exiting) before it was ready.
    self->abortUpgrade("the new process closed the control socket before it was ready", kExitGrace);
    return;
  }
}

void Server::onUpgradeMessage(const ControlMessage& m) {
  UpgradeRun& u = *upgrade_;
  switch (m.type) {
    case UpgradeMessage::kStore:
      if (u.state == UpgradeState::kStarting) return releaseStoreForUpgrade();
      break;
    case UpgradeMessage::kReady:
      if (u.state == UpgradeState::kStarting || u.state == UpgradeState::kStoreFree) {
        return commitUpgrade();
      }
      break;
    case UpgradeMessage::kFailed:
      u.child_reason = m.detail;
      return abortUpgrade("the new process could not start: " + m.detail, kExitGrace);
    default: break;
  }
  std::fprintf(stderr, "streamedge: upgrade: unexpected message from pid %d ignored: %s\n",
               static_cast<int>(u.pid), encodeControlMessage(m.type, m.detail).c_str());
}

void Server::releaseStoreForUpgrade() {
  UpgradeRun& u = *upgrade_;
  if (!shared_->ssd) {
    std::fprintf(stderr, "streamedge: upgrade: no SSD store open here; pid %d opens its own\n",
                 static_cast<int>(u.pid));
    u.state = UpgradeState::kStoreFree;
    if (!sendControlMessage(u.control_fd, UpgradeMessage::kStoreFree)) {
      abortUpgrade("cannot answer the new process (control socket)", kExitGrace);
    }
    return;
  }
  std::fprintf(stderr, "streamedge: upgrade: handing the SSD store to pid %d: SSD reads and "
               "admissions stop here (RAM serves on), reads in flight finish, then the store is "
               "closed\n", static_cast<int>(u.pid));
  // Lookups are RAM only from here on; each worker then waits for its reads in flight and drops
  // its engine. The store closes only once every worker has (onUpgradeTick).
  shared_->cache.detachSsd();
  u.release_remaining = std::make_shared<std::atomic<int>>(static_cast<int>(workers_.size()));
  for (auto& worker : workers_) {
    Worker* w = worker.get();
    auto remaining = u.release_remaining;
    w->post([w, remaining] {
      w->releaseSsd([remaining] { remaining->fetch_sub(1, std::memory_order_acq_rel); });
    });
  }
  u.state = UpgradeState::kReleasingStore;
}

void Server::closeStoreForUpgrade() {
  UpgradeRun& u = *upgrade_;
  const auto started = std::chrono::steady_clock::now();
  // Writes what was queued, seals and writes the open region, then the index checkpoint, and
  // closes the device (its lock goes with it).
  shared_->ssd.reset();
  u.store_handed_over = true;
  u.release_remaining.reset();
  std::fprintf(stderr, "streamedge: upgrade: SSD store closed in %lld ms (open region sealed, %s); "
               "pid %d may open it\n", millisSince(started),
               ssd_config_.checkpoint.empty() ? "no checkpoint configured: the new process scans it"
                                              : "index checkpoint written",
               static_cast<int>(u.pid));
  u.state = UpgradeState::kStoreFree;
  if (!sendControlMessage(u.control_fd, UpgradeMessage::kStoreFree)) {
    abortUpgrade("cannot answer the new process (control socket)", kExitGrace);
  }
}

void Server::commitUpgrade() {
  UpgradeRun& u = *upgrade_;
  if (!sendControlMessage(u.control_fd, UpgradeMessage::kGo)) {
    return abortUpgrade("cannot tell the new process to take over (control socket)", kExitGrace);
  }
  const pid_t pid = u.pid;
  // The new process tells systemd it is the main process now; this one must not say more
  // (its drain is not the service stopping).
  notifier_.handedOver();
  std::fprintf(stderr, "streamedge: upgrade: pid %d is ready and takes over; this process (pid %d) "
               "stops accepting and drains (up to %lld ms)\n", static_cast<int>(pid),
               static_cast<int>(::getpid()),
               static_cast<long long>(config_->server.drain_timeout.count()));
  // Admin requests go to the new process from now on (its copy of the socket stays open).
  if (admin_ && admin_bound_) {
    evhttp_del_accept_socket(admin_, admin_bound_);
    admin_bound_ = nullptr;
    admin_fd_ = -1;
  }
  if (u.control_event) event_free(u.control_event);
  if (u.timer) event_free(u.timer);
  handover_fd_ = u.control_fd;  // "taken" is read before this process exits
  upgrade_.reset();  // the new process is on its own; it is reparented when this one exits
  // Connections accepted a moment ago get kHandOverGrace to deliver their first request (or
  // finish their TLS handshake) before idle ones are closed: none of them fails.
  beginStop(std::min(kHandOverGrace, config_->server.drain_timeout));
}

void Server::abortUpgrade(std::string why, std::chrono::milliseconds grace) {
  if (!upgrade_ || upgrade_->state == UpgradeState::kAborting) return;
  UpgradeRun& u = *upgrade_;
  const bool was_releasing = u.state == UpgradeState::kReleasingStore;
  u.state = UpgradeState::kAborting;
  u.why = std::move(why);
  sendControlMessage(u.control_fd, UpgradeMessage::kAbort, u.why);  // it may be gone already
  if (u.control_event) event_free(u.control_event);
  u.control_event = nullptr;
  ::close(u.control_fd);
  u.control_fd = -1;
  if (was_releasing && shared_->ssd) {
    // The store was never closed: the cache and the workers use it again at once.
    cache::SsdStore* store = shared_->ssd.get();
    shared_->cache.attachSsd(store, ssd_config_.admission);
    for (auto& worker : workers_) {
      Worker* w = worker.get();
      w->post([w, store] { w->attachSsd(*store); });
    }
    u.release_remaining.reset();
  }
  const auto now = std::chrono::steady_clock::now();
  u.term_at = now + grace;
  std::fprintf(stderr, "streamedge: upgrade: giving up: %s; waiting for pid %d to exit\n",
               u.why.c_str(), static_cast<int>(u.pid));
  onUpgradeTick();
}

void Server::upgradeTimerCb(evutil_socket_t, short, void* arg) {
  static_cast<Server*>(arg)->onUpgradeTick();
}

void Server::onUpgradeTick() {
  if (!upgrade_) return;
  UpgradeRun& u = *upgrade_;
  const auto now = std::chrono::steady_clock::now();
  if (!u.reaped) {
    int status = 0;
    const pid_t r = ::waitpid(u.pid, &status, WNOHANG);
    if (r == u.pid) {
      u.reaped = true;
      u.wait_status = status;
    } else if (r < 0 && errno == ECHILD) {
      u.reaped = true;  // not ours to wait for any more (never happens with a child of ours)
    }
  }
  switch (u.state) {
    case UpgradeState::kStarting:
    case UpgradeState::kReleasingStore:
    case UpgradeState::kStoreFree:
      if (u.reaped) {
        return abortUpgrade("the new process " + describeExit(u.wait_status) +
                                " before it was ready" +
                                (u.child_reason.empty() ? "" : ": " + u.child_reason),
                            std::chrono::milliseconds(0));
      }
      if (now >= u.deadline) {
        return abortUpgrade("the new process was not ready within " +
                                std::to_string(config_->server.upgrade_timeout.count()) + " ms",
                            std::chrono::milliseconds(0));
      }
      if (u.state == UpgradeState::kReleasingStore && u.release_remaining &&
          u.release_remaining->load(std::memory_order_acquire) == 0) {
        closeStoreForUpgrade();
      }
      return;
    case UpgradeState::kAborting:
      if (u.reaped) return finishAbortedUpgrade();
      if (!u.term_sent && now >= u.term_at) {
        ::kill(u.pid, SIGTERM);
        u.term_sent = true;
        u.kill_at = now + kTermGrace;
        std::fprintf(stderr, "streamedge: upgrade: sent SIGTERM to pid %d\n", static_cast<int>(u.pid));
      } else if (u.term_sent && !u.kill_sent && now >= u.kill_at) {
        ::kill(u.pid, SIGKILL);
        u.kill_sent = true;
        u.kill_at = now + kKillGrace;
        std::fprintf(stderr, "streamedge: upgrade: pid %d did not stop on SIGTERM: sent SIGKILL\n",
                     static_cast<int>(u.pid));
      } else if (u.kill_sent && now >= u.kill_at) {
        std::fprintf(stderr, "streamedge: upgrade: pid %d does not go away; no longer waiting for it\n",
                     static_cast<int>(u.pid));
        finishAbortedUpgrade();
      }
      return;
  }
}

void Server::finishAbortedUpgrade() {
  UpgradeRun& u = *upgrade_;
  std::string why = u.why;
  if (u.reaped && why.find(describeExit(u.wait_status)) == std::string::npos) {
    why += " (pid " + std::to_string(u.pid) + " " + describeExit(u.wait_status) + ")";
  }
  std::string store_note;
  if (u.store_handed_over) {
    // The checkpoint the store wrote when it was handed over (or the one the new process wrote
    // at its own stop) makes this quick: no full scan.
    std::string store_why;
    if (openStore(true, store_why)) {
      store_note = "; its SSD store is open again";
    } else {
      store_note = "; its SSD store could not be reopened (" + store_why +
                   "): RAM only until a restart";
    }
  }
  ++upgrades_failed_;
  last_upgrade_error_ = why;
  std::fprintf(stderr, "streamedge: upgrade failed: %s; this process (pid %d) keeps serving%s\n",
               why.c_str(), static_cast<int>(::getpid()), store_note.c_str());
  if (u.timer) event_free(u.timer);
  upgrade_.reset();
  notifier_.status("serving; the last upgrade failed: " + why);
}

void Server::abandonUpgrade() {
  if (!upgrade_) return;
  UpgradeRun& u = *upgrade_;
  if (u.state != UpgradeState::kAborting) {
    std::fprintf(stderr, "streamedge: upgrade: called off, this process stops; pid %d is told to "
                 "stop too\n", static_cast<int>(u.pid));
    sendControlMessage(u.control_fd, UpgradeMessage::kAbort, "the old process is stopping");
  }
  if (u.control_event) event_free(u.control_event);
  if (u.control_fd >= 0) ::close(u.control_fd);
  if (u.timer) event_free(u.timer);
  upgrade_.reset();
}

std::string Server::upgradeJson() const {
  std::string out = "{\"state\":";
  if (!upgrade_) {
    out += upgrade_control_fd_ >= 0 ? "\"taking_over\"" : "\"idle\"";
  } else {
    switch (upgrade_->state) {
      case UpgradeState::kStarting: out += "\"starting\""; break;
      case UpgradeState::kReleasingStore: out += "\"releasing_store\""; break;
      case UpgradeState::kStoreFree: out += "\"store_handed_over\""; break;
      case UpgradeState::kAborting: out += "\"aborting\""; break;
    }
    out += ",\"new_pid\":" + std::to_string(upgrade_->pid) + ",\"binary\":" + jsonText(upgrade_->binary);
  }
  if (upgraded_from_ != 0) out += ",\"took_over_from\":" + std::to_string(upgraded_from_);
  out += ",\"failed\":" + std::to_string(upgrades_failed_);
  out += ",\"last_error\":" + (last_upgrade_error_.empty() ? std::string("null") : jsonText(last_upgrade_error_));
  return out + "}";
}

}  // namespace streamedge::proxy
