// Byte sizes and durations as operators write them in the config ("512MiB", "1.5GB", "250ms",
// "30s", "2m"). Pure functions, thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace streamedge {

using Millis = std::chrono::milliseconds;
using Seconds = std::chrono::seconds;

// "256MiB", "1GiB", "64KiB", "10MB" (decimal), "4096" or "4096B". Case-insensitive units
// B, KB, MB, GB, TB (powers of 1000) and KiB, MiB, GiB, TiB (powers of 1024); an optional
// fraction ("1.5GiB"). Returns nullopt on anything else, on a negative number and on overflow.
std::optional<uint64_t> parseByteSize(std::string_view text);

// "250ms", "30s", "5m", "2h", "1d"; a bare number means seconds. nullopt on anything else.
std::optional<Millis> parseDuration(std::string_view text);

// "256MiB" style, for logs and /status.
std::string formatByteSize(uint64_t bytes);

}  // namespace streamedge
