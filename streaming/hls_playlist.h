// HLS playlists (RFC 8216 and its second edition, draft-pantos-hls-rfc8216bis, which adds
// Low-Latency HLS): a bounded, strict parser for media and master playlists. It reads what an
// edge needs to decide freshness, blocking reloads and prefetch: target duration, media
// sequence, segments and their partial segments, EXT-X-SERVER-CONTROL, EXT-X-PART-INF,
// EXT-X-PRELOAD-HINT, EXT-X-SKIP, EXT-X-ENDLIST, and the URIs of a master playlist's variants
// and renditions. Unknown tags are ignored (§4.1: clients ignore tags they do not recognise).
//
// Never crashes and never allocates without bound on hostile input: a text over
// kMaxPlaylistBytes or with more than kMaxPlaylistEntries segments, parts, hints and variants is
// refused (kTooLarge); anything that breaks the grammar is refused (kInvalid). A refused playlist
// is still proxied and cached by its headers; only the stream-derived rules are skipped.
// Pure functions over a string_view; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "conf/status.h"

namespace streamedge::streaming {

inline constexpr size_t kMaxPlaylistBytes = 8u << 20;   // 8 MiB: a day of 2 s segments is ≈ 5 MB
inline constexpr size_t kMaxPlaylistEntries = 200000;   // segments + parts + hints + variants
inline constexpr size_t kMaxUriBytes = 8192;

// EXT-X-PART (rfc8216bis §4.4.4.9).
struct HlsPart {
  std::string uri;
  double duration_s = 0;
  bool independent = false;
  bool gap = false;
};

// One Media Segment: its EXTINF duration, URI, media sequence number and the partial segments
// listed before it (only the newest few segments of an LL-HLS playlist keep them).
struct HlsSegment {
  uint64_t msn = 0;
  double duration_s = 0;
  std::string uri;
  std::vector<HlsPart> parts;
};

// EXT-X-SERVER-CONTROL (rfc8216bis §4.4.3.8).
struct HlsServerControl {
  bool can_block_reload = false;
  bool can_skip_dateranges = false;
  std::optional<double> can_skip_until_s;
  std::optional<double> hold_back_s;
  std::optional<double> part_hold_back_s;
};

// EXT-X-PRELOAD-HINT (rfc8216bis §4.4.5.3).
struct HlsPreloadHint {
  enum class Type { kPart, kMap };
  Type type = Type::kPart;
  std::string uri;
  std::optional<uint64_t> byterange_start;
  std::optional<uint64_t> byterange_length;
};

struct HlsMediaPlaylist {
  uint64_t target_duration_s = 0;        // EXT-X-TARGETDURATION (required)
  uint64_t media_sequence = 0;           // EXT-X-MEDIA-SEQUENCE (0 when absent, §4.4.3.2)
  std::optional<double> part_target_s;   // EXT-X-PART-INF PART-TARGET
  HlsServerControl server_control;
  uint64_t skipped_segments = 0;         // EXT-X-SKIP SKIPPED-SEGMENTS (a delta update)
  bool endlist = false;                  // EXT-X-ENDLIST: no segment will be added
  std::string playlist_type;             // EXT-X-PLAYLIST-TYPE: "VOD", "EVENT" or empty
  std::vector<HlsSegment> segments;      // complete segments, oldest first
  std::vector<HlsPart> trailing_parts;   // parts of the segment still being produced
  std::vector<HlsPreloadHint> preload_hints;

  // The media sequence number of the newest complete segment (none without segments).
  std::optional<uint64_t> lastMsn() const;
  // The media sequence number of the segment after the newest complete one: the one whose
  // parts trailing_parts lists.
  uint64_t nextMsn() const;
  // True when the playlist shows segment `msn` complete, or (with `part`) that partial segment
  // of it or a later one. What a blocking reload waits for (rfc8216bis §6.2.5.2).
  bool contains(uint64_t msn, std::optional<uint64_t> part) const;
  bool live() const { return !endlist && playlist_type != "VOD"; }
};

// EXT-X-STREAM-INF and the URI line after it.
struct HlsVariant {
  std::string uri;
  uint64_t bandwidth = 0;
};

// EXT-X-MEDIA (alternative renditions) and EXT-X-I-FRAME-STREAM-INF; uri may be empty for a
// rendition carried in the variant itself.
struct HlsRendition {
  std::string type;  // AUDIO, VIDEO, SUBTITLES, CLOSED-CAPTIONS, or I-FRAME
  std::string group_id;
  std::string name;
  std::string uri;
};

struct HlsMasterPlaylist {
  std::vector<HlsVariant> variants;
  std::vector<HlsRendition> renditions;
};

using HlsPlaylist = std::variant<HlsMediaPlaylist, HlsMasterPlaylist>;

// Parses a playlist. Errors: kTooLarge (over the bounds above), kInvalid (not a playlist, a
// malformed or duplicated tag, a media playlist without EXT-X-TARGETDURATION, an EXTINF
// without its URI, media and master tags mixed). Source kUpstream.
Result<HlsPlaylist> parseHlsPlaylist(std::string_view text);

// A quick look: does this text start like an HLS playlist ("#EXTM3U")?
bool looksLikeHls(std::string_view text);

}  // namespace streamedge::streaming
