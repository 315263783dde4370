// Server: the process. Owns the config snapshot, the shared state (cache, origin health, access
// log), the listening sockets, the workers and the main thread's loop, which handles signals
// (SIGHUP reload, SIGTERM/SIGINT graceful stop, SIGUSR1 log reopen), the admin listener and the
// active origin health checks.
// Main thread only.
#pragma once

#include <event2/event.h>
#include <event2/http.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "conf/config.h"
#include "proxy/admin_actions.h"
#include "proxy/health_checker.h"
#include "proxy/listen_socket.h"
#include "proxy/listener_table.h"
#include "proxy/shared_state.h"
#include "proxy/systemd_notify.h"
#include "proxy/worker.h"
#include "tls/tls_state.h"

namespace streamedge::proxy {

class Server {
 public:
  // `config_path` empty: running on the embedded default (SIGHUP reloads it unchanged).
  Server(conf::ConfigPtr config, std::string config_path);
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
  void beginStop();
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
};

}  // namespace streamedge::proxy
