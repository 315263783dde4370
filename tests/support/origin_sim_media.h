// Real media for the origin simulator (origin_sim --media-dir DIR): segments made by ffmpeg, so
// that a real player can decode what the simulator's live HLS and live DASH serve. The live
// clock and numbering stay the simulator's; only the bodies (and the MPD's adaptation sets and
// the master playlist's attributes, read from the media) come from DIR.
//
// DIR holds (k = 0 .. M-1, every segment lasting the simulator's --target-duration):
//   hls/seg_<k>.ts                  MPEG-TS segments (video and audio muxed)
//   dash/<rep>/init.mp4             one fMP4 init segment per DASH representation (one track:
//                                   H.264 video 'avc1'/'avc3' or AAC audio 'mp4a')
//   dash/<rep>/seg_<k>.m4s          its media segments
// Either half may be missing; that protocol's segments then answer 404.
// Live segment N is served from file (N - N0) mod M, where N0 is the oldest segment of the
// first playlist (or MPD window) the simulator published, so a player that starts at the live
// edge reads the files in order from about k = window - 3; past the end the media wraps (HLS
// marks the wrap with EXT-X-DISCONTINUITY; DASH does not, so keep a DASH play shorter than
// M - window segments).
//
// Thread-safety: immutable after load(); const methods may be called from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace streamedge::testsupport {

// What an fMP4 init segment says about its (first) track. ok=false when no supported sample
// entry was found.
struct Mp4TrackInfo {
  bool ok = false;
  bool video = false;          // 'vide' handler / visual sample entry; else audio
  std::string codecs;          // RFC 6381: "avc1.42c00d", "mp4a.40.2"
  int width = 0, height = 0;   // video
  int sample_rate = 0;         // audio
  int channels = 0;            // audio
};
// Reads moov/trak/mdia/minf/stbl/stsd of an init segment: the first sample entry's codec
// (avcC profile, compatibility and level; esds object type and AAC audio object type), size or
// sample rate. Never reads past `init`.
Mp4TrackInfo parseMp4Init(std::string_view init);

class MediaSet {
 public:
  struct Track {
    std::string id;  // the directory name under dash/, used as the Representation id
    Mp4TrackInfo info;
    std::shared_ptr<const std::string> init;
    std::vector<std::shared_ptr<const std::string>> segments;
    uint64_t bandwidth = 0;  // bits per second of the biggest segment
  };

  // Reads DIR. Returns nullptr with a message when DIR has neither hls/seg_0.ts nor a usable
  // dash/<rep>/, or when a DASH init segment cannot be read.
  static std::unique_ptr<MediaSet> load(const std::string& dir, int target_s, std::string* error);

  size_t tsCount() const { return ts_.size(); }
  // Segment k of the file set, with wrap (any k, negative too). nullptr without TS media.
  std::shared_ptr<const std::string> ts(int64_t k) const;
  const Track* dashTrack(std::string_view id) const;
  // The DASH media segment k of a track (wrapping at the shortest track's count).
  std::shared_ptr<const std::string> dashSegment(const Track& t, int64_t k) const;

  // The live media playlist for segments first..last (live numbering), n0 = the segment that
  // maps to file 0. EXT-X-DISCONTINUITY where the files wrap.
  std::string hlsMediaPlaylist(int64_t first, int64_t last, int64_t n0, int target_s) const;
  // A master playlist with one variant, "main/index.m3u8", its BANDWIDTH, RESOLUTION and CODECS
  // from the media.
  std::string hlsMasterPlaylist() const;
  // The <AdaptationSet> elements of the live MPD: one per track, SegmentTemplate with
  // duration target_s, startNumber 1, $RepresentationID$/seg_$Number$.m4s.
  std::string dashAdaptationSets(int target_s) const;

 private:
  int target_s_ = 1;
  std::vector<std::shared_ptr<const std::string>> ts_;
  uint64_t ts_bandwidth_ = 0;
  std::vector<Track> tracks_;
  size_t dash_count_ = 0;  // segments in the shortest track
};

}  // namespace streamedge::testsupport
