// Reading a signed-URL HMAC key from its file ([[vhost.route.token_auth.key]] key_file, and the
// `streamedge token` tool). The file holds 32 raw bytes or 64 hex digits (`openssl rand -hex 32`),
// like the SSD key file, and must be a regular file that only its owner (and group) can read:
// a key every local user can read signs tokens for anyone. Thread-safe (no shared state).
#pragma once

#include <string>

namespace streamedge::conf {

inline constexpr size_t kTokenKeyBytes = 32;

// Fills `secret` with the key bytes and returns true; otherwise returns false with `error` set
// to one readable sentence (without the path) and `secret` cleared.
bool readTokenKeyFile(const std::string& path, std::string& secret, std::string& error);

}  // namespace streamedge::conf
