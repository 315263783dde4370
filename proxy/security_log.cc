#include "proxy/security_log.h"

#include "proxy/json_text.h"

namespace streamedge::proxy {
namespace {

// An absent field reads "-", as in the access log.
void appendField(std::string& out, std::string_view s) {
  appendJsonString(out, s.empty() ? "-" : s);
}

}  // namespace

void formatSecurityLogLine(const SecurityEvent& e, std::string& out) {
  out += "{\"time\":\"";
  appendUtcTimeMs(out, e.time_unix_ms);
  out += "\",\"event\":";
  appendField(out, e.event);
  out += ",\"reason\":";
  appendField(out, e.reason);
  out += ",\"vhost\":";
  appendField(out, e.vhost);
  out += ",\"client\":";
  appendField(out, e.client);
  out += ",\"method\":";
  appendField(out, e.method);
  out += ",\"path\":";
  appendField(out, e.path);
  out += ",\"source\":";
  appendField(out, e.source);
  out += ",\"key_id\":";
  appendField(out, e.key_id);
  out += "}\n";
}

}  // namespace streamedge::proxy
