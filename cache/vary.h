// Vary (RFC 9111 §4.1): parsing a response's Vary list, normalising the request fields it names,
// and deriving the cache key of one variant of a URL from the URL's own key and those values.
//
// A URL whose stored answers say `Vary: <fields>` is kept as several variants, each an ordinary
// cache object under its own key: variantKey(primary key, fields, request). The values are
// normalised first so that trivial differences do not multiply variants (see normalizeField),
// and fills send the origin the normalised values (setVaryFields), so that a stored answer
// really is the answer to every request that maps to its variant.
//
// cache/ never sees a connection: the request's fields come through RequestFieldSource, a plain
// view of field lines. Pure functions, thread-safe; RequestFieldSource implementations are not
// (each belongs to one request).
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cache/cache_key.h"
#include "cache/response_head.h"

namespace streamedge::cache {

// More names than this in one Vary is treated like "*": a cache cannot hold that many
// dimensions usefully, and it bounds the work per lookup.
inline constexpr size_t kMaxVaryFields = 16;

// The field names a URL's answers vary on: lower-case, sorted, without duplicates.
using VaryNames = std::vector<std::string>;

struct VarySpec {
  enum class Kind {
    kNone,    // no Vary, or only empty list members: the answer suits every request
    kFields,  // `names` select the variant
    kAny,     // "*", a member that is not a field name, or too many names: matches no other
              // request (§4.1), so it is never stored and never shared
  };
  Kind kind = Kind::kNone;
  VaryNames names;
};

// Parses one Vary field value (`#( "*" / field-name )`, RFC 9110 §12.5.5); empty list members
// are ignored (§5.6.1).
VarySpec parseVary(std::string_view value);
// The Vary of a response: all its Vary field lines together. No allocation without Vary.
VarySpec varyOf(const ResponseHead& head);

// One request field line as received (name in any case, value with OWS trimmed).
struct FieldLine {
  std::string_view name;
  std::string_view value;
};

// What the cache needs of a request: its field lines, in order. Produced on demand: only
// lookups of URLs whose answers said Vary ask for them.
class RequestFieldSource {
 public:
  // The lines stay valid while the source is alive and unchanged.
  virtual std::span<const FieldLine> fieldLines() const = 0;

 protected:
  ~RequestFieldSource() = default;
};

// A RequestFieldSource over owned (name, value) pairs, e.g. the fields a fill sent the origin.
class FieldLineList final : public RequestFieldSource {
 public:
  FieldLineList() = default;
  explicit FieldLineList(const std::vector<std::pair<std::string, std::string>>& fields);
  // The list views the fields it is given: never a temporary.
  explicit FieldLineList(std::vector<std::pair<std::string, std::string>>&& fields) = delete;
  std::span<const FieldLine> fieldLines() const override { return lines_; }

 private:
  std::vector<FieldLine> lines_;  // views into the vector given to the constructor
};

// Normalises the value of field `name` (any case) over all its lines in `lines` into `out`.
// Returns false when the request has no such field (absent is a value of its own: §4.1 matches
// an absent field only with an absent field). Rules:
//   all fields       lines joined with ", "; whitespace runs outside quoted strings become one
//                    SP; whitespace around commas and at the ends removed
//   Accept-Encoding  reduced to what the edge tells apart: the codings among br and gzip
//                    (x-gzip is gzip) accepted with q > 0, explicitly or through "*":
//                    "br, gzip", "br", "gzip" or "identity". Absent or empty is "identity"
//                    (and so is present: the edge always asks the origin with that value)
//   Accept-Language  language ranges lower-cased, q=0 and malformed members dropped,
//                    duplicates dropped, stably sorted by descending q, "q=1" omitted, other
//                    q values without trailing zeros
//   Origin           scheme and host lower-cased, the scheme's default port removed
// normalizeField of its own output returns the same output (the fill sends it to the origin,
// and the stored answer's variant is computed from what was sent).
bool normalizeField(std::string_view name, std::span<const FieldLine> lines, std::string& out);

// The key of the variant of the URL with key `primary` that `request` selects among answers
// varying on `names` (from parseVary). A request with none of the fields still has a variant
// (its own, "all absent"). Never equal to `primary` (a different hash domain).
CacheKey variantKey(const CacheKey& primary, const VaryNames& names,
                    const RequestFieldSource& request);

// Fields whose value the edge always normalises on fills, whatever the URL's Vary says.
inline constexpr std::string_view kNormalizedFields[] = {"Accept-Encoding", "Accept-Language",
                                                         "Origin"};

// Whether setVaryFields may set a field of this name (a normalised one, or one `vary` names).
bool isVarySetField(std::string_view name, const VaryNames* vary);

// The one place where a fill's request fields are made to match its variant: for each field of
// kNormalizedFields and of `vary` (the URL's known Vary names; null when none), removes its lines
// from `forward` and, when `viewer` has the field, adds one line with the normalised value
// (Accept-Encoding is always set). Other fields of `forward` are left as they are.
void setVaryFields(std::vector<std::pair<std::string, std::string>>& forward,
                   std::span<const FieldLine> viewer, const VaryNames* vary);

}  // namespace streamedge::cache
