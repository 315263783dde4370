// Log retention ([privacy] log_retention): the edge deletes its own rotated access- and
// security-log files once they are older than the limit, so that anonymised client networks
// are not kept longer than the operator promised even when logrotate keeps many generations.
//
// A rotated file of the log at DIR/NAME is a regular file (not a symlink) in DIR whose name is
// NAME followed by '.' or '-' and anything ("access.log.1", "access.log.2.gz",
// "access.log-20250101"); it is deleted when its modification time (when logrotate last wrote
// it: the newest line it holds) is older than the limit. Never deleted: the live file, any file
// in `keep` (the other logs' live files), anything matching `keep_prefixes` (the audit log and
// its rotations: the audit log is not covered), and any other name. Checked at start, on
// SIGUSR1 (after logrotate) and hourly by the server.
//
// Pure file-system work on the calling thread (the main thread: a directory listing and a few
// unlinks). Thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "conf/clock.h"
#include "conf/config.h"

namespace streamedge::proxy {

struct LogRetentionResult {
  std::vector<std::string> removed;  // paths deleted
  std::vector<std::string> errors;   // "PATH: reason" for each failure (unlink, directory)
};

// Deletes the rotated files of the log at `log_path` (a file path: not "stderr", "stdout",
// "off") whose modification time is `max_age` or more before `now`. `max_age` 0: nothing.
// `keep`: paths never deleted; `keep_prefixes`: paths DIR/P never deleted, nor DIR/P.* and
// DIR/P-* (the audit log).
LogRetentionResult removeRotatedLogs(const std::string& log_path, conf::Millis max_age,
                                     WallTime now, const std::vector<std::string>& keep = {},
                                     const std::vector<std::string>& keep_prefixes = {});

// True when `name` is a rotated file of the log named `base` (same directory).
bool isRotatedLogName(const std::string& name, const std::string& base);

}  // namespace streamedge::proxy
