// Security log: one JSON line per security event, apart from the access log, for the people who
// watch for abuse. Today's events: a signed-URL token refused on a route with token_auth
// ("event":"token_rejected", with the reason). Lines carry no secret: never the token, a cookie
// or a query string; the client address is anonymised like the access log's ([log]
// client_address). The lines go through an AccessLog writer (SharedState::security_log,
// [log] security_log: "stderr" by default, "off", or a file reopened on SIGUSR1). Pure
// formatting here; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace streamedge::proxy {

struct SecurityEvent {
  int64_t time_unix_ms = 0;
  std::string_view event;   // "token_rejected"
  std::string_view reason;  // tokenVerdictName(): "expired", "bad_signature", ...
  std::string_view vhost;
  std::string_view client;  // already anonymised
  std::string_view method;
  std::string_view path;    // normalised, token segment stripped; never the query
  std::string_view source;  // where the token was found: "query", "cookie", "path" or "-"
  std::string_view key_id;  // the verified key id, when the signature was good
};

// Appends one JSON line (with '\n') for `e` to `out`.
void formatSecurityLogLine(const SecurityEvent& e, std::string& out);

}  // namespace streamedge::proxy
