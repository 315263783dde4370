// Worker: one thread, one libevent loop, its own listening sockets (SO_REUSEPORT), its own origin
// connection pools. A connection lives and dies on one worker. Other threads talk to a worker only
// through its inbox (post() for tasks, wake() for cache-object progress), which is drained on the
// worker's loop. Construction, start() and join() from the main thread; everything else on the
// worker thread unless stated.
#pragma once

#include <event2/event.h>
#include <event2/listener.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "cache/ssd_io_engine.h"
#include "conf/config.h"
#include "proxy/access_log.h"
#include "proxy/origin_client.h"
#include "proxy/shared_state.h"
#include "tls/tls_state.h"

namespace streamedge::proxy {

class ClientConnection;
class FillJob;

// One worker's listening socket of one listener (proxy/listener_table.h for the identities).
struct ListenSocket {
  int fd = -1;
  uint64_t listener_id = 0;  // ListenerEntry::id
  size_t metric_slot = 0;    // ListenerEntry::slot: the connection gauge it counts in
};

// One reload's listener changes, as one worker applies them together with the new config and
// TLS snapshot (Worker::applyReload).
struct ListenerUpdate {
  // The new config's listeners, config order: position i of config->listeners (and of the TLS
  // snapshot's listener contexts) is listener ids_by_position[i].
  std::vector<uint64_t> ids_by_position;
  // Sockets of listeners the reload added (bound by the main thread). Owned by the update until
  // applied: a worker that never applies it (stopped) leaves them to ~ListenerUpdate.
  std::vector<ListenSocket> added;
  std::vector<uint64_t> removed;  // listeners to close, and whose connections drain
  std::chrono::milliseconds drain_timeout{0};

  ListenerUpdate() = default;
  ListenerUpdate(ListenerUpdate&& other) noexcept;
  ListenerUpdate& operator=(ListenerUpdate&&) = delete;
  ListenerUpdate(const ListenerUpdate&) = delete;
  ~ListenerUpdate();
};

class Worker {
 public:
  // `sockets`: this worker's socket of each listener of `config`; `ids_by_position` as in
  // ListenerUpdate.
  Worker(int index, SharedState& shared, conf::ConfigPtr config, std::vector<ListenSocket> sockets,
         std::vector<uint64_t> ids_by_position);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Main thread. With `accepting` false the listeners are set up but accept nothing until
  // enableAccepting() (the new process of a hot upgrade, until the old one lets go).
  bool start(bool accepting = true);
  void join();

  // Any thread: runs `task` on this worker's loop.
  void post(std::function<void()> task);
  // Any thread: tells connection `id` that an object it reads changed. Cheap; coalesced by the
  // caller's own flag (see ClientConnection).
  void wake(uint64_t connection_id);

  // Worker thread.
  int index() const { return index_; }
  event_base* base() const { return base_; }
  SharedState& shared() { return shared_; }
  WorkerCounters& counters() { return *counters_; }
  const conf::ConfigPtr& config() const { return config_; }
  OriginClient& origins() { return *origins_; }
  // This worker's I/O engine on the SSD tier's device; null when there is no SSD tier.
  cache::IoEngine* ssdEngine() { return ssd_engine_.get(); }
  void setConfig(conf::ConfigPtr config) { config_ = std::move(config); }
  // The TLS contexts new connections use (main thread before start(), then worker thread).
  void setTls(tls::TlsStatePtr tls);
  // A reload: the new config and TLS snapshot, and the listeners it added and removed. Added
  // sockets start accepting; removed listeners stop accepting at once, their idle keep-alive
  // connections close, busy ones close after the current response, and whatever is left at
  // `drain_timeout` is closed.
  void applyReload(conf::ConfigPtr config, tls::TlsStatePtr tls, ListenerUpdate& update);
  // Listener `listener_id`'s settings in config(); null once a reload removed it.
  const conf::ListenerConfig* listenerConfig(uint64_t listener_id) const;
  void removeConnection(uint64_t id);
  // Fills in flight on this worker; those left at shutdown are deleted (aborted). addFill
  // returns the id wakeFill() knows the job by.
  uint64_t addFill(FillJob* job) {
    fills_.emplace(next_fill_id_, job);
    return next_fill_id_++;
  }
  void removeFill(uint64_t id) { fills_.erase(id); }
  // Any thread: runs FillJob::onWake of fill `id` on this worker, if it still exists.
  void wakeFill(uint64_t id);
  void logLine(const AccessLogEntry& entry);
  // Stop accepting; close idle keep-alive connections; exit the loop once none is left or at
  // the deadline. With `idle_grace` (a hot upgrade's hand-over) idle connections are closed
  // only after it: a connection accepted a moment before may not have delivered its first
  // request (or finished its TLS handshake) yet, and closing it would fail that request.
  void beginDrain(std::chrono::milliseconds deadline,
                  std::chrono::milliseconds idle_grace = std::chrono::milliseconds(0));
  // Starts accepting on every listener (after start(false)); nothing once draining.
  void enableAccepting();
  // Hot upgrade: stops reading from the SSD tier (the cache was detached from the store before
  // this task was posted, so no new read starts). Once the reads in flight have completed, the
  // worker's I/O engine is destroyed and `done` runs, on this thread. A later attachSsd()
  // before that cancels it (`done` never runs).
  void releaseSsd(std::function<void()> done);
  // Reads from `store` again (a store reopened after a hot upgrade failed): a new engine, or
  // the one still finishing a releaseSsd(). False (logged) when no engine can be made: this
  // worker's SSD hits then go to the origin.
  bool attachSsd(cache::SsdStore& store);
  size_t connectionCount() const { return connections_.size(); }
  bool draining() const { return draining_; }

 private:
  // One listening socket being accepted on (its address is the accept callback's argument).
  struct Acceptor {
    Worker* worker = nullptr;
    ListenSocket socket;
    evconnlistener* listener = nullptr;  // owns socket.fd once made
    ~Acceptor();
  };
  // A listener removed by a reload whose connections are draining.
  struct Retiring {
    uint64_t listener_id = 0;
    std::chrono::steady_clock::time_point deadline;
  };

  static void acceptCb(evconnlistener*, evutil_socket_t, sockaddr*, int, void*);
  bool listen(Acceptor& acceptor);
  // Position of `listener_id` in config_->listeners, or npos once removed.
  size_t listenerPosition(uint64_t listener_id) const;
  void checkRetiring();
  static void inboxCb(evutil_socket_t, short, void*);
  static void tickCb(evutil_socket_t, short, void*);
  static void ssdCb(evutil_socket_t, short, void*);
  bool makeSsdEngine(cache::SsdStore& store);
  void dropSsdEngine();
  // releaseSsd() in progress: done once the engine has nothing in flight.
  void checkSsdRelease();
  void onAccept(evutil_socket_t fd, sockaddr* addr, int socklen, const ListenSocket& socket);
  void drainInbox();
  void closeIdleConnections();  // draining: idle ones now, busy ones after their response
  void flushLog();
  void run();

  // const after construction
  const int index_;
  SharedState& shared_;
  WorkerCounters* counters_;

  // worker thread only
  conf::ConfigPtr config_;
  tls::TlsStatePtr tls_;
  event_base* base_ = nullptr;
  std::vector<std::unique_ptr<Acceptor>> acceptors_;  // one per listener of config_
  std::vector<uint64_t> listener_ids_;                // by position in config_->listeners
  std::vector<Retiring> retiring_;
  event* inbox_event_ = nullptr;
  event* tick_event_ = nullptr;
  std::unique_ptr<OriginClient> origins_;
  std::unique_ptr<cache::IoEngine> ssd_engine_;  // its completion eventfd is ssd_event_
  event* ssd_event_ = nullptr;
  std::function<void()> ssd_release_done_;  // releaseSsd() waiting for reads in flight
  bool accepting_ = true;  // start(false) until enableAccepting()
  std::unordered_map<uint64_t, std::unique_ptr<ClientConnection>> connections_;
  uint64_t next_connection_id_ = 1;
  std::unordered_map<uint64_t, FillJob*> fills_;
  uint64_t next_fill_id_ = 1;
  std::string log_buffer_;
  bool draining_ = false;
  std::chrono::steady_clock::time_point drain_deadline_{};
  std::optional<std::chrono::steady_clock::time_point> close_idle_at_;  // beginDrain's grace
  std::thread thread_;

  // the inbox, any thread
  std::mutex inbox_mu_;
  std::vector<std::function<void()>> inbox_tasks_;  // guarded by inbox_mu_
  std::vector<uint64_t> inbox_wakes_;               // guarded by inbox_mu_
  bool inbox_signalled_ = false;                    // guarded by inbox_mu_
  // Swapped with the inbox under the lock, processed outside it.
  std::vector<std::function<void()>> tasks_scratch_;
  std::vector<uint64_t> wakes_scratch_;
};

}  // namespace streamedge::proxy
