// Small whole-file helpers for the SSD tier's side files (index checkpoint, keyring): read a
// file whole, replace one durably, and make a rename durable by syncing its directory.
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

// Replaces `path` with `bytes` so that a crash leaves the old content or the new, never a mix:
// written to `path`.tmp (mode 0600) and fsynced, renamed over `path`, the directory synced.
// `replaced` (optional) gets a descriptor of the old file, opened for writing before the rename
// (-1 when there was none), so that the caller can overwrite the old bytes; the caller closes
// it. Errors: kIo (the temporary file is removed).
Status replaceFileDurably(const std::string& path, const std::vector<uint8_t>& bytes,
                          int* replaced = nullptr);

// fsync of the directory that holds `path` (after a rename into it). kIo when it fails.
Status syncParentDirectory(const std::string& path);

}  // namespace streamedge::cache
