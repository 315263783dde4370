#include "proxy/fill_job.h"

#include <algorithm>
#include <cstdio>

#include "cache/purge_labels.h"
#include "cache/response_head.h"
#include "cache/targeted_cache_control.h"
#include "proxy/worker.h"
#include "streaming/dash_mpd.h"
#include "streaming/freshness.h"
#include "streaming/hls_playlist.h"
#include "streaming/ll_hls.h"

namespace streamedge::proxy {

namespace {

std::string_view pathOf(std::string_view target) {
  size_t q = target.find('?');
  return q == std::string_view::npos ? target : target.substr(0, q);
}

}  // namespace

void FillJob::start(Worker& worker, conf::ConfigPtr config, const conf::RouteConfig& route,
                    cache::FillWriter fill, FillRequest request) {
  auto* job = new FillJob(worker, std::move(config), route, std::move(fill), std::move(request));
  job->id_ = worker.addFill(job);
  job->listened_ = job->fill_.object();
  if (job->listened_) job->listened_->setFillListener(job);
  OriginRequest origin_request;
  origin_request.method = job->request_.method;
  origin_request.target = job->request_.target;
  if (job->request_.pass) {
    origin_request.headers = std::move(job->request_.forward_headers);
  } else {
    // Kept: an answer that says Vary is stored as the variant these fields select.
    origin_request.headers = job->request_.forward_headers;
  }
  origin_request.body = std::move(job->request_.body);
  if (const cache::ObjectRef& stale = job->fill_.stale()) {
    // Revalidation: ask with the stored validators (RFC 9111 §4.3.1).
    if (const std::string* etag = stale->head().find("ETag")) {
      origin_request.headers.emplace_back("If-None-Match", *etag);
    }
    if (const std::string* lm = stale->head().find("Last-Modified")) {
      origin_request.headers.emplace_back("If-Modified-Since", *lm);
    }
  }
  origin_request.headers.emplace_back("Via", "1.1 streamedge");
  // Hedging is for playlists and MPDs (small, on every player's critical path), GET only.
  if (route.hedge_after.count() > 0 && job->kind_ == cache::ContentKind::kPlaylist &&
      origin_request.method == "GET") {
    origin_request.hedge_after = route.hedge_after;
  }
  // The edge's own field between peers is never sent on (to a peer or an origin).
  std::erase_if(origin_request.headers,
                [](const auto& f) { return cache::equalsIgnoreCase(f.first, kPeerField); });
  if (job->config_->cluster.enabled && !job->request_.pass && !job->request_.from_peer &&
      job->fill_.object() &&
      (origin_request.method == "GET" || origin_request.method == "HEAD")) {
    job->tier_ = worker.shared().peers.get();
    if (job->tier_) job->base_request_ = origin_request;
  }
  job->startFetch(std::move(origin_request));
}

void FillJob::startFetch(OriginRequest request) {
  size_t group = route_.origin_group_index;
  peer_ = -1;
  // At most a few peers per fill: each failure marks one down, then the origin is asked.
  if (tier_ && peer_attempts_ < 3) {
    const int p = tier_->choose(fill_.object()->key(), *config_, *worker_.shared().health,
                                std::chrono::steady_clock::now());
    if (p >= 0 && static_cast<size_t>(p) < config_->cluster.peer_group.size() &&
        config_->cluster.peer_group[p] < config_->origin_groups.size()) {
      peer_ = p;
      tier_->acquire(static_cast<size_t>(p));
      group = config_->cluster.peer_group[p];
      request.host = request_.host;
      request.hedge_after = Millis(0);
      const int64_t now_unix = std::chrono::duration_cast<std::chrono::seconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count();
      request.headers.emplace_back(
          std::string(kPeerField),
          tier_->sign(request.method, request.host, request.target, now_unix));
    }
  }
  if (peer_ < 0) worker_.counters().add(worker_.counters().origin_fetches);
  fetch_ = worker_.origins().start(*config_, group, std::move(request), *this);
}

bool FillJob::continueFromOrigin() {
  if (discard_ || !peer_validators_ || !peer_validators_->usable()) return false;
  const size_t group = config_->cluster.peer_group[static_cast<size_t>(peer_)];
  const conf::OriginConfig& from = config_->origin_groups[group].origins.front();
  tier_->release(static_cast<size_t>(peer_));
  peer_ = -1;
  worker_.counters().add(worker_.counters().origin_fetches);
  // Replaces (destroys) the peer's fetch, whose callback this is.
  fetch_ = worker_.origins().continueBody(*config_, route_.origin_group_index, base_request_,
                                          *peer_validators_, body_bytes_, from, *this);
  if (paused_) fetch_->pause();
  return true;
}

void FillJob::retryAfterPeerFailure(const char* why) {
  fetch_.reset();
  tier_->markDown(static_cast<size_t>(peer_), *config_, *worker_.shared().health, why);
  tier_->release(static_cast<size_t>(peer_));
  peer_ = -1;
  peer_retry_ = false;
  discard_ = false;
  ++peer_attempts_;
  startFetch(base_request_);
}

FillJob::FillJob(Worker& worker, conf::ConfigPtr config, const conf::RouteConfig& route,
                 cache::FillWriter fill, FillRequest request)
    : worker_(worker),
      config_(std::move(config)),
      route_(route),
      fill_(std::move(fill)),
      request_(std::move(request)),
      request_time_(SystemClock::instance().wallNow()),
      kind_(cache::classifyPath(pathOf(request_.target))) {}

FillJob::~FillJob() {
  fetch_.reset();  // no callback after this
  if (peer_ >= 0) tier_->release(static_cast<size_t>(peer_));
  if (listened_) listened_->setFillListener(nullptr);  // no wake-up after this
  if (stall_timer_) event_free(stall_timer_);
  worker_.removeFill(id_);
  // fill_ aborts itself if it was not finished.
}

void FillJob::onFillWindowChanged() noexcept {
  if (!wake_pending_.exchange(true, std::memory_order_acq_rel)) worker_.wakeFill(id_);
}

void FillJob::onWake() {
  wake_pending_.store(false, std::memory_order_release);
  if (!listened_) return;
  if (listened_->abandoned()) {
    // An answer that is not kept and that no viewer reads any more: stop fetching it.
    worker_.counters().add(worker_.counters().fills_abandoned);
    fill_.abort();
    delete this;
    return;
  }
  if (paused_ && !listened_->windowPaused()) {
    paused_ = false;
    if (stall_timer_) event_del(stall_timer_);
    if (fetch_) fetch_->resume();
  }
}

void FillJob::stallCb(evutil_socket_t, short, void* arg) { static_cast<FillJob*>(arg)->onStall(); }

void FillJob::onStall() {
  if (!paused_ || !listened_) return;
  // The window has been full this long: the readers holding its start are cut if another
  // reader waits for more (one very slow viewer must not hold every other viewer back).
  if (const size_t cut = listened_->cutSlowestReaders()) {
    worker_.counters().add(worker_.counters().fill_slow_readers_cut, cut);
    std::fprintf(stderr, "streamedge: %zu viewer(s) cut for holding a full fill window for %lld ms "
                 "while others waited\n", cut,
                 static_cast<long long>(config_->cache.ram.fill_stall_timeout.count()));
  }
  const Millis t = config_->cache.ram.fill_stall_timeout;
  const timeval tv{static_cast<time_t>(t.count() / 1000),
                   static_cast<suseconds_t>((t.count() % 1000) * 1000)};
  event_add(stall_timer_, &tv);
}

// An origin that chose a content coding from the Accept-Encoding it was sent, but did not say
// Vary: Accept-Encoding, would have its coded answer stored for every viewer, including those
// that cannot decode it. A shared answer with a Content-Encoding is therefore kept as varying on
// Accept-Encoding too (and says so downstream). An origin that codes whatever it is asked costs
// one copy per normalised Accept-Encoding (at most three), never a wrong answer.
void FillJob::addImpliedVary(cache::ResponseHead& head) const {
  bool coded = false;
  for (const auto& [name, value] : head.headers) {
    if (cache::equalsIgnoreCase(name, "Content-Encoding") && !value.empty() &&
        !cache::equalsIgnoreCase(value, "identity")) {
      coded = true;
    }
  }
  if (!coded) return;
  const cache::VarySpec vary = cache::varyOf(head);
  if (vary.kind == cache::VarySpec::Kind::kAny) return;
  for (const std::string& n : vary.names) {
    if (n == "accept-encoding") return;
  }
  head.headers.emplace_back("Vary", "Accept-Encoding");
}

void FillJob::onOriginResponse(OriginResponse&& response) {
  if (peer_ >= 0) {
    if (response.status >= 500) {
      // A failing peer is skipped at once; its body is read and dropped, then the fill goes on
      // elsewhere (onOriginComplete / onOriginFailed).
      tier_->count(static_cast<size_t>(peer_), PeerResult::kServerError);
      peer_retry_ = true;
      discard_ = true;
      return;
    }
    tier_->count(static_cast<size_t>(peer_), PeerResult::kOk);
    // A whole GET answer: if the peer dies mid-body, the origin group can continue it.
    const bool ranged =
        std::any_of(base_request_.headers.begin(), base_request_.headers.end(),
                    [](const auto& f) { return cache::equalsIgnoreCase(f.first, "Range"); });
    if (response.status == 200 && response.has_body && base_request_.method == "GET" && !ranged) {
      peer_validators_ = resumeValidatorsOf(response.headers, response.content_length);
    }
  }
  const WallTime now = SystemClock::instance().wallNow();
  const conf::CachePolicy& policy = route_.cache;
  // RFC 9213: the fields aimed at this edge alone are stored under reserved names (never sent
  // to viewers); a 304's replace the stored ones like any other field (RFC 9111 §4.3.4).
  cache::internEdgeFields(response.headers,
                          {config_->cache.cache_control_target, config_->cache.surrogate_control});
  // Surrogate-Key and Cache-Tag are for this edge (purge by tag), never for viewers.
  cache::internSurrogateKeys(response.headers);
  if (request_.invalidate) {
    // RFC 9111 §4.4: as soon as the answer is known, whether or not the viewer stays for it.
    const size_t removed = invalidateAfterUnsafe(worker_.shared().cache, *config_,
                                                 *request_.invalidate, response.status,
                                                 response.headers);
    worker_.counters().add(worker_.counters().invalidations, removed);
  }

  if (const cache::ObjectRef& stale = fill_.stale()) {
    if (response.status == 304 && !cache::notModifiedMatches(stale->head(), response.headers)) {
      // About another representation than the one stored: it refreshes nothing (§4.3.4), and
      // there is no body to serve instead. Readers fall back as on an origin failure.
      std::fprintf(stderr, "streamedge: origin 304 with other validators than the stored %s\n",
                   std::string(pathOf(request_.target)).c_str());
      fill_.abort();
      discard_ = true;
      return;
    }
    if (response.status == 304) {
      std::shared_ptr<cache::ResponseHead> merged =
          cache::mergeNotModified(stale->head(), response.headers);
      if (response.origin) {
        merged->filled_by_origin = response.origin->name;
        merged->filled_by_dc = response.origin->dc;
      }
      // The same precedence as for a full answer, over the merged fields.
      const cache::CacheControl cc = cache::selectCacheControl(*merged).cc;
      // The stored body is still the answer: its stream rules still apply. (Its summary is
      // the stale one's, already recorded when it was stored: not recorded again.)
      std::optional<streaming::PlaylistSummary> unused;
      cache::Freshness freshness = cache::computeFreshness(*merged, cc, request_time_, now, kind_,
                                                           policy, streamLifetimeOf(stale, unused));
      fill_.finishNotModified(std::move(merged), freshness);
      if (request_.prefetch_ticket) request_.prefetch_ticket->markStored();  // refreshed
      discard_ = true;
      return;
    }
    // Never a copy past its vhost's retention (cache/retention.h), whatever stale-if-error says.
    if (response.status >= 500 && stale->freshness().withinStaleIfError(now) &&
        !fill_.stalePastRetention(now)) {
      // RFC 5861 §4: the stale object answers instead. Readers of a RAM revalidation hold it
      // and fall back when the fill aborts; a stale SSD copy is known to this fill only, so
      // the fill completes with it.
      if (stale->fromSsd()) {
        fill_.finishWithStale();
      } else {
        fill_.abort();
      }
      discard_ = true;
      return;
    }
  }
  if (response.status == 304) {
    // We did not ask conditionally: an origin that answers 304 anyway is lying.
    std::fprintf(stderr, "streamedge: origin sent 304 to an unconditional request for %s\n",
                 std::string(pathOf(request_.target)).c_str());
    fill_.abort();
    discard_ = true;
    return;
  }

  auto head = std::make_shared<cache::ResponseHead>();
  head->status = response.status;
  head->reason = std::move(response.reason);
  head->content_length = response.has_body ? response.content_length : std::optional<uint64_t>(0);
  if (response.origin) {
    head->filled_by_origin = response.origin->name;
    head->filled_by_dc = response.origin->dc;
  }
  bool has_set_cookie = false;
  for (auto& field : response.headers) {
    if (cache::isHopByHopOrDeliveryField(field.first)) continue;
    if (cache::equalsIgnoreCase(field.first, "Set-Cookie")) has_set_cookie = true;
    head->headers.push_back(std::move(field));
  }
  if (!request_.pass && !request_.vhost.empty()) {
    cache::addPurgeLabels(head->headers, request_.vhost, request_.path);
  }
  // The directives this edge follows: its own target field, CDN-Cache-Control or
  // Surrogate-Control when one is present and valid, else Cache-Control (RFC 9213 §2.1). The
  // viewer's answer keeps the origin's Cache-Control either way.
  const cache::CacheControl cc = cache::selectCacheControl(*head).cc;

  bool storable = false;
  bool shareable = true;
  if (!request_.pass) {
    const cache::StoreDecision decision = cache::decideStore(
        head->status, request_.request_has_authorization, *head, cc, policy);
    storable = decision.store;
    // Stay small: the owner keeps the object; this edge passes it on to its viewers (all of
    // them on this one fill) without keeping a copy.
    if (peer_ >= 0 && config_->cluster.mode == conf::ClusterMode::kStaySmall) storable = false;
    const bool auth_ok = !request_.request_has_authorization || policy.cache_authorized ||
                         cc.is_public || cc.s_maxage.has_value() || cc.must_revalidate;
    // What one viewer's request produced may go to other viewers only if nothing in it is
    // personal: never private/no-store answers, cookies or answers to credentials.
    shareable = !cc.no_store && !cc.is_private && auth_ok &&
                (!has_set_cookie || policy.cache_set_cookie);
    if (shareable && has_set_cookie) {
      // cache_set_cookie: the body is shared, the cookie never is.
      std::erase_if(head->headers, [](const auto& f) {
        return cache::equalsIgnoreCase(f.first, "Set-Cookie");
      });
    }
  }
  if (shareable) addImpliedVary(*head);
  head->buildWire();
  cache::Freshness freshness = cache::computeFreshness(*head, cc, request_time_, now, kind_, policy);
  const cache::FieldLineList sent(request_.forward_headers);
  fill_.publishHead(std::move(head), freshness, storable, shareable, &sent);
}

void FillJob::onOriginData(const uint8_t* data, size_t len) {
  body_bytes_ += len;
  if (discard_) return;
  fill_.append(data, len);
  if (!paused_ && listened_ && listened_->pauseIfWindowFull()) {
    // The readers have not taken the window yet: stop reading the origin until they do.
    paused_ = true;
    worker_.counters().add(worker_.counters().fill_window_pauses);
    fetch_->pause();
    const Millis t = config_->cache.ram.fill_stall_timeout;
    if (t.count() > 0) {
      if (!stall_timer_) stall_timer_ = event_new(worker_.base(), -1, 0, stallCb, this);
      const timeval tv{static_cast<time_t>(t.count() / 1000),
                       static_cast<suseconds_t>((t.count() % 1000) * 1000)};
      event_add(stall_timer_, &tv);
    }
  }
}

std::optional<cache::StreamLifetime> FillJob::streamLifetimeOf(
    const cache::ObjectRef& object, std::optional<streaming::PlaylistSummary>& summary,
    streaming::PrefetchSelection* prefetch,
    std::optional<streaming::DashPrefetchPlan>* dash) const {
  // Freshness from the stream (streaming/freshness.h): only the body knows the target duration,
  // ENDLIST or minimumUpdatePeriod; the origin's headers win where they are stricter.
  if (kind_ != cache::ContentKind::kPlaylist) return std::nullopt;
  // A windowed answer is not kept (its lifetime does not matter) and its blocks may be
  // released by readers on other workers while we would parse them.
  if (!object || !object->headPublished() || object->windowed()) return std::nullopt;
  if (object->head().status != 200) return std::nullopt;
  const cache::Body& body = object->body();
  std::string text;
  uint64_t pos = 0;
  // Bounded: a body over the parsers' limit is refused by them anyway.
  while (text.size() <= streaming::kMaxPlaylistBytes) {
    const uint8_t* data = nullptr;
    const size_t n = body.peek(pos, &data);
    if (n == 0) break;
    text.append(reinterpret_cast<const char*>(data), n);
    pos += n;
  }
  if (text.empty() || text.size() > streaming::kMaxPlaylistBytes) return std::nullopt;
  const std::string_view target(request_.target);
  const size_t q = target.find('?');
  bool blocking = false;
  if (q != std::string_view::npos) {
    const Result<streaming::DeliveryDirectives> d = streaming::parseDeliveryDirectives(target.substr(q + 1));
    blocking = d.isOk() && d->blocking();
  }
  if (request_.live_playlist_url && streaming::looksLikeHls(text)) {
    // Parsed once here for both the lifetime and the blocking-reload summary.
    const Result<streaming::HlsPlaylist> parsed = streaming::parseHlsPlaylist(text);
    if (!parsed.isOk()) return std::nullopt;
    if (const auto* media = std::get_if<streaming::HlsMediaPlaylist>(&parsed.value())) {
      summary = streaming::summarizePlaylist(*media);
      if (prefetch && request_.prefetch_from_playlist) {
        *prefetch = streaming::selectPrefetchTargets(
            *media, request_.path, request_.host, static_cast<size_t>(route_.prefetch_segments));
      }
    }
    return streaming::streamLifetime(parsed.value(), blocking, route_.cache);
  }
  if (dash && request_.prefetch_from_playlist && !streaming::looksLikeHls(text)) {
    // Parsed once here for both the lifetime and the prefetch plan.
    const Result<streaming::DashMpd> mpd = streaming::parseDashMpd(text);
    if (!mpd.isOk()) return std::nullopt;
    if (mpd->dynamic) {
      const double now_s =
          std::chrono::duration<double>(SystemClock::instance().wallNow().time_since_epoch())
              .count();
      *dash = streaming::planDashPrefetch(mpd.value(), request_.path, request_.host,
                                          static_cast<size_t>(route_.prefetch_segments), now_s);
    }
    return streaming::streamLifetime(mpd.value(), route_.cache);
  }
  return streaming::streamLifetime(text, blocking, route_.cache);
}

void FillJob::finishPlaylistFreshness() {
  const cache::ObjectRef& object = fill_.object();
  const std::optional<cache::StreamLifetime> stream =
      streamLifetimeOf(object, summary_, &prefetch_, &dash_prefetch_);
  if (!stream) return;
  const cache::ResponseHead& head = object->head();
  const cache::CacheControl cc = cache::selectCacheControl(head).cc;
  const cache::Freshness f = cache::computeFreshness(
      head, cc, request_time_, object->freshness().response_time, kind_, route_.cache, stream);
  fill_.setLifetime(f.lifetime);
}

void FillJob::onOriginComplete() {
  if (peer_retry_) return retryAfterPeerFailure("5xx");
  if (!discard_ && fill_) {
    finishPlaylistFreshness();
    const cache::ObjectRef object = fill_.object();
    if (!fill_.finish()) {
      std::fprintf(stderr, "streamedge: origin body did not match its framing; not cached\n");
    } else {
      if (request_.prefetch_ticket && object->storing()) request_.prefetch_ticket->markStored();
      if (summary_ && summary_->live && object->storing() && object->shareable()) {
        // A stored live playlist: blocking reloads of its URL may be answered from it.
        worker_.shared().live_playlists.record(*request_.live_playlist_url, *object, *summary_);
        // A new version of it (this fill fetched it): its newest segments are prefetched
        // once here, not per viewer.
        if (request_.prefetch_from_playlist) startPlaylistPrefetch();
      } else if (dash_prefetch_ && object->storing() && object->shareable()) {
        startDashPrefetch();
      }
    }
  }
  delete this;
}

void FillJob::startPlaylistPrefetch() {
  if (prefetch_.targets.empty() && prefetch_.refused == 0) return;
  for (const conf::VhostConfig& vhost : config_->vhosts) {
    if (vhost.name != request_.vhost) continue;
    startPrefetch(worker_, config_, vhost, route_, request_.host, prefetch_.targets,
                  prefetch_.refused, request_.forward_headers);
    return;
  }
}

void FillJob::startDashPrefetch() {
  for (const conf::VhostConfig& vhost : config_->vhosts) {
    if (vhost.name != request_.vhost) continue;
    PrefetchTracker& tracker = worker_.shared().prefetch;
    const std::vector<bool> watched = tracker.renditions().update(
        vhost.name, prefetchRouteId(vhost, route_), request_.host, request_.path, *dash_prefetch_,
        std::chrono::steady_clock::now());
    const streaming::PrefetchSelection selection =
        selectWatchedDashTargets(*dash_prefetch_, watched);
    if (selection.targets.empty() && selection.refused == 0) return;
    startPrefetch(worker_, config_, vhost, route_, request_.host, selection.targets,
                  selection.refused, request_.forward_headers);
    return;
  }
}

void FillJob::onOriginFailed(Status status) {
  if (peer_ >= 0) {
    if (!peer_retry_) {
      const PeerResult result = status.code() == Code::kTimeout   ? PeerResult::kTimeout
                                : status.code() == Code::kConnect ? PeerResult::kConnect
                                                                  : PeerResult::kError;
      tier_->count(static_cast<size_t>(peer_), result);
    }
    if (peer_retry_ || !fill_.object() || !fill_.object()->headPublished()) {
      return retryAfterPeerFailure(peer_retry_ ? "5xx" : "connect error or timeout");
    }
    tier_->markDown(static_cast<size_t>(peer_), *config_, *worker_.shared().health,
                    "broken body");
    if (continueFromOrigin()) return;
  }
  worker_.counters().add(worker_.counters().origin_failures);
  const cache::ObjectRef& stale = fill_.stale();
  const WallTime now = SystemClock::instance().wallNow();
  if (stale && stale->fromSsd() && !fill_.object()->headPublished() &&
      stale->freshness().withinStaleIfError(now) && !fill_.stalePastRetention(now)) {
    fill_.finishWithStale();  // as for a 5xx above: this fill's readers get the stale copy
  } else if (status.code() == Code::kBusy) {
    fill_.abortBusy();  // readers answer 503: the origin is at its concurrency cap
  } else {
    fill_.abort(status.code() == Code::kTimeout);
  }
  delete this;
}

}  // namespace streamedge::proxy
