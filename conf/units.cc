#include "conf/units.h"

#include <array>
#include <cstdio>
#include <limits>

namespace streamedge {
namespace {

// Exact arithmetic for "1.5GiB": the fraction digits times a 2^40 multiplier do not fit in 64
// bits, and floating point would turn "0.1GB" into 99999999 bytes.
__extension__ typedef unsigned __int128 Wide;

constexpr uint64_t kMaxU64 = std::numeric_limits<uint64_t>::max();
// More fraction digits than this cannot change a result in whole bytes or milliseconds by more
// than rounding noise; longer inputs are rejected rather than silently cut.
constexpr size_t kMaxFractionDigits = 18;
constexpr size_t kMaxIntegerDigits = 20;  // uint64_t max has 20 digits

bool isDigit(char c) { return c >= '0' && c <= '9'; }

char toLower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (toLower(a[i]) != toLower(b[i])) return false;
  }
  return true;
}

// "<digits>[.<digits>]<unit>": the number split from its unit. No sign, no whitespace, no
// exponent, no leading or trailing dot: the strict grammar keeps typos from becoming sizes.
struct Number {
  uint64_t integer = 0;
  uint64_t fraction = 0;       // the digits after the dot, as an integer
  uint64_t fraction_scale = 1; // 10^(number of fraction digits)
  bool has_fraction = false;
  std::string_view unit;
};

std::optional<Number> splitNumber(std::string_view text) {
  Number n;
  size_t i = 0;
  size_t int_digits = 0;
  while (i < text.size() && isDigit(text[i])) {
    if (++int_digits > kMaxIntegerDigits) return std::nullopt;
    const uint64_t digit = static_cast<uint64_t>(text[i] - '0');
    if (n.integer > (kMaxU64 - digit) / 10) return std::nullopt;
    n.integer = n.integer * 10 + digit;
    ++i;
  }
  if (int_digits == 0) return std::nullopt;
  if (i < text.size() && text[i] == '.') {
    ++i;
    size_t frac_digits = 0;
    while (i < text.size() && isDigit(text[i])) {
      if (++frac_digits > kMaxFractionDigits) return std::nullopt;
      n.fraction = n.fraction * 10 + static_cast<uint64_t>(text[i] - '0');
      n.fraction_scale *= 10;
      ++i;
    }
    if (frac_digits == 0) return std::nullopt;
    n.has_fraction = true;
  }
  n.unit = text.substr(i);
  return n;
}

// integer * multiplier + fraction * multiplier / scale, truncated; nullopt on overflow of `max`.
std::optional<uint64_t> scale(const Number& n, uint64_t multiplier, uint64_t max) {
  const Wide whole = static_cast<Wide>(n.integer) * multiplier;
  const Wide part = static_cast<Wide>(n.fraction) * multiplier / n.fraction_scale;
  const Wide total = whole + part;  // both < 2^104: no overflow of 128 bits
  if (total > max) return std::nullopt;
  return static_cast<uint64_t>(total);
}

struct Unit {
  std::string_view name;
  uint64_t multiplier;
};

constexpr uint64_t kKi = 1024;
constexpr std::array<Unit, 9> kByteUnits = {{
    {"B", 1},
    {"KB", 1000},
    {"MB", 1000ull * 1000},
    {"GB", 1000ull * 1000 * 1000},
    {"TB", 1000ull * 1000 * 1000 * 1000},
    {"KiB", kKi},
    {"MiB", kKi * kKi},
    {"GiB", kKi * kKi * kKi},
    {"TiB", kKi * kKi * kKi * kKi},
}};

// Durations are case-sensitive on purpose: "5M" reads as megabytes or months as easily as
// minutes, so only the lowercase spellings are accepted.
constexpr std::array<Unit, 5> kDurationUnits = {{
    {"ms", 1},
    {"s", 1000},
    {"m", 60 * 1000},
    {"h", 60 * 60 * 1000},
    {"d", 24 * 60 * 60 * 1000},
}};

}  // namespace

// A fraction of the smallest unit ("1.5", "1.5B") is rejected: there is no half byte, and
// silently rounding would hide a typo. Other fractions are truncated to whole bytes.
std::optional<uint64_t> parseByteSize(std::string_view text) {
  const auto n = splitNumber(text);
  if (!n) return std::nullopt;
  if (n->unit.empty()) {
    if (n->has_fraction) return std::nullopt;
    return n->integer;
  }
  for (const Unit& unit : kByteUnits) {
    if (!equalsIgnoreCase(n->unit, unit.name)) continue;
    if (unit.multiplier == 1 && n->has_fraction) return std::nullopt;
    return scale(*n, unit.multiplier, kMaxU64);
  }
  return std::nullopt;
}

// A bare number is seconds ("30" = "30s", "1.5" = 1500ms). A fraction of a millisecond is
// rejected ("1.5ms"); other fractions are truncated to whole milliseconds.
std::optional<Millis> parseDuration(std::string_view text) {
  const auto n = splitNumber(text);
  if (!n) return std::nullopt;
  constexpr uint64_t kMaxMillis = static_cast<uint64_t>(std::numeric_limits<Millis::rep>::max());
  uint64_t multiplier = 0;
  if (n->unit.empty()) {
    multiplier = 1000;
  } else {
    for (const Unit& unit : kDurationUnits) {
      if (n->unit == unit.name) {
        multiplier = unit.multiplier;
        break;
      }
    }
  }
  if (multiplier == 0) return std::nullopt;
  if (multiplier == 1 && n->has_fraction) return std::nullopt;
  const auto ms = scale(*n, multiplier, kMaxMillis);
  if (!ms) return std::nullopt;
  return Millis(static_cast<Millis::rep>(*ms));
}

// Exact ("256MiB", "1536B") when the value is a whole number of the largest binary unit not
// above it, so that parseByteSize(formatByteSize(x)) == x for the round sizes configs use;
// otherwise rounded to one decimal ("117.7MiB"), which is for reading, not for parsing back.
std::string formatByteSize(uint64_t bytes) {
  static constexpr std::array<Unit, 5> kUnits = {{
      {"TiB", kKi * kKi * kKi * kKi},
      {"GiB", kKi * kKi * kKi},
      {"MiB", kKi * kKi},
      {"KiB", kKi},
      {"B", 1},
  }};
  const Unit* unit = &kUnits.back();
  for (const Unit& u : kUnits) {
    if (bytes >= u.multiplier) {
      unit = &u;
      break;
    }
  }
  uint64_t whole = bytes / unit->multiplier;
  const uint64_t rest = bytes % unit->multiplier;
  char buf[64];
  if (rest == 0) {
    std::snprintf(buf, sizeof buf, "%llu%.*s", static_cast<unsigned long long>(whole),
                  static_cast<int>(unit->name.size()), unit->name.data());
    return buf;
  }
  // rest < 2^40, so rest * 10 cannot overflow.
  uint64_t tenths = (rest * 10 + unit->multiplier / 2) / unit->multiplier;
  if (tenths == 10) {
    ++whole;
    tenths = 0;
  }
  std::snprintf(buf, sizeof buf, "%llu.%llu%.*s", static_cast<unsigned long long>(whole),
                static_cast<unsigned long long>(tenths), static_cast<int>(unit->name.size()),
                unit->name.data());
  return buf;
}

}  // namespace streamedge
