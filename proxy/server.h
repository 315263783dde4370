// Server: the process. Owns the config snapshot, the shared state (cache, origin health, access
// log), the listening sockets, the workers and the main thread's loop, which handles signals
// (SIGHUP reload, SIGTERM/SIGINT graceful stop, SIGUSR1 log reopen, SIGUSR2 hot upgrade), the
// admin listener and the active origin health checks. Both sides of a hot upgrade live here
// too (proxy/server_upgrade.cc; the protocol is in proxy/hot_upgrade.h).
// Main thread only.
#pragma once

#include <event2/event.h>
#include <event2/http.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "conf/config.h"
#include "proxy/admin_actions.h"
#include "proxy/health_checker.h"
#include "proxy/hot_upgrade.h"
#include "proxy/listen_socket.h"
#include "proxy/listener_table.h"
#include "proxy/peer_discovery.h"
#include "proxy/shared_state.h"
#include "proxy/systemd_notify.h"
#include "proxy/worker.h"
#include "tls/tls_state.h"

namespace streamedge::proxy {

// How the process was started: what a hot upgrade needs to start its successor, and what a
// process started by one received from its predecessor.
struct LaunchInfo {
  std::string executable;          // startedExecutable(argv[0]), at start ("" when unknown)
  std::vector<std::string> args;   // argv[1..], passed on as they are
  Inheritance inherited;           // from the old process of a hot upgrade (else empty)
};

class Server {
 public:
  // `config_path` empty: running on the embedded default (SIGHUP reloads it unchanged).
  Server(conf::ConfigPtr config, std::string config_path, LaunchInfo launch = {});
  ~Server();

  // Binds every socket, starts the workers and the admin listener, prints one
  // "streamedge listening <kind> <host>:<port>" line per socket, then runs until stopped.
  // Returns the process exit code.
  int run();

 private:
  static void signalCb(evutil_socket_t sig, short, void* arg);
  static void trimCb(evutil_socket_t, short, void* arg);
  static void bodyFreeNotify(void* arg);  // cache::setBodyFreeNotify: wakes trimCb
  static void adminCb(evhttp_request* req, void* arg);
  static void watchdogCb(evutil_socket_t, short, void* arg);
  static void retentionSweepCb(evutil_socket_t, short, void* arg);  // a step of the cache sweep
  static void logRetentionCb(evutil_socket_t, short, void* arg);    // hourly
  // [privacy] log_retention: deletes rotated access- and security-log files past it.
  void removeOldLogs();
  // [[vhost]] retention of config_ to the cache (start, reload).
  void applyRetention();
  void startWatchdog();         // WATCHDOG=1 pings while healthy(), when systemd asks for them
  std::string servingStatus() const;  // the STATUS= line while serving
  bool switchUser();            // [server] user: after binding and opening, before the workers
  void onSignal(int sig);
  void reload();
  // --- cluster membership from DNS (server_cluster.cc)
  // Starts, reconfigures (a round now) or stops the discovery after config_ changed.
  void syncPeerDiscovery();
  // `loaded` (a reloaded config with the static peers) with the current DNS membership instead,
  // when the discovery keeps asking the same name: a SIGHUP does not fall back to the static list.
  conf::ConfigPtr withDiscoveredPeers(conf::ConfigPtr loaded) const;
  // A new membership from DNS: config_ with those peers, published as a reload publishes.
  void applyMembership(const std::vector<std::string>& members,
                       const std::vector<std::string>& added,
                       const std::vector<std::string>& removed);
  // "membership", last resolve and error for /status (a JSON fragment, leading comma).
  std::string membershipStatusJson() const;
  // Graceful stop; `idle_grace` as Worker::beginDrain (a hot upgrade's hand-over).
  void beginStop(std::chrono::milliseconds idle_grace = std::chrono::milliseconds(0));
  bool bindListeners(std::vector<std::vector<ListenSocket>>& per_worker);
  // Reload, listener part: binds the listeners `next` adds (nothing is changed when one cannot
  // be bound: false with `why`), then makes `next`'s list current and fills one update per
  // worker (added sockets, removed ids). Before the new config is published.
  bool reloadListeners(const conf::Config& next, std::vector<ListenerUpdate>& updates,
                       std::string& why);
  // Connections open now on the listeners of metric slot `slot`, all workers.
  int64_t listenerConnections(size_t slot) const;
  // What /metrics and /status show per listener: the current ones (config order), then removed
  // ones while their connections drain.
  struct ListenerView {
    std::string label;        // the metric label
    std::string bound;        // address with the bound port ("" once removed)
    bool tls = false;
    bool removed = false;     // removed by a reload, draining
    int64_t connections = 0;  // of its metric slot (shared past kListenerSlots - 1 listeners)
    bool export_gauge = true;  // false for a second listener of the shared slot
    std::string gauge_label;   // the slot's label ("other" when shared)
  };
  std::vector<ListenerView> listenerViews() const;
  bool startAdmin();
  // Starts accepting on the admin socket (at start; after "go" in the new process of an
  // upgrade, so that /status answers from the process that serves).
  bool acceptAdmin();
  // Opens the configured SSD store and attaches it to the cache (and, with `workers`, to every
  // worker's loop). False with `why`.
  bool openStore(bool workers, std::string& why);
  // A start-up failure: the reason on stderr (unless already printed) and, in the new process
  // of an upgrade, to the old one. Returns the exit code (1).
  int startFailed(const std::string& why, bool print = true);
  void printRunning() const;  // "streamedge <version> running: ..." on stdout

  // --- hot upgrade, new process (server_upgrade.cc)
  // Asks the old process for the SSD store and waits for it to be closed ([server]
  // upgrade_timeout at most). False with `why`.
  bool receiveStore(std::string& why);
  // Workers run but do not accept: tell the old process, wait (on the loop) for its "go".
  void awaitGo();
  static void goCb(evutil_socket_t fd, short, void* arg);
  void startServingAfterUpgrade();
  // Old process, at exit: waits (bounded) for the new one's "taken".
  void awaitHandOverAck();

  // --- hot upgrade, old process (server_upgrade.cc)
  enum class UpgradeState {
    kStarting,       // spawned; waiting for "store" or "ready"
    kReleasingStore, // the cache is off the store; workers finish their reads
    kStoreFree,      // store closed and handed over; waiting for "ready"
    kAborting,       // stopping the new process, then back to serving
  };
  struct UpgradeRun {
    pid_t pid = -1;
    std::string binary;
    int control_fd = -1;
    event* control_event = nullptr;
    event* timer = nullptr;
    UpgradeState state = UpgradeState::kStarting;
    std::chrono::steady_clock::time_point deadline;  // "ready" by then
    bool store_handed_over = false;
    std::shared_ptr<std::atomic<int>> release_remaining;  // workers still releasing the store
    std::string why;           // why it is being aborted
    std::string child_reason;  // the new process's own "failed" message
    bool reaped = false;
    int wait_status = 0;
    std::chrono::steady_clock::time_point term_at;  // SIGTERM to the new process then
    std::chrono::steady_clock::time_point kill_at;  // SIGKILL then
    bool term_sent = false;
    bool kill_sent = false;
  };
  void startUpgrade();  // SIGUSR2
  static void upgradeControlCb(evutil_socket_t fd, short, void* arg);
  static void upgradeTimerCb(evutil_socket_t, short, void* arg);
  void onUpgradeMessage(const ControlMessage& message);
  void onUpgradeTick();
  void releaseStoreForUpgrade();
  void closeStoreForUpgrade();
  void commitUpgrade();
  // Gives up: the new process gets `grace` to exit by itself, then SIGTERM, then SIGKILL.
  void abortUpgrade(std::string why, std::chrono::milliseconds grace);
  void finishAbortedUpgrade();
  void closeUpgradeControl();
  // SIGTERM during an upgrade: stop talking to the new process (it exits on EOF).
  void abandonUpgrade();
  std::string upgradeJson() const;
  void handleAdmin(evhttp_request* req);
  std::string statusJson() const;
  std::string metricsText() const;
  bool healthy(std::string& why) const;
  bool ready(std::string& why) const;
  void registerVhosts(const conf::Config& config);  // metric label slots, config order
  void debugBlockWorker(evhttp_request* req, evbuffer* body, int& code, const char*& reason);

  conf::ConfigPtr config_;
  tls::TlsStatePtr tls_;  // built from config_; swapped with it on reload
  std::string config_path_;
  int worker_count_ = 1;
  std::unique_ptr<SharedState> shared_;
  std::vector<std::unique_ptr<Worker>> workers_;
  event_base* base_ = nullptr;
  std::vector<event*> signal_events_;
  event* trim_event_ = nullptr;  // malloc_trim every second, and when bodies were freed (trimCb)
  evhttp* admin_ = nullptr;
  // Admin tokens and scopes, the purge API and the audit log (admin_actions.h).
  std::unique_ptr<AdminActions> admin_actions_;
  // Active origin health checks of config_ (rebuilt on reload, gone once stopping).
  std::unique_ptr<HealthChecker> health_checker_;
  // [cluster] dns: the membership from DNS (null without, and once stopping).
  std::unique_ptr<PeerDiscovery> peer_discovery_;
  uint64_t membership_changes_ = 0;  // memberships from DNS published (the metric)
  bool stopping_ = false;
  // systemd (Type=notify): READY, RELOADING, STOPPING, STATUS, WATCHDOG; MAINPID for a hot
  // upgrade (notifier_.handOverMainPid).
  SystemdNotifier notifier_;
  event* watchdog_event_ = nullptr;
  event* retention_sweep_event_ = nullptr;
  event* log_retention_event_ = nullptr;
  uint64_t log_files_removed_access_ = 0;
  uint64_t log_files_removed_security_ = 0;
  uint64_t log_file_removal_errors_ = 0;
  bool watchdog_withheld_ = false;  // the last tick found a stuck worker and did not ping
  int64_t start_unix_ms_ = 0;
  uint64_t reloads_ok_ = 0;
  uint64_t reloads_failed_ = 0;
  int64_t last_reload_ok_unix_ms_ = 0;       // the start counts as the first good load
  bool last_reload_ok_ = true;               // the latest reload attempt succeeded
  bool listeners_bound_ = false;             // every listener socket bound and workers started
  // Identities of the viewer listeners (ids, metric labels and slots), kept across reloads.
  ListenerTable listener_table_{kListenerSlots};
  struct BoundListener {
    std::string bound;     // the address with the port the kernel gave
    std::vector<int> fds;  // one per worker, owned by the workers (read here: backlog changes)
  };
  std::map<uint64_t, BoundListener> bound_;  // by ListenerEntry::id, current listeners only

  LaunchInfo launch_;
  int admin_fd_ = -1;                          // the admin listening socket (evhttp owns it)
  std::string admin_key_;                      // listenerKey() of the address it was bound for
  evhttp_bound_socket* admin_bound_ = nullptr; // while evhttp accepts on it
  conf::SsdCacheConfig ssd_config_;            // the store's config when it was opened
  // New process of a hot upgrade: the control socket until the old one says "go".
  int upgrade_control_fd_ = -1;
  event* upgrade_control_event_ = nullptr;
  pid_t upgraded_from_ = 0;                    // the old process's pid (its "go" came)
  // Old process after "go": the control socket, until the new one's "taken".
  int handover_fd_ = -1;
  // Old process: the upgrade in progress, if any.
  std::unique_ptr<UpgradeRun> upgrade_;
  std::string last_start_error_;               // what the last failed start step said
  uint64_t upgrades_failed_ = 0;
  std::string last_upgrade_error_;
};

}  // namespace streamedge::proxy
