#include "proxy/cmsd.h"

#include <netinet/in.h>
#include <linux/tcp.h>
#include <sys/socket.h>

namespace streamedge::proxy {

namespace {

bool endsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

// linux/tcp.h's tcp_info (glibc's netinet/tcp.h stops before tcpi_delivery_rate, Linux 4.9).
std::optional<ConnectionEstimate> estimateFromTcpInfo(const tcp_info& info) {
  if (info.tcpi_rtt == 0) return std::nullopt;  // no round trip measured yet
  ConnectionEstimate e;
  e.rtt_ms = (info.tcpi_rtt + 500) / 1000;  // tcpi_rtt is in microseconds
  uint64_t bytes_per_s = info.tcpi_delivery_rate;
  if (bytes_per_s == 0) {
    // What one window per round trip allows (the sender's view; a floor before the kernel
    // has measured delivery).
    bytes_per_s = static_cast<uint64_t>(info.tcpi_snd_cwnd) * info.tcpi_snd_mss * 1000000ull /
                  info.tcpi_rtt;
  }
  if (bytes_per_s == 0) return std::nullopt;
  e.etp_kbps = bytes_per_s * 8 / 1000;
  return e;
}

std::optional<ConnectionEstimate> tcpThroughput(int fd) {
  if (fd < 0) return std::nullopt;
  tcp_info info{};
  socklen_t len = sizeof info;
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0) return std::nullopt;
  return estimateFromTcpInfo(info);
}

std::string_view cmsdObjectType(std::string_view path) {
  const size_t slash = path.rfind('/');
  const std::string_view name = slash == std::string_view::npos ? path : path.substr(slash + 1);
  if (endsWith(name, ".m3u8") || endsWith(name, ".mpd")) return "m";
  if (name.find("init") != std::string_view::npos &&
      (endsWith(name, ".mp4") || endsWith(name, ".m4s") || endsWith(name, ".cmfi"))) {
    return "i";
  }
  if (endsWith(name, ".aac") || endsWith(name, ".m4a") || endsWith(name, ".cmfa") ||
      endsWith(name, ".mp3") || endsWith(name, ".ac3") || endsWith(name, ".ec3")) {
    return "a";
  }
  if (endsWith(name, ".m4v") || endsWith(name, ".cmfv")) return "v";
  if (endsWith(name, ".vtt") || endsWith(name, ".webvtt") || endsWith(name, ".cmft") ||
      endsWith(name, ".ttml")) {
    return "tt";
  }
  return {};
}

void appendCmsdFields(std::string_view path, int fd, std::string& out) {
  const std::string_view ot = cmsdObjectType(path);
  if (!ot.empty()) {
    out += "CMSD-Static: ot=";
    out += ot;
    out += "\r\n";
  }
  if (const std::optional<ConnectionEstimate> e = tcpThroughput(fd)) {
    // CTA-5006 §3: a list of this hop's string identifier with its keys as parameters.
    out += "CMSD-Dynamic: \"streamedge\";etp=";
    out += std::to_string(e->etp_kbps);
    out += ";rtt=";
    out += std::to_string(e->rtt_ms);
    out += "\r\n";
  }
}

}  // namespace streamedge::proxy
