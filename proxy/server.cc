#include "proxy/server.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <thread>

#include "conf/config_loader.h"
#include "conf/units.h"
#include "metrics/exposition.h"

namespace streamedge::proxy {

namespace {

int64_t unixMillisNow() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string describe(const sockaddr_storage& ss) {
  char host[INET6_ADDRSTRLEN] = "?";
  uint16_t port = 0;
  if (ss.ss_family == AF_INET) {
    const auto* sin = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &sin->sin_addr, host, sizeof host);
    port = ntohs(sin->sin_port);
    return std::string(host) + ":" + std::to_string(port);
  }
  const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&ss);
  inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof host);
  port = ntohs(sin6->sin6_port);
  return "[" + std::string(host) + "]:" + std::to_string(port);
}

void setPort(sockaddr_storage& ss, uint16_t port) {
  if (ss.ss_family == AF_INET) {
    reinterpret_cast<sockaddr_in*>(&ss)->sin_port = htons(port);
  } else {
    reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port = htons(port);
  }
}

}  // namespace

bool parseSocketAddress(const std::string& address, sockaddr_storage& out, socklen_t& len) {
  std::memset(&out, 0, sizeof out);
  std::string host;
  std::string port;
  if (!address.empty() && address.front() == '[') {
    size_t close = address.find(']');
    if (close == std::string::npos || close + 1 >= address.size() || address[close + 1] != ':') {
      return false;
    }
    host = address.substr(1, close - 1);
    port = address.substr(close + 2);
  } else {
    size_t colon = address.rfind(':');
    if (colon == std::string::npos) return false;
    host = address.substr(0, colon);
    port = address.substr(colon + 1);
  }
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos) {
    return false;
  }
  const int port_number = std::stoi(port);
  if (port_number > 65535) return false;
  auto* sin = reinterpret_cast<sockaddr_in*>(&out);
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(&out);
  if (inet_pton(AF_INET, host.c_str(), &sin->sin_addr) == 1) {
    sin->sin_family = AF_INET;
    sin->sin_port = htons(static_cast<uint16_t>(port_number));
    len = sizeof(sockaddr_in);
    return true;
  }
  if (inet_pton(AF_INET6, host.c_str(), &sin6->sin6_addr) == 1) {
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(static_cast<uint16_t>(port_number));
    len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

Server::Server(conf::ConfigPtr config, std::string config_path)
    : config_(std::move(config)), config_path_(std::move(config_path)) {}

Server::~Server() {
  workers_.clear();
  for (event* ev : signal_events_) event_free(ev);
  if (admin_) evhttp_free(admin_);
  if (base_) event_base_free(base_);
}

bool Server::bindListeners(std::vector<std::vector<ListenSocket>>& per_worker) {
  per_worker.assign(static_cast<size_t>(worker_count_), {});
  for (size_t li = 0; li < config_->listeners.size(); ++li) {
    const conf::ListenerConfig& listener = config_->listeners[li];
    if (!listener.certificates.empty()) {
      std::fprintf(stderr,
                   "streamedge: listener %s has certificates, but TLS termination is not built "
                   "yet; refusing to serve it as plain HTTP\n",
                   listener.address.c_str());
      return false;
    }
    sockaddr_storage addr;
    socklen_t len = 0;
    if (!parseSocketAddress(listener.address, addr, len)) {
      std::fprintf(stderr, "streamedge: bad listener address %s\n", listener.address.c_str());
      return false;
    }
    // One socket per worker on the same address (SO_REUSEPORT): the kernel spreads connections
    // and no lock is shared on accept. With port 0 the first socket picks the port.
    for (int w = 0; w < worker_count_; ++w) {
      int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) {
        std::fprintf(stderr, "streamedge: socket(): %s\n", std::strerror(errno));
        return false;
      }
      int one = 1;
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
      if (addr.ss_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
      if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
          ::listen(fd, listener.backlog) != 0) {
        std::fprintf(stderr, "streamedge: cannot listen on %s: %s\n", listener.address.c_str(),
                     std::strerror(errno));
        ::close(fd);
        return false;
      }
      if (w == 0) {
        sockaddr_storage bound;
        socklen_t bound_len = sizeof bound;
        getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &bound_len);
        setPort(addr, ntohs(bound.ss_family == AF_INET
                                ? reinterpret_cast<sockaddr_in*>(&bound)->sin_port
                                : reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port));
        std::printf("streamedge listening http %s\n", describe(addr).c_str());
      }
      per_worker[static_cast<size_t>(w)].push_back(ListenSocket{fd, li});
    }
  }
  return true;
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
  evhttp_set_timeout(admin_, 10);
  int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0 || ::listen(fd, 128) != 0) {
    std::fprintf(stderr, "streamedge: cannot listen on admin address %s: %s\n",
                 config_->admin.address.c_str(), std::strerror(errno));
    if (fd >= 0) ::close(fd);
    return false;
  }
  if (!evhttp_accept_socket_with_handle(admin_, fd)) {
    ::close(fd);
    return false;
  }
  sockaddr_storage bound;
  socklen_t bound_len = sizeof bound;
  getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &bound_len);
  std::printf("streamedge listening admin %s\n", describe(bound).c_str());
  evhttp_set_gencb(admin_, adminCb, this);
  return true;
}

int Server::run() {
  start_unix_ms_ = unixMillisNow();
  worker_count_ = config_->server.workers > 0
                      ? config_->server.workers
                      : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  shared_ = std::make_unique<SharedState>(*config_);
  for (int i = 0; i < worker_count_; ++i) {
    shared_->counters.push_back(std::make_unique<WorkerCounters>());
  }
  if (!shared_->access_log.open()) return 1;

  std::signal(SIGPIPE, SIG_IGN);
  base_ = event_base_new();
  if (!base_) return 1;

  std::vector<std::vector<ListenSocket>> per_worker;
  if (!bindListeners(per_worker)) return 1;
  if (!startAdmin()) return 1;
  for (int i = 0; i < worker_count_; ++i) {
    auto worker = std::make_unique<Worker>(i, *shared_, config_,
                                           std::move(per_worker[static_cast<size_t>(i)]));
    if (!worker->start()) {
      std::fprintf(stderr, "streamedge: worker %d failed to start\n", i);
      return 1;
    }
    workers_.push_back(std::move(worker));
  }
  for (int sig : {SIGHUP, SIGTERM, SIGINT, SIGUSR1}) {
    event* ev = evsignal_new(base_, sig, signalCb, this);
    event_add(ev, nullptr);
    signal_events_.push_back(ev);
  }
  std::printf("streamedge %s (%s) running: %d workers, RAM cache %s, config %s\n",
              STREAMEDGE_VERSION, STREAMEDGE_GIT_COMMIT, worker_count_,
              formatByteSize(config_->cache.ram.size_bytes).c_str(), config_->source.c_str());
  std::fflush(stdout);

  event_base_dispatch(base_);

  for (auto& worker : workers_) worker->join();
  std::fprintf(stderr, "streamedge: stopped\n");
  return 0;
}

void Server::signalCb(evutil_socket_t sig, short, void* arg) {
  static_cast<Server*>(arg)->onSignal(static_cast<int>(sig));
}

void Server::onSignal(int sig) {
  switch (sig) {
    case SIGHUP: return reload();
    case SIGUSR1:
      shared_->access_log.reopen();
      std::fprintf(stderr, "streamedge: access log reopened\n");
      return;
    default: return beginStop();
  }
}

void Server::reload() {
  if (config_path_.empty()) {
    std::fprintf(stderr, "streamedge: reload: running on the embedded default; nothing to load\n");
    ++reloads_ok_;
    return;
  }
  conf::LoadResult loaded = conf::loadConfigFile(config_path_);
  if (!loaded.ok()) {
    ++reloads_failed_;
    std::fprintf(stderr, "streamedge: reload of %s failed; the running config stays:\n",
                 config_path_.c_str());
    for (const conf::ConfigError& e : loaded.errors) {
      std::fprintf(stderr, "  %s\n", e.toString().c_str());
    }
    return;
  }
  const conf::Config& next = *loaded.config;
  bool listeners_changed = next.listeners.size() != config_->listeners.size();
  for (size_t i = 0; !listeners_changed && i < next.listeners.size(); ++i) {
    listeners_changed = next.listeners[i].address != config_->listeners[i].address;
  }
  if (listeners_changed || next.server.workers != config_->server.workers ||
      next.cache.ram.size_bytes != config_->cache.ram.size_bytes ||
      next.admin.address != config_->admin.address) {
    std::fprintf(stderr,
                 "streamedge: reload: listener, worker, admin and cache size changes take effect "
                 "at the next restart\n");
  }
  config_ = loaded.config;
  for (auto& worker : workers_) {
    Worker* w = worker.get();
    conf::ConfigPtr snapshot = config_;
    w->post([w, snapshot] { w->setConfig(snapshot); });
  }
  ++reloads_ok_;
  std::fprintf(stderr, "streamedge: reloaded %s\n", config_path_.c_str());
}

void Server::beginStop() {
  if (stopping_) return;
  stopping_ = true;
  std::fprintf(stderr, "streamedge: stopping: draining connections (up to %lld ms)\n",
               static_cast<long long>(config_->server.drain_timeout.count()));
  shared_->draining.store(true);
  const auto deadline = config_->server.drain_timeout;
  for (auto& worker : workers_) {
    Worker* w = worker.get();
    w->post([w, deadline] { w->beginDrain(deadline); });
  }
  event_base_loopexit(base_, nullptr);
}

// --- admin ----------------------------------------------------------------------------------

void Server::adminCb(evhttp_request* req, void* arg) { static_cast<Server*>(arg)->handleAdmin(req); }

bool Server::healthy(std::string& why) const {
  const int64_t now = unixMillisNow();
  for (size_t i = 0; i < shared_->counters.size(); ++i) {
    const int64_t beat = shared_->counters[i]->heartbeat_unix_ms.load(std::memory_order_relaxed);
    if (now - beat > 5000) {
      why = "worker " + std::to_string(i) + " loop has not run for " + std::to_string(now - beat) +
            " ms";
      return false;
    }
  }
  return true;
}

bool Server::ready(std::string& why) const {
  if (stopping_) {
    why = "stopping";
    return false;
  }
  const auto now = std::chrono::steady_clock::now();
  for (size_t g = 0; g < config_->origin_groups.size(); ++g) {
    const conf::OriginGroupConfig& group = config_->origin_groups[g];
    bool any = false;
    for (size_t o = 0; o < group.origins.size() && !any; ++o) any = shared_->health->isUp(g, o, now);
    if (!any) {
      why = "no origin up in group " + group.name;
      return false;
    }
  }
  return true;
}

std::string Server::statusJson() const {
  const cache::CacheStats stats = shared_->cache.stats();
  std::string out = "{\"version\":\"" STREAMEDGE_VERSION "\",\"commit\":\"" STREAMEDGE_GIT_COMMIT "\"";
  out += ",\"uptime_seconds\":" + std::to_string((unixMillisNow() - start_unix_ms_) / 1000);
  out += ",\"workers\":" + std::to_string(worker_count_);
  out += ",\"connections\":" +
         std::to_string(shared_->connections_total_active.load(std::memory_order_relaxed));
  out += ",\"cache\":{\"ram\":{\"objects\":" + std::to_string(stats.objects) +
         ",\"bytes\":" + std::to_string(stats.bytes) +
         ",\"capacity_bytes\":" + std::to_string(stats.capacity_bytes) +
         ",\"evictions\":" + std::to_string(stats.evictions) +
         ",\"fills_in_flight\":" + std::to_string(stats.fills_in_flight) + "}}";
  out += ",\"origins\":[";
  const auto now = std::chrono::steady_clock::now();
  bool first = true;
  for (size_t g = 0; g < config_->origin_groups.size(); ++g) {
    const conf::OriginGroupConfig& group = config_->origin_groups[g];
    for (size_t o = 0; o < group.origins.size(); ++o) {
      if (!first) out += ',';
      first = false;
      out += "{\"group\":\"" + group.name + "\",\"origin\":\"" + group.origins[o].name +
             "\",\"dc\":\"" + group.origins[o].dc + "\",\"up\":" +
             (shared_->health->isUp(g, o, now) ? "true" : "false") + "}";
    }
  }
  out += "]}\n";
  return out;
}

std::string Server::metricsText() const {
  metrics::Snapshot snap;
  snap.start_time_unix_seconds = static_cast<double>(start_unix_ms_) / 1000.0;
  for (size_t r = 0; r < static_cast<size_t>(CacheResult::kCount); ++r) {
    uint64_t total = 0;
    for (const auto& c : shared_->counters) total += c->requests_by_result[r].load(std::memory_order_relaxed);
    if (static_cast<CacheResult>(r) == CacheResult::kNone) {
      snap.requests_by_result.emplace_back("none", total);
    } else {
      std::string name = cacheResultName(static_cast<CacheResult>(r));
      for (char& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      snap.requests_by_result.emplace_back(name, total);
    }
  }
  for (size_t k = 1; k <= 5; ++k) {
    uint64_t total = 0;
    for (const auto& c : shared_->counters) total += c->responses_by_class[k].load(std::memory_order_relaxed);
    snap.responses_by_class.emplace_back(std::to_string(k) + "xx", total);
  }
  for (const auto& c : shared_->counters) {
    snap.response_bytes += c->response_bytes.load(std::memory_order_relaxed);
    snap.origin_fetches += c->origin_fetches.load(std::memory_order_relaxed);
    snap.origin_failures += c->origin_failures.load(std::memory_order_relaxed);
    snap.connections_accepted += c->connections_accepted.load(std::memory_order_relaxed);
    snap.bad_requests += c->bad_requests.load(std::memory_order_relaxed);
  }
  snap.connections_active = shared_->connections_total_active.load(std::memory_order_relaxed);
  const cache::CacheStats stats = shared_->cache.stats();
  snap.cache_objects = stats.objects;
  snap.cache_bytes = stats.bytes;
  snap.cache_capacity_bytes = stats.capacity_bytes;
  snap.cache_evictions = stats.evictions;
  snap.cache_admissions = stats.admissions;
  snap.reloads_ok = reloads_ok_;
  snap.reloads_failed = reloads_failed_;
  const auto now = std::chrono::steady_clock::now();
  for (size_t g = 0; g < config_->origin_groups.size(); ++g) {
    const conf::OriginGroupConfig& group = config_->origin_groups[g];
    for (size_t o = 0; o < group.origins.size(); ++o) {
      snap.origins.push_back({group.name, group.origins[o].name, group.origins[o].dc,
                              shared_->health->isUp(g, o, now)});
    }
  }
  return metrics::renderPrometheus(snap);
}

void Server::handleAdmin(evhttp_request* req) {
  evbuffer* body = evbuffer_new();
  const char* uri = evhttp_request_get_uri(req);
  evhttp_uri* parsed = evhttp_uri_parse(uri);
  std::string path = parsed && evhttp_uri_get_path(parsed) ? evhttp_uri_get_path(parsed) : "";
  if (parsed) evhttp_uri_free(parsed);
  evkeyvalq* out_headers = evhttp_request_get_output_headers(req);
  evhttp_add_header(out_headers, "Cache-Control", "no-store");

  if (!config_->admin.bearer_token.empty()) {
    const char* auth = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    const std::string expected = "Bearer " + config_->admin.bearer_token;
    if (!auth || expected != auth) {
      evhttp_add_header(out_headers, "WWW-Authenticate", "Bearer");
      evbuffer_add_printf(body, "bearer token required\n");
      evhttp_send_reply(req, 401, "Unauthorized", body);
      evbuffer_free(body);
      return;
    }
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
    if (ready(why)) {
      evbuffer_add_printf(body, "ready\n");
    } else {
      code = 503;
      reason = "Service Unavailable";
      evbuffer_add_printf(body, "not ready: %s\n", why.c_str());
    }
  } else if (path == "/status") {
    evhttp_add_header(out_headers, "Content-Type", "application/json");
    std::string json = statusJson();
    evbuffer_add(body, json.data(), json.size());
  } else if (path == "/metrics") {
    evhttp_add_header(out_headers, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    std::string text = metricsText();
    evbuffer_add(body, text.data(), text.size());
  } else {
    code = 404;
    reason = "Not Found";
    evbuffer_add_printf(body, "unknown admin path\n");
  }
  evhttp_send_reply(req, code, reason, body);
  evbuffer_free(body);
}

}  // namespace streamedge::proxy
