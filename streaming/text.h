// Small strict number and time readers shared by the playlist and MPD parsers. Pure, total
// (never throw, never read past the view), thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace streamedge::streaming {

// RFC 8216 §4.2 decimal-integer: 1 to 20 digits, no sign, value ≤ 2^64 - 1.
bool parseDecimalInteger(std::string_view s, uint64_t& out);
// RFC 8216 §4.2 decimal-floating-point: digits, optionally "." and digits; no sign, no exponent.
// Finite and at most 1e12.
bool parseDecimalFloat(std::string_view s, double& out);
// An xs:duration as DASH uses it (ISO 8601 "PnYnMnDTnHnMnS", seconds may be fractional; years
// and months are refused: their length is not fixed). Non-negative, at most 10 years.
std::optional<double> parseIsoDuration(std::string_view s);
// An xs:dateTime in UTC ("2024-01-01T00:00:00Z", fractional seconds and "+00:00"/"-hh:mm"
// offsets accepted) as seconds since the Unix epoch. Years 1970..9999.
std::optional<double> parseIsoDateTime(std::string_view s);

}  // namespace streamedge::streaming
