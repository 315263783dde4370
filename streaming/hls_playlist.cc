#include "streaming/hls_playlist.h"

#include <charconv>
#include <cmath>
#include <utility>

#include "streaming/text.h"

namespace streamedge::streaming {

namespace {

constexpr Status kTooLargeStatus(Code::kTooLarge, Source::kUpstream, "playlist over the size or entry limit");

Status invalid(const char* detail) { return Status(Code::kInvalid, Source::kUpstream, detail); }

// One attribute of an attribute-list (RFC 8216 §4.2); a quoted-string value is unquoted.
struct Attribute {
  std::string_view name;
  std::string_view value;
  bool quoted = false;
};

// AttributeName=AttributeValue, comma separated. Names: [A-Z0-9-]; values: a quoted-string (no
// CR, LF or '"' inside) or an unquoted run without commas or whitespace. At most 64 attributes.
bool parseAttributeList(std::string_view text, std::vector<Attribute>& out) {
  out.clear();
  size_t i = 0;
  while (i < text.size()) {
    if (out.size() >= 64) return false;
    const size_t eq = text.find('=', i);
    if (eq == std::string_view::npos || eq == i) return false;
    Attribute a;
    a.name = text.substr(i, eq - i);
    for (char c : a.name) {
      if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-')) return false;
    }
    i = eq + 1;
    if (i < text.size() && text[i] == '"') {
      const size_t close = text.find('"', i + 1);
      if (close == std::string_view::npos) return false;
      a.value = text.substr(i + 1, close - i - 1);
      a.quoted = true;
      i = close + 1;
    } else {
      size_t end = text.find(',', i);
      if (end == std::string_view::npos) end = text.size();
      a.value = text.substr(i, end - i);
      if (a.value.empty()) return false;
      for (char c : a.value) {
        if (c == ' ' || c == '\t' || c == '"') return false;
      }
      i = end;
    }
    for (const Attribute& seen : out) {
      if (seen.name == a.name) return false;  // §4.2: an attribute appears at most once
    }
    out.push_back(a);
    if (i == text.size()) break;
    if (text[i] != ',') return false;
    ++i;
    if (i == text.size()) return false;  // a trailing comma
  }
  return true;
}

const Attribute* find(const std::vector<Attribute>& attrs, std::string_view name) {
  for (const Attribute& a : attrs) {
    if (a.name == name) return &a;
  }
  return nullptr;
}

// A quoted-string attribute that must be present and non-empty (URIs).
bool quotedUri(const std::vector<Attribute>& attrs, std::string_view name, std::string& out) {
  const Attribute* a = find(attrs, name);
  if (!a || !a->quoted || a->value.empty() || a->value.size() > kMaxUriBytes) return false;
  out.assign(a->value);
  return true;
}

bool optionalFloat(const std::vector<Attribute>& attrs, std::string_view name,
                   std::optional<double>& out) {
  const Attribute* a = find(attrs, name);
  if (!a) return true;
  if (a->quoted) return false;
  double v = 0;
  if (!parseDecimalFloat(a->value, v)) return false;
  out = v;
  return true;
}

bool optionalInteger(const std::vector<Attribute>& attrs, std::string_view name,
                     std::optional<uint64_t>& out) {
  const Attribute* a = find(attrs, name);
  if (!a) return true;
  if (a->quoted) return false;
  uint64_t v = 0;
  if (!parseDecimalInteger(a->value, v)) return false;
  out = v;
  return true;
}

// An enumerated YES (true), NO or absent (false); anything else is an error.
bool optionalYes(const std::vector<Attribute>& attrs, std::string_view name, bool& out) {
  const Attribute* a = find(attrs, name);
  out = false;
  if (!a) return true;
  if (a->quoted) return false;
  if (a->value == "YES") {
    out = true;
    return true;
  }
  return a->value == "NO";
}

bool parsePart(std::string_view value, HlsPart& part, std::vector<Attribute>& attrs) {
  if (!parseAttributeList(value, attrs) || !quotedUri(attrs, "URI", part.uri)) return false;
  std::optional<double> duration;
  if (!optionalFloat(attrs, "DURATION", duration) || !duration) return false;
  part.duration_s = *duration;
  return optionalYes(attrs, "INDEPENDENT", part.independent) && optionalYes(attrs, "GAP", part.gap);
}

// "<duration>,[<title>]" (§4.3.2.1); the comma is required, a decimal-integer is allowed too.
bool parseExtinf(std::string_view value, double& duration) {
  const size_t comma = value.find(',');
  if (comma == std::string_view::npos) return false;
  return parseDecimalFloat(value.substr(0, comma), duration);
}

class Parser {
 public:
  Result<HlsPlaylist> run(std::string_view text);

 private:
  enum class Kind { kUnknown, kMedia, kMaster };
  bool setKind(Kind k) {
    if (kind_ != Kind::kUnknown && kind_ != k) return false;
    kind_ = k;
    return true;
  }
  bool count() { return ++entries_ <= kMaxPlaylistEntries; }

  Kind kind_ = Kind::kUnknown;
  size_t entries_ = 0;
  std::vector<Attribute> attrs_;
};

Result<HlsPlaylist> Parser::run(std::string_view text) {
  if (text.size() > kMaxPlaylistBytes) return kTooLargeStatus;
  HlsMediaPlaylist media;
  HlsMasterPlaylist master;
  bool have_target = false, have_sequence = false, have_part_inf = false, have_control = false;
  bool have_skip = false, have_type = false;
  // Between an EXTINF and its URI line (a plain flag and value: GCC 12 sees an optional<double>
  // as maybe uninitialised here).
  bool pending_extinf = false;
  double pending_duration = 0;
  // Between an EXT-X-STREAM-INF and its URI line.
  std::optional<HlsVariant> pending_variant;
  std::vector<HlsPart> pending_parts;

  size_t pos = 0;
  bool first = true;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    for (char c : line) {
      // §4.1: UTF-8 text without control characters (tabs are tolerated inside titles).
      if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) {
        return invalid("control character in playlist");
      }
    }
    if (first) {
      if (line != "#EXTM3U") return invalid("playlist does not start with #EXTM3U");
      first = false;
      continue;
    }
    // Whitespace-only lines count as blank (§4.1 allows blank lines).
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;

    if (line.front() != '#') {
      // A URI line.
      if (line.size() > kMaxUriBytes) return invalid("URI too long");
      if (pending_variant) {
        pending_variant->uri.assign(line);
        master.variants.push_back(std::move(*pending_variant));
        pending_variant.reset();
        continue;
      }
      if (!pending_extinf) return invalid("URI line without EXTINF or EXT-X-STREAM-INF");
      if (!setKind(Kind::kMedia)) return invalid("media and master playlist tags mixed");
      HlsSegment seg;
      seg.duration_s = pending_duration;
      seg.uri.assign(line);
      seg.parts = std::move(pending_parts);
      pending_parts.clear();
      media.segments.push_back(std::move(seg));
      pending_extinf = false;
      continue;
    }
    if (line.substr(0, 4) != "#EXT") continue;  // a comment

    const size_t colon = line.find(':');
    const std::string_view tag = line.substr(0, colon);
    const std::string_view value =
        colon == std::string_view::npos ? std::string_view() : line.substr(colon + 1);
    if (pending_variant) return invalid("tag between EXT-X-STREAM-INF and its URI");

    if (tag == "#EXTM3U") {
      return invalid("repeated #EXTM3U");
    } else if (tag == "#EXT-X-TARGETDURATION") {
      if (!setKind(Kind::kMedia) || have_target) return invalid("repeated EXT-X-TARGETDURATION");
      if (!parseDecimalInteger(value, media.target_duration_s)) return invalid("bad EXT-X-TARGETDURATION");
      have_target = true;
    } else if (tag == "#EXT-X-MEDIA-SEQUENCE") {
      if (!setKind(Kind::kMedia) || have_sequence || !media.segments.empty() || pending_extinf) {
        return invalid("misplaced EXT-X-MEDIA-SEQUENCE");
      }
      if (!parseDecimalInteger(value, media.media_sequence)) return invalid("bad EXT-X-MEDIA-SEQUENCE");
      have_sequence = true;
    } else if (tag == "#EXTINF") {
      if (!setKind(Kind::kMedia) || pending_extinf) return invalid("EXTINF without a URI");
      double d = 0;
      if (!parseExtinf(value, d)) return invalid("bad EXTINF");
      if (!count()) return kTooLargeStatus;
      pending_extinf = true;
      pending_duration = d;
    } else if (tag == "#EXT-X-ENDLIST") {
      if (!setKind(Kind::kMedia)) return invalid("media and master playlist tags mixed");
      media.endlist = true;
    } else if (tag == "#EXT-X-PLAYLIST-TYPE") {
      if (!setKind(Kind::kMedia) || have_type || (value != "VOD" && value != "EVENT")) {
        return invalid("bad EXT-X-PLAYLIST-TYPE");
      }
      media.playlist_type.assign(value);
      have_type = true;
    } else if (tag == "#EXT-X-PART-INF") {
      if (!setKind(Kind::kMedia) || have_part_inf || !parseAttributeList(value, attrs_)) {
        return invalid("bad EXT-X-PART-INF");
      }
      if (!optionalFloat(attrs_, "PART-TARGET", media.part_target_s) || !media.part_target_s ||
          *media.part_target_s <= 0) {
        return invalid("bad EXT-X-PART-INF PART-TARGET");
      }
      have_part_inf = true;
    } else if (tag == "#EXT-X-PART") {
      if (!setKind(Kind::kMedia)) return invalid("media and master playlist tags mixed");
      HlsPart part;
      if (!parsePart(value, part, attrs_)) return invalid("bad EXT-X-PART");
      if (!count()) return kTooLargeStatus;
      pending_parts.push_back(std::move(part));
    } else if (tag == "#EXT-X-SERVER-CONTROL") {
      if (!setKind(Kind::kMedia) || have_control || !parseAttributeList(value, attrs_)) {
        return invalid("bad EXT-X-SERVER-CONTROL");
      }
      HlsServerControl& sc = media.server_control;
      if (!optionalYes(attrs_, "CAN-BLOCK-RELOAD", sc.can_block_reload) ||
          !optionalYes(attrs_, "CAN-SKIP-DATERANGES", sc.can_skip_dateranges) ||
          !optionalFloat(attrs_, "CAN-SKIP-UNTIL", sc.can_skip_until_s) ||
          !optionalFloat(attrs_, "HOLD-BACK", sc.hold_back_s) ||
          !optionalFloat(attrs_, "PART-HOLD-BACK", sc.part_hold_back_s)) {
        return invalid("bad EXT-X-SERVER-CONTROL attribute");
      }
      have_control = true;
    } else if (tag == "#EXT-X-PRELOAD-HINT") {
      if (!setKind(Kind::kMedia) || !parseAttributeList(value, attrs_)) return invalid("bad EXT-X-PRELOAD-HINT");
      HlsPreloadHint hint;
      const Attribute* type = find(attrs_, "TYPE");
      if (!type || type->quoted) return invalid("EXT-X-PRELOAD-HINT without TYPE");
      if (type->value == "PART") {
        hint.type = HlsPreloadHint::Type::kPart;
      } else if (type->value == "MAP") {
        hint.type = HlsPreloadHint::Type::kMap;
      } else {
        return invalid("bad EXT-X-PRELOAD-HINT TYPE");
      }
      if (!quotedUri(attrs_, "URI", hint.uri) ||
          !optionalInteger(attrs_, "BYTERANGE-START", hint.byterange_start) ||
          !optionalInteger(attrs_, "BYTERANGE-LENGTH", hint.byterange_length)) {
        return invalid("bad EXT-X-PRELOAD-HINT attribute");
      }
      if (!count()) return kTooLargeStatus;
      media.preload_hints.push_back(std::move(hint));
    } else if (tag == "#EXT-X-SKIP") {
      // §4.4.5.2: a delta update replaces the oldest segments with this tag, before any segment.
      if (!setKind(Kind::kMedia) || have_skip || !media.segments.empty() || pending_extinf ||
          !parseAttributeList(value, attrs_)) {
        return invalid("bad EXT-X-SKIP");
      }
      std::optional<uint64_t> skipped;
      if (!optionalInteger(attrs_, "SKIPPED-SEGMENTS", skipped) || !skipped) {
        return invalid("EXT-X-SKIP without SKIPPED-SEGMENTS");
      }
      media.skipped_segments = *skipped;
      have_skip = true;
    } else if (tag == "#EXT-X-STREAM-INF") {
      if (!setKind(Kind::kMaster) || !parseAttributeList(value, attrs_)) return invalid("bad EXT-X-STREAM-INF");
      std::optional<uint64_t> bandwidth;
      if (!optionalInteger(attrs_, "BANDWIDTH", bandwidth) || !bandwidth) {
        return invalid("EXT-X-STREAM-INF without BANDWIDTH");
      }
      if (!count()) return kTooLargeStatus;
      pending_variant = HlsVariant{std::string(), *bandwidth};
    } else if (tag == "#EXT-X-MEDIA" || tag == "#EXT-X-I-FRAME-STREAM-INF") {
      if (!setKind(Kind::kMaster) || !parseAttributeList(value, attrs_)) return invalid("bad EXT-X-MEDIA");
      HlsRendition r;
      if (tag == "#EXT-X-MEDIA") {
        const Attribute* type = find(attrs_, "TYPE");
        const Attribute* group = find(attrs_, "GROUP-ID");
        const Attribute* name = find(attrs_, "NAME");
        if (!type || type->quoted || !group || !group->quoted || !name || !name->quoted) {
          return invalid("EXT-X-MEDIA without TYPE, GROUP-ID or NAME");
        }
        r.type.assign(type->value);
        r.group_id.assign(group->value);
        r.name.assign(name->value);
        // URI is optional (a rendition in the variant's own stream) but never empty when given.
        if (find(attrs_, "URI") && !quotedUri(attrs_, "URI", r.uri)) return invalid("bad EXT-X-MEDIA URI");
      } else {
        r.type = "I-FRAME";
        if (!quotedUri(attrs_, "URI", r.uri)) return invalid("EXT-X-I-FRAME-STREAM-INF without URI");
      }
      if (!count()) return kTooLargeStatus;
      master.renditions.push_back(std::move(r));
    }
    // Any other tag: ignored (§4.1).
  }
  if (first) return invalid("empty playlist");
  if (pending_variant) return invalid("EXT-X-STREAM-INF without its URI");
  if (pending_extinf) return invalid("EXTINF without its URI");
  if (kind_ == Kind::kMaster) return HlsPlaylist(std::move(master));
  if (!have_target) return invalid("media playlist without EXT-X-TARGETDURATION");
  if (media.media_sequence > UINT64_MAX - media.skipped_segments - media.segments.size() - 1) {
    return invalid("media sequence number overflows");
  }
  uint64_t msn = media.media_sequence + media.skipped_segments;
  for (HlsSegment& seg : media.segments) seg.msn = msn++;
  media.trailing_parts = std::move(pending_parts);
  return HlsPlaylist(std::move(media));
}

}  // namespace

std::optional<uint64_t> HlsMediaPlaylist::lastMsn() const {
  if (segments.empty()) return std::nullopt;
  return segments.back().msn;
}

uint64_t HlsMediaPlaylist::nextMsn() const {
  return media_sequence + skipped_segments + segments.size();
}

bool HlsMediaPlaylist::contains(uint64_t msn, std::optional<uint64_t> part) const {
  const std::optional<uint64_t> last = lastMsn();
  // A whole segment: it, or a later one, is complete.
  if (last && msn <= *last) return true;
  if (!part) return false;
  // A partial segment of the segment being produced.
  return msn == nextMsn() && *part < trailing_parts.size();
}

Result<HlsPlaylist> parseHlsPlaylist(std::string_view text) { return Parser().run(text); }

bool looksLikeHls(std::string_view text) { return text.substr(0, 7) == "#EXTM3U"; }

}  // namespace streamedge::streaming
