#include "proxy/http2_session.h"

#include <event2/buffer.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstring>

#include "cache/cache_key.h"
#include "proxy/client_connection.h"
#include "proxy/worker.h"

namespace streamedge::proxy {

namespace {

using Clock = std::chrono::steady_clock;

// nghttp2 writes into the connection's output only below this; the rest waits for the socket.
constexpr size_t kOutputHighWater = 256 * 1024;

void unpinBody(const void*, size_t, void* pin) { cache::Body::unpin(pin); }

bool connectionSpecific(std::string_view lower_name) {
  // RFC 9113 §8.2.2: never in an HTTP/2 message.
  return lower_name == "connection" || lower_name == "keep-alive" ||
         lower_name == "proxy-connection" || lower_name == "transfer-encoding" ||
         lower_name == "upgrade";
}

}  // namespace

// One stream: the framing of one exchange.
class Http2Session::Stream final : public Framing {
 public:
  Stream(Http2Session& session, int32_t id)
      : session_(session), id_(id), exchange_(session.worker_, *this, session.viewer_) {}
  ~Stream() { exchange_.reset(); }

  Exchange& exchange() { return exchange_; }
  int32_t id() const { return id_; }

  // The request as it arrives.
  std::string method, path, authority, scheme;
  std::string fields;          // "name: value\r\n" lines of the regular fields
  std::string host_field;      // a host field, used when there is no :authority
  size_t header_bytes = 0;     // decoded header list size (RFC 9113 §6.5.2 counting)
  bool too_large = false;
  bool started = false;        // the exchange runs
  bool end_stream = false;     // the viewer sent all of its request
  bool body_wanted = false;    // the exchange waits for the request body
  uint64_t body_length = 0;
  std::string request_body;    // received before the exchange asked for it
  Clock::time_point head_time{};

  // The response, as nghttp2 pulls it.
  BodyCursor* cursor = nullptr;   // null until the exchange sends body bytes
  std::string inline_body;        // a synthesized answer's body
  size_t inline_pos = 0;
  bool deferred = false;          // the read callback found nothing yet
  bool ended = false;             // the exchange queued its whole response
  bool aborted = false;

  // Framing.
  void sendHead(const ResponseOut& head) override;
  void sendBody(BodyCursor& cursor, size_t max_queued) override;
  void endResponse() override;
  void readRequestBody(uint64_t length, bool expect_continue) override;
  void abort() override;
  const char* tlsVersion() const override { return session_.tls_version_; }

  void resume() {
    if (deferred) {
      deferred = false;
      nghttp2_session_resume_data(session_.session_, id_);
    }
  }

 private:
  Http2Session& session_;
  const int32_t id_;
  Exchange exchange_;
};

void Http2Session::Stream::sendHead(const ResponseOut& head) {
  Http2Session& s = session_;
  // Names lowercased into one buffer first (nghttp2 copies the list when it is submitted), then
  // the list pointing into it.
  s.nv_names_.clear();
  struct Place {
    size_t name_at, name_len;
    std::string_view value;
  };
  std::vector<Place> places;
  places.reserve(16);
  std::string_view rest = head.fields;
  while (!rest.empty()) {
    const size_t eol = rest.find("\r\n");
    const std::string_view line = rest.substr(0, eol);
    rest = eol == std::string_view::npos ? std::string_view() : rest.substr(eol + 2);
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) continue;
    const size_t at = s.nv_names_.size();
    for (char c : line.substr(0, colon)) {
      s.nv_names_ += static_cast<char>(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
    }
    if (connectionSpecific(std::string_view(s.nv_names_).substr(at))) {
      s.nv_names_.resize(at);
      continue;
    }
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    places.push_back({at, colon, value});
  }
  char status[8];
  const auto [status_end, ec] = std::to_chars(status, status + sizeof status, head.status);
  s.nv_.clear();
  // RFC 9113 §8.3.2: :status first.
  s.nv_.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(":status")),
                   reinterpret_cast<uint8_t*>(status), 7,
                   static_cast<size_t>(status_end - status), NGHTTP2_NV_FLAG_NONE});
  for (const Place& p : places) {
    s.nv_.push_back({reinterpret_cast<uint8_t*>(s.nv_names_.data() + p.name_at),
                     reinterpret_cast<uint8_t*>(const_cast<char*>(p.value.data())), p.name_len,
                     p.value.size(), NGHTTP2_NV_FLAG_NONE});
  }
  inline_body.assign(head.inline_body);
  inline_pos = 0;
  nghttp2_data_provider provider{};
  provider.source.ptr = this;
  provider.read_callback = readBodyCb;
  const bool has_data = head.body_follows || !inline_body.empty();
  nghttp2_submit_response(s.session_, id_, s.nv_.data(), s.nv_.size(),
                          has_data ? &provider : nullptr);
}

void Http2Session::Stream::sendBody(BodyCursor& c, size_t) {
  // Flow control bounds what a stream holds; nghttp2 pulls as its windows allow.
  cursor = &c;
  resume();
}

void Http2Session::Stream::endResponse() {
  ended = true;
  resume();  // the last (empty) DATA frame carries END_STREAM
}

void Http2Session::Stream::readRequestBody(uint64_t length, bool) {
  body_wanted = true;
  body_length = length;
  if (end_stream) {
    exchange_.requestBody() = std::move(request_body);
    body_wanted = false;
    exchange_.onRequestBody();
  }
}

void Http2Session::Stream::abort() {
  // The viewer must see the response broken: reset the stream (RFC 9113 §8.1: a response
  // without END_STREAM is incomplete).
  aborted = true;
  cursor = nullptr;
  exchange_.reset();
  nghttp2_submit_rst_stream(session_.session_, NGHTTP2_FLAG_NONE, id_, NGHTTP2_INTERNAL_ERROR);
}

// --- the session --------------------------------------------------------------------------

Http2Session::Http2Session(Worker& worker, ClientConnection& connection, bufferevent* bev,
                           Viewer& viewer, const char* tls_version)
    : worker_(worker), connection_(connection), bev_(bev), viewer_(viewer),
      tls_version_(tls_version) {}

Http2Session::~Http2Session() {
  streams_.clear();  // exchanges unsubscribe before the session goes
  if (session_) nghttp2_session_del(session_);
}

bool Http2Session::start() {
  nghttp2_session_callbacks* callbacks = nullptr;
  if (nghttp2_session_callbacks_new(&callbacks) != 0) return false;
  nghttp2_session_callbacks_set_send_callback(callbacks, sendCb);
  nghttp2_session_callbacks_set_send_data_callback(callbacks, sendDataCb);
  nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, beginHeadersCb);
  nghttp2_session_callbacks_set_on_header_callback(callbacks, headerCb);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, frameRecvCb);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, dataChunkCb);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, streamCloseCb);
  const int rv = nghttp2_session_server_new(&session_, callbacks, this);
  nghttp2_session_callbacks_del(callbacks);
  if (rv != 0) {
    session_ = nullptr;
    return false;
  }
  const conf::ServerConfig& server = worker_.config()->server;
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, server.http2_max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE,
       static_cast<uint32_t>(server.http2_stream_window_bytes)},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, static_cast<uint32_t>(server.max_header_bytes)},
  };
  if (nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings,
                              sizeof settings / sizeof settings[0]) != 0 ||
      nghttp2_session_set_local_window_size(
          session_, NGHTTP2_FLAG_NONE, 0,
          static_cast<int32_t>(server.http2_connection_window_bytes)) != 0) {
    return false;
  }
  if (evbuffer_get_length(bufferevent_get_input(bev_)) > 0) {
    onRead();  // the preface came with the handshake; may close
    return true;
  }
  flush();
  return true;
}

void Http2Session::onRead() {
  evbuffer* in = bufferevent_get_input(bev_);
  const size_t n = evbuffer_get_length(in);
  if (n > 0) {
    const uint8_t* data = evbuffer_pullup(in, static_cast<ev_ssize_t>(n));
    const ssize_t used = nghttp2_session_mem_recv(session_, data, n);
    if (used < 0) {
      // A connection error: nghttp2 has queued the GOAWAY RFC 9113 names; send it, then close.
      std::fprintf(stderr, "streamedge: HTTP/2 connection error: %s\n",
                   nghttp2_strerror(static_cast<int>(used)));
      evbuffer_drain(in, n);
      going_away_ = true;
      bufferevent_disable(bev_, EV_READ);
    } else {
      evbuffer_drain(in, static_cast<size_t>(used));
    }
  }
  flush();
}

void Http2Session::onWriteDrained() { flush(); }

void Http2Session::onWake() {
  // Only the streams that were woken (Exchange::onObjectChanged) look at their objects.
  std::vector<int32_t> woken;
  for (auto& [id, stream] : streams_) {
    if (stream->exchange().wakePending()) woken.push_back(id);
  }
  for (int32_t id : woken) {
    if (Stream* s = find(id)) s->exchange().onWake();
  }
  flush();
}

void Http2Session::goAway() {
  if (going_away_) return;
  going_away_ = true;
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(session_), NGHTTP2_NO_ERROR,
                        nullptr, 0);
  flush();
}

Http2Session::Stream* Http2Session::find(int32_t stream_id) {
  auto it = streams_.find(stream_id);
  return it == streams_.end() ? nullptr : it->second.get();
}

void Http2Session::flush() {
  if (flushing_) return;
  flushing_ = true;
  // Bounded: each round either writes or finds nothing more to do.
  for (int round = 0; round < 64; ++round) {
    progressed_.clear();
    if (nghttp2_session_send(session_) != 0) {
      flushing_ = false;
      return close();
    }
    if (progressed_.empty()) break;
    // Streams whose bytes went out move their windows on and finish when done.
    std::vector<int32_t> progressed;
    progressed.swap(progressed_);
    for (int32_t id : progressed) {
      if (Stream* s = find(id); s && !s->aborted) s->exchange().onWritable();
    }
  }
  flushing_ = false;
  const bool over = !nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_);
  if ((over || (going_away_ && streams_.empty())) &&
      evbuffer_get_length(bufferevent_get_output(bev_)) == 0) {
    return close();
  }
}

void Http2Session::close() { connection_.closeNow(); }

// --- nghttp2 callbacks --------------------------------------------------------------------

ssize_t Http2Session::sendCb(nghttp2_session*, const uint8_t* data, size_t length, int,
                             void* user_data) {
  auto* self = static_cast<Http2Session*>(user_data);
  evbuffer* out = bufferevent_get_output(self->bev_);
  if (evbuffer_get_length(out) >= kOutputHighWater) return NGHTTP2_ERR_WOULDBLOCK;
  evbuffer_add(out, data, length);  // control frames and heads: small
  return static_cast<ssize_t>(length);
}

ssize_t Http2Session::readBodyCb(nghttp2_session*, int32_t, uint8_t*, size_t length,
                                 uint32_t* flags, nghttp2_data_source* source, void*) {
  auto* s = static_cast<Stream*>(source->ptr);
  if (s->aborted) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  if (s->inline_pos < s->inline_body.size()) {
    const size_t n = std::min(length, s->inline_body.size() - s->inline_pos);
    *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (s->inline_pos + n == s->inline_body.size() && (s->ended || !s->cursor)) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return static_cast<ssize_t>(n);
  }
  if (s->cursor) {
    const BodyCursor& c = *s->cursor;
    const uint64_t readable = std::min<uint64_t>(c.end, c.body->length());
    if (c.pos < readable) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(length, readable - c.pos));
      *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
      if (c.pos + n == c.end) *flags |= NGHTTP2_DATA_FLAG_EOF;
      return static_cast<ssize_t>(n);
    }
    if (c.pos >= c.end && c.end != BodyCursor::kUnknownEnd) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      return 0;
    }
  }
  if (s->ended) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    return 0;
  }
  s->deferred = true;
  return NGHTTP2_ERR_DEFERRED;
}

int Http2Session::sendDataCb(nghttp2_session*, nghttp2_frame* frame, const uint8_t* framehd,
                             size_t length, nghttp2_data_source* source, void* user_data) {
  auto* self = static_cast<Http2Session*>(user_data);
  auto* s = static_cast<Stream*>(source->ptr);
  evbuffer* out = bufferevent_get_output(self->bev_);
  if (evbuffer_get_length(out) >= kOutputHighWater) return NGHTTP2_ERR_WOULDBLOCK;
  evbuffer_add(out, framehd, 9);
  if (frame->data.padlen > 0) return NGHTTP2_ERR_CALLBACK_FAILURE;  // we never pad
  if (s->inline_pos < s->inline_body.size()) {
    evbuffer_add(out, s->inline_body.data() + s->inline_pos, length);  // a few bytes of text
    s->inline_pos += length;
    return 0;
  }
  BodyCursor& c = *s->cursor;
  size_t left = length;
  while (left > 0) {
    const uint8_t* data = nullptr;
    void* pin = nullptr;
    size_t n = c.body->peekPinned(c.pos, &data, &pin);
    if (n == 0) return NGHTTP2_ERR_CALLBACK_FAILURE;  // read said these bytes exist
    n = std::min(n, left);
    evbuffer_add_reference(out, data, n, unpinBody, pin);
    c.pos += n;
    left -= n;
  }
  self->progressed_.push_back(s->id());
  return 0;
}

int Http2Session::beginHeadersCb(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
  auto* self = static_cast<Http2Session*>(user_data);
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  auto stream = std::make_unique<Stream>(*self, frame->hd.stream_id);
  stream->head_time = Clock::now();
  self->streams_[frame->hd.stream_id] = std::move(stream);
  return 0;
}

int Http2Session::headerCb(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                           size_t namelen, const uint8_t* value, size_t valuelen, uint8_t,
                           void* user_data) {
  auto* self = static_cast<Http2Session*>(user_data);
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  Stream* s = self->find(frame->hd.stream_id);
  if (!s || s->started) return 0;  // trailers: not needed
  // RFC 9113 §6.5.2: name + value + 32 per field; over our limit → 431 on this stream.
  s->header_bytes += namelen + valuelen + 32;
  if (s->header_bytes > self->worker_.config()->server.max_header_bytes) s->too_large = true;
  if (s->too_large) return 0;
  const std::string_view n(reinterpret_cast<const char*>(name), namelen);
  const std::string_view v(reinterpret_cast<const char*>(value), valuelen);
  if (n == ":method") {
    s->method.assign(v);
  } else if (n == ":path") {
    s->path.assign(v);
  } else if (n == ":authority") {
    s->authority.assign(v);
  } else if (n == ":scheme") {
    s->scheme.assign(v);
  } else if (n == "host") {
    s->host_field.assign(v);
  } else {
    s->fields.append(n);
    s->fields.append(": ");
    s->fields.append(v);
    s->fields.append("\r\n");
  }
  return 0;
}

int Http2Session::frameRecvCb(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
  auto* self = static_cast<Http2Session*>(user_data);
  const bool end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
    Stream* s = self->find(frame->hd.stream_id);
    if (!s) return 0;
    s->end_stream = end_stream;
    self->startRequest(*s);
    return 0;
  }
  if (frame->hd.type == NGHTTP2_DATA && end_stream) {
    Stream* s = self->find(frame->hd.stream_id);
    if (!s) return 0;
    s->end_stream = true;
    if (s->body_wanted) {
      s->body_wanted = false;
      s->exchange().requestBody() = std::move(s->request_body);
      s->exchange().onRequestBody();
    }
  }
  return 0;
}

int Http2Session::dataChunkCb(nghttp2_session*, uint8_t, int32_t stream_id, const uint8_t* data,
                              size_t len, void* user_data) {
  auto* self = static_cast<Http2Session*>(user_data);
  Stream* s = self->find(stream_id);
  if (!s) return 0;
  constexpr size_t kMaxRequestBody = 1 << 20;  // as for HTTP/1.1 (413 beyond)
  if (s->request_body.size() + len > kMaxRequestBody) {
    nghttp2_submit_rst_stream(self->session_, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_REFUSED_STREAM);
    return 0;
  }
  s->request_body.append(reinterpret_cast<const char*>(data), len);
  return 0;
}

int Http2Session::streamCloseCb(nghttp2_session*, int32_t stream_id, uint32_t error_code,
                                void* user_data) {
  auto* self = static_cast<Http2Session*>(user_data);
  auto it = self->streams_.find(stream_id);
  if (it == self->streams_.end()) return 0;
  Stream& s = *it->second;
  // Log: a response whose last frame (END_STREAM) went out — the exchange may not have seen its
  // last bytes leave yet; a stream the viewer reset mid-way is not one.
  const Exchange::Phase phase = s.exchange().phase();
  if (!s.aborted && error_code == NGHTTP2_NO_ERROR &&
      (phase == Exchange::Phase::kFlushing || phase == Exchange::Phase::kSending)) {
    s.exchange().onResponseSent();
  }
  self->streams_.erase(it);
  return 0;
}

void Http2Session::startRequest(Stream& s) {
  s.started = true;
  Exchange& exchange = s.exchange();
  if (s.too_large) {
    worker_.counters().add(worker_.counters().bad_requests);
    return exchange.reject(431, "request header fields too large", s.head_time);
  }
  // The request as HTTP/1.1 field lines, through the same strict parser (RFC 9113 §8.3.1:
  // :authority stands for Host).
  const std::string_view host = s.authority.empty() ? std::string_view(s.host_field)
                                                    : std::string_view(s.authority);
  std::string raw;
  raw.reserve(s.method.size() + s.path.size() + host.size() + s.fields.size() + 32);
  raw.append(s.method).append(" ").append(s.path).append(" HTTP/1.1\r\nHost: ");
  raw.append(host).append("\r\n").append(s.fields);
  if (!s.end_stream && s.fields.find("content-length:") == std::string::npos) {
    // A body of unknown length: HTTP/1.1 would have said chunked (refused with 411).
    raw.append("transfer-encoding: chunked\r\n");
  }
  raw.append("\r\n");
  const conf::ServerConfig& server = worker_.config()->server;
  RequestLimits limits;
  limits.max_head_bytes = std::max<size_t>(raw.size(), static_cast<size_t>(server.max_header_bytes));
  limits.max_uri_bytes = static_cast<size_t>(server.max_uri_bytes);
  RequestHead head;
  ParseError err;
  if (!parseRequestHead(raw, limits, head, err)) {
    worker_.counters().add(worker_.counters().bad_requests);
    std::fprintf(stderr, "streamedge: %d bad HTTP/2 request: %s\n", err.status, err.detail);
    return exchange.reject(err.status, err.detail, s.head_time);
  }
  exchange.receive(head, raw, s.head_time);
  exchange.run();
}

}  // namespace streamedge::proxy
