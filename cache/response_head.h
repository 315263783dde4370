// ResponseHead: the immutable, end-to-end part of an origin response kept with a cache object.
// Hop-by-hop fields (Connection and the fields it names, Keep-Alive, Transfer-Encoding, TE,
// Trailer, Upgrade, Proxy-*), framing (Content-Length) and per-delivery fields (Age, Via,
// X-Cache, Accept-Ranges) are not kept: delivery adds them. Fields whose name starts with ':'
// (never a valid name on the wire) are kept for this edge only: stored and persisted like the
// others, left out of `wire`, so never sent to viewers (targeted_cache_control.h).
// Built once per fill, then only read (thread-safe).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace streamedge::cache {

struct ResponseHead {
  int status = 0;
  std::string reason;
  std::vector<std::pair<std::string, std::string>> headers;  // original names and order
  std::optional<uint64_t> content_length;  // the origin's framing, when it had one
  std::string wire;  // headers serialised as "Name: value\r\n" lines, for delivery
  // Which origin (config name) and data center answered the fill; for the access log only (never
  // sent to viewers, not part of the stored representation).
  std::string filled_by_origin;
  std::string filled_by_dc;

  // First value of a field, case-insensitive name; nullptr when absent.
  const std::string* find(std::string_view name) const;
  // Serialises `headers`, minus the edge-only fields, into `wire`. Call once after filling
  // `headers`.
  void buildWire();
};

// A field stored for this edge only (its name starts with ':'); never sent to viewers.
bool isEdgeOnlyField(std::string_view name);

// Case-insensitive ASCII comparison of field names.
bool equalsIgnoreCase(std::string_view a, std::string_view b);

// True for fields never stored or forwarded by a proxy (RFC 9110 §7.6.1), plus the framing and
// per-delivery fields delivery rewrites.
bool isHopByHopOrDeliveryField(std::string_view name);

// RFC 9111 §4.3.4: whether a 304 (its end-to-end `fields`) is about `stored`. A strong ETag in
// it must equal the stored one (strong comparison, RFC 9110 §8.8.3.2), a weak one must match
// weakly; without an ETag, a Last-Modified must equal the stored one. A 304 without validators
// refers to the one response that was asked about (the request carried its validators).
bool notModifiedMatches(const ResponseHead& stored,
                        const std::vector<std::pair<std::string, std::string>>& fields);

// RFC 9111 §4.3.4 and §3.2: `stored` updated with a 304's fields, status, reason and body length
// kept. Each field of the 304 replaces the stored field(s) of that name, except: hop-by-hop,
// framing and per-delivery fields; Content-Range (about one answer); Proxy-Authenticate and
// Proxy-Authentication-Info (never stored, §3.1); Content-Encoding (the stored bytes depend on
// it, §3.2); Set-Cookie (stored objects are shared without cookies). Wire built.
std::shared_ptr<ResponseHead> mergeNotModified(
    const ResponseHead& stored, const std::vector<std::pair<std::string, std::string>>& fields);

}  // namespace streamedge::cache
