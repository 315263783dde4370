#include "proxy/security_log.h"

#include <cstdio>
#include <ctime>

namespace streamedge::proxy {
namespace {

void appendJsonString(std::string& out, std::string_view s) {
  if (s.empty()) s = "-";
  out += '"';
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20 || c >= 0x7f) {
      // Paths are normalised (escapes kept as %XX), but nothing unescaped reaches the line.
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += ch;
    }
  }
  out += '"';
}

}  // namespace

void formatSecurityLogLine(const SecurityEvent& e, std::string& out) {
  const int64_t second = e.time_unix_ms >= 0 ? e.time_unix_ms / 1000 : (e.time_unix_ms - 999) / 1000;
  const time_t secs = static_cast<time_t>(second);
  tm t{};
  gmtime_r(&secs, &t);
  char when[96];
  std::snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", t.tm_year + 1900,
                t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec,
                static_cast<int>(e.time_unix_ms - second * 1000));
  out += "{\"time\":\"";
  out += when;
  out += "\",\"event\":";
  appendJsonString(out, e.event);
  out += ",\"reason\":";
  appendJsonString(out, e.reason);
  out += ",\"vhost\":";
  appendJsonString(out, e.vhost);
  out += ",\"client\":";
  appendJsonString(out, e.client);
  out += ",\"method\":";
  appendJsonString(out, e.method);
  out += ",\"path\":";
  appendJsonString(out, e.path);
  out += ",\"source\":";
  appendJsonString(out, e.source);
  out += ",\"key_id\":";
  appendJsonString(out, e.key_id);
  out += "}\n";
}

}  // namespace streamedge::proxy
