// Purge labels: what a purge by virtual host, path prefix or surrogate key needs to know of a
// stored object whose cache key is only a hash. A fill stores them in the object's response
// head as edge-only fields (names starting with ':', see response_head.h): never sent to
// viewers, kept through 304 updates, and persisted with the head on the SSD tier (no format
// change), whose index and checkpoint keep a copy so that objects only on the SSD are found too.
//
//   :vhost           the configured vhost name the key was made with
//   :path            the normalised path the key was made with (no query)
//   :surrogate-keys  the origin's Surrogate-Key and Cache-Tag values, one space between keys
//
// Surrogate-Key (space-separated keys, the Fastly convention) and Cache-Tag (comma-separated,
// the Cloudflare convention) are consumed by the edge: internSurrogateKeys() removes them from an
// origin answer before anything is stored or forwarded, so they never reach a viewer.
//
// Pure functions and immutable values; thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cache/response_head.h"

namespace streamedge::cache {

inline constexpr std::string_view kStoredVhostField = ":vhost";
inline constexpr std::string_view kStoredPathField = ":path";
inline constexpr std::string_view kStoredSurrogateKeysField = ":surrogate-keys";
// Bounds: a longer list is cut (the keys past it cannot be purged by tag; logged by the caller
// when it wants). A purge request's tag is bounded the same way.
inline constexpr size_t kMaxSurrogateKeys = 64;
inline constexpr size_t kMaxSurrogateKeyBytes = 256;

// Replaces every Surrogate-Key and Cache-Tag field of an origin answer with one
// kStoredSurrogateKeysField holding their keys (split on spaces, tabs and commas; empty ones
// and duplicates dropped; at most kMaxSurrogateKeys, each at most kMaxSurrogateKeyBytes).
// Does nothing when neither field is present.
void internSurrogateKeys(std::vector<std::pair<std::string, std::string>>& fields);

// Appends the :vhost and :path fields (a fill of a stored object, before buildWire()).
void addPurgeLabels(std::vector<std::pair<std::string, std::string>>& fields,
                    std::string_view vhost, std::string_view path);

// The labels of a stored object, copied out of its head (the SSD index keeps them).
struct PurgeLabels {
  std::string vhost;
  std::string path;
  std::string tags;  // keys separated by one space
  bool empty() const { return vhost.empty() && path.empty() && tags.empty(); }
};
PurgeLabels purgeLabelsOf(const ResponseHead& head);

// True when `tags` (keys separated by one space) holds `tag`.
bool hasSurrogateKey(std::string_view tags, std::string_view tag);

// Which stored objects a purge by host, prefix or surrogate key selects.
struct PurgeSelector {
  enum class Kind : uint8_t {
    kHost,    // every object of `vhost`
    kPrefix,  // objects of `vhost` whose normalised path starts with `prefix`
    kTag,     // objects whose surrogate keys hold `tag` (of `vhost` only, when it is set)
  };
  Kind kind = Kind::kHost;
  std::string vhost;
  std::string prefix;
  std::string tag;

  bool matches(std::string_view vhost_label, std::string_view path_label,
               std::string_view tags_label) const;
  // Reads the head's fields in place: no allocation (called under index locks).
  bool matches(const ResponseHead& head) const;
  bool matches(const PurgeLabels& labels) const {
    return matches(labels.vhost, labels.path, labels.tags);
  }
};

}  // namespace streamedge::cache
