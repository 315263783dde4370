#include "cache/response_head.h"

#include <algorithm>
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

namespace {

// A field of a 304 that does not update the stored head (see mergeNotModified).
bool keepsStoredValue(std::string_view name) {
  return isHopByHopOrDeliveryField(name) || equalsIgnoreCase(name, "Content-Range") ||
         equalsIgnoreCase(name, "Proxy-Authenticate") ||
         equalsIgnoreCase(name, "Proxy-Authentication-Info") ||
         equalsIgnoreCase(name, "Content-Encoding") || equalsIgnoreCase(name, "Set-Cookie");
}

const std::string* findIn(const std::vector<std::pair<std::string, std::string>>& fields,
                          std::string_view name) {
  for (const auto& [n, v] : fields) {
    if (equalsIgnoreCase(n, name)) return &v;
  }
  return nullptr;
}

}  // namespace

bool notModifiedMatches(const ResponseHead& stored,
                        const std::vector<std::pair<std::string, std::string>>& fields) {
  if (const std::string* etag = findIn(fields, "ETag")) {
    const std::string* mine = stored.find("ETag");
    if (!mine) return false;
    auto opaque = [](std::string_view v) { return v.starts_with("W/") ? v.substr(2) : v; };
    if (!etag->starts_with("W/")) return !mine->starts_with("W/") && *mine == *etag;
    return opaque(*mine) == opaque(*etag);
  }
  if (const std::string* lm = findIn(fields, "Last-Modified")) {
    const std::string* mine = stored.find("Last-Modified");
    return mine && *mine == *lm;
  }
  return true;
}

std::shared_ptr<ResponseHead> mergeNotModified(
    const ResponseHead& stored, const std::vector<std::pair<std::string, std::string>>& fields) {
  auto merged = std::make_shared<ResponseHead>();
  merged->status = stored.status;
  merged->reason = stored.reason;
  merged->content_length = stored.content_length;
  for (const auto& field : stored.headers) {
    const bool replaced = std::any_of(fields.begin(), fields.end(), [&](const auto& f) {
      return !keepsStoredValue(f.first) && equalsIgnoreCase(f.first, field.first);
    });
    if (!replaced) merged->headers.push_back(field);
  }
  for (const auto& field : fields) {
    if (!keepsStoredValue(field.first)) merged->headers.push_back(field);
  }
  merged->buildWire();
  return merged;
}

}  // namespace streamedge::cache
