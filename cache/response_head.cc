#include "cache/response_head.h"

#include <array>

namespace streamedge::cache {
namespace {

unsigned char asciiLower(unsigned char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<unsigned char>(c - 'A' + 'a') : c;
}

}  // namespace

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (asciiLower(static_cast<unsigned char>(a[i])) !=
        asciiLower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

bool isHopByHopOrDeliveryField(std::string_view name) {
  // RFC 9110 §7.6.1 (Connection and the hop-by-hop fields it lists by convention), the
  // proxy-only fields of §11.7, RFC 9112 framing, and what delivery writes per response.
  // Fields a Connection header names are hop-by-hop too; the response parser handles those
  // since only it sees the Connection value.
  // Accept-Ranges too: delivery answers ranges itself and says so for complete 200s.
  static constexpr std::array<std::string_view, 14> kFields = {
      "Connection",          "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
      "Proxy-Authorization", "TE",         "Trailer",          "Transfer-Encoding",
      "Upgrade",             "Content-Length", "Age",          "Via",
      "X-Cache",             "Accept-Ranges"};
  for (std::string_view f : kFields) {
    if (equalsIgnoreCase(name, f)) return true;
  }
  return false;
}

bool isEdgeOnlyField(std::string_view name) { return !name.empty() && name.front() == ':'; }

const std::string* ResponseHead::find(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (equalsIgnoreCase(n, name)) return &v;
  }
  return nullptr;
}

void ResponseHead::buildWire() {
  size_t total = 0;
  for (const auto& [n, v] : headers) total += n.size() + v.size() + 4;
  wire.clear();
  wire.reserve(total);
  for (const auto& [n, v] : headers) {
    if (isEdgeOnlyField(n)) continue;
    wire.append(n);
    wire.append(": ");
    wire.append(v);
    wire.append("\r\n");
  }
}

}  // namespace streamedge::cache
