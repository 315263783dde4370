#include "proxy/privileges.h"

#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace streamedge::proxy {

namespace {

// The raw capability calls (no libcap): version 3 uses two 32-bit words per set.
bool getCaps(__user_cap_data_struct (&data)[2]) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  return ::syscall(SYS_capget, &header, data) == 0;
}

bool setCaps(__user_cap_data_struct (&data)[2]) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  return ::syscall(SYS_capset, &header, data) == 0;
}

std::string errnoText(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

}  // namespace

bool switchToUser(const std::string& user, std::string* why) {
  auto fail = [&](std::string reason) {
    if (why) *why = std::move(reason);
    return false;
  };
  passwd pw{};
  passwd* found = nullptr;
  std::vector<char> buf(16384);
  const int rc = ::getpwnam_r(user.c_str(), &pw, buf.data(), buf.size(), &found);
  if (rc != 0 || found == nullptr) {
    return fail("no such user \"" + user + "\"" + (rc != 0 ? std::string(": ") + std::strerror(rc) : ""));
  }
  const uid_t uid = pw.pw_uid;
  const gid_t gid = pw.pw_gid;
  if (uid == 0) return fail("user \"" + user + "\" is root");
  if (::geteuid() == uid && ::getuid() == uid) return true;  // started as the user already
  if (::geteuid() != 0) {
    return fail("switching to user \"" + user + "\" needs the process to start as root (it runs as uid " +
                std::to_string(::geteuid()) + ")");
  }

  // Is CAP_NET_BIND_SERVICE held now (a container may have taken it away even from root)?
  __user_cap_data_struct caps[2]{};
  if (!getCaps(caps)) return fail(errnoText("capget"));
  const uint32_t bind_bit = 1u << CAP_NET_BIND_SERVICE;  // capability 10: first word
  const bool keep_bind = (caps[0].permitted & bind_bit) != 0;

  if (::initgroups(user.c_str(), gid) != 0) return fail(errnoText("initgroups"));
  if (::setgid(gid) != 0) return fail(errnoText("setgid"));
  // Keep the permitted set across setuid (this thread only) so that CAP_NET_BIND_SERVICE can be
  // put back below; the kernel clears the effective set either way.
  if (keep_bind && ::prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) return fail(errnoText("prctl(PR_SET_KEEPCAPS)"));
  if (::setuid(uid) != 0) return fail(errnoText("setuid"));
  if (keep_bind) {
    __user_cap_data_struct only_bind[2]{};
    only_bind[0].effective = bind_bit;
    only_bind[0].permitted = bind_bit;
    only_bind[0].inheritable = bind_bit;
    if (!setCaps(only_bind)) return fail(errnoText("capset(CAP_NET_BIND_SERVICE)"));
    // Ambient: a new binary started by a hot upgrade keeps it too (like systemd's
    // AmbientCapabilities=).
    if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_BIND_SERVICE, 0, 0) != 0) {
      return fail(errnoText("prctl(PR_CAP_AMBIENT_RAISE)"));
    }
    ::prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
  }

  // Verify rather than trust: every id is the user's, and root cannot be had back.
  uid_t ruid = 0, euid = 0, suid = 0;
  gid_t rgid = 0, egid = 0, sgid = 0;
  if (::getresuid(&ruid, &euid, &suid) != 0 || ::getresgid(&rgid, &egid, &sgid) != 0) {
    return fail(errnoText("getresuid"));
  }
  if (ruid != uid || euid != uid || suid != uid || rgid != gid || egid != gid || sgid != gid) {
    return fail("the uid/gid did not all change to " + std::to_string(uid) + "/" + std::to_string(gid));
  }
  if (::setuid(0) == 0 || ::seteuid(0) == 0) return fail("root could be regained after setuid");
  if (::setgid(0) == 0 || ::setegid(0) == 0) return fail("gid 0 could be regained after setgid");
  if (!getCaps(caps)) return fail(errnoText("capget"));
  if ((caps[0].permitted & ~bind_bit) != 0 || caps[1].permitted != 0) {
    return fail("capabilities other than CAP_NET_BIND_SERVICE are still held");
  }
  return true;
}

std::string unreadableFiles(const std::vector<std::string>& paths) {
  std::string out;
  for (const std::string& path : paths) {
    if (path.empty() || ::access(path.c_str(), R_OK) == 0) continue;
    if (!out.empty()) out += ", ";
    out += path;
  }
  return out;
}

}  // namespace streamedge::proxy
