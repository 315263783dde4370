#include "proxy/listen_socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

namespace streamedge::proxy {

namespace {

uint16_t portOf(const sockaddr_storage& ss) {
  return ntohs(ss.ss_family == AF_INET ? reinterpret_cast<const sockaddr_in*>(&ss)->sin_port
                                       : reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_port);
}

// net.ipv4.ip_unprivileged_port_start (Linux ≥ 4.11; 1024 when unreadable): binding a port
// below it needs CAP_NET_BIND_SERVICE.
int unprivilegedPortStart() {
  std::ifstream in("/proc/sys/net/ipv4/ip_unprivileged_port_start");
  int start = 1024;
  if (!(in >> start)) start = 1024;
  return start;
}

std::string bindFailure(const std::string& address, uint16_t port, int err) {
  std::string why = "cannot listen on " + address + ": " + std::strerror(err);
  if (err == EADDRINUSE) {
    // SO_REUSEPORT lets our own sockets share an address only when one user bound them all.
    why += " (another process listens there, or a listener of ours on an overlapping address "
           "bound before [server] user took effect)";
  } else if (err == EACCES && port != 0 && port < unprivilegedPortStart()) {
    why += " (port " + std::to_string(port) + " is below " + std::to_string(unprivilegedPortStart()) +
           " and needs root or CAP_NET_BIND_SERVICE; this process runs as uid " +
           std::to_string(::geteuid()) +
           " without it, e.g. after [server] user switched away from root in a process that did not "
           "hold the capability: restart to bind it, or grant CAP_NET_BIND_SERVICE)";
  } else if (err == EADDRNOTAVAIL) {
    why += " (no interface of this host has that address)";
  }
  return why;
}

}  // namespace

bool parseSocketAddress(const std::string& address, sockaddr_storage& out, socklen_t& len) {
  std::memset(&out, 0, sizeof out);
  std::string host;
  std::string port;
  if (!address.empty() && address.front() == '[') {
    size_t close = address.find(']');
    if (close == std::string::npos || close + 1 >= address.size() || address[close + 1] != ':') {
      return false;
    }
    host = address.substr(1, close - 1);
    port = address.substr(close + 2);
  } else {
    size_t colon = address.rfind(':');
    if (colon == std::string::npos) return false;
    host = address.substr(0, colon);
    port = address.substr(colon + 1);
  }
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos) {
    return false;
  }
  const int port_number = std::stoi(port);
  if (port_number > 65535) return false;
  auto* sin = reinterpret_cast<sockaddr_in*>(&out);
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(&out);
  if (inet_pton(AF_INET, host.c_str(), &sin->sin_addr) == 1) {
    sin->sin_family = AF_INET;
    sin->sin_port = htons(static_cast<uint16_t>(port_number));
    len = sizeof(sockaddr_in);
    return true;
  }
  if (inet_pton(AF_INET6, host.c_str(), &sin6->sin6_addr) == 1) {
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(static_cast<uint16_t>(port_number));
    len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

std::string socketAddressText(const sockaddr_storage& ss) {
  char host[INET6_ADDRSTRLEN] = "?";
  if (ss.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&ss)->sin_addr, host, sizeof host);
    return std::string(host) + ":" + std::to_string(portOf(ss));
  }
  inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_addr, host, sizeof host);
  return "[" + std::string(host) + "]:" + std::to_string(portOf(ss));
}

void closeSockets(std::vector<int>& fds) {
  for (int fd : fds) {
    if (fd >= 0) ::close(fd);
  }
  fds.clear();
}

bool bindListenSockets(const std::string& address, int backlog, int count, BoundSockets& out,
                       std::string* why) {
  out = BoundSockets{};
  auto fail = [&](std::string reason) {
    closeSockets(out.fds);
    if (why) *why = std::move(reason);
    return false;
  };
  sockaddr_storage addr;
  socklen_t len = 0;
  if (!parseSocketAddress(address, addr, len)) return fail("bad listener address " + address);
  for (int i = 0; i < count; ++i) {
    const int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return fail(std::string("socket(): ") + std::strerror(errno));
    out.fds.push_back(fd);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (addr.ss_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0 || ::listen(fd, backlog) != 0) {
      const int err = errno;
      return fail(bindFailure(address, portOf(addr), err));
    }
    if (i == 0) {
      // Port 0: the kernel picked one; the other workers' sockets join it.
      sockaddr_storage bound;
      socklen_t bound_len = sizeof bound;
      if (getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &bound_len) != 0) {
        return fail(std::string("getsockname(): ") + std::strerror(errno));
      }
      const uint16_t port = portOf(bound);
      if (addr.ss_family == AF_INET) {
        reinterpret_cast<sockaddr_in*>(&addr)->sin_port = htons(port);
      } else {
        reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port = htons(port);
      }
      out.bound = socketAddressText(addr);
    }
  }
  return true;
}

bool adoptListenSockets(std::vector<int> inherited, int backlog, int count, BoundSockets& out,
                        std::string* why) {
  out = BoundSockets{};
  auto fail = [&](std::string reason) {
    closeSockets(out.fds);
    closeSockets(inherited);
    if (why) *why = std::move(reason);
    return false;
  };
  if (inherited.empty() || count <= 0) return fail("no inherited socket");
  sockaddr_storage bound;
  socklen_t bound_len = sizeof bound;
  if (getsockname(inherited.front(), reinterpret_cast<sockaddr*>(&bound), &bound_len) != 0) {
    return fail(std::string("getsockname(): ") + std::strerror(errno));
  }
  out.bound = socketAddressText(bound);
  for (int fd : inherited) ::listen(fd, backlog);  // the new backlog, if it changed
  // Worker w's sockets sit at w, w + count, ...: the first `count` positions give every worker
  // one, the inherited ones first, then duplicates of them.
  const size_t n = inherited.size();
  const size_t workers = static_cast<size_t>(count);
  out.fds.assign(std::max(n, workers), -1);
  for (size_t i = 0; i < n; ++i) out.fds[i] = inherited[i];
  inherited.clear();  // owned by out.fds now
  for (size_t w = n; w < workers; ++w) {
    const int dup = ::fcntl(out.fds[w % n], F_DUPFD_CLOEXEC, 3);
    if (dup < 0) return fail(std::string("dup(): ") + std::strerror(errno));
    out.fds[w] = dup;
  }
  return true;
}

std::vector<int> socketsOfWorker(const std::vector<int>& fds, int count, int worker) {
  std::vector<int> out;
  if (count <= 0 || worker < 0) return out;
  for (size_t i = static_cast<size_t>(worker); i < fds.size(); i += static_cast<size_t>(count)) {
    out.push_back(fds[i]);
  }
  return out;
}

}  // namespace streamedge::proxy
