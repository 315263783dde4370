// CMSD (CTA-5006, Common Media Server Data): the response fields this edge adds when its vhost
// says `cmsd = true`. CMSD-Dynamic carries this hop's estimate of the viewer connection
// ("streamedge";etp=<kbit/s>;rtt=<ms>), from the kernel's TCP_INFO: the delivery rate it
// measured, else the congestion window over the smoothed round-trip time. CMSD-Static carries
// ot (object type) where the path tells it. Pure functions except tcpThroughput (one
// getsockopt); thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

struct tcp_info;

namespace streamedge::proxy {

struct ConnectionEstimate {
  uint64_t etp_kbps = 0;  // estimated throughput
  uint64_t rtt_ms = 0;    // smoothed round-trip time
};

// From a TCP_INFO snapshot: tcpi_delivery_rate (bytes/s) when the kernel measured one, else
// snd_cwnd * snd_mss / rtt. Nothing when there is neither (no round trip measured yet).
std::optional<ConnectionEstimate> estimateFromTcpInfo(const tcp_info& info);

// getsockopt(TCP_INFO) on `fd` and the estimate above; nothing for a non-TCP or closed socket.
std::optional<ConnectionEstimate> tcpThroughput(int fd);

// The CTA-5006 ot token for a request path, when its name tells it: m (playlist, MPD),
// i (init segment), a (audio), v (video-only), tt (timed text); empty when unknown (a .ts or
// .m4s may hold audio, video or both).
std::string_view cmsdObjectType(std::string_view path);

// Appends "CMSD-Static: ..." and "CMSD-Dynamic: ..." field lines (CRLF-terminated) for a
// response to `path` on connection `fd` to `out`; a field with nothing to say is left out.
void appendCmsdFields(std::string_view path, int fd, std::string& out);

}  // namespace streamedge::proxy
