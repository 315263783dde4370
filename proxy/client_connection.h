// ClientConnection: one viewer connection on one worker in HTTP/1.1 — the framing of its
// exchanges (proxy/exchange.h, where the request steps live). It owns the bufferevent (a socket,
// or a bufferevent_openssl for a TLS listener), reads request heads with the strict parser
// (limits: head size 431, URI 414, a slow head 408, idle keep-alive), hands each to its one
// Exchange, and puts the exchange's answers on the wire: a status line, the fields, its own
// Connection and Transfer-Encoding, then the body by reference (evbuffer_add_reference, no copy;
// chunked when the length is unknown). Keep-alive and pipelining: the next head is read once the
// current response is queued and sent. A TLS connection whose ALPN chose h2 hands its
// bufferevent's events to an Http2Session (proxy/http2_session.h) instead.
//
// Worker thread only, except through its Exchange's onObjectChanged() (any thread).
#pragma once

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <memory>

#include "proxy/exchange.h"
#include "tls/tls_state.h"

namespace streamedge::proxy {

class Http2Session;
class Worker;

class ClientConnection final : private Framing {
 public:
  // Takes ownership of `bev` (a socket bufferevent, or an accepting bufferevent_openssl for a
  // TLS listener, made by the worker). `tls`: the TLS snapshot the connection's SSL was made
  // from, pinned for the connection's life (its callbacks refer to it); null for plain HTTP.
  // `listener_id` / `metric_slot`: the listener it came in on (proxy/listener_table.h).
  ClientConnection(Worker& worker, uint64_t id, bufferevent* bev, const sockaddr* addr,
                   int socklen, uint64_t listener_id, size_t metric_slot, tls::TlsStatePtr tls);
  ~ClientConnection();
  ClientConnection(const ClientConnection&) = delete;
  ClientConnection& operator=(const ClientConnection&) = delete;

  bool start();
  uint64_t id() const { return id_; }
  // Between two requests on a keep-alive connection (graceful stop closes these).
  bool idle() const;
  // Closes the connection now if it is idle; otherwise after the current response.
  void closeWhenIdle();
  // Closes the connection now, busy or not (its listener's drain deadline passed). Deletes this.
  void closeAtDeadline() { closeNow(); }
  uint64_t listenerId() const { return viewer_.listener_id; }

  // Worker thread: the wake-up its exchange posted (Exchange::onObjectChanged).
  void onWake();

 private:
  friend class Http2Session;  // closes the connection

  // Framing (proxy/exchange.h).
  void sendHead(const ResponseOut& head) override;
  void sendBody(BodyCursor& cursor, size_t max_queued) override;
  void endResponse() override;
  void readRequestBody(uint64_t length, bool expect_continue) override;
  void abort() override { closeNow(); }
  const char* tlsVersion() const override;
  int socketFd() const override;

  static void readCb(bufferevent* bev, void* arg);
  static void writeCb(bufferevent* bev, void* arg);
  static void eventCb(bufferevent* bev, short what, void* arg);

  void onRead();
  void onWriteDrained();
  void onEvent(short what);

  void parseRequest();                       // Recv
  void startCleartextHttp2();                // h2c: the session takes the connection over
  void readBody();                           // a forwarded request's body, once it is all here
  void onResponseSent();                     // Log (the exchange's), then next request or close
  void closeNow();
  // Closes a connection we chose to end after its last bytes (an answer with Connection: close,
  // a GOAWAY): our side is shut down at once, and what the viewer still sends is read and dropped
  // for a short, bounded while, so that the close does not become a TCP reset, which can make the
  // viewer's kernel discard our last bytes unread. Deletes this later (closeNow), never at once.
  void closeLingering();
  // Plaintext HTTP/1.1 writes without the bufferevent's write event (two epoll_ctl per response):
  // what the Framing methods queue goes out in one write at the end of the loop iteration
  // (flushCb) or at once when a response ends; the write event is armed only when the socket
  // did not take everything.
  void scheduleFlush();
  void writeNow();
  static void flushCb(evutil_socket_t, short, void* arg);
  // Plaintext reads without the bufferevent's (which asks the kernel how much is readable,
  // one ioctl per read): our own read event, registered once, and a timer for the read
  // timeout (neither costs a system call per request). TLS connections read through the
  // openssl bufferevent.
  void enableRead();
  void disableRead();
  static void readEventCb(evutil_socket_t fd, short what, void* arg);
  static void readTimeoutCb(evutil_socket_t, short, void* arg);
  static void lingerCb(evutil_socket_t fd, short what, void* arg);
  void setReadTimeout(std::chrono::milliseconds t);

  // const after construction
  Worker& worker_;
  const uint64_t id_;
  const size_t metric_slot_;  // in connections_active_by_listener
  bufferevent* bev_ = nullptr;
  const tls::TlsStatePtr tls_;  // non-null: TLS connection (never write to the fd directly)

  Viewer viewer_;
  Exchange exchange_{worker_, *this, viewer_};
  // HTTP/2 once ALPN chose h2: the connection's framing from then on (exchange_ stays unused).
  std::unique_ptr<Http2Session> h2_;

  bool close_after_response_ = false;
  bool handshake_done_ = false;  // TLS: counted as ok or failed once
  bool closing_ = false;
  event* flush_ = nullptr;      // plaintext: the deferred write (scheduleFlush); null on TLS
  event* read_ = nullptr;       // plaintext: the socket's read event; null on TLS
  event* read_timer_ = nullptr; // plaintext: the read timeout (setReadTimeout)
  bool reading_ = false;        // plaintext: read_ is registered
  std::chrono::milliseconds read_timeout_{0};
  int64_t send_timeout_ms_ = -1;  // the write timeout last given to the bufferevent
  bool linger_on_close_ = false;  // an error answer ends the connection: linger (closeLingering)
  event* linger_ = nullptr;     // closeLingering: reads and drops what the viewer still sends
  size_t linger_bytes_ = 0;     // dropped so far (bounded)
  std::chrono::steady_clock::time_point linger_until_;
  bool counted_active_ = false;  // start() counted this connection as active
  // The request in progress, as HTTP/1.1 frames it.
  bool keep_alive_ = true;
  int version_minor_ = 1;
  uint64_t request_body_length_ = 0;
  bool chunked_out_ = false;     // the response body is chunked
  bool body_bounded_ = false;    // the last sendBody stopped at its bound: onWritable on drain
  bool file_runs_ = false;
  bool served_any_ = false;      // a response was sent (h2c must open the connection)       // the response queued body runs by file reference (sendfile)
  int write_depth_ = 0;       // responses finished inside one callback (pipelining)
  static constexpr int kMaxWriteDepth = 16;
};

}  // namespace streamedge::proxy
