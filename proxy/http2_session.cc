#include "proxy/http2_session.h"

#include <event2/buffer.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstring>

#include "cache/cache_key.h"
#include "proxy/access_log.h"
#include "proxy/security_log.h"
#include "proxy/client_connection.h"
#include "proxy/worker.h"

namespace streamedge::proxy {

namespace {

using Clock = std::chrono::steady_clock;

// nghttp2 writes into the connection's output only below this; the rest waits for the socket.
constexpr size_t kOutputHighWater = 256 * 1024;
// Cleartext (h2c): DATA payloads below this are copied into the output, larger ones referenced
// (sendDataCb).
constexpr size_t kCopyPayloadBelow = 4096;
// TLS: a DATA frame (9-byte header and payload) fills one whole TLS record at most (16 KiB of
// plaintext, RFC 8446 §5.1), so that every frame is one record and one write (sendDataCb).
constexpr size_t kTlsRecordBytes = 16384;
constexpr size_t kTlsFramePayload = kTlsRecordBytes - 9;

void unpinBody(const void*, size_t, void* pin) { cache::Body::unpin(pin); }

// A decoded header list this many times over max_header_bytes is an HPACK bomb, not a big
// cookie: the connection goes, not just the stream.
constexpr uint64_t kHeaderBombFactor = 4;

bool unset(Clock::time_point t) { return t == Clock::time_point{}; }

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
  bool responding = false;        // the response head was submitted
  Clock::time_point zero_since{}; // has bytes to send at a zero send window since

  // Resets the stream (RFC 9113 §8.1: a response without END_STREAM is incomplete).
  void cancel(uint32_t code) {
    aborted = true;
    cursor = nullptr;
    exchange_.reset();
    nghttp2_submit_rst_stream(session_.session_, NGHTTP2_FLAG_NONE, id_, code);
  }

  // Framing.
  void sendHead(const ResponseOut& head) override;
  void sendBody(BodyCursor& cursor, size_t max_queued) override;
  void endResponse() override;
  void readRequestBody(uint64_t length, bool expect_continue) override;
  void abort() override;
  const char* tlsVersion() const override { return session_.tls_version_; }
  int socketFd() const override {
    return session_.bev_ ? static_cast<int>(bufferevent_getfd(session_.bev_)) : -1;
  }

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
  responding = true;
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
  // The viewer must see the response broken.
  cancel(NGHTTP2_INTERNAL_ERROR);
}

// --- the session --------------------------------------------------------------------------

Http2Session::Http2Session(Worker& worker, ClientConnection& connection, bufferevent* bev,
                           Viewer& viewer, const char* tls_version)
    : worker_(worker), connection_(connection), bev_(bev), viewer_(viewer),
      tls_version_(tls_version) {
  viewer_.http2 = true;  // every stream's exchange counts under protocol="h2"
}

Http2Session::~Http2Session() {
  if (tick_) event_free(tick_);
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
  nghttp2_session_callbacks_set_on_begin_frame_callback(callbacks, beginFrameCb);
  const conf::ServerConfig& server = worker_.config()->server;
  nghttp2_option* options = nullptr;
  if (nghttp2_option_new(&options) != 0) {
    nghttp2_session_callbacks_del(callbacks);
    return false;
  }
  nghttp2_option_set_max_continuations(options, server.http2_max_continuations);
  // nghttp2's own rapid-reset limiter stays looser than ours (which counts and logs).
  const uint64_t interval_ms = static_cast<uint64_t>(server.http2_abuse_interval.count());
  const uint64_t resets = server.http2_max_resets;
  nghttp2_option_set_stream_reset_rate_limit(
      options, std::max<uint64_t>(1000, 2 * resets),
      std::max<uint64_t>(33, (2 * resets * 1000 + interval_ms - 1) / interval_ms));
  const int rv = nghttp2_session_server_new2(&session_, callbacks, this, options);
  nghttp2_option_del(options);
  nghttp2_session_callbacks_del(callbacks);
  if (rv != 0) {
    session_ = nullptr;
    return false;
  }
  started_ = idle_since_ = window_start_ = Clock::now();
  // The timeouts are the tick's from here (the transport's read timeout would count PINGs as a
  // request under way).
  connection_.setReadTimeout(std::chrono::milliseconds(0));
  const auto shortest = std::min({server.header_timeout, server.idle_timeout,
                                  server.http2_zero_window_timeout});
  const auto period = std::clamp<std::chrono::milliseconds::rep>(shortest.count() / 4, 50, 1000);
  tick_ = event_new(worker_.base(), -1, EV_PERSIST, tickCb, this);
  const timeval tv{static_cast<time_t>(period / 1000), static_cast<suseconds_t>((period % 1000) * 1000)};
  if (!tick_ || event_add(tick_, &tv) != 0) return false;
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
  if (n > 0 && (terminating_ || (going_away_ && !nghttp2_session_want_read(session_)))) {
    // GOAWAY is queued: what the viewer still sends is dropped unread, but read, so that the
    // close does not turn into a TCP reset that could discard the GOAWAY before it is read.
    evbuffer_drain(in, n);
  } else if (n > 0) {
    const uint8_t* data = evbuffer_pullup(in, static_cast<ev_ssize_t>(n));
    const ssize_t used = nghttp2_session_mem_recv(session_, data, n);
    if (used < 0) {
      // A fatal error (protocol errors nghttp2 answers itself, with the GOAWAY RFC 9113 names).
      // Tell the viewer why when it is ours to tell, then close.
      const int err = static_cast<int>(used);
      evbuffer_drain(in, n);
      if (err == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS) {
        abuse(Http2Abuse::kContinuation, true);
      } else if (err == NGHTTP2_ERR_FLOODED) {
        // Too many SETTINGS/PING acknowledgements queued: the viewer does not read them.
        abuse(spent_[static_cast<size_t>(Http2Abuse::kSettingsFlood)] >
                      spent_[static_cast<size_t>(Http2Abuse::kPingFlood)]
                  ? Http2Abuse::kSettingsFlood
                  : Http2Abuse::kPingFlood,
              true);
      } else if (!terminating_) {
        std::fprintf(stderr, "streamedge: HTTP/2 connection error: %s\n", nghttp2_strerror(err));
        terminating_ = true;
        nghttp2_session_terminate_session(
            session_, err == NGHTTP2_ERR_BAD_CLIENT_MAGIC ? NGHTTP2_PROTOCOL_ERROR
                                                          : NGHTTP2_INTERNAL_ERROR);
      }
      going_away_ = true;
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

void Http2Session::close() { connection_.closeLingering(); }

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
                                 uint32_t* flags, nghttp2_data_source* source, void* user_data) {
  auto* s = static_cast<Stream*>(source->ptr);
  if (static_cast<Http2Session*>(user_data)->tls_version_) {
    length = std::min(length, kTlsFramePayload);  // one frame, one TLS record (sendDataCb)
  }
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
  if (frame->data.padlen > 0) return NGHTTP2_ERR_CALLBACK_FAILURE;  // we never pad
  if (s->inline_pos < s->inline_body.size()) {
    evbuffer_add(out, framehd, 9);
    evbuffer_add(out, s->inline_body.data() + s->inline_pos, length);  // a few bytes of text
    s->inline_pos += length;
    return 0;
  }
  BodyCursor& c = *s->cursor;
  size_t left = length;
  if (self->tls_version_) {
    // The openssl bufferevent encrypts each piece of its output buffer apart, one record and
    // one write each: header and payload are copied into one piece, so that a frame (at most
    // a record's worth, readBodyCb) is one record instead of a 9-byte record beside a 16 KiB
    // one. The copy costs less than the record and the write it saves.
    evbuffer_iovec vec;
    if (evbuffer_reserve_space(out, static_cast<ev_ssize_t>(9 + length), &vec, 1) != 1) {
      return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    auto* at = static_cast<uint8_t*>(vec.iov_base);
    std::memcpy(at, framehd, 9);
    at += 9;
    while (left > 0) {
      const uint8_t* data = nullptr;
      size_t n = c.body->peek(c.pos, &data);
      if (n == 0) return NGHTTP2_ERR_CALLBACK_FAILURE;  // read said these bytes exist
      n = std::min(n, left);
      std::memcpy(at, data, n);
      at += n;
      c.pos += n;
      left -= n;
    }
    vec.iov_len = 9 + length;
    evbuffer_commit_space(out, &vec, 1);
    self->progressed_.push_back(s->id());
    return 0;
  }
  evbuffer_add(out, framehd, 9);
  // Cleartext: references (writev takes them as they are); a small payload is copied beside
  // its header.
  const bool copy = length < kCopyPayloadBelow;
  while (left > 0) {
    const uint8_t* data = nullptr;
    void* pin = nullptr;
    size_t n = copy ? c.body->peek(c.pos, &data) : c.body->peekPinned(c.pos, &data, &pin);
    if (n == 0) return NGHTTP2_ERR_CALLBACK_FAILURE;  // read said these bytes exist
    n = std::min(n, left);
    if (copy) {
      evbuffer_add(out, data, n);
    } else {
      evbuffer_add_reference(out, data, n, unpinBody, pin);
    }
    c.pos += n;
    left -= n;
  }
  self->progressed_.push_back(s->id());
  return 0;
}

int Http2Session::beginHeadersCb(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
  auto* self = static_cast<Http2Session*>(user_data);
  if (self->terminating_) return 0;
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
  if (self->terminating_) return 0;
  Stream* s = self->find(frame->hd.stream_id);
  if (!s || s->started) return 0;  // trailers: not needed
  // RFC 9113 §6.5.2: name + value + 32 per field; over our limit → 431 on this stream.
  s->header_bytes += namelen + valuelen + 32;
  const uint64_t limit = self->worker_.config()->server.max_header_bytes;
  if (s->header_bytes > limit) s->too_large = true;
  if (s->header_bytes > kHeaderBombFactor * limit) {
    self->abuse(Http2Abuse::kHeaderList, true);
    return 0;
  }
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
  if (self->terminating_) return 0;
  const bool end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
    Stream* s = self->find(frame->hd.stream_id);
    if (!s) return 0;
    s->end_stream = end_stream;
    self->any_request_ = true;
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
  if (self->streams_.empty()) self->idle_since_ = Clock::now();
  return 0;
}

int Http2Session::beginFrameCb(nghttp2_session*, const nghttp2_frame_hd* hd, void* user_data) {
  auto* self = static_cast<Http2Session*>(user_data);
  if (self->terminating_) return 0;
  const conf::ServerConfig& server = self->worker_.config()->server;
  switch (hd->type) {
    case NGHTTP2_HEADERS:
    case NGHTTP2_CONTINUATION:
      // CVE-2024-27316: the block is bounded on the wire, whatever it decodes to.
      self->block_bytes_ = hd->type == NGHTTP2_HEADERS ? hd->length : self->block_bytes_ + hd->length;
      if (self->block_bytes_ > server.http2_max_header_block_bytes) {
        self->abuse(Http2Abuse::kContinuation, true);
      }
      break;
    case NGHTTP2_RST_STREAM:
      self->spend(Http2Abuse::kRapidReset, server.http2_max_resets);
      break;
    case NGHTTP2_SETTINGS:
      self->spend(Http2Abuse::kSettingsFlood, server.http2_max_settings);
      break;
    case NGHTTP2_PING:
      self->spend(Http2Abuse::kPingFlood, server.http2_max_pings);
      break;
    case NGHTTP2_PRIORITY:
      self->spend(Http2Abuse::kPriorityFlood, server.http2_max_priority);
      break;
    case NGHTTP2_WINDOW_UPDATE:
      self->spend(Http2Abuse::kWindowUpdateFlood, server.http2_max_window_updates);
      break;
    case NGHTTP2_DATA:
      if (hd->length == 0 && (hd->flags & NGHTTP2_FLAG_END_STREAM) == 0) {
        self->spend(Http2Abuse::kEmptyData, server.http2_max_empty_data);
      }
      break;
    default:
      break;
  }
  return 0;
}

bool Http2Session::spend(Http2Abuse kind, uint32_t budget) {
  const Clock::time_point now = Clock::now();
  if (now - window_start_ >= worker_.config()->server.http2_abuse_interval) {
    window_start_ = now;
    spent_.fill(0);
  }
  if (++spent_[static_cast<size_t>(kind)] <= budget) return true;
  abuse(kind, true);
  return false;
}

void Http2Session::abuse(Http2Abuse kind, bool terminate, uint32_t code) {
  WorkerCounters& c = worker_.counters();
  c.add(c.http2_abuse[static_cast<size_t>(kind)]);
  const uint32_t bit = 1u << static_cast<unsigned>(kind);
  if ((logged_ & bit) == 0) {
    logged_ |= bit;
    AccessLog& security = worker_.shared().security_log;
    if (security.enabled()) {
      const conf::AddressAnonymization mode = worker_.config()->log.client_address;
      if (viewer_.log_client_mode != mode) {
        anonymizeAddress(viewer_.address(), mode, viewer_.log_client);
        viewer_.log_client_mode = mode;
      }
      SecurityEvent e;
      e.time_unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
      e.event = "http2_abuse";
      e.reason = http2AbuseName(kind);
      e.vhost = "-";
      e.client = viewer_.log_client;
      e.method = "-";
      e.path = "-";
      e.source = terminate ? "connection" : "stream";
      std::string line;
      formatSecurityLogLine(e, line);
      security.append(line);
    }
  }
  if (!terminate || terminating_) return;
  terminating_ = true;
  going_away_ = true;
  nghttp2_session_terminate_session(session_, code);
}

void Http2Session::tickCb(evutil_socket_t, short, void* arg) {
  static_cast<Http2Session*>(arg)->onTick();
}

void Http2Session::onTick() {
  const conf::ServerConfig& server = worker_.config()->server;
  const Clock::time_point now = Clock::now();
  if (!terminating_) {
    // Header timeout: the first complete request head, and any header block once begun (one
    // left open blocks the whole connection, RFC 9113 §6.10).
    bool late = !any_request_ && now - started_ > server.header_timeout;
    for (const auto& [id, stream] : streams_) {
      if (!stream->started && now - stream->head_time > server.header_timeout) late = true;
    }
    if (late) abuse(Http2Abuse::kHeaderTimeout, true, NGHTTP2_NO_ERROR);
  }
  if (!terminating_) {
    // Zero-window stalls: bytes to send, no window to send them in.
    const bool conn_closed = nghttp2_session_get_remote_window_size(session_) <= 0;
    bool waiting_on_connection = false;
    std::vector<int32_t> stalled;
    for (const auto& [id, stream] : streams_) {
      Stream& st = *stream;
      if (!st.responding || st.aborted || st.deferred) {
        st.zero_since = {};
        continue;
      }
      if (nghttp2_session_get_stream_remote_window_size(session_, id) > 0) {
        st.zero_since = {};
        waiting_on_connection = waiting_on_connection || conn_closed;
        continue;
      }
      if (unset(st.zero_since)) {
        st.zero_since = now;
      } else if (now - st.zero_since > server.http2_zero_window_timeout) {
        stalled.push_back(id);
      }
    }
    for (int32_t id : stalled) {
      if (Stream* st = find(id)) {
        abuse(Http2Abuse::kZeroWindow, false);
        st->cancel(NGHTTP2_CANCEL);
      }
    }
    if (!waiting_on_connection) {
      conn_zero_since_ = {};
    } else if (unset(conn_zero_since_)) {
      conn_zero_since_ = now;
    } else if (now - conn_zero_since_ > server.http2_zero_window_timeout) {
      abuse(Http2Abuse::kZeroWindow, true);
    }
  }
  // Idle: no stream for idle_timeout; GOAWAY and close as for a graceful stop.
  if (!going_away_ && streams_.empty() && any_request_ &&
      now - idle_since_ > server.idle_timeout) {
    goAway();
    return;  // goAway() flushed (and may have closed)
  }
  flush();  // may close
}

void Http2Session::startRequest(Stream& s) {
  s.started = true;
  Exchange& exchange = s.exchange();
  if (s.too_large) {
    abuse(Http2Abuse::kHeaderList, false);
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
