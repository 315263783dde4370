#include "proxy/worker.h"

#include <event2/bufferevent_ssl.h>
#include <event2/thread.h>
#include <openssl/ssl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "proxy/client_connection.h"
#include "proxy/fill_job.h"

namespace streamedge::proxy {

const char* cacheResultName(CacheResult r) {
  switch (r) {
    case CacheResult::kHit: return "HIT";
    case CacheResult::kMiss: return "MISS";
    case CacheResult::kStale: return "STALE";
    case CacheResult::kCoalesced: return "COALESCED";
    case CacheResult::kPass: return "PASS";
    case CacheResult::kNone:
    case CacheResult::kCount: break;
  }
  return "-";
}

namespace {
constexpr size_t kLogFlushBytes = 32 * 1024;
// libevent writes at most 16 KiB per loop iteration by default (128 iterations for a 2 MB
// segment). 512 KiB per write measured the same throughput as 4 MiB with a lower p99 across
// connections sharing the worker (scripts/bench, 2 MiB hits).
constexpr ev_ssize_t kMaxSingleWrite = 512 << 10;
constexpr timeval kTick{0, 100 * 1000};  // heartbeat, log flush, drain checks
}  // namespace

ListenerUpdate::ListenerUpdate(ListenerUpdate&& other) noexcept
    : ids_by_position(std::move(other.ids_by_position)),
      added(std::move(other.added)),
      removed(std::move(other.removed)),
      drain_timeout(other.drain_timeout) {
  other.added.clear();
}

ListenerUpdate::~ListenerUpdate() {
  for (const ListenSocket& s : added) {
    if (s.fd >= 0) ::close(s.fd);
  }
}

Worker::Acceptor::~Acceptor() {
  if (listener) {
    evconnlistener_free(listener);  // LEV_OPT_CLOSE_ON_FREE: closes the socket
  } else if (socket.fd >= 0) {
    ::close(socket.fd);
  }
}

Worker::Worker(int index, SharedState& shared, conf::ConfigPtr config,
               std::vector<ListenSocket> sockets, std::vector<uint64_t> ids_by_position)
    : index_(index),
      shared_(shared),
      counters_(shared.counters.at(static_cast<size_t>(index)).get()),
      config_(std::move(config)),
      listener_ids_(std::move(ids_by_position)) {
  for (const ListenSocket& s : sockets) {
    auto acceptor = std::make_unique<Acceptor>();
    acceptor->worker = this;
    acceptor->socket = s;
    acceptors_.push_back(std::move(acceptor));
  }
}

Worker::~Worker() {
  if (thread_.joinable()) thread_.join();
  connections_.clear();
  // Fills still in flight abort (their readers are gone with the connections).
  std::unordered_map<uint64_t, FillJob*> fills;
  fills.swap(fills_);
  for (auto& [id, job] : fills) delete job;
  // SSD reads still in flight are dropped: their fills abort (nobody is left to read them).
  if (ssd_event_) event_free(ssd_event_);
  ssd_engine_.reset();
  origins_.reset();
  acceptors_.clear();
  if (inbox_event_) event_free(inbox_event_);
  if (tick_event_) event_free(tick_event_);
  if (base_) event_base_free(base_);
}

bool Worker::start(bool accepting) {
  accepting_ = accepting;
  base_ = event_base_new();
  if (!base_) return false;
  origins_ = std::make_unique<OriginClient>(base_, shared_.health, &counters_->origin_stats,
                                            shared_.limits);
  origins_->setTls(tls_);
  inbox_event_ = event_new(base_, -1, 0, inboxCb, this);
  tick_event_ = event_new(base_, -1, EV_PERSIST, tickCb, this);
  event_add(tick_event_, &kTick);
  if (cache::SsdStore* store = shared_.cache.ssd()) {
    if (!makeSsdEngine(*store)) return false;
  }
  for (auto& acceptor : acceptors_) {
    if (!listen(*acceptor)) return false;
  }
  counters_->heartbeat_unix_ms.store(
      std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::system_clock::now().time_since_epoch()).count(),
      std::memory_order_relaxed);
  thread_ = std::thread([this] { run(); });
  return true;
}

bool Worker::makeSsdEngine(cache::SsdStore& store) {
  // One engine per worker: its completions are delivered on this loop (never blocking it).
  cache::IoEngineOptions options;
  options.backend = config_->cache.ssd.io_backend;
  options.log_fallback = false;  // opening the store already said which backend is used
  auto engine = cache::makeIoEngine(store.device(), options);
  if (!engine.isOk()) {
    std::fprintf(stderr, "streamedge: worker %d: no SSD I/O engine: %s\n", index_,
                 engine.status().toString().c_str());
    return false;
  }
  ssd_engine_ = std::move(*engine);
  ssd_event_ = event_new(base_, ssd_engine_->completionFd(), EV_READ | EV_PERSIST, ssdCb, this);
  if (!ssd_event_ || event_add(ssd_event_, nullptr) != 0) {
    dropSsdEngine();
    return false;
  }
  return true;
}

void Worker::dropSsdEngine() {
  if (ssd_event_) event_free(ssd_event_);
  ssd_event_ = nullptr;
  ssd_engine_.reset();
}

void Worker::releaseSsd(std::function<void()> done) {
  ssd_release_done_ = std::move(done);
  checkSsdRelease();
}

void Worker::checkSsdRelease() {
  if (!ssd_release_done_) return;
  // Reads in flight run store code when they complete: the engine (and the store) must stay
  // until they have. They end within the device's latency; the upgrade's timeout bounds a
  // device that hangs.
  if (ssd_engine_ && ssd_engine_->pending() > 0) return;
  dropSsdEngine();
  std::function<void()> done = std::move(ssd_release_done_);
  ssd_release_done_ = nullptr;
  done();
}

bool Worker::attachSsd(cache::SsdStore& store) {
  if (ssd_release_done_) {
    // Still finishing a release of this very store (it was never closed): keep the engine.
    ssd_release_done_ = nullptr;
    if (ssd_engine_ && &ssd_engine_->device() == &store.device()) return true;
  }
  dropSsdEngine();
  if (!makeSsdEngine(store)) {
    std::fprintf(stderr, "streamedge: worker %d: SSD reads go to the origin instead\n", index_);
    return false;
  }
  return true;
}

void Worker::enableAccepting() {
  if (accepting_ || draining_) return;
  accepting_ = true;
  for (auto& acceptor : acceptors_) {
    if (acceptor->listener) evconnlistener_enable(acceptor->listener);
  }
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::run() {
  char name[16];
  std::snprintf(name, sizeof name, "se-worker-%d", index_);
  pthread_setname_np(pthread_self(), name);
  setCurrentWorkerCounters(counters_);
  event_base_dispatch(base_);
  flushLog();
}

void Worker::post(std::function<void()> task) {
  std::lock_guard<std::mutex> lock(inbox_mu_);
  inbox_tasks_.push_back(std::move(task));
  if (!inbox_signalled_) {
    inbox_signalled_ = true;
    event_active(inbox_event_, 0, 0);
  }
}

void Worker::wake(uint64_t connection_id) {
  std::lock_guard<std::mutex> lock(inbox_mu_);
  inbox_wakes_.push_back(connection_id);
  if (!inbox_signalled_) {
    inbox_signalled_ = true;
    event_active(inbox_event_, 0, 0);
  }
}

void Worker::wakeFill(uint64_t id) {
  post([this, id] {
    auto it = fills_.find(id);
    if (it != fills_.end()) it->second->onWake();  // gone: the wake-up is moot
  });
}

void Worker::inboxCb(evutil_socket_t, short, void* arg) { static_cast<Worker*>(arg)->drainInbox(); }

void Worker::drainInbox() {
  {
    std::lock_guard<std::mutex> lock(inbox_mu_);
    tasks_scratch_.swap(inbox_tasks_);
    wakes_scratch_.swap(inbox_wakes_);
    inbox_signalled_ = false;
  }
  for (uint64_t id : wakes_scratch_) {
    auto it = connections_.find(id);
    if (it != connections_.end()) it->second->onWake();  // gone: the wake-up is moot
  }
  wakes_scratch_.clear();
  for (auto& task : tasks_scratch_) task();
  tasks_scratch_.clear();
}

bool Worker::listen(Acceptor& acceptor) {
  // The socket is listening already (bound by the main thread); -1: no listen() again.
  const unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC |
                         (accepting_ ? 0u : static_cast<unsigned>(LEV_OPT_DISABLED));
  acceptor.listener = evconnlistener_new(base_, acceptCb, &acceptor, flags, -1, acceptor.socket.fd);
  return acceptor.listener != nullptr;
}

void Worker::acceptCb(evconnlistener*, evutil_socket_t fd, sockaddr* addr, int socklen, void* arg) {
  auto* acceptor = static_cast<Acceptor*>(arg);
  acceptor->worker->onAccept(fd, addr, socklen, acceptor->socket);
}

size_t Worker::listenerPosition(uint64_t listener_id) const {
  for (size_t i = 0; i < listener_ids_.size(); ++i) {
    if (listener_ids_[i] == listener_id) return i;
  }
  return static_cast<size_t>(-1);
}

const conf::ListenerConfig* Worker::listenerConfig(uint64_t listener_id) const {
  const size_t position = listenerPosition(listener_id);
  return config_ && position < config_->listeners.size() ? &config_->listeners[position] : nullptr;
}

void Worker::onAccept(evutil_socket_t fd, sockaddr* addr, int socklen, const ListenSocket& socket) {
  counters_->add(counters_->connections_accepted);
  if (draining_ || shared_.connections_total_active.load(std::memory_order_relaxed) >=
                       config_->server.max_connections) {
    ::close(fd);
    return;
  }
  evutil_make_socket_nonblocking(fd);
  // A TLS listener's connections handshake inside a bufferevent_openssl; the SSL starts on the
  // listener's default context and SNI may switch it. The connection pins the TLS snapshot.
  const size_t position = listenerPosition(socket.listener_id);
  if (position == static_cast<size_t>(-1)) {  // removed by a reload (never accepted on since)
    ::close(fd);
    return;
  }
  const tls::ListenerContexts* contexts = tls_ ? tls_->listener(position) : nullptr;
  bufferevent* bev = nullptr;
  if (contexts) {
    SSL* ssl = SSL_new(contexts->defaultContext());
    if (!ssl) {
      ::close(fd);
      return;
    }
    bev = bufferevent_openssl_socket_new(base_, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                         BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
      SSL_free(ssl);
      ::close(fd);
      return;
    }
    // Viewers often close without close_notify; that is an EOF, not an error.
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
  } else {
    bev = bufferevent_socket_new(base_, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
      ::close(fd);
      return;
    }
  }
  // libevent writes at most 16 KiB per loop iteration by default; a 2 MB segment would take
  // 128 iterations. Let the kernel take whatever its socket buffer can hold in one writev.
  bufferevent_set_max_single_write(bev, kMaxSingleWrite);
  const uint64_t id = next_connection_id_++;
  auto conn = std::make_unique<ClientConnection>(*this, id, bev, addr, socklen, socket.listener_id,
                                                 socket.metric_slot, contexts ? tls_ : nullptr);
  ClientConnection* raw = conn.get();
  connections_.emplace(id, std::move(conn));
  if (!raw->start()) connections_.erase(id);
}

void Worker::setTls(tls::TlsStatePtr tls) {
  tls_ = std::move(tls);
  if (origins_) origins_->setTls(tls_);
}

void Worker::applyReload(conf::ConfigPtr config, tls::TlsStatePtr tls, ListenerUpdate& update) {
  setConfig(std::move(config));
  setTls(std::move(tls));
  listener_ids_ = std::move(update.ids_by_position);
  for (uint64_t removed : update.removed) {
    // Stop accepting at once: freeing the listener closes this worker's socket of it (the
    // other workers close theirs on the same update).
    std::erase_if(acceptors_, [&](const std::unique_ptr<Acceptor>& a) {
      return a->socket.listener_id == removed;
    });
    retiring_.push_back(Retiring{removed, std::chrono::steady_clock::now() + update.drain_timeout});
  }
  for (ListenSocket& s : update.added) {
    auto acceptor = std::make_unique<Acceptor>();
    acceptor->worker = this;
    acceptor->socket = s;
    s.fd = -1;  // the acceptor owns it now
    if (draining_ || !listen(*acceptor)) {
      if (!draining_) {
        std::fprintf(stderr, "streamedge: worker %d: cannot accept on an added listener\n", index_);
      }
      continue;  // ~Acceptor closes the socket
    }
    acceptors_.push_back(std::move(acceptor));
  }
  update.added.clear();
  if (update.removed.empty()) return;
  // Idle keep-alive connections of removed listeners close now; busy ones after their response.
  std::vector<uint64_t> ids;
  for (auto& [id, conn] : connections_) {
    if (std::find(update.removed.begin(), update.removed.end(), conn->listenerId()) !=
        update.removed.end()) {
      ids.push_back(id);
    }
  }
  for (uint64_t id : ids) {
    auto it = connections_.find(id);
    if (it != connections_.end()) it->second->closeWhenIdle();
  }
  checkRetiring();
}

// A retiring listener is done once none of its connections is left; at its deadline, those
// still open are closed (a response cut short shows as a closed connection, never as whole).
void Worker::checkRetiring() {
  if (retiring_.empty()) return;
  const auto now = std::chrono::steady_clock::now();
  std::vector<uint64_t> overdue;
  for (auto it = retiring_.begin(); it != retiring_.end();) {
    bool open = false;
    for (auto& [id, conn] : connections_) {
      if (conn->listenerId() != it->listener_id) continue;
      open = true;
      if (now >= it->deadline) overdue.push_back(id);
    }
    it = open && now < it->deadline ? it + 1 : retiring_.erase(it);
  }
  if (!overdue.empty()) {
    std::fprintf(stderr,
                 "streamedge: worker %d: closing %zu connection(s) of removed listeners at the "
                 "drain deadline\n",
                 index_, overdue.size());
  }
  for (uint64_t id : overdue) {
    auto it = connections_.find(id);
    if (it != connections_.end()) it->second->closeAtDeadline();
  }
}

void Worker::removeConnection(uint64_t id) {
  auto it = connections_.find(id);
  if (it == connections_.end()) return;
  // Destroy after unlinking, so a destructor that re-enters sees a consistent map.
  std::unique_ptr<ClientConnection> conn = std::move(it->second);
  connections_.erase(it);
  conn.reset();
  if (draining_ && connections_.empty()) event_base_loopexit(base_, nullptr);
}

void Worker::logLine(const AccessLogEntry& entry) {
  formatAccessLogLine(entry, log_buffer_);
  if (log_buffer_.size() >= kLogFlushBytes) flushLog();
}

void Worker::flushLog() {
  if (log_buffer_.empty()) return;
  shared_.access_log.append(log_buffer_);
  log_buffer_.clear();
}

void Worker::tickCb(evutil_socket_t, short, void* arg) {
  auto* w = static_cast<Worker*>(arg);
  w->counters_->heartbeat_unix_ms.store(
      std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::system_clock::now().time_since_epoch()).count(),
      std::memory_order_relaxed);
  w->flushLog();
  w->checkRetiring();
  if (w->close_idle_at_ && std::chrono::steady_clock::now() >= *w->close_idle_at_) {
    w->closeIdleConnections();
  }
  if (w->draining_ && std::chrono::steady_clock::now() >= w->drain_deadline_) {
    event_base_loopexit(w->base_, nullptr);
  }
}

void Worker::ssdCb(evutil_socket_t, short, void* arg) {
  auto* w = static_cast<Worker*>(arg);
  w->ssd_engine_->poll();
  w->checkSsdRelease();
}

void Worker::beginDrain(std::chrono::milliseconds deadline, std::chrono::milliseconds idle_grace) {
  draining_ = true;
  const auto now = std::chrono::steady_clock::now();
  drain_deadline_ = now + deadline;
  for (auto& acceptor : acceptors_) {
    if (acceptor->listener) evconnlistener_disable(acceptor->listener);
  }
  if (idle_grace.count() > 0 && !connections_.empty()) {
    close_idle_at_ = now + std::min(idle_grace, deadline);  // tickCb
    return;
  }
  closeIdleConnections();
}

void Worker::closeIdleConnections() {
  close_idle_at_.reset();
  // Idle keep-alive connections close now; busy ones after their response.
  std::vector<uint64_t> ids;
  ids.reserve(connections_.size());
  for (auto& [id, conn] : connections_) ids.push_back(id);
  for (uint64_t id : ids) {
    auto it = connections_.find(id);
    if (it != connections_.end()) it->second->closeWhenIdle();
  }
  if (connections_.empty()) event_base_loopexit(base_, nullptr);
}

}  // namespace streamedge::proxy
