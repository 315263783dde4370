#include "tests/support/origin_sim_media.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <system_error>
#include <utility>

namespace streamedge::testsupport {

namespace {

using BodyPtr = std::shared_ptr<const std::string>;

uint32_t be16(std::string_view s, size_t off) {
  return (static_cast<uint32_t>(static_cast<unsigned char>(s[off])) << 8) |
         static_cast<uint32_t>(static_cast<unsigned char>(s[off + 1]));
}
uint32_t be32(std::string_view s, size_t off) { return (be16(s, off) << 16) | be16(s, off + 2); }

// An ISO BMFF box inside a byte range: its type and the range of its payload.
struct Box {
  std::string_view type;
  size_t payload = 0;  // first payload byte
  size_t end = 0;      // one past the last byte of the box
};

// The first box of `type` among the boxes in [begin, end) of s.
std::optional<Box> findBox(std::string_view s, size_t begin, size_t end, std::string_view type) {
  size_t pos = begin;
  while (pos + 8 <= end) {
    uint64_t size = be32(s, pos);
    size_t header = 8;
    if (size == 1) {
      if (pos + 16 > end) return std::nullopt;
      size = (static_cast<uint64_t>(be32(s, pos + 8)) << 32) | be32(s, pos + 12);
      header = 16;
    } else if (size == 0) {
      size = end - pos;
    }
    if (size < header || size > end - pos) return std::nullopt;
    Box b{s.substr(pos + 4, 4), pos + header, pos + static_cast<size_t>(size)};
    if (b.type == type) return b;
    pos = b.end;
  }
  return std::nullopt;
}

// An MPEG-4 descriptor (ISO/IEC 14496-1 §7.2.2.1) at pos: its tag, payload start and end.
struct Descriptor {
  unsigned tag = 0;
  size_t payload = 0;
  size_t end = 0;
};
std::optional<Descriptor> readDescriptor(std::string_view s, size_t pos, size_t end) {
  if (pos >= end) return std::nullopt;
  Descriptor d;
  d.tag = static_cast<unsigned char>(s[pos++]);
  size_t len = 0;
  for (int i = 0; i < 4; ++i) {
    if (pos >= end) return std::nullopt;
    const auto b = static_cast<unsigned char>(s[pos++]);
    len = (len << 7) | (b & 0x7f);
    if ((b & 0x80) == 0) break;
  }
  if (len > end - pos) return std::nullopt;
  d.payload = pos;
  d.end = pos + len;
  return d;
}

// "mp4a.40.2" from an esds box payload (full box header included).
std::optional<std::string> esdsCodecs(std::string_view s, size_t begin, size_t end) {
  auto es = readDescriptor(s, begin + 4, end);
  if (!es || es->tag != 0x03 || es->payload + 3 > es->end) return std::nullopt;
  size_t pos = es->payload + 2;  // ES_ID
  const auto flags = static_cast<unsigned char>(s[pos++]);
  if (flags & 0x80) pos += 2;                                   // dependsOn_ES_ID
  if ((flags & 0x40) && pos < es->end) pos += 1 + static_cast<unsigned char>(s[pos]);  // URL
  if (flags & 0x20) pos += 2;                                   // OCR_ES_Id
  auto dc = readDescriptor(s, pos, es->end);
  if (!dc || dc->tag != 0x04 || dc->payload + 13 > dc->end) return std::nullopt;
  const unsigned oti = static_cast<unsigned char>(s[dc->payload]);
  char buf[32];
  auto dsi = readDescriptor(s, dc->payload + 13, dc->end);
  if (oti == 0x40 && dsi && dsi->tag == 0x05 && dsi->payload < dsi->end) {
    unsigned aot = static_cast<unsigned char>(s[dsi->payload]) >> 3;
    if (aot == 31 && dsi->payload + 1 < dsi->end) {
      aot = 32 + (((static_cast<unsigned char>(s[dsi->payload]) & 0x07) << 3) |
                  (static_cast<unsigned char>(s[dsi->payload + 1]) >> 5));
    }
    std::snprintf(buf, sizeof buf, "mp4a.40.%u", aot);
  } else {
    std::snprintf(buf, sizeof buf, "mp4a.%02x", oti);
  }
  return std::string(buf);
}

std::optional<BodyPtr> readFile(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream ss;
  ss << in.rdbuf();
  return std::make_shared<const std::string>(ss.str());
}

// Files <prefix><k><suffix> for k = 0, 1, ... until the first one missing.
std::vector<BodyPtr> readNumbered(const std::filesystem::path& dir, const std::string& prefix,
                                  const std::string& suffix) {
  std::vector<BodyPtr> out;
  for (size_t k = 0;; ++k) {
    auto body = readFile(dir / (prefix + std::to_string(k) + suffix));
    if (!body) break;
    out.push_back(std::move(*body));
  }
  return out;
}

uint64_t peakBandwidth(const std::vector<BodyPtr>& segments, int target_s) {
  size_t peak = 0;
  for (const BodyPtr& b : segments) peak = std::max(peak, b->size());
  return static_cast<uint64_t>(peak) * 8 / static_cast<uint64_t>(std::max(1, target_s));
}

// k mod n in [0, n).
size_t wrapIndex(int64_t k, size_t n) {
  const auto m = static_cast<int64_t>(n);
  return static_cast<size_t>(((k % m) + m) % m);
}

// floor(a / b) for b > 0.
int64_t floorDiv(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

}  // namespace

Mp4TrackInfo parseMp4Init(std::string_view s) {
  Mp4TrackInfo info;
  auto moov = findBox(s, 0, s.size(), "moov");
  if (!moov) return info;
  auto trak = findBox(s, moov->payload, moov->end, "trak");
  if (!trak) return info;
  auto mdia = findBox(s, trak->payload, trak->end, "mdia");
  if (!mdia) return info;
  auto minf = findBox(s, mdia->payload, mdia->end, "minf");
  if (!minf) return info;
  auto stbl = findBox(s, minf->payload, minf->end, "stbl");
  if (!stbl) return info;
  auto stsd = findBox(s, stbl->payload, stbl->end, "stsd");
  if (!stsd || stsd->payload + 8 > stsd->end) return info;
  // stsd: version/flags, entry_count, then the sample entries.
  const size_t first = stsd->payload + 8;
  if (first + 8 > stsd->end) return info;
  const std::string_view type = s.substr(first + 4, 4);
  const size_t entry_end = std::min<size_t>(stsd->end, first + be32(s, first));
  const size_t entry = first + 8;  // the sample entry's payload
  char buf[32];
  if (type == "avc1" || type == "avc3") {
    // VisualSampleEntry (ISO/IEC 14496-12 §12.1.3): width and height at 24, children at 78.
    if (entry + 78 > entry_end) return info;
    auto avcc = findBox(s, entry + 78, entry_end, "avcC");
    if (!avcc || avcc->payload + 4 > avcc->end) return info;
    std::snprintf(buf, sizeof buf, "%.4s.%02x%02x%02x", type.data(),
                  static_cast<unsigned char>(s[avcc->payload + 1]),
                  static_cast<unsigned char>(s[avcc->payload + 2]),
                  static_cast<unsigned char>(s[avcc->payload + 3]));
    info.codecs = buf;
    info.video = true;
    info.width = static_cast<int>(be16(s, entry + 24));
    info.height = static_cast<int>(be16(s, entry + 26));
    info.ok = true;
  } else if (type == "mp4a") {
    // AudioSampleEntry (§12.2.3): channelcount at 16, samplerate (16.16) at 24, children at 28.
    if (entry + 28 > entry_end) return info;
    auto esds = findBox(s, entry + 28, entry_end, "esds");
    if (!esds) return info;
    auto codecs = esdsCodecs(s, esds->payload, esds->end);
    if (!codecs) return info;
    info.codecs = *codecs;
    info.channels = static_cast<int>(be16(s, entry + 16));
    info.sample_rate = static_cast<int>(be16(s, entry + 24));
    info.ok = true;
  }
  return info;
}

std::unique_ptr<MediaSet> MediaSet::load(const std::string& dir, int target_s, std::string* error) {
  namespace fs = std::filesystem;
  auto set = std::make_unique<MediaSet>();
  set->target_s_ = std::max(1, target_s);
  const fs::path root(dir);
  std::error_code ec;
  if (!fs::is_directory(root, ec)) {
    *error = "--media-dir " + dir + ": not a directory";
    return nullptr;
  }
  set->ts_ = readNumbered(root / "hls", "seg_", ".ts");
  set->ts_bandwidth_ = peakBandwidth(set->ts_, set->target_s_);
  std::vector<fs::path> reps;
  if (fs::is_directory(root / "dash", ec)) {
    for (const fs::directory_entry& e : fs::directory_iterator(root / "dash", ec)) {
      if (e.is_directory(ec)) reps.push_back(e.path());
    }
  }
  std::sort(reps.begin(), reps.end());
  for (const fs::path& rep : reps) {
    Track t;
    t.id = rep.filename().string();
    auto init = readFile(rep / "init.mp4");
    if (!init) continue;
    t.init = *init;
    t.info = parseMp4Init(*t.init);
    if (!t.info.ok) {
      *error = "--media-dir: " + (rep / "init.mp4").string() + ": no H.264 or AAC track found";
      return nullptr;
    }
    t.segments = readNumbered(rep, "seg_", ".m4s");
    if (t.segments.empty()) {
      *error = "--media-dir: " + rep.string() + ": no seg_0.m4s";
      return nullptr;
    }
    t.bandwidth = peakBandwidth(t.segments, set->target_s_);
    set->tracks_.push_back(std::move(t));
  }
  // Video first (the MPD's and the master playlist's CODECS order).
  std::stable_partition(set->tracks_.begin(), set->tracks_.end(), [](const Track& t) { return t.info.video; });
  if (!set->tracks_.empty()) {
    set->dash_count_ = set->tracks_.front().segments.size();
    for (const Track& t : set->tracks_) set->dash_count_ = std::min(set->dash_count_, t.segments.size());
  }
  if (set->ts_.empty() && set->tracks_.empty()) {
    *error = "--media-dir " + dir + ": neither hls/seg_0.ts nor dash/<rep>/init.mp4";
    return nullptr;
  }
  return set;
}

BodyPtr MediaSet::ts(int64_t k) const {
  if (ts_.empty()) return nullptr;
  return ts_[wrapIndex(k, ts_.size())];
}

const MediaSet::Track* MediaSet::dashTrack(std::string_view id) const {
  for (const Track& t : tracks_) {
    if (t.id == id) return &t;
  }
  return nullptr;
}

BodyPtr MediaSet::dashSegment(const Track& t, int64_t k) const {
  if (dash_count_ == 0) return nullptr;
  return t.segments[wrapIndex(k, dash_count_)];
}

std::string MediaSet::hlsMediaPlaylist(int64_t first, int64_t last, int64_t n0, int target_s) const {
  const auto m = static_cast<int64_t>(std::max<size_t>(1, ts_.size()));
  const int64_t disc_seq = std::max<int64_t>(0, floorDiv(first - n0, m));
  std::string t = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:" + std::to_string(target_s) +
                  "\n#EXT-X-MEDIA-SEQUENCE:" + std::to_string(first) + "\n";
  if (disc_seq > 0) t += "#EXT-X-DISCONTINUITY-SEQUENCE:" + std::to_string(disc_seq) + "\n";
  for (int64_t s = first; s <= last; ++s) {
    if (s != first && s > n0 && (s - n0) % m == 0) t += "#EXT-X-DISCONTINUITY\n";
    t += "#EXTINF:" + std::to_string(target_s) + ".000,\nseg_" + std::to_string(s) + ".ts\n";
  }
  return t;
}

std::string MediaSet::hlsMasterPlaylist() const {
  std::string codecs;
  int width = 0, height = 0;
  for (const Track& t : tracks_) {
    if (!codecs.empty()) codecs += ",";
    codecs += t.info.codecs;
    if (t.info.video) {
      width = t.info.width;
      height = t.info.height;
    }
  }
  std::string t = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-STREAM-INF:BANDWIDTH=" +
                  std::to_string(std::max<uint64_t>(1, ts_bandwidth_));
  if (width > 0) t += ",RESOLUTION=" + std::to_string(width) + "x" + std::to_string(height);
  if (!codecs.empty()) t += ",CODECS=\"" + codecs + "\"";
  t += "\nmain/index.m3u8\n";
  return t;
}

std::string MediaSet::dashAdaptationSets(int target_s) const {
  std::string t;
  for (const Track& tr : tracks_) {
    const Mp4TrackInfo& i = tr.info;
    t += std::string("    <AdaptationSet contentType=\"") + (i.video ? "video" : "audio") + "\" mimeType=\"" +
         (i.video ? "video/mp4" : "audio/mp4") + "\" segmentAlignment=\"true\" startWithSAP=\"1\">\n"
         "      <SegmentTemplate timescale=\"1\" duration=\"" + std::to_string(target_s) +
         "\" startNumber=\"1\" media=\"$RepresentationID$/seg_$Number$.m4s\" "
         "initialization=\"$RepresentationID$/init.mp4\"/>\n"
         "      <Representation id=\"" + tr.id + "\" bandwidth=\"" +
         std::to_string(std::max<uint64_t>(1, tr.bandwidth)) + "\" codecs=\"" + i.codecs + "\"";
    if (i.video) {
      t += " width=\"" + std::to_string(i.width) + "\" height=\"" + std::to_string(i.height) + "\"/>\n";
    } else {
      t += " audioSamplingRate=\"" + std::to_string(i.sample_rate) + "\">\n"
           "        <AudioChannelConfiguration schemeIdUri=\"urn:mpeg:dash:23003:3:audio_channel_configuration:2011\" "
           "value=\"" + std::to_string(i.channels) + "\"/>\n"
           "      </Representation>\n";
    }
    t += "    </AdaptationSet>\n";
  }
  return t;
}

}  // namespace streamedge::testsupport
