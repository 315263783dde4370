// Admin authentication: which bearer token an admin request carries and whether it may do what
// it asks. Tokens are configured by their SHA-256 only ([[admin.token]] sha256, hex), each with a
// name (for the audit log, never the token) and scopes (metrics, status, purge, debug); the
// deprecated [admin] bearer_token is a token in clear with every scope, named "bearer_token".
//
// Contract:
//   - /healthz and /readyz need no token (liveness and readiness probes).
//   - With no token configured at all, every request is allowed (who = "anonymous"); the
//     listener is on loopback by default and the config loader warns otherwise.
//   - Else a request without "Authorization: Bearer <token>", or whose token matches no
//     configured hash, is refused with 401; a known token without the path's scope with 403.
// The presented token is hashed and compared with every configured hash by CRYPTO_memcmp, all
// of them, whatever matches: neither which token nor how much of it matched shows in timing.
//
// Immutable after construction; thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "conf/config.h"

namespace streamedge::proxy {

using TokenDigest = std::array<uint8_t, 32>;

// SHA-256 of `token`, as 64 lowercase hex digits (what [[admin.token]] sha256 holds).
std::string hashAdminToken(std::string_view token);
// Parses 64 hex digits (either case). False otherwise.
bool parseTokenDigest(std::string_view hex, TokenDigest& out);

// The scope a path needs: nullopt for the open probes (/healthz, /readyz). Unknown paths need
// kAdminScopeStatus (so that an unauthenticated client learns nothing, not even 404s).
std::optional<conf::AdminScope> scopeForPath(std::string_view path);
// "metrics", "status", "purge", "debug".
const char* scopeName(conf::AdminScope scope);

struct AdminAuthResult {
  enum class Decision { kAllowed, kUnauthenticated, kForbidden };
  Decision decision = Decision::kAllowed;
  // The token's configured name ("anonymous" when no token is configured, "" when none matched).
  std::string who;
  // For the security log: "no token", "unknown token", "missing scope purge"...
  std::string why;
  int httpStatus() const {
    return decision == Decision::kAllowed ? 200 : decision == Decision::kForbidden ? 403 : 401;
  }
};

class AdminAuth {
 public:
  AdminAuth() = default;
  // Tokens whose sha256 does not parse are skipped (the config loader refuses them already).
  explicit AdminAuth(const conf::AdminConfig& config);

  // `authorization`: the request's Authorization value (null when absent). `scope`: what the
  // path needs (nullopt: open).
  AdminAuthResult check(const char* authorization, std::optional<conf::AdminScope> scope) const;
  bool open() const { return entries_.empty(); }
  size_t tokenCount() const { return entries_.size(); }

 private:
  struct Entry {
    std::string name;
    TokenDigest digest{};
    uint32_t scopes = 0;
  };
  std::vector<Entry> entries_;
};

}  // namespace streamedge::proxy
