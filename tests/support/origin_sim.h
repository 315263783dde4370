// The origin simulator: a small HTTP/1.1 origin server on one libevent loop, serving live HLS,
// live DASH, VOD HLS and generic objects whose bytes are deterministic (simBody), with per-request
// knobs in the query string (size, delay, throttling, caching headers, faults) and control
// endpoints under /_sim/ (request counters, armed faults). Used in-process by unit tests and as
// the `origin_sim` executable by scenario tests and benchmarks.
//
// Content (T = target duration, W = window, now = wall clock):
//   /live/master.m3u8               2 renditions: 720p/index.m3u8 (2500000), 360p/index.m3u8 (800000)
//   /live/<r>/index.m3u8            any rendition name; MEDIA-SEQUENCE floor(now/T)-W+1 .. floor(now/T)
//                                   (?window=N overrides W: a long DVR playlist)
//   /live/<r>/seg_<n>.ts            any n; simBody(path, size)
//   /dash/manifest.mpd              dynamic, AST 2024-01-01T00:00:00Z, startNumber 1, reps 720p/360p;
//                                   ?periods=N: simMultiPeriodMpd (≈8 KB a period; 25 ≈ 200 KB)
//   /dash/<rep>/init.mp4            1000 bytes unless ?size=; /dash/<rep>/seg_<n>.m4s
//   /vod/<name>/index.m3u8          10 segments seg_0..seg_9.ts, VOD, ENDLIST; other n → 404
//   /obj/<anything>                 simBody(path, size); bodies over 64 MiB are made as they
//                                   are sent (1 MiB at a time, as the socket drains)
//   /healthz                        200 "ok" (counted, and failed by faults like any path)
// Low latency (T = target duration, P = part_ms, N = T/P parts a segment; segment s is made
// during [s*T, (s+1)*T) of the Unix clock, its part i during [s*T + i*P, s*T + (i+1)*P)):
//   /ll/<r>/index.m3u8              LL-HLS media playlist: 2W segments (?window=N), the newest
//                                   three with their parts, the parts of the segment being
//                                   made, a PRELOAD-HINT for the part being made;
//                                   SERVER-CONTROL CAN-BLOCK-RELOAD=YES, PART-HOLD-BACK=3P,
//                                   CAN-SKIP-UNTIL=6T. Blocking reload: ?_HLS_msn=M[&_HLS_part=I]
//                                   holds the request until that segment (part) is complete;
//                                   400 when M is more than two segments past the newest
//                                   complete one or the part more than three parts past the
//                                   newest, or _HLS_part comes without _HLS_msn, or a value is
//                                   not a number. ?_HLS_skip=YES: a delta update (EXT-X-SKIP of
//                                   the segments older than 6T).
//   /ll/<r>/seg_<s>.m4s             complete: simBody; being made: chunked, sent as it is
//                                   "encoded" (its last byte at the end of the segment); later: 404
//   /ll/<r>/part_<s>_<i>.m4s        the same for parts (segment_size / N bytes)
//   /ll/<r>/init.mp4                1000 bytes
//   /lldash/manifest.mpd            dynamic MPD, availabilityTimeOffset T-P (a segment is
//                                   announced as soon as its first chunk exists),
//                                   availabilityTimeComplete=false, startNumber 0 (segment s
//                                   as above)
//   /lldash/<rep>/seg_<s>.m4s       as /ll/ segments: chunked while being encoded
// Real media (--media-dir DIR, see origin_sim_media.h): /live/ and /dash/ keep their clock,
//   numbering and window, but segment bodies are files of DIR made by ffmpeg (live segment N is
//   file (N - N0) mod M, N0 the oldest segment of the first window), /dash/<rep>/ are DIR's
//   representations (404 for others), the MPD lists DIR's tracks and /live/master.m3u8 one
//   variant main/index.m3u8, with codecs read from the init segments. Media bodies: ETag =
//   xxh64 of the bytes, Cache-Control and Last-Modified as generated bodies; ?size is ignored.
//   A DASH segment asked for before it is complete (AST + N*T) is held until it is, up to 4 T
//   early (ffmpeg's DASH demuxer asks for the next $Number$ at once); earlier, 404.
// Playlists/MPDs: Cache-Control from --playlist-cache-control (none by default), ETag = xxh64 of
// the text, Last-Modified = start of the newest segment. Generated bodies: Cache-Control from
// --segment-cache-control, ETag simEtag(), Last-Modified kSimLastModified, Accept-Ranges.
// Query knobs (any content path): size=N  delay_ms=N (before the head)  rate=BYTES_PER_SEC
//   cc=<value> (empty: none)  etag=0  lm=0  set_cookie=1  chunked=1  vary=<value>  status=N
//   hdr=<Name>:<value> (repeatable; any response field, also on 304s)  ranges=0
//   echo=1 (the body lists the request's header fields, "name: value" lines)
//   vary_body=1 (with vary=<list>: the body is one "name: value" line per field the list names,
//   as the request carried it, "(absent)" when it did not; ETag from that text)
//   location=<value> content_location=<value> (sent as Location / Content-Location)
//   ce=<coding> (a Content-Encoding label; the bytes are unchanged)
//   fault=500|503|hang|delay|reset|short|long|nostore|stall|slow|etag|noranges (delay: the head
//   after fault_after=K ms, default 1000, as one slow data center; nostore:
//   Cache-Control: no-store and a new ETag, as content that changed and may no longer be
//   stored) with fault_after=K fault_rate=R for the mid-body ones below.
// Mid-body faults: reset (K body bytes, default half, then RST), stall (K bytes, then silence
//   with the connection open), slow (K bytes at once, then R bytes/s, default 1024); etag (the
//   same bytes with other validators: ETag "changed-<name>-…", Last-Modified a day later, as a
//   data center with another version); noranges (a Range request gets the whole 200).
// Also: If-Match / If-Unmodified-Since → 412 (RFC 9110 §13.1.1, §13.1.4, strong comparison);
// If-None-Match / If-Modified-Since → 304; a single Range (with If-Range) → 206/416, chunked
// bodies too (chunked=1 keeps chunked framing on the 206); HEAD; keep-alive and pipelining;
// HTTP/1.0 (close-delimited instead of chunked).
// Control (not counted, never faulted): GET /_sim/count?path=/x[&kind=304] → "N\n";
//   /_sim/counts[?kind=304] → {"/x":N,...}; /_sim/reset[?faults=1]; /_sim/fault?path=/x&mode=M
//   [&count=N] (default 1) [&after=K] [&rate=R] [&preconditions=0 (If-Match and
//   If-Unmodified-Since ignored)]; /_sim/fault?all=1&mode=M (until mode=off); /_sim/fault?mode=off
//   (disarm all); /_sim/ranges?path=/x → one line per Range request to /x, in order:
//   "<Range>|<If-Match>|<If-Unmodified-Since>" (empty parts when absent). Counts include 304s
//   and faulted requests; kind=304 counts 304s alone. /_sim/stats[?reset=1] →
//   {"connections":N,"max_connections":N,"active_requests":N,"max_active_requests":N}: open
//   connections (control ones included) and requests being answered (head parsed → last body
//   byte queued), now and at most since start (reset=1: the maxima restart from now).
//
// Thread-safety: an OriginSim runs its loop on one thread (run() or startThread()); stop() and
// the counter accessors may be called from any thread. Everything else belongs to the loop.
// Ownership: OriginSim owns its event_base, listener and every connection; destroying it closes
// them all (stop the loop first; the destructor does so for startThread()).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

namespace streamedge::testsupport {

// The body every simulated object carries: "SIMDATA:<path>:" followed by pseudo-random bytes
// from a splitmix64 stream seeded with xxh64(path), cut to `size` bytes (the marker too, if size
// is smaller). simBody(p, n) is a prefix of simBody(p, m) for n <= m. `path` excludes the query.
std::string simBody(std::string_view path, size_t size);
// Bytes [offset, offset + n) of simBody(path, size) without making the rest (n is cut at size).
std::string simBodySlice(std::string_view path, size_t size, size_t offset, size_t n);

// The strong ETag the simulator sends for a generated body: "\"<16 hex of xxh64(path, seed=size)>\"".
std::string simEtag(std::string_view path, size_t size);

// A large live MPD as ad insertion and long DVR windows make them: `periods` periods of 60 s
// ending at `now_s`, each with five video renditions, two audio languages and subtitles, every
// adaptation set with an explicit SegmentTimeline (segments of `target_s`). About 8 KB per
// period (2 s segments). Deterministic for the same arguments.
std::string simMultiPeriodMpd(int64_t now_s, int target_s, int periods);

// The fixed Last-Modified of generated bodies (Mon, 01 Jan 2024 00:00:00 GMT).
inline constexpr std::string_view kSimLastModified = "Mon, 01 Jan 2024 00:00:00 GMT";
// DASH availabilityStartTime, the same for every simulator instance so two "data centers"
// describe the same stream: 2024-01-01T00:00:00Z.
inline constexpr int64_t kSimDashEpochSeconds = 1704067200;

struct OriginSimOptions {
  std::string listen = "127.0.0.1:0";     // host:port; port 0 picks a free one
  std::string name = "origin";            // sent as X-Origin
  size_t segment_size = 200000;           // default body size of segments and /obj/ objects
  int target_duration_s = 2;              // HLS target duration and DASH segment duration
  int window = 6;                         // live window in segments
  int part_ms = 500;                      // LL-HLS part target and LL-DASH chunk duration
  std::string playlist_cache_control;     // empty: no Cache-Control on playlists/MPDs
  std::string segment_cache_control = "max-age=3600";
  std::string tls_cert;                   // non-empty: serve HTTPS with this PEM chain...
  std::string tls_key;                    // ...and this key
  std::string media_dir;                  // non-empty: real media (origin_sim_media.h)
};

// Parses origin_sim's command line (argv[0] excluded). Returns false with a message on error.
bool parseOriginSimArgs(int argc, char** argv, OriginSimOptions* options, std::string* error);
std::string originSimUsage();

struct SimCounts {
  uint64_t total = 0;         // every non-control request to the path
  uint64_t not_modified = 0;  // of which answered 304
};

class OriginSim {
 public:
  explicit OriginSim(OriginSimOptions options);
  ~OriginSim();
  OriginSim(const OriginSim&) = delete;
  OriginSim& operator=(const OriginSim&) = delete;

  // Creates the loop and binds the listener. Returns false with a message on failure.
  bool bind(std::string* error);
  // After bind(): the bound port.
  uint16_t port() const { return port_; }
  // Runs the loop on the calling thread until stop() (or SIGTERM/SIGINT when
  // handle_signals is true). Returns 0 on a clean stop.
  int run(bool handle_signals);
  // bind() + run the loop on a background thread. Returns false with a message on failure.
  bool startThread(std::string* error);
  // Thread-safe: asks the loop to stop; joins the background thread when there is one.
  void stop();

  // Thread-safe snapshots of the counters (same data as /_sim/counts).
  SimCounts counts(const std::string& path) const;
  std::map<std::string, SimCounts> allCounts() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
  uint16_t port_ = 0;
  std::thread thread_;
};

}  // namespace streamedge::testsupport
