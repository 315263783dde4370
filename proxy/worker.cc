#include "proxy/worker.h"

#include <event2/bufferevent_ssl.h>
#include <event2/thread.h>
#include <openssl/ssl.h>
#include <unistd.h>

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

Worker::Worker(int index, SharedState& shared, conf::ConfigPtr config,
               std::vector<ListenSocket> sockets)
    : index_(index),
      shared_(shared),
      counters_(shared.counters.at(static_cast<size_t>(index)).get()),
      sockets_(std::move(sockets)),
      config_(std::move(config)) {}

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
  for (evconnlistener* l : listeners_) evconnlistener_free(l);
  for (const ListenSocket& s : sockets_) {
    if (s.fd >= 0 && listeners_.empty()) ::close(s.fd);
  }
  if (inbox_event_) event_free(inbox_event_);
  if (tick_event_) event_free(tick_event_);
  if (base_) event_base_free(base_);
}

bool Worker::start() {
  base_ = event_base_new();
  if (!base_) return false;
  origins_ = std::make_unique<OriginClient>(base_, shared_.health, &counters_->origin_stats,
                                            shared_.limits);
  origins_->setTls(tls_);
  inbox_event_ = event_new(base_, -1, 0, inboxCb, this);
  tick_event_ = event_new(base_, -1, EV_PERSIST, tickCb, this);
  event_add(tick_event_, &kTick);
  if (cache::SsdStore* store = shared_.cache.ssd()) {
    // One engine per worker: its completions are delivered on this loop (never blocking it).
    cache::IoEngineOptions options;
    options.backend = config_->cache.ssd.io_backend;
    options.log_fallback = false;  // opening the store already said which backend is used
    auto engine = cache::makeIoEngine(store->device(), options);
    if (!engine.isOk()) {
      std::fprintf(stderr, "streamedge: worker %d: no SSD I/O engine: %s\n", index_,
                   engine.status().toString().c_str());
      return false;
    }
    ssd_engine_ = std::move(*engine);
    ssd_event_ = event_new(base_, ssd_engine_->completionFd(), EV_READ | EV_PERSIST, ssdCb, this);
    if (!ssd_event_ || event_add(ssd_event_, nullptr) != 0) return false;
  }
  for (const ListenSocket& s : sockets_) {
    auto arg = std::make_unique<ListenerArg>(ListenerArg{this, s.listener_index});
    evconnlistener* l = evconnlistener_new(base_, acceptCb, arg.get(),
                                           LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, s.fd);
    if (!l) return false;
    listeners_.push_back(l);
    listener_args_.push_back(std::move(arg));
  }
  counters_->heartbeat_unix_ms.store(
      std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::system_clock::now().time_since_epoch()).count(),
      std::memory_order_relaxed);
  thread_ = std::thread([this] { run(); });
  return true;
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

void Worker::acceptCb(evconnlistener*, evutil_socket_t fd, sockaddr* addr, int socklen, void* arg) {
  auto* la = static_cast<ListenerArg*>(arg);
  la->worker->onAccept(fd, addr, socklen, la->listener_index);
}

void Worker::onAccept(evutil_socket_t fd, sockaddr* addr, int socklen, size_t listener_index) {
  counters_->add(counters_->connections_accepted);
  if (draining_ || shared_.connections_total_active.load(std::memory_order_relaxed) >=
                       config_->server.max_connections) {
    ::close(fd);
    return;
  }
  evutil_make_socket_nonblocking(fd);
  // A TLS listener's connections handshake inside a bufferevent_openssl; the SSL starts on the
  // listener's default context and SNI may switch it. The connection pins the TLS snapshot.
  const tls::ListenerContexts* contexts = tls_ ? tls_->listener(listener_index) : nullptr;
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
  auto conn = std::make_unique<ClientConnection>(*this, id, bev, addr, socklen, listener_index,
                                                 contexts ? tls_ : nullptr);
  ClientConnection* raw = conn.get();
  connections_.emplace(id, std::move(conn));
  if (!raw->start()) connections_.erase(id);
}

void Worker::setTls(tls::TlsStatePtr tls) {
  tls_ = std::move(tls);
  if (origins_) origins_->setTls(tls_);
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
  if (w->draining_ && std::chrono::steady_clock::now() >= w->drain_deadline_) {
    event_base_loopexit(w->base_, nullptr);
  }
}

void Worker::ssdCb(evutil_socket_t, short, void* arg) {
  static_cast<Worker*>(arg)->ssd_engine_->poll();
}

void Worker::beginDrain(std::chrono::milliseconds deadline) {
  draining_ = true;
  drain_deadline_ = std::chrono::steady_clock::now() + deadline;
  for (evconnlistener* l : listeners_) evconnlistener_disable(l);
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
