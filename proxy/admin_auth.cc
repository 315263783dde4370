#include "proxy/admin_auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

namespace streamedge::proxy {

namespace {

// False only when the digest could not be computed (allocation failure).
bool sha256(std::string_view data, TokenDigest& out) {
  unsigned int len = 0;
  return EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr) == 1 &&
         len == out.size();
}

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool startsWithBearer(std::string_view v) {
  // RFC 6750 §2.1 / RFC 9110 §11.1: the scheme is case-insensitive, followed by one or more
  // spaces.
  if (v.size() < 7) return false;
  static constexpr char kScheme[] = "bearer";
  for (size_t i = 0; i < 6; ++i) {
    char c = v[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != kScheme[i]) return false;
  }
  return v[6] == ' ';
}

}  // namespace

std::string hashAdminToken(std::string_view token) {
  // "" only on an allocation failure inside OpenSSL.
  static constexpr char kHex[] = "0123456789abcdef";
  TokenDigest d{};
  if (!sha256(token, d)) return {};
  std::string out;
  out.reserve(64);
  for (uint8_t b : d) {
    out += kHex[b >> 4];
    out += kHex[b & 0xF];
  }
  return out;
}

bool parseTokenDigest(std::string_view hex, TokenDigest& out) {
  if (hex.size() != 64) return false;
  for (size_t i = 0; i < 32; ++i) {
    const int hi = hexValue(hex[2 * i]);
    const int lo = hexValue(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return true;
}

std::optional<conf::AdminScope> scopeForPath(std::string_view path) {
  if (path == "/healthz" || path == "/readyz") return std::nullopt;
  if (path == "/metrics") return conf::kAdminScopeMetrics;
  if (path == "/purge") return conf::kAdminScopePurge;
  if (path.starts_with("/debug/")) return conf::kAdminScopeDebug;
  return conf::kAdminScopeStatus;
}

const char* scopeName(conf::AdminScope scope) {
  switch (scope) {
    case conf::kAdminScopeMetrics: return "metrics";
    case conf::kAdminScopeStatus: return "status";
    case conf::kAdminScopePurge: return "purge";
    case conf::kAdminScopeDebug: return "debug";
    default: return "all";
  }
}

AdminAuth::AdminAuth(const conf::AdminConfig& config) {
  if (!config.bearer_token.empty()) {
    Entry e{"bearer_token", {}, conf::kAdminScopeAll};
    // Without a digest the entry would match nothing: still kept, so the listener stays closed.
    if (!sha256(config.bearer_token, e.digest)) e.digest.fill(0);
    entries_.push_back(std::move(e));
  }
  for (const conf::AdminTokenConfig& t : config.tokens) {
    Entry e{t.name, {}, t.scopes};
    if (parseTokenDigest(t.sha256, e.digest)) entries_.push_back(std::move(e));
  }
}

AdminAuthResult AdminAuth::check(const char* authorization,
                                 std::optional<conf::AdminScope> scope) const {
  AdminAuthResult r;
  if (entries_.empty()) {
    r.who = "anonymous";
    return r;
  }
  if (!scope) {
    r.who = "probe";
    return r;
  }
  std::string_view value = authorization ? std::string_view(authorization) : std::string_view();
  if (!startsWithBearer(value)) {
    r.decision = AdminAuthResult::Decision::kUnauthenticated;
    r.why = authorization ? "not a bearer token" : "no token";
    return r;
  }
  value.remove_prefix(7);
  while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  while (!value.empty() && value.back() == ' ') value.remove_suffix(1);
  TokenDigest presented{};
  const bool hashed = sha256(value, presented);
  // Every entry is compared, in full, whatever matched before: the time taken depends on the
  // number of configured tokens only.
  const Entry* match = nullptr;
  for (const Entry& e : entries_) {
    const bool same = CRYPTO_memcmp(e.digest.data(), presented.data(), presented.size()) == 0;
    if (same && !match) match = &e;
  }
  if (value.empty() || !hashed || !match) {
    r.decision = AdminAuthResult::Decision::kUnauthenticated;
    r.why = "unknown token";
    return r;
  }
  r.who = match->name;
  if ((match->scopes & *scope) == 0) {
    r.decision = AdminAuthResult::Decision::kForbidden;
    r.why = std::string("missing scope ") + scopeName(*scope);
  }
  return r;
}

}  // namespace streamedge::proxy
