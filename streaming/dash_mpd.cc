#include "streaming/dash_mpd.h"

#include <pugixml.hpp>

#include <cstring>
#include <utility>

#include "streaming/text.h"

namespace streamedge::streaming {

namespace {

constexpr Status kTooLargeStatus(Code::kTooLarge, Source::kUpstream, "MPD over the size or entry limit");

Status invalid(const char* detail) { return Status(Code::kInvalid, Source::kUpstream, detail); }

// The local name of an element ("mpd:Period" → "Period"): MPDs use the default namespace, but a
// prefixed one is valid XML too.
std::string_view localName(const pugi::xml_node& n) {
  std::string_view name = n.name();
  const size_t colon = name.find(':');
  return colon == std::string_view::npos ? name : name.substr(colon + 1);
}

// Attributes by exact name; an attribute given twice is not well-formed XML and pugixml refuses
// the document already.
const char* attr(const pugi::xml_node& n, const char* name) {
  const pugi::xml_attribute a = n.attribute(name);
  return a ? a.value() : nullptr;
}

bool optInt(const pugi::xml_node& n, const char* name, std::optional<uint64_t>& out) {
  const char* v = attr(n, name);
  if (!v) return true;
  uint64_t x = 0;
  if (!parseDecimalInteger(v, x)) return false;
  out = x;
  return true;
}

bool optDuration(const pugi::xml_node& n, const char* name, std::optional<double>& out) {
  const char* v = attr(n, name);
  if (!v) return true;
  out = parseIsoDuration(v);
  return out.has_value();
}

bool optDateTime(const pugi::xml_node& n, const char* name, std::optional<double>& out) {
  const char* v = attr(n, name);
  if (!v) return true;
  out = parseIsoDateTime(v);
  return out.has_value();
}

// A SegmentTemplate element laid over the one inherited from the level above.
bool overlayTemplate(const pugi::xml_node& el, DashSegmentTemplate& t, size_t& entries) {
  if (const char* v = attr(el, "media")) t.media = v;
  if (const char* v = attr(el, "initialization")) t.initialization = v;
  std::optional<uint64_t> x;
  if (!optInt(el, "timescale", x)) return false;
  if (x) {
    if (*x == 0) return false;
    t.timescale = *x;
  }
  x.reset();
  if (!optInt(el, "duration", x)) return false;
  if (x) t.duration = *x;
  x.reset();
  if (!optInt(el, "startNumber", x)) return false;
  if (x) t.start_number = *x;
  x.reset();
  if (!optInt(el, "presentationTimeOffset", x)) return false;
  if (x) t.presentation_time_offset = *x;
  if (const char* v = attr(el, "availabilityTimeOffset")) {
    double ato = 0;
    // "INF" is allowed by the schema: the segment is available as soon as it is announced.
    if (std::strcmp(v, "INF") == 0) {
      ato = 1e12;
    } else if (!parseDecimalFloat(v, ato)) {
      return false;
    }
    t.availability_time_offset_s = ato;
  }
  for (const pugi::xml_node& child : el.children()) {
    if (child.type() != pugi::node_element || localName(child) != "SegmentTimeline") continue;
    t.timeline.clear();
    for (const pugi::xml_node& s : child.children()) {
      if (s.type() != pugi::node_element || localName(s) != "S") continue;
      if (++entries > kMaxMpdEntries) return false;
      DashTimelineEntry e;
      std::optional<uint64_t> d;
      if (!optInt(s, "t", e.t) || !optInt(s, "d", d) || !d || *d == 0) return false;
      e.d = *d;
      if (const char* r = attr(s, "r")) {
        uint64_t rv = 0;
        if (std::strcmp(r, "-1") == 0) {
          e.r = -1;
        } else if (parseDecimalInteger(r, rv) && rv <= (1u << 30)) {
          e.r = static_cast<int64_t>(rv);
        } else {
          return false;
        }
      }
      t.timeline.push_back(e);
    }
  }
  return true;
}

const pugi::xml_node firstChild(const pugi::xml_node& n, std::string_view name) {
  for (const pugi::xml_node& c : n.children()) {
    if (c.type() == pugi::node_element && localName(c) == name) return c;
  }
  return pugi::xml_node();
}

}  // namespace

Result<DashMpd> parseDashMpd(std::string_view xml) {
  if (xml.size() > kMaxMpdBytes) return kTooLargeStatus;
  pugi::xml_document doc;
  // parse_default without escapes of unknown entities being kept as text; no DOCTYPE
  // processing exists in pugixml at all.
  const pugi::xml_parse_result parsed =
      doc.load_buffer(xml.data(), xml.size(), pugi::parse_default, pugi::encoding_utf8);
  if (!parsed) return invalid("MPD is not well-formed XML");
  const pugi::xml_node root = doc.document_element();
  if (!root || localName(root) != "MPD") return invalid("no MPD root element");

  DashMpd mpd;
  if (const char* type = attr(root, "type")) {
    if (std::strcmp(type, "dynamic") == 0) {
      mpd.dynamic = true;
    } else if (std::strcmp(type, "static") != 0) {
      return invalid("bad MPD@type");
    }
  }
  if (!optDuration(root, "minimumUpdatePeriod", mpd.minimum_update_period_s) ||
      !optDuration(root, "timeShiftBufferDepth", mpd.time_shift_buffer_depth_s) ||
      !optDuration(root, "mediaPresentationDuration", mpd.media_presentation_duration_s) ||
      !optDateTime(root, "availabilityStartTime", mpd.availability_start_time_s) ||
      !optDateTime(root, "publishTime", mpd.publish_time_s)) {
    return invalid("bad MPD attribute");
  }
  if (mpd.dynamic && !mpd.availability_start_time_s) {
    return invalid("dynamic MPD without availabilityStartTime");
  }

  size_t entries = 0;
  for (const pugi::xml_node& pn : root.children()) {
    if (pn.type() != pugi::node_element || localName(pn) != "Period") continue;
    if (++entries > kMaxMpdEntries) return kTooLargeStatus;
    DashPeriod period;
    if (const char* id = attr(pn, "id")) period.id = id;
    if (!optDuration(pn, "start", period.start_s) || !optDuration(pn, "duration", period.duration_s)) {
      return invalid("bad Period attribute");
    }
    std::optional<DashSegmentTemplate> period_tmpl;
    if (const pugi::xml_node st = firstChild(pn, "SegmentTemplate")) {
      period_tmpl.emplace();
      if (!overlayTemplate(st, *period_tmpl, entries)) {
        return entries > kMaxMpdEntries ? Status(kTooLargeStatus) : invalid("bad SegmentTemplate");
      }
    }
    for (const pugi::xml_node& an : pn.children()) {
      if (an.type() != pugi::node_element || localName(an) != "AdaptationSet") continue;
      if (++entries > kMaxMpdEntries) return kTooLargeStatus;
      DashAdaptationSet set;
      if (const char* ct = attr(an, "contentType")) {
        set.content_type = ct;
      } else if (const char* mt = attr(an, "mimeType")) {
        std::string_view m = mt;
        set.content_type.assign(m.substr(0, m.find('/')));
      }
      std::optional<DashSegmentTemplate> set_tmpl = period_tmpl;
      if (const pugi::xml_node st = firstChild(an, "SegmentTemplate")) {
        if (!set_tmpl) set_tmpl.emplace();
        if (!overlayTemplate(st, *set_tmpl, entries)) {
          return entries > kMaxMpdEntries ? Status(kTooLargeStatus) : invalid("bad SegmentTemplate");
        }
      }
      for (const pugi::xml_node& rn : an.children()) {
        if (rn.type() != pugi::node_element || localName(rn) != "Representation") continue;
        if (++entries > kMaxMpdEntries) return kTooLargeStatus;
        DashRepresentation rep;
        const char* id = attr(rn, "id");
        std::optional<uint64_t> bw;
        // §5.3.5.2: id and bandwidth are mandatory; ids must not contain whitespace.
        if (!id || *id == '\0' || std::strpbrk(id, " \t\r\n") != nullptr) {
          return invalid("Representation without a valid id");
        }
        if (!optInt(rn, "bandwidth", bw) || !bw) return invalid("Representation without bandwidth");
        rep.id = id;
        rep.bandwidth = *bw;
        rep.segment_template = set_tmpl;
        if (const pugi::xml_node st = firstChild(rn, "SegmentTemplate")) {
          if (!rep.segment_template) rep.segment_template.emplace();
          if (!overlayTemplate(st, *rep.segment_template, entries)) {
            return entries > kMaxMpdEntries ? Status(kTooLargeStatus) : invalid("bad SegmentTemplate");
          }
        }
        set.representations.push_back(std::move(rep));
      }
      period.adaptation_sets.push_back(std::move(set));
    }
    mpd.periods.push_back(std::move(period));
  }
  if (mpd.periods.empty()) return invalid("MPD without a Period");
  return mpd;
}

Result<std::vector<DashSegmentRef>> expandTimeline(const DashSegmentTemplate& tmpl,
                                                   std::optional<uint64_t> period_end,
                                                   size_t max_segments) {
  if (tmpl.timeline.empty()) return invalid("no SegmentTimeline");
  std::vector<DashSegmentRef> out;
  uint64_t number = tmpl.start_number;
  uint64_t time = tmpl.timeline.front().t.value_or(tmpl.presentation_time_offset);
  for (size_t i = 0; i < tmpl.timeline.size(); ++i) {
    const DashTimelineEntry& e = tmpl.timeline[i];
    if (e.t) {
      if (*e.t < time) return invalid("SegmentTimeline goes back in time");
      time = *e.t;
    }
    uint64_t repeats = 0;  // segments after the first
    if (e.r >= 0) {
      repeats = static_cast<uint64_t>(e.r);
    } else {
      // Until the next S's t, or the end of the period.
      std::optional<uint64_t> end;
      if (i + 1 < tmpl.timeline.size()) {
        end = tmpl.timeline[i + 1].t;
      } else {
        end = period_end;
      }
      if (!end) return invalid("open repeat without an end");
      if (*end <= time) {
        repeats = 0;
      } else {
        const uint64_t n = (*end - time + e.d - 1) / e.d;  // segments that start before the end
        repeats = n - 1;
      }
    }
    for (uint64_t k = 0; k <= repeats; ++k) {
      if (out.size() >= max_segments) return Status(Code::kTooLarge, Source::kUpstream, "too many segments");
      if (time > UINT64_MAX - e.d || number == UINT64_MAX) return invalid("SegmentTimeline overflows");
      out.push_back(DashSegmentRef{number, time, e.d});
      time += e.d;
      ++number;
    }
  }
  return out;
}

Result<std::string> formatSegmentUrl(std::string_view tmpl, std::string_view representation_id,
                                     uint64_t number, uint64_t time, uint64_t bandwidth) {
  constexpr size_t kMaxUrl = 8192;
  std::string out;
  size_t i = 0;
  while (i < tmpl.size()) {
    const size_t dollar = tmpl.find('$', i);
    if (dollar == std::string_view::npos) {
      out.append(tmpl.substr(i));
      break;
    }
    out.append(tmpl.substr(i, dollar - i));
    const size_t close = tmpl.find('$', dollar + 1);
    if (close == std::string_view::npos) return invalid("unterminated template identifier");
    const std::string_view ident = tmpl.substr(dollar + 1, close - dollar - 1);
    i = close + 1;
    if (ident.empty()) {
      out.push_back('$');  // "$$"
      continue;
    }
    const size_t pct = ident.find('%');
    const std::string_view name = ident.substr(0, pct);
    size_t width = 1;
    if (pct != std::string_view::npos) {
      // %0<width>d
      const std::string_view fmt = ident.substr(pct);
      if (fmt.size() < 3 || fmt[1] != '0' || fmt.back() != 'd') return invalid("bad template width");
      uint64_t w = 0;
      const std::string_view digits = fmt.substr(2, fmt.size() - 3);
      if (digits.empty()) {
        w = 1;
      } else if (!parseDecimalInteger(digits, w) || w > 32) {
        return invalid("bad template width");
      }
      width = static_cast<size_t>(w);
    }
    uint64_t value = 0;
    if (name == "RepresentationID") {
      if (pct != std::string_view::npos) return invalid("width on $RepresentationID$");
      out.append(representation_id);
      continue;
    } else if (name == "Number") {
      value = number;
    } else if (name == "Time") {
      value = time;
    } else if (name == "Bandwidth") {
      value = bandwidth;
    } else {
      return invalid("unknown template identifier");
    }
    const std::string digits = std::to_string(value);
    if (digits.size() < width) out.append(width - digits.size(), '0');
    out.append(digits);
    if (out.size() > kMaxUrl) return invalid("segment URL too long");
  }
  if (out.size() > kMaxUrl) return invalid("segment URL too long");
  return out;
}

}  // namespace streamedge::streaming
