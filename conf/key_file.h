// Reading a 256-bit secret from a key file: the signed-URL HMAC keys
// ([[vhost.route.token_auth.key]] key_file, and the `streamedge token` tool), the cluster's peer
// secret ([cluster] secret_file) and the SSD store key ([cache.ssd] key_file). The file holds 32
// raw bytes or 64 hex digits, upper or lower case, optionally followed by whitespace (a trailing
// newline from `openssl rand -hex 32 > FILE`). Thread-safe (no shared state); the buffers that
// held key material are wiped.
#pragma once

#include <string>
#include <string_view>

namespace streamedge::conf {

inline constexpr size_t kKeyFileBytes = 32;

enum class KeyFileAccess {
  // A regular file that only its owner and group can read and only its owner can write: a key
  // that every local user can read signs (or, writable, forges) for anyone.
  kOwnerAndGroupOnly,
  // Any regular file (the SSD store key: its permissions were never checked, and stores and
  // scripts in use rely on that).
  kAnyRegularFile,
};

enum class KeyFileError { kNone, kIo, kAccess, kContent };

// Fills `secret` with the 32 key bytes and returns kNone. Otherwise `secret` is empty and
// `error` holds one readable sentence without the path; `what_it_allows` ends the permission
// errors ("anyone who can read the key can <what_it_allows>").
KeyFileError readKeyFile(const std::string& path, KeyFileAccess access,
                         std::string_view what_it_allows, std::string& secret, std::string& error);

// A signed-URL or peer HMAC key: owner and group only. True when read.
inline bool readTokenKeyFile(const std::string& path, std::string& secret, std::string& error) {
  return readKeyFile(path, KeyFileAccess::kOwnerAndGroupOnly, "sign tokens", secret, error) ==
         KeyFileError::kNone;
}

}  // namespace streamedge::conf
