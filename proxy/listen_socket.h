// Listening sockets for the viewer listeners: address parsing and printing, and binding one
// SO_REUSEPORT socket per worker on an address, with an operator-facing reason when that
// fails. Used by the Server at start and on reload (main thread); stateless, thread-safe.
#pragma once

#include <sys/socket.h>

#include <string>
#include <vector>

namespace streamedge::proxy {

// Parses "host:port" / "[v6]:port" into a sockaddr. False on anything else.
bool parseSocketAddress(const std::string& address, sockaddr_storage& out, socklen_t& len);
// "127.0.0.1:8080", "[::1]:443".
std::string socketAddressText(const sockaddr_storage& address);

// `count` listening sockets (non-blocking, close-on-exec, SO_REUSEADDR and SO_REUSEPORT, v6
// only for IPv6) on one address: the kernel spreads connections over them and no lock is
// shared on accept. With port 0 the first socket picks the port and the others join it.
struct BoundSockets {
  std::vector<int> fds;  // owned by the caller (closeSockets)
  std::string bound;     // the address with the port the kernel gave, socketAddressText
};
// False with `why` set (and nothing left open) when a socket cannot be made, bound or listen.
// `why` says what an operator can do about it: the address is in use by another process, or a
// port below the unprivileged range needs root or CAP_NET_BIND_SERVICE, which a process that
// switched to `[server] user` may not hold any more.
bool bindListenSockets(const std::string& address, int backlog, int count, BoundSockets& out,
                       std::string* why);
void closeSockets(std::vector<int>& fds);

// A hot upgrade's new process: takes over `inherited` (the old process's sockets of one
// listener, already bound and listening; owned from here on) for `count` workers. Every
// inherited socket is kept: closing one of a SO_REUSEPORT group would reset the connections
// waiting in its queue. With more workers than sockets, workers share one through a dup();
// with fewer, a worker gets several. `backlog` is applied (listen() again). `out.fds` holds
// the sockets for worker w at positions w, w + count, w + 2·count, ... (see socketsOfWorker).
// False with `why` (and nothing left open) when a socket cannot be read or duplicated.
bool adoptListenSockets(std::vector<int> inherited, int backlog, int count, BoundSockets& out,
                        std::string* why);
// Worker `worker`'s sockets among `fds` as adoptListenSockets laid them out (and
// bindListenSockets, one each).
std::vector<int> socketsOfWorker(const std::vector<int>& fds, int count, int worker);

}  // namespace streamedge::proxy
