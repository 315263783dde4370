// Privilege drop: a process started as root ([server] user set) binds its listeners, opens the
// SSD store and reads its keys and certificates first, then becomes the configured user for
// good before it serves a request.
//
// Main thread only, before the worker threads exist: capabilities are per thread on Linux, and
// threads created later inherit the main thread's. Threads that already run (the SSD store's
// writer) follow the uid and gid change (glibc applies set*id to every thread) and keep no
// capability at all.
#pragma once

#include <string>
#include <vector>

namespace streamedge::proxy {

// Switches the process to `user` (a name from the passwd database) and its groups:
// initgroups (supplementary groups, e.g. ssl-cert for keys in /etc/ssl/private), then setgid,
// then setuid — in that order, since after setuid the process may no longer change its groups.
// CAP_NET_BIND_SERVICE, when held, is kept (permitted, effective, inheritable and ambient) so
// that a reload or a hot upgrade can still bind ports below 1024; every other capability is
// gone. Verifies afterwards that real, effective and saved uid and gid are the user's and that
// setuid(0) and setgid(0) fail.
//
// Already running as `user` (e.g. started by systemd with User=): nothing to do, true.
// Not root and not `user`: false, with the reason. Any failing step: false, with the reason;
// the caller must exit (the process may be half switched).
bool switchToUser(const std::string& user, std::string* why);

// The names among `paths` that the current (switched) user cannot read, for a warning: a
// reload reads certificates and keys again, as this user.
std::string unreadableFiles(const std::vector<std::string>& paths);

}  // namespace streamedge::proxy
