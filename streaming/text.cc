#include "streaming/text.h"

#include <charconv>
#include <cmath>

namespace streamedge::streaming {

namespace {

bool allDigits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

// A run of digits as a small integer (no overflow: at most 9 digits).
bool smallInt(std::string_view s, int& out) {
  if (!allDigits(s) || s.size() > 9) return false;
  out = 0;
  for (char c : s) out = out * 10 + (c - '0');
  return true;
}

int64_t daysFromCivil(int64_t y, unsigned m, unsigned d) {
  // Howard Hinnant's days_from_civil: days since 1970-01-01 of a proleptic Gregorian date.
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

}  // namespace

bool parseDecimalInteger(std::string_view s, uint64_t& out) {
  if (!allDigits(s) || s.size() > 20) return false;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

bool parseDecimalFloat(std::string_view s, double& out) {
  const size_t dot = s.find('.');
  const std::string_view whole = s.substr(0, dot);
  if (!allDigits(whole) || whole.size() > 13) return false;
  if (dot != std::string_view::npos && !allDigits(s.substr(dot + 1))) return false;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out, std::chars_format::fixed);
  return ec == std::errc() && ptr == s.data() + s.size() && std::isfinite(out) && out <= 1e12;
}

std::optional<double> parseIsoDuration(std::string_view s) {
  if (s.size() < 3 || s.size() > 64 || s[0] != 'P') return std::nullopt;
  double total = 0;
  bool in_time = false, any = false;
  char last_unit = 0;  // units must come in order, each at most once
  size_t i = 1;
  static constexpr std::string_view kDateUnits = "D";
  static constexpr std::string_view kTimeUnits = "HMS";
  while (i < s.size()) {
    if (s[i] == 'T') {
      if (in_time || i + 1 == s.size()) return std::nullopt;
      in_time = true;
      last_unit = 0;
      ++i;
      continue;
    }
    size_t j = i;
    while (j < s.size() && ((s[j] >= '0' && s[j] <= '9') || s[j] == '.')) ++j;
    if (j == i || j == s.size()) return std::nullopt;
    double v = 0;
    if (!parseDecimalFloat(s.substr(i, j - i), v)) return std::nullopt;
    const char unit = s[j];
    const std::string_view units = in_time ? kTimeUnits : kDateUnits;
    const size_t rank = units.find(unit);
    if (rank == std::string_view::npos) return std::nullopt;
    if (last_unit != 0 && units.find(last_unit) >= rank) return std::nullopt;
    // Only the seconds may have a fraction (xs:duration).
    if (unit != 'S' && s.substr(i, j - i).find('.') != std::string_view::npos) return std::nullopt;
    last_unit = unit;
    switch (unit) {
      case 'D': total += v * 86400; break;
      case 'H': total += v * 3600; break;
      case 'M': total += v * 60; break;
      default: total += v; break;
    }
    any = true;
    i = j + 1;
  }
  if (!any || !std::isfinite(total) || total > 10.0 * 366 * 86400) return std::nullopt;
  return total;
}

std::optional<double> parseIsoDateTime(std::string_view s) {
  // YYYY-MM-DDThh:mm:ss[.fff](Z|±hh:mm)
  if (s.size() < 20 || s.size() > 40) return std::nullopt;
  int y, mo, d, h, mi, sec;
  if (s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':') return std::nullopt;
  if (!smallInt(s.substr(0, 4), y) || !smallInt(s.substr(5, 2), mo) || !smallInt(s.substr(8, 2), d) ||
      !smallInt(s.substr(11, 2), h) || !smallInt(s.substr(14, 2), mi) || !smallInt(s.substr(17, 2), sec)) {
    return std::nullopt;
  }
  if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60) return std::nullopt;
  size_t i = 19;
  double frac = 0;
  if (i < s.size() && s[i] == '.') {
    size_t j = i + 1;
    while (j < s.size() && s[j] >= '0' && s[j] <= '9') ++j;
    if (j == i + 1 || j - i > 13) return std::nullopt;
    std::string_view digits = s.substr(i + 1, j - i - 1);
    double scale = 0.1;
    for (char c : digits) {
      frac += (c - '0') * scale;
      scale /= 10;
    }
    i = j;
  }
  int offset_s = 0;
  if (i < s.size() && s[i] == 'Z') {
    ++i;
  } else if (i + 6 == s.size() && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':') {
    int oh, om;
    if (!smallInt(s.substr(i + 1, 2), oh) || !smallInt(s.substr(i + 4, 2), om) || oh > 14 || om > 59) {
      return std::nullopt;
    }
    offset_s = (oh * 3600 + om * 60) * (s[i] == '+' ? 1 : -1);
    i += 6;
  } else {
    return std::nullopt;  // a dateTime without a zone is local time: unusable at an edge
  }
  if (i != s.size()) return std::nullopt;
  const int64_t days = daysFromCivil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d));
  return static_cast<double>(days * 86400 + h * 3600 + mi * 60 + sec - offset_s) + frac;
}

}  // namespace streamedge::streaming
