// Small whole-file helpers for the SSD tier's side files (index checkpoint, keyring): read a
// file whole, and make a rename durable by syncing the directory that holds it.
// Thread-safe (no shared state). Callers log with the path; the details here are generic.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "conf/status.h"

namespace streamedge::cache {

// The whole content of `path`. Errors: kNotFound (no such file), kIo (cannot open, stat or
// read it, or it is larger than `max_bytes`).
Result<std::vector<uint8_t>> readWholeFile(const std::string& path, uint64_t max_bytes);

// fsync of the directory that holds `path` (after a rename into it). kIo when it fails.
Status syncParentDirectory(const std::string& path);

}  // namespace streamedge::cache
