#include "streaming/cmcd.h"

#include <array>
#include <algorithm>
#include <charconv>

namespace streamedge::streaming {

namespace {

bool keyChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_';
}

// Unquoted values: integers, decimals and tokens (CTA-5004 §3.2 types); printable ASCII without
// the separators of the list, quotes or backslash.
bool bareChar(char c) {
  return c > 0x20 && c < 0x7f && c != ',' && c != '"' && c != '\\' && c != ';' && c != '=';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

// A non-negative integer (CTA-5004 integers; decimals are accepted and truncated for keys that
// the spec rounds anyway), at most 2^53.
bool number(std::string_view v, uint64_t& out) {
  const size_t dot = v.find('.');
  const std::string_view whole = v.substr(0, dot);
  if (whole.empty() || whole.size() > 16) return false;
  uint64_t n = 0;
  const auto [end, ec] = std::from_chars(whole.data(), whole.data() + whole.size(), n);
  if (ec != std::errc() || end != whole.data() + whole.size() || n > (1ull << 53)) return false;
  if (dot != std::string_view::npos) {
    const std::string_view frac = v.substr(dot + 1);
    if (frac.empty() || frac.size() > 3 || frac.find_first_not_of("0123456789") != std::string_view::npos) {
      return false;
    }
  }
  out = n;
  return true;
}

std::optional<CmcdObjectType> objectType(std::string_view v) {
  static constexpr std::array<std::pair<std::string_view, CmcdObjectType>, 9> kTypes = {{
      {"m", CmcdObjectType::kManifest}, {"a", CmcdObjectType::kAudio},
      {"v", CmcdObjectType::kVideo}, {"av", CmcdObjectType::kMuxed},
      {"i", CmcdObjectType::kInit}, {"c", CmcdObjectType::kCaption},
      {"tt", CmcdObjectType::kTimedText}, {"k", CmcdObjectType::kKey},
      {"o", CmcdObjectType::kOther},
  }};
  for (const auto& [name, type] : kTypes) {
    if (v == name) return type;
  }
  return std::nullopt;
}

// One member's value: a quoted string (checked, never copied), or a bare value. `quoted` tells
// which.
bool splitValue(std::string_view raw, std::string_view& value, bool& quoted) {
  quoted = false;
  if (raw.empty()) return false;
  if (raw.front() == '"') {
    if (raw.size() < 2 || raw.back() != '"') return false;
    const std::string_view inner = raw.substr(1, raw.size() - 2);
    for (size_t i = 0; i < inner.size(); ++i) {
      const char c = inner[i];
      if (c < 0x20 || c >= 0x7f) return false;
      if (c == '\\') {
        if (i + 1 >= inner.size() || (inner[i + 1] != '"' && inner[i + 1] != '\\')) return false;
        ++i;
      } else if (c == '"') {
        return false;
      }
    }
    value = inner;
    quoted = true;
    return true;
  }
  for (char c : raw) {
    if (!bareChar(c)) return false;
  }
  value = raw;
  return true;
}

bool boolean(std::string_view v, bool has_value, bool& out) {
  if (!has_value || v == "true" || v == "?1") {
    out = true;
    return true;
  }
  if (v == "false" || v == "?0") {
    out = false;
    return true;
  }
  return false;
}

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Keeps a nor value: string escapes (\\, \") and then the URL encoding undone (CTA-5004: the
// value is a URL-encoded relative path). Too long or badly encoded: not kept.
void keepNor(std::string_view quoted_inner, CmcdData& d) {
  std::array<char, kMaxCmcdNorBytes> unescaped;
  size_t n = 0;
  for (size_t i = 0; i < quoted_inner.size(); ++i) {
    char c = quoted_inner[i];
    if (c == '\\' && i + 1 < quoted_inner.size()) c = quoted_inner[++i];
    if (n >= unescaped.size()) return;
    unescaped[n++] = c;
  }
  size_t out = 0;
  for (size_t i = 0; i < n; ++i) {
    char c = unescaped[i];
    if (c == '%') {
      if (i + 2 >= n) return;
      const int hi = hexValue(unescaped[i + 1]);
      const int lo = hexValue(unescaped[i + 2]);
      if (hi < 0 || lo < 0) return;
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
    }
    d.nor_buf[out++] = c;
  }
  d.nor_len = static_cast<uint16_t>(out);
}

}  // namespace

void CmcdData::merge(const CmcdData& o) {
  if (o.br_kbps) br_kbps = o.br_kbps;
  if (o.bl_ms) bl_ms = o.bl_ms;
  if (o.d_ms) d_ms = o.d_ms;
  if (o.mtp_kbps) mtp_kbps = o.mtp_kbps;
  bs = bs || o.bs;
  su = su || o.su;
  if (o.ot != CmcdObjectType::kUnknown) ot = o.ot;
  if (o.st != 0) st = o.st;
  has_nor = has_nor || o.has_nor;
  if (o.nor_len > 0) {
    std::copy_n(o.nor_buf.data(), o.nor_len, nor_buf.data());
    nor_len = o.nor_len;
  }
  has_nrr = has_nrr || o.has_nrr;
  had_sid = had_sid || o.had_sid;
  had_cid = had_cid || o.had_cid;
  any = any || o.any;
}

bool parseCmcdList(std::string_view list, CmcdData& out) {
  if (list.size() > kMaxCmcdBytes) return false;
  CmcdData d;
  size_t members = 0;
  size_t pos = 0;
  list = trim(list);
  if (list.empty()) return false;
  while (pos <= list.size()) {
    // The member ends at the next comma outside a quoted string.
    size_t end = pos;
    bool in_quotes = false;
    for (; end < list.size(); ++end) {
      const char c = list[end];
      if (in_quotes && c == '\\') {
        ++end;  // the escaped character (checked in splitValue)
        continue;
      }
      if (c == '"') in_quotes = !in_quotes;
      if (c == ',' && !in_quotes) break;
    }
    if (in_quotes) return false;
    const std::string_view member = trim(list.substr(pos, std::min(end, list.size()) - pos));
    pos = end + 1;
    if (member.empty()) return false;
    if (++members > kMaxCmcdMembers) return false;
    const size_t eq = member.find('=');
    const std::string_view key = member.substr(0, eq);
    if (key.empty() || key.size() > 64) return false;
    for (char c : key) {
      if (!keyChar(c)) return false;
    }
    const bool has_value = eq != std::string_view::npos;
    std::string_view value;
    bool quoted = false;
    if (has_value && !splitValue(member.substr(eq + 1), value, quoted)) return false;

    uint64_t n = 0;
    if (key == "br" || key == "bl" || key == "d" || key == "mtp") {
      if (!has_value || quoted || !number(value, n)) return false;
      (key == "br" ? d.br_kbps : key == "bl" ? d.bl_ms : key == "d" ? d.d_ms : d.mtp_kbps) = n;
    } else if (key == "bs" || key == "su") {
      if (quoted || !boolean(value, has_value, key == "bs" ? d.bs : d.su)) return false;
    } else if (key == "ot") {
      const std::optional<CmcdObjectType> t = has_value && !quoted ? objectType(value) : std::nullopt;
      if (!t) return false;
      d.ot = *t;
    } else if (key == "st") {
      if (!has_value || quoted || (value != "v" && value != "l")) return false;
      d.st = value[0];
    } else if (key == "sid" || key == "cid") {
      // Personal: only whether it was there. The value is not looked at beyond the grammar.
      if (!has_value || !quoted) return false;
      (key == "sid" ? d.had_sid : d.had_cid) = true;
    } else if (key == "nor") {
      if (!has_value || !quoted) return false;
      d.has_nor = true;
      keepNor(value, d);
    } else if (key == "nrr") {
      if (!has_value || !quoted) return false;
      d.has_nrr = true;
    }
    // Other keys (dl, pr, rtp, sf, tb, v, custom "vendor-key" ones): valid, not used.
    if (end >= list.size()) break;
  }
  d.any = true;
  out.merge(d);
  return true;
}

bool parseCmcdQuery(std::string_view query, CmcdData& out) {
  if (!query.empty() && query.front() == '?') query.remove_prefix(1);
  size_t pos = 0;
  while (pos <= query.size()) {
    size_t amp = query.find('&', pos);
    if (amp == std::string_view::npos) amp = query.size();
    const std::string_view param = query.substr(pos, amp - pos);
    pos = amp + 1;
    const size_t eq = param.find('=');
    if (eq == std::string_view::npos || !equalsIgnoreCase(param.substr(0, eq), "CMCD")) continue;
    const std::string_view encoded = param.substr(eq + 1);
    if (encoded.size() > 3 * kMaxCmcdBytes) return false;
    char buf[kMaxCmcdBytes];
    size_t n = 0;
    for (size_t i = 0; i < encoded.size(); ++i) {
      char c = encoded[i];
      if (c == '%') {
        if (i + 2 >= encoded.size()) return false;
        const int hi = hexValue(encoded[i + 1]);
        const int lo = hexValue(encoded[i + 2]);
        if (hi < 0 || lo < 0) return false;
        c = static_cast<char>(hi * 16 + lo);
        i += 2;
      } else if (c == '+') {
        c = ' ';
      }
      if (n >= sizeof buf) return false;
      buf[n++] = c;
    }
    return parseCmcdList(std::string_view(buf, n), out);  // the first CMCD parameter counts
  }
  return false;
}

bool isCmcdField(std::string_view name) {
  return name.size() > 5 && equalsIgnoreCase(name.substr(0, 5), "CMCD-");
}

}  // namespace streamedge::streaming
