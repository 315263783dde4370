// JSON text for the edge's own lines and answers (security and audit logs, purge answers,
// /status): one string escaper and one timestamp format, so every JSON the edge writes is valid
// and reads the same.
//
// Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace streamedge::proxy {

// Appends `s` as a JSON string: quotes and backslashes escaped, control bytes, DEL and every byte
// at or above 0x80 as \u00XX. The output is ASCII, so a line stays valid JSON whatever bytes a
// viewer or an origin sent (non-ASCII names read as their bytes, never as broken UTF-8).
void appendJsonString(std::string& out, std::string_view s);
std::string jsonString(std::string_view s);

// Appends the UTC time of `unix_ms` as "2025-06-01T12:00:00.123Z" (no quotes). Times before
// 1970 round down, so the milliseconds are never negative.
void appendUtcTimeMs(std::string& out, int64_t unix_ms);

}  // namespace streamedge::proxy
