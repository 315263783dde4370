#include "proxy/client_connection.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string_view>

#include "proxy/http2_session.h"
#include "proxy/worker.h"

namespace streamedge::proxy {

namespace {

using Clock = std::chrono::steady_clock;

// closeLingering: how long and how much of what a viewer still sends is read and dropped.
constexpr auto kLingerTime = std::chrono::seconds(2);
constexpr size_t kLingerBytes = 1 << 20;
// TLS: body pieces below this are copied behind the head instead of referenced (sendHead).
constexpr size_t kTlsCopyBelow = 4096;
// Plaintext: body runs in shared memory (cache/body_arena.h) from this size on go out with
// sendfile; smaller ones (a reader catching up with a fill) cost less as one more writev piece.
constexpr size_t kSendfileFrom = 32 * 1024;
// Plaintext: the most one read takes from the socket (the bufferevent's default too).
constexpr ev_ssize_t kReadBytes = 16384;
// RFC 9113 §3.4: what a client speaking HTTP/2 sends first.
constexpr std::string_view kHttp2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

void unpinBody(const void*, size_t, void* pin) { cache::Body::unpin(pin); }

// Writes what `out` holds to `fd` now (plaintext only). A socket bufferevent keeps the start of
// its output buffer frozen except inside its own write callback, so that nothing else drains it;
// a direct write thaws it for the one call, as that callback does. False on a socket error
// (EAGAIN is not one: the rest waits for the write event).
//
// A body run queued by file reference (sendfile) is written by a call of its own, and a writev
// stops in front of it: with `file_runs`, calls repeat while each one makes progress (bounded),
// so that a head and the body behind it go out in one turn of the loop.
bool writeOut(evbuffer* out, evutil_socket_t fd, bool file_runs) {
  constexpr int kMaxCalls = 64;  // 16 MiB of 256 KiB runs
  evbuffer_unfreeze(out, 1);
  int n = 0;
  int err = 0;
  for (int calls = 0; calls < kMaxCalls; ++calls) {
    n = evbuffer_write(out, fd);
    err = errno;
    if (!file_runs || n <= 0 || evbuffer_get_length(out) == 0) break;
  }
  evbuffer_freeze(out, 1);
  return n >= 0 || err == EAGAIN || err == EWOULDBLOCK || err == EINTR;
}

// Queues `n` body bytes that lie at `file` in a shared memory file, to be sent with sendfile;
// `pin` keeps the block (and its pages) until the socket took them. False when libevent could
// not take the segment (the caller queues the bytes by reference instead).
bool addFileRun(evbuffer* out, const cache::Body::FileRun& file, size_t n, void* pin) {
  evbuffer_file_segment* seg =
      evbuffer_file_segment_new(file.fd, static_cast<ev_off_t>(file.offset),
                                static_cast<ev_off_t>(n),
                                EVBUF_FS_DISABLE_MMAP | EVBUF_FS_DISABLE_LOCKING);
  if (!seg) return false;
  if (evbuffer_add_file_segment(out, seg, 0, static_cast<ev_off_t>(n)) != 0) {
    evbuffer_file_segment_free(seg);  // no cleanup set: the pin is still the caller's
    return false;
  }
  // Runs when the buffer's chain lets the segment go (the socket took the bytes).
  evbuffer_file_segment_add_cleanup_cb(
      seg, [](const evbuffer_file_segment*, int, void* arg) { cache::Body::unpin(arg); }, pin);
  evbuffer_file_segment_free(seg);  // the chain holds its own reference
  return true;
}

char* put(char* at, std::string_view s) {
  if (s.empty()) return at;  // an empty view may have no data pointer, which memcpy must not get
  std::memcpy(at, s.data(), s.size());
  return at + s.size();
}

}  // namespace

ClientConnection::ClientConnection(Worker& worker, uint64_t id, bufferevent* bev,
                                   const sockaddr* addr, int socklen, uint64_t listener_id,
                                   size_t metric_slot, tls::TlsStatePtr tls)
    : worker_(worker),
      id_(id),
      metric_slot_(std::min(metric_slot, kListenerSlots - 1)),
      bev_(bev),
      tls_(std::move(tls)) {
  viewer_.connection_id = id;
  viewer_.listener_id = listener_id;
  viewer_.tls = tls_ != nullptr;
  if (addr && socklen > 0 && static_cast<size_t>(socklen) <= sizeof viewer_.addr) {
    std::memcpy(&viewer_.addr, addr, static_cast<size_t>(socklen));
  }
}

ClientConnection::~ClientConnection() {
  if (linger_) event_free(linger_);
  if (flush_) event_free(flush_);
  if (read_) event_free(read_);
  if (read_timer_) event_free(read_timer_);
  exchange_.reset();
  h2_.reset();
  if (bev_ && tls_) {
    // libevent frees the SSL without SSL_shutdown, and OpenSSL drops the session of a
    // connection that was not shut down from the session cache. A connection that finished its
    // handshake and ends here ended on our terms (or the viewer's EOF): keep its session
    // resumable. Fatal TLS errors have already marked theirs not resumable.
    SSL* ssl = bufferevent_openssl_get_ssl(bev_);
    if (ssl && SSL_is_init_finished(ssl)) SSL_set_shutdown(ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
  }
  if (bev_) bufferevent_free(bev_);
  if (counted_active_) {
    WorkerCounters& c = worker_.counters();
    c.connections_active.fetch_sub(1, std::memory_order_relaxed);
    WorkerCounters::addSigned(
        c.connections_active_by_listener[metric_slot_], -1);
    worker_.shared().connections_total_active.fetch_sub(1, std::memory_order_relaxed);
  }
}

bool ClientConnection::start() {
  if (!bev_) return false;
  counted_active_ = true;
  WorkerCounters& c = worker_.counters();
  c.connections_active.fetch_add(1, std::memory_order_relaxed);
  WorkerCounters::addSigned(
      c.connections_active_by_listener[metric_slot_], 1);
  worker_.shared().connections_total_active.fetch_add(1, std::memory_order_relaxed);
  int one = 1;
  setsockopt(bufferevent_getfd(bev_), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  bufferevent_setcb(bev_, readCb, writeCb, eventCb, this);
  const conf::ServerConfig& server = worker_.config()->server;
  if (!tls_) {
    // Plaintext: the write event stays off until a write leaves bytes behind (writeNow), and
    // reads go through read_ (the bufferevent's own reading is never enabled).
    event_base* base = bufferevent_get_base(bev_);
    flush_ = event_new(base, -1, 0, flushCb, this);
    read_ = event_new(base, bufferevent_getfd(bev_), EV_READ | EV_PERSIST, readEventCb, this);
    read_timer_ = evtimer_new(base, readTimeoutCb, this);
    if (!flush_ || !read_ || !read_timer_) return false;
    setReadTimeout(server.idle_timeout);
    enableRead();
  } else {
    setReadTimeout(server.idle_timeout);
    bufferevent_enable(bev_, EV_READ | EV_WRITE);
  }
  return true;
}

void ClientConnection::enableRead() {
  if (!read_) {
    bufferevent_enable(bev_, EV_READ);
    return;
  }
  if (!reading_ && event_add(read_, nullptr) == 0) reading_ = true;
  if (reading_ && read_timeout_.count() > 0) {
    const timeval tv{static_cast<time_t>(read_timeout_.count() / 1000),
                     static_cast<suseconds_t>((read_timeout_.count() % 1000) * 1000)};
    evtimer_add(read_timer_, &tv);
  } else {
    evtimer_del(read_timer_);
  }
}

void ClientConnection::disableRead() {
  if (!read_) {
    bufferevent_disable(bev_, EV_READ);
    return;
  }
  if (reading_) event_del(read_);
  reading_ = false;
  evtimer_del(read_timer_);
}

void ClientConnection::readEventCb(evutil_socket_t fd, short, void* arg) {
  auto* self = static_cast<ClientConnection*>(arg);
  if (self->linger_ || self->closing_) return;
  // The socket bufferevent keeps the end of its input buffer frozen outside its own read
  // callback; thawed for this one read, as that callback does.
  evbuffer* in = bufferevent_get_input(self->bev_);
  evbuffer_iovec vec[2];
  evbuffer_unfreeze(in, 0);
  const int nvec = evbuffer_reserve_space(in, kReadBytes, vec, 2);
  ssize_t n = -1;
  int err = 0;
  if (nvec > 0) {
    iovec iov[2];
    for (int i = 0; i < nvec; ++i) iov[i] = {vec[i].iov_base, vec[i].iov_len};
    n = ::readv(fd, iov, nvec);
    err = errno;
    size_t left = n > 0 ? static_cast<size_t>(n) : 0;
    for (int i = 0; i < nvec; ++i) {
      const size_t used = std::min(left, vec[i].iov_len);
      vec[i].iov_len = used;
      left -= used;
    }
    evbuffer_commit_space(in, vec, nvec);
  } else {
    err = ENOMEM;
  }
  evbuffer_freeze(in, 0);
  if (n == 0) return self->onEvent(BEV_EVENT_READING | BEV_EVENT_EOF);
  if (n < 0) {
    if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR) return;
    errno = err;
    return self->onEvent(BEV_EVENT_READING | BEV_EVENT_ERROR);
  }
  // The read timeout counts from the last bytes read, as the bufferevent's does.
  if (self->read_timeout_.count() > 0) self->enableRead();
  self->onRead();  // may delete self
}

void ClientConnection::readTimeoutCb(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<ClientConnection*>(arg);
  if (self->linger_ || self->closing_) return;
  self->disableRead();  // as the bufferevent does; onEvent enables it again where it reads on
  self->onEvent(BEV_EVENT_READING | BEV_EVENT_TIMEOUT);
}

void ClientConnection::scheduleFlush() {
  if (flush_ && !event_pending(flush_, EV_TIMEOUT, nullptr)) event_active(flush_, EV_TIMEOUT, 0);
}

void ClientConnection::flushCb(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<ClientConnection*>(arg);
  if (self->linger_ || self->closing_) return;
  self->write_depth_ = 0;
  self->writeNow();  // may delete self
}

void ClientConnection::writeNow() {
  evbuffer* out = bufferevent_get_output(bev_);
  // Armed already: the bufferevent writes once the socket takes more.
  if (evbuffer_get_length(out) == 0 || (bufferevent_get_enabled(bev_) & EV_WRITE)) return;
  if (!writeOut(out, bufferevent_getfd(bev_), file_runs_)) {
    return onEvent(BEV_EVENT_WRITING | BEV_EVENT_ERROR);  // closes
  }
  if (evbuffer_get_length(out) > 0) {
    bufferevent_enable(bev_, EV_WRITE);  // the rest when the socket drains (send_timeout)
    return;
  }
  onWriteDrained();
}

void ClientConnection::setReadTimeout(std::chrono::milliseconds t) {
  timeval read_tv{static_cast<time_t>(t.count() / 1000),
                  static_cast<suseconds_t>((t.count() % 1000) * 1000)};
  const auto send = worker_.config()->server.send_timeout.count();
  timeval write_tv{static_cast<time_t>(send / 1000),
                   static_cast<suseconds_t>((send % 1000) * 1000)};
  if (!read_) {
    bufferevent_set_timeouts(bev_, t.count() > 0 ? &read_tv : nullptr, &write_tv);
    return;
  }
  read_timeout_ = t;
  if (reading_) enableRead();  // re-arms (or stops) the timer
  if (send != send_timeout_ms_) {  // a reload may change it; otherwise set once
    send_timeout_ms_ = send;
    bufferevent_set_timeouts(bev_, nullptr, &write_tv);
  }
}

bool ClientConnection::idle() const {
  return h2_ ? h2_->idle() : exchange_.phase() == Exchange::Phase::kIdle;
}

void ClientConnection::closeWhenIdle() {
  if (linger_) return closeNow();  // draining: no more waiting for the viewer's end
  if (h2_) return h2_->goAway();  // closes once its streams are done
  if (idle()) {
    closeNow();
  } else {
    close_after_response_ = true;
  }
}

void ClientConnection::onWake() {
  if (linger_) return;
  if (h2_) return h2_->onWake();
  write_depth_ = 0;
  exchange_.onWake();
}

// --- libevent callbacks -------------------------------------------------------------------

void ClientConnection::readCb(bufferevent*, void* arg) {
  static_cast<ClientConnection*>(arg)->onRead();
}

void ClientConnection::writeCb(bufferevent*, void* arg) {
  static_cast<ClientConnection*>(arg)->onWriteDrained();
}

void ClientConnection::eventCb(bufferevent*, short what, void* arg) {
  static_cast<ClientConnection*>(arg)->onEvent(what);
}

void ClientConnection::onRead() {
  if (linger_) return;
  if (h2_) return h2_->onRead();
  write_depth_ = 0;
  switch (exchange_.phase()) {
    case Exchange::Phase::kIdle:
      return parseRequest();
    case Exchange::Phase::kReadingBody:
      return readBody();
    default:
      break;
  }
  // A pipelined request waits until this response is done; stop reading if it piles up.
  if (evbuffer_get_length(bufferevent_get_input(bev_)) >
      worker_.config()->server.max_header_bytes) {
    disableRead();
  }
}

void ClientConnection::onWriteDrained() {
  if (linger_) return;
  if (h2_) return h2_->onWriteDrained();
  // Plaintext: the bufferevent wrote the rest; off again until a write leaves bytes behind.
  if (flush_) bufferevent_disable(bev_, EV_WRITE);
  write_depth_ = 0;
  const Exchange::Phase phase = exchange_.phase();
  if (phase == Exchange::Phase::kFlushing) return onResponseSent();
  // A bounded answer (not kept) queues a bounded amount at a time: more once the socket took it.
  if (phase == Exchange::Phase::kSending && body_bounded_) exchange_.onWritable();
}

void ClientConnection::onEvent(short what) {
  if (linger_) return;
  if (what & BEV_EVENT_CONNECTED) {  // TLS handshake done; the request follows
    handshake_done_ = true;
    SSL* ssl = bufferevent_openssl_get_ssl(bev_);
    worker_.counters().recordHandshake(ssl ? SSL_get_version(ssl) : nullptr, HandshakeResult::kOk);
    const unsigned char* alpn = nullptr;
    unsigned int alpn_len = 0;
    if (ssl) SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
    if (alpn_len == 2 && std::memcmp(alpn, "h2", 2) == 0) {
      // RFC 9113 §3.2: h2 over TLS; the session takes the connection's events from here.
      h2_ = std::make_unique<Http2Session>(worker_, *this, bev_, viewer_, SSL_get_version(ssl));
      if (!h2_->start()) return closeNow();  // start() may have closed it already
    }
    return;
  }
  if (tls_ && !handshake_done_) {
    // Closed, failed or timed out before the handshake completed.
    worker_.counters().recordHandshake(nullptr, HandshakeResult::kFailed);
    handshake_done_ = true;  // count it once
  }
  if (h2_ && (what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING) &&
      h2_->keepOnReadTimeout()) {
    enableRead();  // its streams wait on us, not on the viewer
    return;
  }
  const Exchange::Phase phase = exchange_.phase();
  if (what & BEV_EVENT_TIMEOUT) {
    if ((what & BEV_EVENT_READING) && phase == Exchange::Phase::kIdle &&
        evbuffer_get_length(bufferevent_get_input(bev_)) > 0) {
      std::fprintf(stderr, "streamedge: 408 request head not received in time\n");
      return exchange_.reject(408, "request head not received in time", Clock::now());
    }
    if ((what & BEV_EVENT_READING) && phase != Exchange::Phase::kIdle &&
        phase != Exchange::Phase::kReadingBody) {
      // Waiting on the origin or sending: the viewer owes us nothing; keep reading for EOF.
      enableRead();
      return;
    }
  }
  // EOF, error, idle timeout or a viewer that stopped reading: nothing more to do here.
  closeNow();
}

const char* ClientConnection::tlsVersion() const {
  SSL* ssl = tls_ ? bufferevent_openssl_get_ssl(bev_) : nullptr;
  return ssl ? SSL_get_version(ssl) : nullptr;
}

int ClientConnection::socketFd() const {
  return bev_ ? static_cast<int>(bufferevent_getfd(bev_)) : -1;
}

// --- Recv -----------------------------------------------------------------------------------

void ClientConnection::parseRequest() {
  evbuffer* in = bufferevent_get_input(bev_);
  const size_t available = evbuffer_get_length(in);
  if (available == 0) return;
  const conf::ServerConfig& server = worker_.config()->server;
  const size_t limit = static_cast<size_t>(server.max_header_bytes);
  // Cleartext HTTP/2 with prior knowledge (RFC 9113 §3.3): the connection's first bytes are the
  // client preface, on a listener that allows it.
  if (!tls_ && !served_any_ && *evbuffer_pullup(in, 1) == 'P') {
    const conf::ListenerConfig* listener = worker_.listenerConfig(viewer_.listener_id);
    if (listener && listener->h2c) {
      char first[kHttp2Preface.size()];
      const size_t n = std::min(available, kHttp2Preface.size());
      evbuffer_copyout(in, first, n);
      if (std::string_view(first, n) == kHttp2Preface.substr(0, n)) {
        if (n == kHttp2Preface.size()) return startCleartextHttp2();
        setReadTimeout(server.header_timeout);  // the rest of the preface
        return;
      }
    }
  }

  evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, nullptr);
  if (end.pos < 0) {
    // A head ended by bare LFs would never be seen as complete: refuse it now rather than
    // let it sit until the header timeout (RFC 9112 §2.2 lets a recipient reject bare LF).
    if (evbuffer_search(in, "\n\n", 2, nullptr).pos >= 0 ||
        evbuffer_search(in, "\n\r\n", 3, nullptr).pos >= 0) {
      worker_.counters().add(worker_.counters().bad_requests);
      std::fprintf(stderr, "streamedge: 400 bad request: bare LF line ending\n");
      evbuffer_drain(in, available);
      return exchange_.reject(400, "bare LF line ending", Clock::now());
    }
    if (available > limit) {
      std::fprintf(stderr, "streamedge: 431 request head larger than %zu bytes\n", limit);
      return exchange_.reject(431, "request head too large", Clock::now());
    }
    setReadTimeout(server.header_timeout);
    return;
  }
  const size_t head_len = static_cast<size_t>(end.pos) + 4;
  const char* data = reinterpret_cast<const char*>(evbuffer_pullup(in, static_cast<ssize_t>(head_len)));
  RequestLimits limits;
  limits.max_head_bytes = limit;
  limits.max_uri_bytes = static_cast<size_t>(server.max_uri_bytes);
  RequestHead head;
  ParseError err;
  const Clock::time_point started = Clock::now();
  if (!parseRequestHead(std::string_view(data, head_len), limits, head, err)) {
    worker_.counters().add(worker_.counters().bad_requests);
    std::fprintf(stderr, "streamedge: %d bad request: %s\n", err.status, err.detail);
    evbuffer_drain(in, head_len);
    return exchange_.reject(err.status, err.detail, started);
  }
  keep_alive_ = head.keep_alive;
  version_minor_ = head.version_minor;
  request_body_length_ = head.content_length.value_or(0);
  exchange_.receive(head, std::string_view(data, head_len), started);
  evbuffer_drain(in, head_len);
  setReadTimeout(std::chrono::milliseconds(0));  // the viewer waits for us now
  exchange_.run();  // may finish the response and delete this: nothing after it
}

void ClientConnection::readRequestBody(uint64_t length, bool expect_continue) {
  request_body_length_ = length;
  setReadTimeout(worker_.config()->server.header_timeout);
  if (expect_continue) {
    bufferevent_write(bev_, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    scheduleFlush();
  }
  readBody();
}

void ClientConnection::readBody() {
  evbuffer* in = bufferevent_get_input(bev_);
  if (evbuffer_get_length(in) < request_body_length_) return;  // more to come
  std::string& body = exchange_.requestBody();
  body.resize(request_body_length_);
  evbuffer_remove(in, body.data(), request_body_length_);
  exchange_.onRequestBody();
}

// --- Deliver --------------------------------------------------------------------------------

void ClientConnection::sendHead(const ResponseOut& head) {
  if (head.close) close_after_response_ = true;
  chunked_out_ = false;
  if (head.body_follows && !head.length_known) {
    if (version_minor_ >= 1) {
      chunked_out_ = true;
    } else {
      close_after_response_ = true;  // HTTP/1.0: the end of the body is the close
    }
  }
  std::string_view connection;
  if (!keep_alive_ || close_after_response_ || worker_.shared().draining.load()) {
    close_after_response_ = true;
    connection = "Connection: close\r\n";
  } else if (version_minor_ == 0) {
    connection = "Connection: keep-alive\r\n";
  }
  const std::string_view version = version_minor_ == 0 ? "HTTP/1.0 " : "HTTP/1.1 ";
  const std::string_view reason = head.reason.empty() ? std::string_view(reasonPhrase(head.status))
                                                      : head.reason;
  char status[8];
  const auto [status_end, ec] = std::to_chars(status, status + sizeof status, head.status);
  const std::string_view status_text(status, static_cast<size_t>(status_end - status));
  constexpr std::string_view kChunked = "Transfer-Encoding: chunked\r\n";
  // The whole head in one piece of the output buffer (one copy, as one string would be).
  const size_t total = version.size() + status_text.size() + 1 + reason.size() + 2 +
                       head.fields.size() + (chunked_out_ ? kChunked.size() : 0) +
                       connection.size() + 2 + head.inline_body.size();
  evbuffer* out = bufferevent_get_output(bev_);
  evbuffer_iovec vec;
  // TLS: room behind the head for a small body (sendBody copies one there), so that head and
  // body go out as one TLS record: the openssl bufferevent encrypts each piece apart.
  const size_t room = total + (tls_ && head.body_follows ? kTlsCopyBelow : 0);
  if (evbuffer_reserve_space(out, static_cast<ev_ssize_t>(room), &vec, 1) != 1) return closeNow();
  char* at = static_cast<char*>(vec.iov_base);
  at = put(at, version);
  at = put(at, status_text);
  *at++ = ' ';
  at = put(at, reason);
  at = put(at, "\r\n");
  at = put(at, head.fields);
  if (chunked_out_) at = put(at, kChunked);
  at = put(at, connection);
  at = put(at, "\r\n");
  at = put(at, head.inline_body);
  vec.iov_len = total;
  evbuffer_commit_space(out, &vec, 1);
  scheduleFlush();  // usually written with the body, by endResponse
  // Stop reading a connection we are about to close (the rest of its bytes are not a request).
  if (head.synthesized && close_after_response_) {
    disableRead();
    linger_on_close_ = true;
  }
}

void ClientConnection::sendBody(BodyCursor& cursor, size_t max_queued) {
  evbuffer* out = bufferevent_get_output(bev_);
  const cache::Body& body = *cursor.body;
  body_bounded_ = max_queued != 0;
  while (cursor.pos < cursor.end) {
    if (max_queued && evbuffer_get_length(out) >= max_queued) break;  // writeCb resumes
    const uint8_t* data = nullptr;
    void* pin = nullptr;
    cache::Body::FileRun file;
    size_t n = body.peekPinned(cursor.pos, &data, &pin, tls_ ? nullptr : &file);
    if (n == 0) break;
    n = static_cast<size_t>(std::min<uint64_t>(n, cursor.end - cursor.pos));
    if (chunked_out_) {
      char line[24];
      int len = std::snprintf(line, sizeof line, "%zx\r\n", n);
      evbuffer_add(out, line, static_cast<size_t>(len));
    }
    if (tls_ && n < kTlsCopyBelow) {
      evbuffer_add(out, data, n);  // beside the head, in its TLS record (sendHead)
      cache::Body::unpin(pin);
    } else if (file.fd >= 0 && n >= kSendfileFrom && addFileRun(out, file, n, pin)) {
      file_runs_ = true;  // the kernel takes the pages by reference: no copy per viewer
    } else {
      evbuffer_add_reference(out, data, n, unpinBody, pin);
    }
    if (chunked_out_) evbuffer_add(out, "\r\n", 2);
    cursor.pos += n;
  }
  scheduleFlush();
}

void ClientConnection::endResponse() {
  evbuffer* out = bufferevent_get_output(bev_);
  if (chunked_out_) {
    evbuffer_add(out, "0\r\n\r\n", 5);
    chunked_out_ = false;
  }
  // Optimistic write: the socket is almost always writable, so write the whole response now
  // instead of waiting one loop iteration for the write event. Bounded nesting: a run of
  // pipelined requests falls back to the event loop after a few. Never on TLS: these bytes are
  // plaintext, only the openssl bufferevent may put them on the socket.
  if (!tls_ && evbuffer_get_length(out) > 0 && write_depth_ < kMaxWriteDepth &&
      !(bufferevent_get_enabled(bev_) & EV_WRITE)) {
    if (!writeOut(out, bufferevent_getfd(bev_), file_runs_)) {
      return onEvent(BEV_EVENT_WRITING | BEV_EVENT_ERROR);  // closes
    }
  }
  if (evbuffer_get_length(out) == 0) {
    if (flush_) event_del(flush_);  // nothing left for it
    ++write_depth_;
    onResponseSent();  // may delete this (close)
    return;
  }
  if (flush_ && write_depth_ < kMaxWriteDepth && !(bufferevent_get_enabled(bev_) & EV_WRITE)) {
    bufferevent_enable(bev_, EV_WRITE);  // the socket is full: the rest when it drains
  }
}

// --- Log, then the next request -------------------------------------------------------------

void ClientConnection::startCleartextHttp2() {
  // The session queues frames whenever nghttp2 has them and counts on the bufferevent to send
  // them and to read, as on a TLS connection: reading and writing go back to the bufferevent.
  disableRead();
  event_free(read_);
  read_ = nullptr;
  event_free(read_timer_);
  read_timer_ = nullptr;
  event_free(flush_);
  flush_ = nullptr;
  bufferevent_enable(bev_, EV_READ | EV_WRITE);
  h2_ = std::make_unique<Http2Session>(worker_, *this, bev_, viewer_, nullptr);
  if (!h2_->start()) return closeNow();  // start() may have closed it already
}

void ClientConnection::onResponseSent() {
  served_any_ = true;
  exchange_.onResponseSent();  // Log
  const bool close = close_after_response_ || closing_;
  body_bounded_ = false;
  file_runs_ = false;
  // Lingering costs a few system calls: only where the viewer may still be sending (an error
  // answer to a request we did not read whole, or bytes already waiting); an answer that ends a
  // request read whole (Connection: close) just closes, as before.
  if (close) return linger_on_close_ || evbuffer_get_length(bufferevent_get_input(bev_)) > 0
                        ? closeLingering()
                        : closeNow();
  setReadTimeout(worker_.config()->server.idle_timeout);
  if (!read_ || !reading_) enableRead();
  if (evbuffer_get_length(bufferevent_get_input(bev_)) > 0) parseRequest();  // pipelined
}

void ClientConnection::closeNow() {
  closing_ = true;
  exchange_.reset();
  worker_.removeConnection(id_);  // deletes this
}

void ClientConnection::closeLingering() {
  if (linger_) return;
  const evutil_socket_t fd = bev_ ? bufferevent_getfd(bev_) : -1;
  if (fd < 0 || worker_.draining() ||
      evbuffer_get_length(bufferevent_get_output(bev_)) > 0) {
    return closeNow();
  }
  closing_ = true;
  exchange_.reset();
  linger_ = event_new(bufferevent_get_base(bev_), fd, EV_READ | EV_PERSIST, lingerCb, this);
  if (!linger_) return closeNow();
  // The bufferevent stops here; the socket is ours to end. TLS: close_notify first, so that a
  // viewer that reads on sees an orderly end (an error from SSL_shutdown changes nothing).
  disableRead();
  bufferevent_disable(bev_, EV_READ | EV_WRITE);
  if (tls_) {
    if (SSL* ssl = bufferevent_openssl_get_ssl(bev_); ssl && SSL_is_init_finished(ssl)) {
      SSL_shutdown(ssl);
    }
  }
  ::shutdown(fd, SHUT_WR);
  linger_until_ = Clock::now() + kLingerTime;
  const timeval tick{0, 250 * 1000};  // EV_PERSIST re-arms it: the deadline is linger_until_
  if (event_add(linger_, &tick) != 0) return closeNow();
}

void ClientConnection::lingerCb(evutil_socket_t fd, short what, void* arg) {
  auto* self = static_cast<ClientConnection*>(arg);
  if (what & EV_READ) {
    char drop[16384];
    // Bounded: a few reads per wake-up; EOF or an error ends the linger.
    for (int i = 0; i < 4; ++i) {
      const ssize_t n = ::read(fd, drop, sizeof drop);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        return self->closeNow();
      }
      if (n < 0) break;
      self->linger_bytes_ += static_cast<size_t>(n);
    }
  }
  if (self->linger_bytes_ > kLingerBytes || Clock::now() >= self->linger_until_) self->closeNow();
}

}  // namespace streamedge::proxy
