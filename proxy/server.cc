#include "proxy/server.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <malloc.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <map>
#include <thread>
#include <tuple>

#include "cache/body_arena.h"
#include "conf/config_loader.h"
#include "conf/units.h"
#include "metrics/exposition.h"
#include "proxy/compression.h"
#include "proxy/json_text.h"
#include "proxy/log_retention.h"
#include "proxy/privileges.h"

namespace streamedge::proxy {

namespace {

// The SSD tier is opened once (its device, key, engines and index): any change needs a restart.
bool ssdChanged(const conf::SsdCacheConfig& a, const conf::SsdCacheConfig& b) {
  return a.enabled != b.enabled || a.path != b.path || a.size_bytes != b.size_bytes ||
         a.region_bytes != b.region_bytes || a.encrypt != b.encrypt || a.key_file != b.key_file ||
         a.admission != b.admission || a.io_backend != b.io_backend || a.direct_io != b.direct_io ||
         a.reclaim != b.reclaim || a.write_queue_bytes != b.write_queue_bytes ||
         a.sync_interval != b.sync_interval || a.background_rebuild != b.background_rebuild;
}

int64_t unixMillisNow() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The configured address of every listener, config order (what ListenerTable works with).
std::vector<std::string> listenerAddresses(const conf::Config& config) {
  std::vector<std::string> out;
  out.reserve(config.listeners.size());
  for (const conf::ListenerConfig& l : config.listeners) out.push_back(l.address);
  return out;
}

// The line scripts and tests read the port from (stdout, flushed).
void printListening(const conf::ListenerConfig& listener, const std::string& bound) {
  std::printf("streamedge listening %s %s\n", listener.certificates.empty() ? "http" : "https",
              bound.c_str());
  std::fflush(stdout);
}

}  // namespace

Server::Server(conf::ConfigPtr config, std::string config_path, LaunchInfo launch)
    : config_(std::move(config)), config_path_(std::move(config_path)), launch_(std::move(launch)) {
  // The trim below hands free heap pages back every second; free() itself must not do it on
  // every call. With glibc's defaults a connection's output buffers (16 KiB pieces, up to
  // 256 KiB per HTTP/2 connection, allocated and freed continuously) moved an arena's top up
  // and down, and every piece written was fresh pages to fault in and zero (measured: 12 % of
  // a worker's time on 2 MiB hits over HTTP/2). Fixed thresholds also stop glibc from moving
  // its mmap threshold: pieces up to 1 MiB come from the arenas, larger ones are mappings.
  mallopt(M_TRIM_THRESHOLD, 64 << 20);
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
}

// Cached bodies are freed on eviction in bulk, in a worker's malloc arena, and glibc returns
// an arena's free pages to the kernel only at its top: after the RAM tier turned over (e.g.
// origin fills replaced by SSD reads) the process kept its high-water mark, hundreds of MiB
// above what is live, enough to meet a memory limit. Every second the free pages go back, from
// the main thread (measured: ~60 µs a call; 13 ms once while handing back ~200 MiB, during
// which a worker's own malloc may wait on the arena lock).
//
// Between the ticks, every 32 MiB of body blocks freed wakes the trim at once (from the freeing
// thread, through event_active): a RAM tier turning over at disk speed otherwise piled up
// hundreds of MiB of freed blocks within one second (measured: a 256 MiB tier peaked at 457 MiB
// RSS, and was OOM-killed in a 512 MiB cgroup).
void Server::trimCb(evutil_socket_t, short, void*) {
  cache::takeFreedBodyBytes();
  malloc_trim(0);
}

void Server::bodyFreeNotify(void* arg) { event_active(static_cast<event*>(arg), EV_TIMEOUT, 0); }

Server::~Server() {
  cache::setBodyFreeNotify(0, nullptr, nullptr);
  abandonUpgrade();
  closeUpgradeControl();
  if (handover_fd_ >= 0) ::close(handover_fd_);
  workers_.clear();
  // The SSD writer thread (owned by the shared state) may still free bodies, and so notify:
  // it is stopped before the trim event goes.
  if (shared_) {
    shared_->cache.detachSsd();  // the cache outlives the store from here on
    shared_->ssd.reset();
  }
  health_checker_.reset();
  peer_discovery_.reset();
  for (event* ev : signal_events_) event_free(ev);
  if (trim_event_) event_free(trim_event_);
  if (retention_sweep_event_) event_free(retention_sweep_event_);
  if (log_retention_event_) event_free(log_retention_event_);
  if (watchdog_event_) event_free(watchdog_event_);
  if (admin_actions_) admin_actions_->stopSitePurges();  // their requests go with admin_
  if (admin_) evhttp_free(admin_);
  if (base_) event_base_free(base_);
}

bool Server::bindListeners(std::vector<std::vector<ListenSocket>>& per_worker) {
  per_worker.assign(static_cast<size_t>(worker_count_), {});
  listener_table_.start(listenerAddresses(*config_));
  for (size_t li = 0; li < config_->listeners.size(); ++li) {
    const conf::ListenerConfig& listener = config_->listeners[li];
    const ListenerEntry& entry = listener_table_.current()[li];
    BoundSockets bound;
    std::string why;
    // A hot upgrade's new process takes over the old one's sockets of the same address: they
    // never close, so no connection is refused or reset meanwhile.
    std::vector<int> inherited = launch_.inherited.takeListener(entry.key);
    const size_t inherited_count = inherited.size();
    const bool ok = inherited.empty()
                        ? bindListenSockets(listener.address, listener.backlog, worker_count_, bound, &why)
                        : adoptListenSockets(std::move(inherited), listener.backlog, worker_count_, bound, &why);
    if (!ok) {
      std::fprintf(stderr, "streamedge: %s\n", why.c_str());
      last_start_error_ = why;
      return false;  // the process exits: the sockets bound so far go with it
    }
    if (inherited_count > 0) {
      std::fprintf(stderr, "streamedge: upgrade: listener %s: took over %zu socket(s) from the old "
                   "process, on %s\n", entry.label.c_str(), inherited_count, bound.bound.c_str());
    }
    printListening(listener, bound.bound);
    for (int w = 0; w < worker_count_; ++w) {
      for (int fd : socketsOfWorker(bound.fds, worker_count_, w)) {
        per_worker[static_cast<size_t>(w)].push_back(ListenSocket{fd, entry.id, entry.slot});
      }
    }
    bound_[entry.id] = BoundListener{bound.bound, std::move(bound.fds)};
  }
  return true;
}

int64_t Server::listenerConnections(size_t slot) const {
  int64_t active = 0;
  if (!shared_ || slot >= kListenerSlots) return 0;
  for (const auto& c : shared_->counters) {
    active += c->connections_active_by_listener[slot].load(std::memory_order_relaxed);
  }
  return active;
}

std::vector<Server::ListenerView> Server::listenerViews() const {
  std::vector<ListenerView> out;
  std::vector<bool> seen(kListenerSlots, false);
  for (size_t i = 0; i < listener_table_.current().size(); ++i) {
    const ListenerEntry& e = listener_table_.current()[i];
    ListenerView v;
    v.label = e.label;
    const auto it = bound_.find(e.id);
    if (it != bound_.end()) v.bound = it->second.bound;
    v.tls = i < config_->listeners.size() && !config_->listeners[i].certificates.empty();
    v.connections = listenerConnections(e.slot);
    v.export_gauge = !seen[e.slot];
    seen[e.slot] = true;
    if (v.export_gauge) v.gauge_label = listener_table_.slotLabel(e.slot);
    out.push_back(std::move(v));
  }
  // Removed by a reload: shown while their connections drain.
  for (const ListenerEntry& e : listener_table_.retired()) {
    const int64_t active = listenerConnections(e.slot);
    if (active == 0 || seen[e.slot]) continue;
    seen[e.slot] = true;
    ListenerView v;
    v.label = e.label;
    v.gauge_label = listener_table_.slotLabel(e.slot);
    v.connections = active;
    v.removed = true;
    v.export_gauge = true;
    out.push_back(std::move(v));
  }
  return out;
}

bool Server::startAdmin() {
  if (config_->admin.address.empty()) return true;
  sockaddr_storage addr;
  socklen_t len = 0;
  if (!parseSocketAddress(config_->admin.address, addr, len)) {
    std::fprintf(stderr, "streamedge: bad admin address %s\n", config_->admin.address.c_str());
    return false;
  }
  admin_ = evhttp_new(base_);
  evhttp_set_allowed_methods(admin_, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST);
  admin_actions_->setTls(tls_);  // [admin] certificates: TLS only, from the first connection
  if (admin_actions_->tls()) evhttp_set_bevcb(admin_, AdminActions::newConnectionCb, admin_actions_.get());
  evhttp_set_timeout(admin_, 10);
  // The old process's admin socket in a hot upgrade (same address): taken over, not bound.
  int fd = launch_.inherited.takeAdmin(listenerKey(config_->admin.address));
  if (fd >= 0) {
    evutil_make_socket_nonblocking(fd);
  } else {
    fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0 || ::listen(fd, 128) != 0) {
      last_start_error_ = "cannot listen on admin address " + config_->admin.address + ": " +
                          std::strerror(errno);
      std::fprintf(stderr, "streamedge: %s\n", last_start_error_.c_str());
      if (fd >= 0) ::close(fd);
      return false;
    }
  }
  admin_fd_ = fd;
  admin_key_ = listenerKey(config_->admin.address);
  sockaddr_storage bound;
  socklen_t bound_len = sizeof bound;
  getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &bound_len);
  std::printf("streamedge listening admin %s\n", socketAddressText(bound).c_str());
  admin_actions_->setOwnAdminPort(
      ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                        : reinterpret_cast<sockaddr_in*>(&bound)->sin_port));
  evhttp_set_gencb(admin_, adminCb, this);
  return true;
}

bool Server::acceptAdmin() {
  if (!admin_ || admin_fd_ < 0 || admin_bound_) return true;
  admin_bound_ = evhttp_accept_socket_with_handle(admin_, admin_fd_);
  if (!admin_bound_) {
    ::close(admin_fd_);
    admin_fd_ = -1;
    last_start_error_ = "cannot accept on the admin socket";
    return false;
  }
  return true;
}

bool Server::openStore(bool attach_workers, std::string& why) {
  // Opened (and its index rebuilt, or loaded from its checkpoint) as configured now; kept as
  // opened, since [cache.ssd] changes need a restart.
  ssd_config_ = config_->cache.ssd;
  cache::SsdObservers observers;
  observers.read = [](std::chrono::nanoseconds latency) {
    if (WorkerCounters* c = currentWorkerCounters()) c->ssd_read_latency.observe(latency);
  };
  observers.write = [shared = shared_.get()](std::chrono::nanoseconds latency) {
    shared->ssd_write_latency.observe(latency);
  };
  std::string detail;
  auto store = cache::openSsdStore(ssd_config_, SystemClock::instance(), cache::ssdLogToStderr,
                                   &detail, std::move(observers));
  if (!store.isOk()) {
    why = "[cache.ssd] " + ssd_config_.path + ": " +
          (detail.empty() ? store.status().toString() : detail);
    return false;
  }
  shared_->ssd = std::move(*store);
  shared_->cache.attachSsd(shared_->ssd.get(), ssd_config_.admission);
  if (attach_workers) {
    cache::SsdStore* raw = shared_->ssd.get();
    for (auto& worker : workers_) {
      Worker* w = worker.get();
      w->post([w, raw] { w->attachSsd(*raw); });
    }
  }
  return true;
}

int Server::startFailed(const std::string& why, bool print) {
  if (print && !why.empty()) std::fprintf(stderr, "streamedge: %s\n", why.c_str());
  if (upgrade_control_fd_ >= 0) {
    sendControlMessage(upgrade_control_fd_, UpgradeMessage::kFailed,
                       why.empty() ? "start-up failed (see the log)" : why);
  }
  return 1;
}

int Server::run() {
  start_unix_ms_ = unixMillisNow();
  last_reload_ok_unix_ms_ = start_unix_ms_;
  worker_count_ = config_->server.workers > 0
                      ? config_->server.workers
                      : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  // Started by a hot upgrade: the old process serves until this one is ready, and hands over
  // its listening sockets and, when asked, its SSD store.
  const bool upgrading = launch_.inherited.upgrading();
  if (upgrading) {
    upgrade_control_fd_ = launch_.inherited.takeControl();
    upgraded_from_ = ::getppid();
    std::fprintf(stderr, "streamedge: upgrade: started by pid %d to take over from it\n",
                 static_cast<int>(::getppid()));
  }
  shared_ = std::make_unique<SharedState>(*config_);
  registerVhosts(*config_);
  for (int i = 0; i < worker_count_; ++i) {
    shared_->counters.push_back(std::make_unique<WorkerCounters>());
  }
  if (config_->cache.ssd.enabled && !upgrading) {
    // Opened (and its index rebuilt) before any listener: a store that cannot be used is a
    // start-up error, not a silent RAM-only edge. (In an upgrade the old process holds it
    // until this one's config, certificates and sockets are known to be good: below.)
    std::string why;
    if (!openStore(false, why)) return startFailed(why);
  }
  applyRetention();

  std::signal(SIGPIPE, SIG_IGN);
  base_ = event_base_new();
  if (!base_) return startFailed("event_base_new failed");

  // Certificates before sockets: a listener that cannot do TLS must not open as anything.
  tls::TlsState::Build built = tls::TlsState::build(*config_, nullptr, std::time(nullptr));
  for (const std::string& w : built.warnings) std::fprintf(stderr, "streamedge: warning: %s\n", w.c_str());
  if (!built.ok()) {
    for (const std::string& e : built.errors) std::fprintf(stderr, "streamedge: %s\n", e.c_str());
    return startFailed(built.errors.front() +
                       (built.errors.size() > 1
                            ? " (and " + std::to_string(built.errors.size() - 1) + " more errors)"
                            : std::string()));
  }
  tls_ = built.state;

  // Signal handlers before the "listening" lines: whoever starts us may signal as soon as it
  // reads them, and a SIGTERM must then still be a graceful stop (handled once the loop runs),
  // never the default action. A ThreadSanitizer build starts its workers slowly enough for a
  // short scenario test to hit that window.
  for (int sig : {SIGHUP, SIGTERM, SIGINT, SIGUSR1, SIGUSR2}) {
    event* ev = evsignal_new(base_, sig, signalCb, this);
    event_add(ev, nullptr);
    signal_events_.push_back(ev);
  }

  admin_actions_ = std::make_unique<AdminActions>(config_->admin, config_->log.audit_log);
  admin_actions_->setSecurityLog(&shared_->security_log, config_->log.client_address);
  std::vector<std::vector<ListenSocket>> per_worker;
  if (!bindListeners(per_worker)) return startFailed(last_start_error_, false);
  if (!startAdmin()) return startFailed(last_start_error_, false);
  for (const std::string& key : launch_.inherited.closeUntaken()) {
    std::fprintf(stderr, "streamedge: upgrade: listener %s of the old process is not in this "
                 "config: its sockets are closed\n", key.c_str());
  }
  if (upgrading && config_->cache.ssd.enabled) {
    // Config, certificates and sockets are good: now the store, once the old process has
    // sealed its open region, written its checkpoint and closed it.
    std::string why;
    if (!receiveStore(why)) return startFailed(why);
    if (!openStore(false, why)) return startFailed(why);
  }
  health_checker_ = std::make_unique<HealthChecker>(base_, config_, tls_, shared_->health);
  syncPeerDiscovery();
  trim_event_ = event_new(base_, -1, EV_PERSIST, trimCb, this);
  const timeval trim_every{1, 0};
  event_add(trim_event_, &trim_every);
  cache::setBodyFreeNotify(32ull << 20, bodyFreeNotify, trim_event_);
  // Retention: a sweep step every 250 ms (about 4096 index slots and SSD entries each, so a
  // million objects are looked at within a minute; nothing to do without a vhost limit).
  retention_sweep_event_ = event_new(base_, -1, EV_PERSIST, retentionSweepCb, this);
  const timeval sweep_every{0, 250'000};
  event_add(retention_sweep_event_, &sweep_every);
  // Sockets bound, store and keys open: become the configured user before any worker thread
  // exists (they inherit the dropped credentials) and before a request is read. The new
  // process of an upgrade usually runs as that user already (inherited): nothing to do then.
  if (!switchUser()) return startFailed("[server] user: cannot switch to " + config_->server.user);
  // Opened as the user it is reopened as (SIGUSR1, after logrotate), so both see the same file
  // permissions.
  if (!shared_->access_log.open()) return startFailed("cannot open the access log");
  if (!admin_actions_->open()) return startFailed("cannot open the audit log");
  if (!shared_->security_log.open()) return startFailed("cannot open the security log");
  // Rotated logs past [privacy] log_retention: now, on SIGUSR1, and hourly.
  removeOldLogs();
  log_retention_event_ = event_new(base_, -1, EV_PERSIST, logRetentionCb, this);
  const timeval hourly{3600, 0};
  event_add(log_retention_event_, &hourly);
  std::vector<uint64_t> ids_by_position;
  for (const ListenerEntry& e : listener_table_.current()) ids_by_position.push_back(e.id);
  for (int i = 0; i < worker_count_; ++i) {
    auto worker = std::make_unique<Worker>(i, *shared_, config_,
                                           std::move(per_worker[static_cast<size_t>(i)]),
                                           ids_by_position);
    worker->setTls(tls_);
    // In an upgrade the workers accept only once the old process lets go.
    if (!worker->start(!upgrading)) {
      return startFailed("worker " + std::to_string(i) + " failed to start");
    }
    workers_.push_back(std::move(worker));
  }
  listeners_bound_ = true;
  if (upgrading) {
    awaitGo();
  } else {
    if (!acceptAdmin()) return startFailed(last_start_error_);
    printRunning();
    notifier_.ready(servingStatus());
    startWatchdog();
  }

  event_base_dispatch(base_);

  for (auto& worker : workers_) worker->join();
  awaitHandOverAck();
  std::fprintf(stderr, "streamedge: stopped\n");
  return 0;
}

void Server::printRunning() const {
  std::string ssd_summary = "none";
  if (shared_->ssd) {
    ssd_summary = formatByteSize(ssd_config_.size_bytes);
    ssd_summary.append(" at ").append(ssd_config_.path);
  }
  std::printf("streamedge %s (%s) running: %d workers, RAM cache %s, SSD cache %s, config %s\n",
              STREAMEDGE_VERSION, STREAMEDGE_GIT_COMMIT, worker_count_,
              formatByteSize(config_->cache.ram.size_bytes).c_str(), ssd_summary.c_str(),
              config_->source.c_str());
  std::fflush(stdout);
}

void Server::retentionSweepCb(evutil_socket_t, short, void* arg) {
  static_cast<Server*>(arg)->shared_->cache.sweepRetention(4096);
}

void Server::logRetentionCb(evutil_socket_t, short, void* arg) {
  static_cast<Server*>(arg)->removeOldLogs();
}

void Server::applyRetention() {
  auto table = std::make_shared<const cache::RetentionTable>(*config_);
  shared_->cache.setRetention(table->empty() ? nullptr : std::move(table));
}

void Server::removeOldLogs() {
  const conf::Millis max_age = config_->privacy.log_retention;
  if (max_age.count() <= 0) return;
  const WallTime now = SystemClock::instance().wallNow();
  // The live logs are never touched, whichever log's pattern they match; nor the audit log
  // and its rotations (not covered by log_retention).
  const std::vector<std::string> live = {config_->log.access_log, config_->log.security_log,
                                         config_->log.audit_log};
  const std::vector<std::string> audit = {config_->log.audit_log};
  struct Log {
    const std::string& path;
    uint64_t& removed;
    const char* name;
  };
  Log logs[] = {{config_->log.access_log, log_files_removed_access_, "access"},
                {config_->log.security_log, log_files_removed_security_, "security"}};
  for (size_t i = 0; i < 2; ++i) {
    // One log file for both: judged once.
    if (i == 1 && logs[1].path == logs[0].path) break;
    const LogRetentionResult r = removeRotatedLogs(logs[i].path, max_age, now, live, audit);
    logs[i].removed += r.removed.size();
    log_file_removal_errors_ += r.errors.size();
    for (const std::string& path : r.removed) {
      std::fprintf(stderr, "streamedge: removed %s (%s log older than [privacy] log_retention)\n",
                   path.c_str(), logs[i].name);
    }
    for (const std::string& e : r.errors) {
      std::fprintf(stderr, "streamedge: log retention: cannot remove %s\n", e.c_str());
    }
  }
}

void Server::signalCb(evutil_socket_t sig, short, void* arg) {
  static_cast<Server*>(arg)->onSignal(static_cast<int>(sig));
}

void Server::onSignal(int sig) {
  switch (sig) {
    case SIGHUP:
      if (upgrade_ || upgrade_control_fd_ >= 0) {
        // The sockets and the store are being handed over as they are now: a reload would
        // change them under the new process. (Counted as neither good nor failed.)
        std::fprintf(stderr, "streamedge: reload refused: a hot upgrade is in progress; send "
                     "SIGHUP again once it is over\n");
        return;
      }
      notifier_.reloading("reloading " + (config_path_.empty() ? config_->source : config_path_));
      reload();
      // READY=1 whether the reload took or not: a refused config leaves the old one serving.
      notifier_.ready(servingStatus());
      return;
    case SIGUSR1:
      shared_->access_log.reopen();
      admin_actions_->reopenLog();
      shared_->security_log.reopen();
      std::fprintf(stderr, "streamedge: access log reopened\n");
      removeOldLogs();
      return;
    case SIGUSR2: return startUpgrade();
    default: return beginStop();
  }
}

void Server::reload() {
  if (config_path_.empty()) {
    std::fprintf(stderr, "streamedge: reload: running on the embedded default; nothing to load\n");
    ++reloads_ok_;
    last_reload_ok_ = true;
    last_reload_ok_unix_ms_ = unixMillisNow();
    return;
  }
  conf::LoadResult loaded = conf::loadConfigFile(config_path_);
  if (!loaded.ok()) {
    ++reloads_failed_;
    last_reload_ok_ = false;
    std::fprintf(stderr, "streamedge: reload of %s failed; the running config stays:\n",
                 config_path_.c_str());
    for (const conf::ConfigError& e : loaded.errors) {
      std::fprintf(stderr, "  %s\n", e.toString().c_str());
    }
    return;
  }
  loaded.config = withDiscoveredPeers(std::move(loaded.config));
  const conf::Config& next = *loaded.config;
  if (next.server.workers != config_->server.workers ||
      next.cache.ram.size_bytes != config_->cache.ram.size_bytes ||
      next.cache.ram.max_variants != config_->cache.ram.max_variants ||
      next.cache.ram.max_vary_urls != config_->cache.ram.max_vary_urls ||
      next.admin.address != config_->admin.address ||
      (admin_ && next.admin.certificates.empty() == admin_actions_->tls()) ||  // TLS on/off
      ssdChanged(next.cache.ssd, config_->cache.ssd) ||
      next.server.user != config_->server.user) {
    std::fprintf(stderr,
                 "streamedge: reload: worker, admin, cache size, [cache.ssd] and user changes take "
                 "effect at the next restart\n");
  }
  // Certificates, keys, ticket key files and OCSP responses are re-read; any error keeps the
  // running config and contexts (connections pin theirs, new ones get the new snapshot).
  tls::TlsState::Build built = tls::TlsState::build(next, tls_.get(), std::time(nullptr));
  for (const std::string& w : built.warnings) {
    std::fprintf(stderr, "streamedge: reload: warning: %s\n", w.c_str());
  }
  if (!built.ok()) {
    ++reloads_failed_;
    last_reload_ok_ = false;
    std::fprintf(stderr, "streamedge: reload of %s failed; the running config and certificates "
                 "stay:\n", config_path_.c_str());
    for (const std::string& e : built.errors) std::fprintf(stderr, "  %s\n", e.c_str());
    return;
  }
  // Listeners the new config adds are bound now, before anything is published: one that cannot
  // be bound fails the whole reload and the running listeners, config and certificates stay.
  std::vector<ListenerUpdate> updates;
  std::string why;
  if (!reloadListeners(next, updates, why)) {
    ++reloads_failed_;
    last_reload_ok_ = false;
    std::fprintf(stderr, "streamedge: reload of %s failed; the running config, listeners and "
                 "certificates stay:\n  %s\n", config_path_.c_str(), why.c_str());
    return;
  }
  config_ = loaded.config;
  admin_actions_->setConfig(config_->admin);  // tokens and scopes reload
  admin_actions_->setSecurityLog(&shared_->security_log, config_->log.client_address);
  registerVhosts(*config_);
  applyRetention();  // limits apply to objects already stored
  shared_->cache.setFillLimits(config_->cache.ram.fill_window_bytes,
                               config_->cache.ram.fill_memory_bytes);
  cache::setBodyArenaEnabled(config_->cache.ram.sendfile);
  tls_ = built.state;
  admin_actions_->setTls(tls_);  // new admin certificates / client_ca for new connections
  // Origin health follows the new origin list (state kept for unchanged origins); the active
  // checks restart with the new settings.
  health_checker_.reset();
  shared_->health->reconfigure(*config_);
  shared_->peers.reconfigure(*config_);
  if (!stopping_) {
    health_checker_ = std::make_unique<HealthChecker>(base_, config_, tls_, shared_->health);
  }
  for (size_t i = 0; i < workers_.size(); ++i) {
    Worker* w = workers_[i].get();
    conf::ConfigPtr snapshot = config_;
    tls::TlsStatePtr tls = tls_;
    // Shared: a std::function must be copyable. Sockets of an update never applied (the worker
    // stopped first) are closed with it.
    auto update = std::make_shared<ListenerUpdate>(std::move(updates[i]));
    w->post([w, snapshot, tls, update] { w->applyReload(snapshot, tls, *update); });
  }
  syncPeerDiscovery();  // and a DNS round now: SIGHUP also re-resolves the membership
  ++reloads_ok_;
  last_reload_ok_ = true;
  last_reload_ok_unix_ms_ = unixMillisNow();
  std::fprintf(stderr, "streamedge: reloaded %s\n", config_path_.c_str());
}

bool Server::reloadListeners(const conf::Config& next, std::vector<ListenerUpdate>& updates,
                             std::string& why) {
  const std::vector<std::string> addresses = listenerAddresses(next);
  const ListenerDiff diff = listener_table_.diff(addresses);
  // Bind every added address first; one failure closes what was bound and changes nothing.
  std::vector<BoundSockets> bound(next.listeners.size());
  for (size_t i = 0; i < next.listeners.size(); ++i) {
    if (diff.kept_from[i]) continue;
    const conf::ListenerConfig& l = next.listeners[i];
    if (!bindListenSockets(l.address, l.backlog, worker_count_, bound[i], &why)) {
      for (BoundSockets& b : bound) closeSockets(b.fds);
      why = "listener[" + std::to_string(i) + "]: " + why;
      return false;
    }
  }

  const std::vector<ListenerEntry> before = listener_table_.current();
  std::vector<uint64_t> removed;
  for (size_t index : diff.removed) {
    const ListenerEntry& e = before[index];
    removed.push_back(e.id);
    bound_.erase(e.id);  // the workers close their sockets on the update
    std::fprintf(stderr,
                 "streamedge: reload: listener %s removed: it stops accepting, its %lld open "
                 "connection(s) finish their response (up to %lld ms)\n",
                 e.label.c_str(), static_cast<long long>(listenerConnections(e.slot)),
                 static_cast<long long>(next.server.drain_timeout.count()));
  }
  listener_table_.commit(addresses, diff, [this](size_t slot) { return listenerConnections(slot); });

  updates.clear();
  updates.resize(static_cast<size_t>(worker_count_));
  std::vector<uint64_t> ids_by_position;
  for (size_t i = 0; i < next.listeners.size(); ++i) {
    const ListenerEntry& e = listener_table_.current()[i];
    const conf::ListenerConfig& l = next.listeners[i];
    ids_by_position.push_back(e.id);
    if (const auto kept = diff.kept_from[i]) {
      // Kept: same sockets. A new backlog applies to them as they are (listen() again).
      const conf::ListenerConfig& was = config_->listeners[*kept];
      if (l.backlog != was.backlog) {
        for (int fd : bound_[e.id].fds) ::listen(fd, l.backlog);
      }
      continue;
    }
    printListening(l, bound[i].bound);
    std::fprintf(stderr, "streamedge: reload: listener %s added, listening on %s\n",
                 e.label.c_str(), bound[i].bound.c_str());
    for (int w = 0; w < worker_count_; ++w) {
      updates[static_cast<size_t>(w)].added.push_back(
          ListenSocket{bound[i].fds[static_cast<size_t>(w)], e.id, e.slot});
    }
    bound_[e.id] = BoundListener{bound[i].bound, std::move(bound[i].fds)};
  }
  for (ListenerUpdate& u : updates) {
    u.ids_by_position = ids_by_position;
    u.removed = removed;
    u.drain_timeout = next.server.drain_timeout;
  }
  return true;
}

std::string Server::servingStatus() const {
  std::string text = "serving: " + std::to_string(worker_count_) + " workers, " +
                     std::to_string(config_->listeners.size()) + " listeners, config " +
                     config_->source;
  if (!last_reload_ok_) text += "; the last reload failed (see the log), the previous config runs";
  return text;
}

bool Server::switchUser() {
  const std::string& user = config_->server.user;
  if (user.empty()) return true;
  std::string why;
  if (!switchToUser(user, &why)) {
    std::fprintf(stderr, "streamedge: [server] user: cannot switch to %s: %s\n", user.c_str(),
                 why.c_str());
    return false;
  }
  std::fprintf(stderr, "streamedge: running as user %s (uid %u, gid %u)\n", user.c_str(),
               static_cast<unsigned>(::getuid()), static_cast<unsigned>(::getgid()));
  // A reload reads certificates and keys again, now as this user: say so now, not at the
  // first reload after a certificate renewal.
  std::vector<std::string> files;
  for (const conf::ListenerConfig& l : config_->listeners) {
    for (const conf::CertificateConfig& c : l.certificates) {
      files.push_back(c.cert);
      files.push_back(c.key);
    }
  }
  if (!config_path_.empty()) files.push_back(config_path_);
  const std::string unreadable = unreadableFiles(files);
  if (!unreadable.empty()) {
    std::fprintf(stderr,
                 "streamedge: warning: user %s cannot read %s: a reload will fail until it can "
                 "(e.g. chgrp %s FILE && chmod g+r FILE)\n",
                 user.c_str(), unreadable.c_str(), user.c_str());
  }
  return true;
}

void Server::startWatchdog() {
  const auto interval = notifier_.watchdogInterval();
  if (interval.count() <= 0) return;
  // A third of the interval: one tick may find a worker briefly stuck and skip its ping
  // without systemd acting on it.
  const int64_t us = std::max<int64_t>(interval.count() / 3, 1000);
  const timeval every{static_cast<time_t>(us / 1'000'000), static_cast<suseconds_t>(us % 1'000'000)};
  watchdog_event_ = event_new(base_, -1, EV_PERSIST, watchdogCb, this);
  event_add(watchdog_event_, &every);
  watchdogCb(-1, 0, this);
}

// Pings only while every worker loop ticked recently (what /healthz checks): a stuck worker
// stops the pings, and systemd restarts the service after WatchdogSec.
void Server::watchdogCb(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<Server*>(arg);
  std::string why;
  if (self->healthy(why)) {
    self->notifier_.watchdog();
    if (self->watchdog_withheld_) {
      self->watchdog_withheld_ = false;
      std::fprintf(stderr, "streamedge: watchdog: workers tick again, pinging systemd again\n");
      self->notifier_.status(self->servingStatus());
    }
    return;
  }
  if (!self->watchdog_withheld_) {
    self->watchdog_withheld_ = true;
    std::fprintf(stderr, "streamedge: watchdog: not pinging systemd: %s\n", why.c_str());
    self->notifier_.status("unhealthy: " + why);
  }
}

void Server::beginStop(std::chrono::milliseconds idle_grace) {
  if (stopping_) return;
  abandonUpgrade();  // a SIGTERM during an upgrade: the new process is told to give up
  stopping_ = true;
  std::fprintf(stderr, "streamedge: stopping: draining connections (up to %lld ms)\n",
               static_cast<long long>(config_->server.drain_timeout.count()));
  shared_->draining.store(true);
  notifier_.stopping("stopping: draining connections (up to " +
                     std::to_string(config_->server.drain_timeout.count()) + " ms)");
  health_checker_.reset();  // no new origin connections from the main thread
  peer_discovery_.reset();
  const auto deadline = config_->server.drain_timeout;
  for (auto& worker : workers_) {
    Worker* w = worker.get();
    w->post([w, deadline, idle_grace] { w->beginDrain(deadline, idle_grace); });
  }
  event_base_loopexit(base_, nullptr);
}

// --- admin ----------------------------------------------------------------------------------

namespace {

// A JSON string literal for a config value (names may hold any character).

std::string lowerResultName(CacheResult r) {
  if (r == CacheResult::kNone) return "none";
  std::string name = cacheResultName(r);
  for (char& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return name;
}

// One origin's health for /status: why it is down (if it is), the active verdict and counts,
// the passive state and its back-off, and the recovery ramp.
std::string healthJson(const OriginHealthView& v) {
  std::string out = "{\"down_reason\":";
  out += *v.down_reason ? jsonString(v.down_reason) : std::string("null");
  out += ",\"active\":";
  out += !v.active_checks ? "\"off\"" : (v.active_up ? "\"up\"" : "\"down\"");
  out += ",\"check_failures\":" + std::to_string(v.check_failures) +
         ",\"check_successes\":" + std::to_string(v.check_successes);
  out += ",\"passive\":";
  out += v.ejected ? "\"ejected\"" : (v.half_open ? "\"half_open\"" : "\"ok\"");
  out += ",\"consecutive_failures\":" + std::to_string(v.consecutive_failures) +
         ",\"ejections\":" + std::to_string(v.ejections) +
         ",\"ejections_refused\":" + std::to_string(v.ejections_refused) +
         ",\"ejection_streak\":" + std::to_string(v.ejection_streak) +
         ",\"backoff_ms\":" + std::to_string(v.backoff_ms) +
         ",\"ejected_remaining_ms\":" + std::to_string(v.ejected_remaining_ms) +
         ",\"ramp_percent\":" + std::to_string(static_cast<int>(v.ramp * 100.0 + 0.5)) +
         ",\"transitions_up\":" + std::to_string(v.transitions_up) +
         ",\"transitions_down\":" + std::to_string(v.transitions_down) + "}";
  return out;
}

}  // namespace

void Server::adminCb(evhttp_request* req, void* arg) { static_cast<Server*>(arg)->handleAdmin(req); }

void Server::registerVhosts(const conf::Config& config) {
  for (const conf::VhostConfig& v : config.vhosts) shared_->vhost_slots.slotFor(v.name);
}

bool Server::healthy(std::string& why) const {
  const int64_t now = unixMillisNow();
  const int64_t bound = config_->admin.health_stall_bound.count();
  for (size_t i = 0; i < shared_->counters.size(); ++i) {
    const int64_t beat = shared_->counters[i]->heartbeat_unix_ms.load(std::memory_order_relaxed);
    if (now - beat > bound) {
      why = "worker " + std::to_string(i) + " loop has not run for " + std::to_string(now - beat) +
            " ms (bound " + std::to_string(bound) + " ms)";
      return false;
    }
  }
  return true;
}

bool Server::ready(std::string& why) const {
  // Every check is reported, one line each, so a probe's body says exactly what is missing.
  bool ok = true;
  why.clear();
  auto check = [&](const char* name, bool passed, const std::string& detail) {
    why += name;
    why += passed ? ": ok" : ": FAILED";
    if (!detail.empty()) why += " (" + detail + ")";
    why += '\n';
    ok = ok && passed;
  };
  check("config", config_ != nullptr, config_ ? config_->source : "no config");
  check("listeners", listeners_bound_,
        listeners_bound_ ? std::to_string(config_->listeners.size()) + " bound" : "not bound yet");
  check("draining", !stopping_, stopping_ ? "stopping" : "");
  const auto now = std::chrono::steady_clock::now();
  for (size_t g = 0; g < config_->origin_groups.size(); ++g) {
    const conf::OriginGroupConfig& group = config_->origin_groups[g];
    // Other edges of the site are not this edge's readiness: a peer that is down is skipped
    // (its keys go to the next owner or the origin). Counting them, one dead or restarting
    // peer would take every edge of the site out of its load balancer at once.
    if (group.name.rfind(conf::kPeerGroupPrefix, 0) == 0) continue;
    size_t up = 0;
    for (size_t o = 0; o < group.origins.size(); ++o) up += shared_->health->isUp(g, o, now) ? 1 : 0;
    check(("origin_group " + group.name).c_str(), up > 0,
          std::to_string(up) + " of " + std::to_string(group.origins.size()) + " origins up");
  }
  return ok;
}

std::string Server::statusJson() const {
  const int64_t now_ms = unixMillisNow();
  std::string out = "{\"version\":\"" STREAMEDGE_VERSION "\",\"commit\":\"" STREAMEDGE_GIT_COMMIT "\"";
  out += ",\"pid\":" + std::to_string(::getpid());
  out += ",\"start_time_unix\":" + std::to_string(start_unix_ms_ / 1000);
  out += ",\"upgrade\":" + upgradeJson();
  out += ",\"uptime_seconds\":" + std::to_string((now_ms - start_unix_ms_) / 1000);
  out += ",\"config\":{\"source\":" + jsonString(config_->source) +
         ",\"reloads_ok\":" + std::to_string(reloads_ok_) +
         ",\"reloads_failed\":" + std::to_string(reloads_failed_) +
         ",\"last_good_load_unix\":" + std::to_string(last_reload_ok_unix_ms_ / 1000) + "}";
  std::string why;
  const bool is_healthy = healthy(why);
  out += ",\"healthy\":" + std::string(is_healthy ? "true" : "false");
  out += ",\"ready\":" + std::string(ready(why) ? "true" : "false");
  out += ",\"workers\":" + std::to_string(worker_count_);
  out += ",\"worker_heartbeat_age_ms\":[";
  for (size_t i = 0; i < shared_->counters.size(); ++i) {
    if (i > 0) out += ',';
    out += std::to_string(now_ms - shared_->counters[i]->heartbeat_unix_ms.load(std::memory_order_relaxed));
  }
  out += "]";
  out += ",\"connections\":" +
         std::to_string(shared_->connections_total_active.load(std::memory_order_relaxed));
  out += ",\"listeners\":[";
  bool first_listener = true;
  for (const ListenerView& v : listenerViews()) {
    if (!first_listener) out += ',';
    first_listener = false;
    out += "{\"address\":" + jsonString(v.label);
    if (!v.removed) out += ",\"bound\":" + jsonString(v.bound);
    out += ",\"tls\":" + std::string(v.tls ? "true" : "false") +
           ",\"state\":" + (v.removed ? "\"draining\"" : "\"accepting\"") +
           ",\"connections\":" + std::to_string(v.connections) + "}";
  }
  out += "]";
  const cache::CacheStats stats = shared_->cache.stats();
  out += ",\"cache\":{\"ram\":{\"objects\":" + std::to_string(stats.objects) +
         ",\"bytes\":" + std::to_string(stats.bytes) +
         ",\"capacity_bytes\":" + std::to_string(stats.capacity_bytes) +
         ",\"used_percent\":" +
         std::to_string(stats.capacity_bytes ? stats.bytes * 100 / stats.capacity_bytes : 0) +
         ",\"evictions\":" + std::to_string(stats.evictions) +
         ",\"admissions\":" + std::to_string(stats.admissions) +
         ",\"fills_in_flight\":" + std::to_string(stats.fills_in_flight) +
         ",\"fill_memory_bytes\":" + std::to_string(stats.fill_memory_bytes) +
         ",\"fill_memory_budget_bytes\":" + std::to_string(stats.fill_memory_budget) +
         ",\"fill_window_bytes\":" + std::to_string(stats.fill_window_bytes) +
         ",\"vary_urls\":" + std::to_string(stats.vary_urls) +
         ",\"vary_marker_bytes\":" + std::to_string(stats.vary_marker_bytes) +
         ",\"variants_dropped\":" + std::to_string(stats.variants_dropped) + "}";
  if (shared_->ssd) {
    const cache::SsdStats ssd = shared_->ssd->stats();
    const uint64_t capacity = uint64_t{ssd.regions} * ssd.region_bytes;
    out += ",\"ssd\":{\"path\":" + jsonString(ssd_config_.path) +
           ",\"objects\":" + std::to_string(ssd.objects) +
           ",\"bytes\":" + std::to_string(ssd.indexed_bytes) +
           ",\"capacity_bytes\":" + std::to_string(capacity) +
           ",\"used_percent\":" + std::to_string(capacity ? ssd.indexed_bytes * 100 / capacity : 0) +
           ",\"io_backend\":" + jsonString(ssd.writer_backend) +
           ",\"encrypted\":" + (ssd.encrypted ? "true" : "false") +
           ",\"ephemeral_key\":" + (ssd.ephemeral_key ? "true" : "false") +
           ",\"hits\":" + std::to_string(stats.ssd_hits) +
           ",\"errors\":" + std::to_string(ssd.read_errors + ssd.write_errors) +
           ",\"corrupt\":" + std::to_string(ssd.corrupt + ssd.rebuild_rejected_entries) +
           ",\"vhost_keys\":" + (ssd.vhost_keys ? "true" : "false") +
           ",\"data_keys\":" + std::to_string(ssd.data_keys) +
           ",\"data_keys_destroyed\":" + std::to_string(ssd.data_keys_destroyed) +
           ",\"keyring_errors\":" + std::to_string(ssd.keyring_errors) +
           ",\"shredded_entries\":" + std::to_string(ssd.shredded_entries) +
           ",\"admissions_dropped\":" + std::to_string(ssd.inserts_dropped) +
           ",\"rebuilding\":" + (ssd.rebuilding ? "true" : "false") +
           ",\"rebuild_seconds\":" + std::to_string(ssd.rebuild_seconds) +
           ",\"serving_from_checkpoint\":" + (ssd.serving_from_checkpoint ? "true" : "false") +
           ",\"checkpoint_serving_seconds\":" + std::to_string(ssd.checkpoint_serving_seconds) +
           ",\"rebuild_regions_scanned\":" + std::to_string(ssd.rebuild_regions_scanned) +
           ",\"checkpoint_loaded\":" + (ssd.checkpoint_loaded ? "true" : "false") +
           ",\"checkpoints_written\":" + std::to_string(ssd.checkpoints_written) +
           ",\"checkpoint_errors\":" + std::to_string(ssd.checkpoint_errors) +
           ",\"checkpoint_seconds\":" + std::to_string(ssd.checkpoint_seconds) + "}";
  }
  out += "}";
  std::map<OriginStats::Key, OriginStats::Series> traffic;
  for (const auto& c : shared_->counters) c->origin_stats.addTo(traffic);
  // Origin protection: what each origin has in flight now against its caps (all workers).
  std::map<std::pair<std::string, std::string>, OriginLimits::SlotView> protection;
  for (OriginLimits::SlotView& v : shared_->limits->slots()) {
    protection[{v.group, v.origin}] = std::move(v);
  }
  out += ",\"origins\":[";
  const auto now = std::chrono::steady_clock::now();
  bool first = true;
  for (size_t g = 0; g < config_->origin_groups.size(); ++g) {
    const conf::OriginGroupConfig& group = config_->origin_groups[g];
    for (size_t o = 0; o < group.origins.size(); ++o) {
      const conf::OriginConfig& origin = group.origins[o];
      const auto it = traffic.find(OriginStats::Key(group.name, origin.name, origin.dc));
      const OriginStats::Series series = it == traffic.end() ? OriginStats::Series{} : it->second;
      if (!first) out += ',';
      first = false;
      out += "{\"group\":" + jsonString(group.name) + ",\"origin\":" + jsonString(origin.name) +
             ",\"dc\":" + jsonString(origin.dc) + ",\"priority\":" + std::to_string(origin.priority) +
             ",\"up\":" + (shared_->health->isUp(g, o, now) ? "true" : "false") +
             ",\"requests\":" + std::to_string(series.requests) +
             ",\"errors\":" + std::to_string(metrics::total(series.errors)) +
             ",\"failovers\":" + std::to_string(series.failovers) +
             ",\"health\":" + healthJson(shared_->health->view(g, o, now));
      const auto p = protection.find({group.name, origin.name});
      const OriginLimits::SlotView v =
          p == protection.end() ? OriginLimits::SlotView{} : p->second;
      out += ",\"in_flight\":" + std::to_string(v.in_flight) +
             ",\"max_concurrent_requests\":" + std::to_string(origin.max_concurrent_requests) +
             ",\"max_in_flight_seen\":" + std::to_string(v.max_in_flight_seen) +
             ",\"connections\":" + std::to_string(v.connections) +
             ",\"max_connections\":" + std::to_string(origin.max_connections) +
             ",\"queued\":" + std::to_string(v.queued) +
             ",\"queue_size\":" + std::to_string(origin.queue_size) +
             ",\"queued_total\":" + std::to_string(v.queued_total) +
             ",\"rejected_queue_full\":" + std::to_string(v.rejected_overflow) +
             ",\"rejected_queue_timeout\":" + std::to_string(v.rejected_timeout) + "}";
    }
  }
  out += "]";
  // Resumes after the first byte, per group and outcome (summed over the data centers).
  std::map<OriginStats::ResumeKey, uint64_t> resume_series;
  for (const auto& c : shared_->counters) c->origin_stats.addResumesTo(resume_series);
  std::map<std::string, std::map<std::string, uint64_t>> resumes;
  for (const auto& [key, count] : resume_series) {
    resumes[std::get<0>(key)][std::get<3>(key)] += count;
  }
  out += ",\"origin_groups\":[";
  bool first_group = true;
  for (const OriginLimits::BudgetView& v : shared_->limits->budgets()) {
    if (!first_group) out += ',';
    first_group = false;
    out += "{\"group\":" + jsonString(v.group) + ",\"retries\":" + std::to_string(v.retried) +
           ",\"retries_budget_exhausted\":" + std::to_string(v.budget_exhausted) +
           ",\"hedges_started\":" + std::to_string(v.hedges_started) +
           ",\"hedges_won\":" + std::to_string(v.hedges_won) +
           ",\"hedges_lost\":" + std::to_string(v.hedges_lost) + ",\"resumes\":{";
    bool first_outcome = true;
    for (const auto& [outcome, count] : resumes[v.group]) {
      if (!first_outcome) out += ',';
      first_outcome = false;
      out += jsonString(outcome) + ":" + std::to_string(count);
    }
    out += "}}";
  }
  out += "]";
  // Cluster: every member (this edge too), whether it gets fills, its fills in flight from here
  // and the results of this edge's requests to it.
  if (const std::shared_ptr<PeerTier> tier = shared_->peers.get()) {
    out += ",\"cluster\":{\"self\":" + jsonString(tier->address(tier->self())) +
           membershipStatusJson() + ",\"peers\":[";
    for (size_t i = 0; i < tier->size(); ++i) {
      if (i > 0) out += ',';
      const bool self = i == tier->self();
      out += "{\"peer\":" + jsonString(tier->address(i)) +
             ",\"self\":" + (self ? "true" : "false") + ",\"up\":" +
             (tier->usable(i, *config_, *shared_->health, now) ? "true" : "false") +
             ",\"fills_in_flight\":" + std::to_string(tier->load(i)) + ",\"requests\":{";
      for (size_t r = 0; r < static_cast<size_t>(PeerResult::kCount); ++r) {
        if (r > 0) out += ',';
        out += jsonString(peerResultName(static_cast<PeerResult>(r))) + ":" +
               std::to_string(tier->requests(i, static_cast<PeerResult>(r)));
      }
      out += "}}";
    }
    out += "]}";
  }
  out += ",\"client_miss_budget\":{\"clients\":" +
         std::to_string(shared_->client_misses.tracked()) + ",\"rejected\":{";
  bool first_rejected = true;
  for (const auto& [group, n] : shared_->client_misses.rejected()) {
    if (!first_rejected) out += ',';
    first_rejected = false;
    out += jsonString(group) + ":" + std::to_string(n);
  }
  out += "}}}\n";
  return out;
}

std::string Server::metricsText() const {
  metrics::Snapshot snap;
  snap.start_time_unix_seconds = static_cast<double>(start_unix_ms_) / 1000.0;
  snap.now_unix_seconds = static_cast<double>(unixMillisNow()) / 1000.0;
  snap.workers = worker_count_;

  // Viewer requests: sum the workers' cells; only non-zero series are exported.
  const std::vector<std::string> vhosts = shared_->vhost_slots.names();
  std::array<uint64_t, kStatusClasses> by_class{};
  for (size_t v = 0; v < vhosts.size() && v < kVhostSlots; ++v) {
    if (vhosts[v].empty()) continue;
    uint64_t bytes = 0;
    for (const auto& c : shared_->counters) bytes += c->response_bytes[v].load(std::memory_order_relaxed);
    bool any = bytes > 0;
    for (size_t p = 0; p < kProtocols; ++p) {
      for (size_t r = 0; r < kCacheResults; ++r) {
        for (size_t k = 0; k < kStatusClasses; ++k) {
          uint64_t total = 0;
          for (const auto& c : shared_->counters) {
            total += c->requests[p][v][r][k].load(std::memory_order_relaxed);
          }
          if (total == 0) continue;
          any = true;
          by_class[k] += total;
          snap.requests.push_back({vhosts[v], lowerResultName(static_cast<CacheResult>(r)),
                                   k == 0 ? "other" : std::to_string(k) + "xx", kProtocolNames[p],
                                   total});
        }
      }
    }
    if (any) snap.response_bytes_by_vhost.emplace_back(vhosts[v], bytes);
    metrics::CmcdSeries cmcd;
    cmcd.vhost = vhosts[v];
    for (const auto& c : shared_->counters) {
      cmcd.requests += c->cmcd_requests[v].load(std::memory_order_relaxed);
      cmcd.buffer_starvation += c->cmcd_starvation[v].load(std::memory_order_relaxed);
      cmcd.bitrate_sum_kbps += c->cmcd_bitrate_sum_kbps[v].load(std::memory_order_relaxed);
      for (size_t b = 0; b < cmcd.bitrate_counts.size(); ++b) {
        cmcd.bitrate_counts[b] += c->cmcd_bitrate[v][b].load(std::memory_order_relaxed);
      }
    }
    if (cmcd.requests > 0) snap.cmcd.push_back(std::move(cmcd));
    for (size_t t = 1; t < kTokenVerdicts; ++t) {
      uint64_t total = 0;
      for (const auto& c : shared_->counters) {
        total += c->token_rejections[v][t].load(std::memory_order_relaxed);
      }
      if (total == 0) continue;
      snap.token_rejections.push_back(
          {vhosts[v], tokenVerdictName(static_cast<TokenVerdict>(t)), total});
    }
  }
  for (size_t k = 1; k < kStatusClasses; ++k) {
    snap.responses_by_class.emplace_back(std::to_string(k) + "xx", by_class[k]);
  }
  for (size_t r = 0; r < kCacheResults; ++r) {
    metrics::LatencySeries duration{lowerResultName(static_cast<CacheResult>(r)), {}};
    metrics::LatencySeries ttfb{duration.result, {}};
    for (const auto& c : shared_->counters) {
      c->duration[r].addTo(duration.histogram);
      c->ttfb[r].addTo(ttfb.histogram);
    }
    if (duration.histogram.count() == 0) continue;
    snap.request_duration.push_back(std::move(duration));
    snap.time_to_first_byte.push_back(std::move(ttfb));
  }
  for (const auto& c : shared_->counters) {
    snap.origin_fetches += c->origin_fetches.load(std::memory_order_relaxed);
    snap.origin_failures += c->origin_failures.load(std::memory_order_relaxed);
    snap.connections_accepted += c->connections_accepted.load(std::memory_order_relaxed);
    snap.bad_requests += c->bad_requests.load(std::memory_order_relaxed);
  }
  for (const ListenerView& v : listenerViews()) {
    if (v.export_gauge) snap.listeners.push_back({v.gauge_label, v.connections});
  }
  for (size_t v = 0; v < static_cast<size_t>(TlsVersionSlot::kCount); ++v) {
    for (size_t r = 0; r < static_cast<size_t>(HandshakeResult::kCount); ++r) {
      uint64_t total = 0;
      for (const auto& c : shared_->counters) total += c->tls_handshakes[v][r].load(std::memory_order_relaxed);
      if (total == 0) continue;
      snap.tls_handshakes.push_back({tlsVersionLabel(static_cast<TlsVersionSlot>(v)),
                                     handshakeResultLabel(static_cast<HandshakeResult>(r)), total});
    }
  }
  for (size_t k = 0; k < kHttp2AbuseKinds; ++k) {
    uint64_t total = 0;
    for (const auto& c : shared_->counters) total += c->http2_abuse[k].load(std::memory_order_relaxed);
    snap.http2_abuse.emplace_back(http2AbuseName(static_cast<Http2Abuse>(k)), total);
  }
  // The certificates of the running TLS snapshot (a reload that changed them shows at once).
  if (tls_) {
    for (const tls::TlsState::ListenerCertificate& c : tls_->listenerCertificates()) {
      // An unreadable notAfter (never seen from a certificate OpenSSL accepted) has no series:
      // 0 would read as "expired in 1970" and page someone for nothing.
      if (c.served.not_after == 0) continue;
      const auto& listeners = listener_table_.current();
      snap.certificates.push_back({c.listener_index < listeners.size()
                                       ? listeners[c.listener_index].label
                                       : std::to_string(c.listener_index),
                                   c.served.certificate,
                                   static_cast<double>(c.served.not_after)});
    }
  }
  snap.access_log_dropped_lines = shared_->access_log.droppedLines();
  if (admin_actions_) admin_actions_->fillSnapshot(snap);
  for (const cache::RetentionExpiredCount& c : shared_->cache.retentionExpired()) {
    // Objects stored without a :vhost label (never by this version) have no config name.
    const std::string vhost = c.vhost.empty() ? "unlabelled" : c.vhost;
    snap.retention_expired.push_back({vhost, "ram", c.ram});
    snap.retention_expired.push_back({vhost, "ssd", c.ssd});
  }
  snap.log_files_removed["access"] = log_files_removed_access_;
  snap.log_files_removed["security"] = log_files_removed_security_;
  snap.log_file_removal_errors = log_file_removal_errors_;
  {
    const auto counts = shared_->prefetch.snapshot(std::chrono::steady_clock::now());
    for (size_t i = 0; i < counts.size(); ++i) {
      snap.prefetch[prefetchResultName(static_cast<PrefetchResult>(i))] = counts[i];
    }
  }
  for (const auto& c : shared_->counters) {
    snap.fill_window_pauses += c->fill_window_pauses.load(std::memory_order_relaxed);
    snap.fill_slow_readers_cut += c->fill_slow_readers_cut.load(std::memory_order_relaxed);
    snap.fills_abandoned += c->fills_abandoned.load(std::memory_order_relaxed);
    snap.invalidations += c->invalidations.load(std::memory_order_relaxed);
    snap.ll_hls_answered_from_cache += c->ll_hls_answered_from_cache.load(std::memory_order_relaxed);
    snap.ll_hls_too_far_ahead += c->ll_hls_too_far_ahead.load(std::memory_order_relaxed);
    snap.ll_hls_holds_expired += c->ll_hls_holds_expired.load(std::memory_order_relaxed);
  }
  for (conf::ContentCoding coding : {conf::ContentCoding::kBrotli, conf::ContentCoding::kGzip}) {
    metrics::Snapshot::CompressionSeries series;
    series.encoding = std::string(codingName(coding));
    const size_t i = static_cast<size_t>(coding);
    uint64_t ns = 0;
    for (const auto& c : shared_->counters) {
      series.encodings += c->compression_encodings[i].load(std::memory_order_relaxed);
      ns += c->compression_encode_ns[i].load(std::memory_order_relaxed);
      series.responses += c->compressed_responses[i].load(std::memory_order_relaxed);
      series.saved_bytes += c->compression_saved_bytes[i].load(std::memory_order_relaxed);
    }
    series.encode_seconds = static_cast<double>(ns) / 1e9;
    snap.compression.push_back(std::move(series));
  }

  const cache::CacheStats stats = shared_->cache.stats();
  snap.fill_memory_bytes = stats.fill_memory_bytes;
  snap.fill_memory_budget_bytes = stats.fill_memory_budget;
  snap.body_shared_memory_bytes =
      cache::bodyArena().blocksInUse() * uint64_t{cache::bodyArena().blockBytes()};
  snap.vary_urls = stats.vary_urls;
  snap.vary_marker_bytes = stats.vary_marker_bytes;
  snap.variants_dropped = stats.variants_dropped;
  snap.tiers.push_back({"ram", stats.objects, stats.bytes, stats.capacity_bytes, stats.evictions,
                        stats.admissions});
  if (shared_->ssd) {
    const cache::SsdStats ssd = shared_->ssd->stats();
    // Bytes: what the index points at (entry sizes); evictions: objects that left with a
    // reclaimed region; admissions: objects appended to a region.
    snap.tiers.push_back({"ssd", ssd.objects, ssd.indexed_bytes,
                          uint64_t{ssd.regions} * ssd.region_bytes, ssd.objects_reclaimed,
                          ssd.objects_written});
    snap.ssd_io_backend = ssd.writer_backend;
    for (const auto& c : shared_->counters) c->ssd_read_latency.addTo(snap.ssd_read_latency);
    shared_->ssd_write_latency.addTo(snap.ssd_write_latency);
    snap.ssd_errors = ssd.read_errors + ssd.write_errors;
    snap.ssd_corrupt = ssd.corrupt + ssd.rebuild_rejected_entries;
    snap.ssd_hits = stats.ssd_hits;
    snap.ssd_fallbacks = stats.ssd_fallbacks;
    snap.ssd_admissions_dropped = ssd.inserts_dropped;
    snap.ssd_revalidations = stats.ssd_revalidations;
    snap.ssd_reinserted_bytes = ssd.bytes_reinserted;
    snap.ssd_tombstones = ssd.tombstones_written;
  }
  snap.reloads_ok = reloads_ok_;
  snap.reloads_failed = reloads_failed_;
  snap.last_reload_success_unix_seconds = static_cast<double>(last_reload_ok_unix_ms_) / 1000.0;
  snap.last_reload_ok = last_reload_ok_;
  snap.upgrades_failed = upgrades_failed_;
  snap.upgrade_in_progress = upgrade_ != nullptr;
  snap.took_over = upgraded_from_ != 0;
  const int64_t now_ms = unixMillisNow();
  for (const auto& c : shared_->counters) {
    const int64_t beat = c->heartbeat_unix_ms.load(std::memory_order_relaxed);
    snap.worker_heartbeat_age_seconds.push_back(static_cast<double>(std::max<int64_t>(0, now_ms - beat)) / 1000.0);
  }

  // Origins: every configured one (with origin_up), then series of origins a reload removed.
  std::map<OriginStats::Key, OriginStats::Series> traffic;
  for (const auto& c : shared_->counters) c->origin_stats.addTo(traffic);
  const auto now = std::chrono::steady_clock::now();
  for (size_t g = 0; g < config_->origin_groups.size(); ++g) {
    const conf::OriginGroupConfig& group = config_->origin_groups[g];
    for (size_t o = 0; o < group.origins.size(); ++o) {
      const conf::OriginConfig& origin = group.origins[o];
      metrics::OriginState state;
      state.group = group.name;
      state.origin = origin.name;
      state.dc = origin.dc;
      const OriginHealthView health = shared_->health->view(g, o, now);
      state.up = health.up;
      state.transitions_up = health.transitions_up;
      state.transitions_down = health.transitions_down;
      state.ejections = health.ejections;
      const auto it = traffic.find(OriginStats::Key(group.name, origin.name, origin.dc));
      if (it != traffic.end()) {
        state.requests = it->second.requests;
        state.errors = it->second.errors;
        state.retries = it->second.retries;
        state.failovers = it->second.failovers;
        state.latency = it->second.latency;
        traffic.erase(it);
      }
      snap.origins.push_back(std::move(state));
    }
  }
  std::map<OriginStats::ResumeKey, uint64_t> resumes;
  for (const auto& c : shared_->counters) c->origin_stats.addResumesTo(resumes);
  for (const auto& [key, count] : resumes) {
    metrics::ResumeSeries series;
    std::tie(series.group, series.from_dc, series.to_dc, series.outcome) = key;
    series.count = count;
    snap.origin_resumes.push_back(std::move(series));
  }
  for (const OriginLimits::SlotView& v : shared_->limits->slots()) {
    metrics::OriginProtectionState p;
    p.group = v.group;
    p.origin = v.origin;
    p.dc = v.dc;
    p.in_flight = v.in_flight;
    p.connections = v.connections;
    p.queued = v.queued;
    p.queued_total = v.queued_total;
    p.rejected_queue_full = v.rejected_overflow;
    p.rejected_queue_timeout = v.rejected_timeout;
    snap.origin_protection.push_back(std::move(p));
  }
  snap.client_miss_rejected = shared_->client_misses.rejected();
  snap.client_miss_clients = shared_->client_misses.tracked();
  for (const OriginLimits::BudgetView& v : shared_->limits->budgets()) {
    snap.origin_group_retries.push_back(
        {v.group, v.retried, v.budget_exhausted, v.hedges_started, v.hedges_won, v.hedges_lost});
  }
  static_assert(metrics::kPeerResults == static_cast<size_t>(PeerResult::kCount));
  if (const std::shared_ptr<PeerTier> tier = shared_->peers.get()) {
    for (size_t i = 0; i < tier->size(); ++i) {
      if (i == tier->self()) continue;
      metrics::PeerState p;
      p.peer = tier->address(i);
      p.up = tier->usable(i, *config_, *shared_->health, now);
      for (size_t r = 0; r < metrics::kPeerResults; ++r) {
        p.requests[r] = tier->requests(i, static_cast<PeerResult>(r));
      }
      snap.peers.push_back(std::move(p));
    }
    snap.cluster = true;
    snap.cluster_peers = tier->size();
    snap.cluster_membership_changes = membership_changes_;
  }
  for (const auto& [key, series] : traffic) {
    metrics::OriginState state;
    std::tie(state.group, state.origin, state.dc) = key;
    state.in_config = false;
    state.requests = series.requests;
    state.errors = series.errors;
    state.retries = series.retries;
    state.failovers = series.failovers;
    state.latency = series.latency;
    snap.origins.push_back(std::move(state));
  }
  return metrics::renderPrometheus(snap);
}

// POST /debug/block-worker?ms=N[&worker=I]: runs a task on worker I (default 0) that sleeps N ms,
// so tests can prove that /healthz notices a stuck loop. Only with [admin] debug_endpoints.
void Server::debugBlockWorker(evhttp_request* req, evbuffer* body, int& code, const char*& reason) {
  if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
    code = 405;
    reason = "Method Not Allowed";
    evbuffer_add_printf(body, "POST only\n");
    return;
  }
  evkeyvalq query{};  // evhttp_parse_query_str initialises it; empty (null head) otherwise
  const evhttp_uri* uri = evhttp_request_get_evhttp_uri(req);
  const char* q = uri ? evhttp_uri_get_query(uri) : nullptr;
  long ms = -1;
  long index = 0;
  if (q && evhttp_parse_query_str(q, &query) == 0) {
    if (const char* v = evhttp_find_header(&query, "ms")) ms = std::strtol(v, nullptr, 10);
    if (const char* v = evhttp_find_header(&query, "worker")) index = std::strtol(v, nullptr, 10);
  }
  evhttp_clear_headers(&query);
  if (ms <= 0 || ms > 60'000 || index < 0 || index >= static_cast<long>(workers_.size())) {
    code = 400;
    reason = "Bad Request";
    evbuffer_add_printf(body, "need ms=1..60000 and worker=0..%zu\n", workers_.size() - 1);
    return;
  }
  const auto duration = std::chrono::milliseconds(ms);
  workers_[static_cast<size_t>(index)]->post([duration] { std::this_thread::sleep_for(duration); });
  std::fprintf(stderr, "streamedge: debug: blocking worker %ld for %ld ms\n", index, ms);
  code = 202;
  reason = "Accepted";
  evbuffer_add_printf(body, "blocking worker %ld for %ld ms\n", index, ms);
}

void Server::handleAdmin(evhttp_request* req) {
  evbuffer* body = evbuffer_new();
  const char* uri = evhttp_request_get_uri(req);
  evhttp_uri* parsed = evhttp_uri_parse(uri);
  std::string path = parsed && evhttp_uri_get_path(parsed) ? evhttp_uri_get_path(parsed) : "";
  if (parsed) evhttp_uri_free(parsed);
  evkeyvalq* out_headers = evhttp_request_get_output_headers(req);
  evhttp_add_header(out_headers, "Cache-Control", "no-store");
  evhttp_add_header(out_headers, "Content-Type", "text/plain; charset=utf-8");

  // Tokens and scopes (/healthz and /readyz are open): a refusal is answered, audited and
  // counted by admin_actions_.
  std::string who;
  AdminActions::SiteContext site{base_, shared_->peers.get(), false};
  if (!admin_actions_->authorize(req, path, who, site.peers.get(), &site.by_peer)) {
    evbuffer_free(body);
    return;
  }
  if (path == "/purge") {
    evbuffer_free(body);
    return admin_actions_->handlePurge(req, who, shared_->cache, *config_, site);
  }

  int code = 200;
  const char* reason = "OK";
  if (path == "/healthz") {
    std::string why;
    if (healthy(why)) {
      evbuffer_add_printf(body, "ok\n");
    } else {
      code = 503;
      reason = "Service Unavailable";
      evbuffer_add_printf(body, "unhealthy: %s\n", why.c_str());
    }
  } else if (path == "/readyz") {
    std::string why;
    const bool is_ready = ready(why);
    if (!is_ready) {
      code = 503;
      reason = "Service Unavailable";
    }
    evbuffer_add_printf(body, "%s\n%s", is_ready ? "ready" : "not ready", why.c_str());
  } else if (path == "/status") {
    evhttp_remove_header(out_headers, "Content-Type");
    evhttp_add_header(out_headers, "Content-Type", "application/json");
    std::string json = statusJson();
    evbuffer_add(body, json.data(), json.size());
  } else if (path == "/metrics") {
    evhttp_remove_header(out_headers, "Content-Type");
    evhttp_add_header(out_headers, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    std::string text = metricsText();
    evbuffer_add(body, text.data(), text.size());
  } else if (path == "/debug/block-worker" && config_->admin.debug_endpoints) {
    debugBlockWorker(req, body, code, reason);
  } else {
    code = 404;
    reason = "Not Found";
    evbuffer_add_printf(body, "unknown admin path\n");
  }
  evhttp_send_reply(req, code, reason, body);
  evbuffer_free(body);
}

}  // namespace streamedge::proxy
