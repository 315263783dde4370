// Http2Session: the HTTP/2 framing of a viewer connection (RFC 9113), through nghttp2's server
// session. A TLS connection whose ALPN chose "h2" hands its bufferevent to one; each stream
// becomes an Exchange (proxy/exchange.h) running the same request steps as HTTP/1.1. The
// request head is rebuilt as HTTP/1.1 field lines and goes through the same strict parser, so
// that both framings feed the steps identical requests.
//
// Bodies go out by reference: DATA frames are written by nghttp2's send_data_callback
// (NGHTTP2_DATA_FLAG_NO_COPY) as a 9-byte frame header plus evbuffer references into the cache
// object's pinned chunks. Backpressure: nghttp2 writes into the connection's output only while
// it holds less than kOutputHighWater; beyond, streams wait for the socket, and a stream's
// viewer window bounds what it may hold (flow control, RFC 9113 §5.2).
//
// Limits: [server] http2_max_concurrent_streams, http2_stream_window, http2_connection_window;
// the decoded header list is bounded by [server] max_header_bytes (431 on that stream; over four
// times that, an HPACK bomb, the connection is closed).
//
// Floods (RFC 9113 §10.5): frames are counted as their headers arrive (on_begin_frame, so that
// frames nghttp2 ignores count too) in a fixed window of [server] http2_abuse_interval; a
// connection past its budget of RST_STREAM (rapid reset, CVE-2023-44487), SETTINGS, PING,
// PRIORITY, WINDOW_UPDATE or empty non-final DATA frames gets GOAWAY ENHANCE_YOUR_CALM. A header
// block is bounded in wire bytes (http2_max_header_block) and CONTINUATION frames
// (http2_max_continuations, nghttp2's own check; CVE-2024-27316). A tick checks the timeouts: the
// first complete request head within header_timeout (and any header block once begun), no
// stream for idle_timeout (graceful GOAWAY), and a stream (reset) or the connection (closed) with
// bytes to send at a zero send window beyond http2_zero_window_timeout. Each limit that fires
// counts in WorkerCounters::http2_abuse and goes to the security log once per connection and kind.
//
// Worker thread only. Owned by its ClientConnection (the transport), which it asks to close.
#pragma once

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <nghttp2/nghttp2.h>

#include <chrono>
#include <cstdint>
#include <array>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "proxy/exchange.h"
#include "proxy/shared_state.h"

namespace streamedge::proxy {

class ClientConnection;
class Worker;

class Http2Session {
 public:
  Http2Session(Worker& worker, ClientConnection& connection, bufferevent* bev, Viewer& viewer,
               const char* tls_version);
  ~Http2Session();
  Http2Session(const Http2Session&) = delete;
  Http2Session& operator=(const Http2Session&) = delete;

  // Sends the server preface (SETTINGS) and reads what the viewer already sent. False: the
  // session could not be made (close the connection).
  bool start();

  // The transport's events. Each may close the connection (delete this): the last thing the
  // caller does.
  void onRead();
  void onWriteDrained();
  void onWake();
  // A read timeout: nothing to wait for from a viewer whose streams are all waiting on us.
  // True when the connection should stay open.
  bool keepOnReadTimeout() const { return !streams_.empty(); }

  // No stream open (graceful stop closes these).
  bool idle() const { return streams_.empty(); }
  // GOAWAY with the last stream id: streams in flight finish, then the connection closes.
  void goAway();

 private:
  class Stream;

  static ssize_t readBodyCb(nghttp2_session* session, int32_t stream_id, uint8_t* buf,
                            size_t length, uint32_t* flags, nghttp2_data_source* source,
                            void* user_data);
  static ssize_t sendCb(nghttp2_session* session, const uint8_t* data, size_t length, int flags,
                        void* user_data);
  static int sendDataCb(nghttp2_session* session, nghttp2_frame* frame, const uint8_t* framehd,
                        size_t length, nghttp2_data_source* source, void* user_data);
  static int beginHeadersCb(nghttp2_session* session, const nghttp2_frame* frame,
                            void* user_data);
  static int headerCb(nghttp2_session* session, const nghttp2_frame* frame, const uint8_t* name,
                      size_t namelen, const uint8_t* value, size_t valuelen, uint8_t flags,
                      void* user_data);
  static int frameRecvCb(nghttp2_session* session, const nghttp2_frame* frame, void* user_data);
  static int dataChunkCb(nghttp2_session* session, uint8_t flags, int32_t stream_id,
                         const uint8_t* data, size_t len, void* user_data);
  static int streamCloseCb(nghttp2_session* session, int32_t stream_id, uint32_t error_code,
                           void* user_data);
  static int beginFrameCb(nghttp2_session* session, const nghttp2_frame_hd* hd, void* user_data);
  static void tickCb(evutil_socket_t, short, void* arg);

  // One more frame of a budgeted kind in this interval; false (and the connection terminated)
  // past `budget`.
  bool spend(Http2Abuse kind, uint32_t budget);
  // A limit fired: counted, logged once per connection and kind; with `terminate`, GOAWAY with
  // `code` and no more reading.
  void abuse(Http2Abuse kind, bool terminate, uint32_t code = NGHTTP2_ENHANCE_YOUR_CALM);
  void onTick();  // the timeouts; may delete this

  Stream* find(int32_t stream_id);
  // Runs the request of a stream whose head (and body, when it has one) arrived.
  void startRequest(Stream& stream);
  // Lets nghttp2 write what it may, tells streams whose bytes went out, and closes the
  // connection when the session is over. May delete this.
  void flush();
  void close();  // deletes this (and the connection)

  // const after construction
  Worker& worker_;
  ClientConnection& connection_;
  bufferevent* bev_;  // the connection's
  Viewer& viewer_;
  const char* const tls_version_;

  nghttp2_session* session_ = nullptr;
  std::unordered_map<int32_t, std::unique_ptr<Stream>> streams_;
  std::vector<int32_t> progressed_;  // streams whose body went out in the last send (scratch)
  std::vector<nghttp2_nv> nv_;       // response head scratch
  std::string nv_names_;             // lowercased names behind nv_
  bool flushing_ = false;
  bool going_away_ = false;
  bool terminating_ = false;  // a limit fired: GOAWAY queued, the rest is ignored

  // Flood accounting and timeouts.
  event* tick_ = nullptr;
  std::chrono::steady_clock::time_point started_{};
  std::chrono::steady_clock::time_point idle_since_{};       // no stream open since
  std::chrono::steady_clock::time_point window_start_{};     // of the counting interval
  std::chrono::steady_clock::time_point conn_zero_since_{};  // connection window at 0 since
  std::array<uint32_t, kHttp2AbuseKinds> spent_{};           // frames in this interval
  uint32_t logged_ = 0;        // kinds already in the security log (bit per Http2Abuse)
  uint64_t block_bytes_ = 0;   // wire bytes of the header block being received
  bool any_request_ = false;   // a request head arrived complete
};

}  // namespace streamedge::proxy
