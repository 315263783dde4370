// FillJob: fetches one object from its origin group and fills it into the cache, independent of
// the viewer that started it (the fill goes on for the other readers if that viewer leaves).
// It turns the origin's answer into a ResponseHead, decides storability and freshness
// (RFC 9111), streams body bytes into the object, and finishes, or aborts on any failure so that
// nothing short is ever kept. A revalidation (the fill has a stale object) sends a conditional
// request and turns a 304 into a refreshed object that keeps the stored body.
//
// An answer that is not kept streams through a bounded window (cache/object.h): the job pauses
// its origin while the window is full, resumes when the readers make room, cuts a reader that
// holds a full window past [cache.ram] fill_stall_timeout while another waits, and stops when
// every reader left.
//
// Lives on one worker; deletes itself when the fetch ends. Not thread-safe (worker thread only),
// except onFillWindowChanged (any thread; posts a wake-up to the worker).
#pragma once

#include <event2/event.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string>

#include "cache/cache.h"
#include "cache/freshness.h"
#include "conf/config.h"
#include "proxy/invalidation.h"
#include "proxy/origin_client.h"
#include "proxy/peer_tier.h"
#include "proxy/prefetch.h"
#include "streaming/ll_hls.h"

namespace streamedge::proxy {

class Worker;

struct FillRequest {
  std::string method = "GET";
  std::string target;          // origin-form path?query sent to the origin
  // Authorization is among forward_headers (RFC 9111 §3.5 then decides storing and sharing).
  bool request_has_authorization = false;
  // The viewer's request fields the origin gets, fills and passes alike: the one list an origin
  // request carries, chosen by proxy/request_fields.h under the route's RequestFieldPolicy
  // (hop-by-hop fields, Host, local conditionals and, on shared fills, credentials removed; the
  // client address field appended when the route asks for one). FillJob adds its validators
  // and Via.
  // Cache fills then set the Vary-relevant ones to their normalised values
  // (cache::setVaryFields): a stored answer that says Vary is kept as the variant they select.
  std::vector<std::pair<std::string, std::string>> forward_headers;
  std::string body;
  bool pass = false;  // a private fill: never shared, never stored
  // Cluster (proxy/peer_tier.h): the viewer's Host (a peer fetch sends it on), and whether the
  // request came from a verified peer (then it is never sent to a peer again).
  std::string host;
  bool from_peer = false;
  // Cache fills: the vhost name and normalised path the key was made with, stored with the
  // object as its purge labels (cache/purge_labels.h).
  std::string vhost;
  std::string path;
  // An unsafe method: a non-error answer invalidates the target and same-origin Location /
  // Content-Location (RFC 9111 §4.4; proxy/invalidation.h).
  std::optional<InvalidationScope> invalidate;
  // A playlist fill whose answer is a full playlist (no _HLS_skip): the key of its URL without
  // the LL-HLS delivery directives, under which a stored live media playlist is recorded in
  // SharedState::live_playlists.
  std::optional<cache::CacheKey> live_playlist_url;
  // A live playlist fill on a route with prefetch on (proxy/prefetch.h): once stored, its
  // newest segments are prefetched. A prefetch fill itself holds its ticket here.
  bool prefetch_from_playlist = false;
  std::shared_ptr<PrefetchTicket> prefetch_ticket;
};

class FillJob final : public OriginObserver, public cache::FillListener {
 public:
  ~FillJob();  // aborts an unfinished fill (worker shutdown)

  // Starts the fetch. The job owns itself from here on.
  static void start(Worker& worker, conf::ConfigPtr config, const conf::RouteConfig& route,
                    cache::FillWriter fill, FillRequest request);

  // Any thread: the window of the object being filled changed (cache::FillListener).
  void onFillWindowChanged() noexcept override;
  // Worker thread: handles the wake-up posted by onFillWindowChanged. May delete this.
  void onWake();

 private:
  FillJob(Worker& worker, conf::ConfigPtr config, const conf::RouteConfig& route,
          cache::FillWriter fill, FillRequest request);

  void onOriginResponse(OriginResponse&& response) override;
  void onOriginData(const uint8_t* data, size_t len) override;
  void onOriginComplete() override;
  void onOriginFailed(Status status) override;
  // Cluster: starts `request` towards the key's peer (PeerTier::choose) or the origin group.
  void startFetch(OriginRequest request);
  // A peer failed before the head reached the readers: it is marked down and the fill starts
  // again (next peer or the origin). From an origin callback; the fetch is destroyed here.
  void retryAfterPeerFailure(const char* why);
  // A peer died after the head reached the readers: the route's origin group is asked for the
  // rest (OriginClient::continueBody) under the peer answer's validators, so the readers see one
  // body. False when that answer offers no validator (the fill then aborts: a cut, never a
  // wrong byte). From an origin callback; the peer's fetch is destroyed here.
  bool continueFromOrigin();
  // The lifetime a complete playlist/MPD object's body implies (streaming/freshness.h), if any.
  // Also fills `summary` when the body is a live-or-ended HLS media playlist.
  // With request_.prefetch_from_playlist, also fills `prefetch` with a live one's targets and
  // `dash` with a dynamic MPD's prefetch plan.
  std::optional<cache::StreamLifetime> streamLifetimeOf(
      const cache::ObjectRef& object, std::optional<streaming::PlaylistSummary>& summary,
      streaming::PrefetchSelection* prefetch = nullptr,
      std::optional<streaming::DashPrefetchPlan>* dash = nullptr) const;
  void finishPlaylistFreshness();
  // Prefetches prefetch_ (a stored new version of a live playlist, route prefetch on).
  void startPlaylistPrefetch();
  // A stored new version of a dynamic MPD (route prefetch on): registers its representations
  // with the watched table and prefetches the newest segments of the watched ones.
  void startDashPrefetch();
  void addImpliedVary(cache::ResponseHead& head) const;
  static void stallCb(evutil_socket_t, short, void* arg);
  void onStall();

  Worker& worker_;
  conf::ConfigPtr config_;  // pinned: route_ and the fetch point into it
  const conf::RouteConfig& route_;
  cache::FillWriter fill_;
  FillRequest request_;
  std::unique_ptr<OriginFetch> fetch_;
  WallTime request_time_;
  cache::ContentKind kind_;
  bool discard_ = false;  // body ignored (stale-if-error took over, or a bogus 304)

  uint64_t id_ = 0;           // this job's id with its worker (wakeFill)
  cache::ObjectRef listened_;  // the object whose window this job follows
  std::atomic<bool> wake_pending_{false};
  bool paused_ = false;       // origin reads paused for a full window
  event* stall_timer_ = nullptr;

  // Cluster: the tier (null without [cluster], or when this fill may not go to a peer), the
  // request before peer-specific fields (for a retry), the peer being asked (-1: the origin).
  std::shared_ptr<PeerTier> tier_;
  OriginRequest base_request_;
  int peer_ = -1;
  int peer_attempts_ = 0;
  bool peer_retry_ = false;  // the peer answered 5xx: retry once its body is done
  std::optional<ResumeValidators> peer_validators_;  // a peer's whole 200: what a part must match
  uint64_t body_bytes_ = 0;  // body bytes received (the offset a continuation starts at)
  std::optional<streaming::PlaylistSummary> summary_;  // a stored HLS media playlist's
  streaming::PrefetchSelection prefetch_;  // its targets, with prefetch_from_playlist
  std::optional<streaming::DashPrefetchPlan> dash_prefetch_;  // a dynamic MPD's, likewise
};

}  // namespace streamedge::proxy
