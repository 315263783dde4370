// Common Media Client Data (CTA-5004): what a player reports with each request, in the CMCD
// query parameter (URL-encoded) or the CMCD-Request, CMCD-Object, CMCD-Status and CMCD-Session
// header fields. Each carries a comma-separated list of `key=value` members (a key alone is a
// boolean true; strings are quoted, tokens are not).
//
// The edge keeps only what aggregate, non-personal metrics need: the encoded bitrate (br),
// buffer starvation (bs), buffer length (bl), object type (ot), stream type (st) and the next
// object/range hints' presence. The session id (sid) and content id (cid) are recognised and
// dropped: never copied, stored or logged (only their presence is noted, to count it).
//
// Bounded and total: a list over kMaxCmcdBytes, more than kMaxCmcdMembers members, or a member
// that breaks the grammar makes the input invalid (nothing from it is used); never crashes,
// never allocates. Pure functions; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <array>
#include <optional>
#include <string_view>

namespace streamedge::streaming {

inline constexpr size_t kMaxCmcdBytes = 4096;   // per list (decoded), and per query parameter
inline constexpr size_t kMaxCmcdMembers = 64;   // per list
// nor values kept (decoded) up to this length; a longer one is noted (has_nor) but not kept.
inline constexpr size_t kMaxCmcdNorBytes = 512;

// ot: the object type (CTA-5004 §3.3 Table 1).
enum class CmcdObjectType : uint8_t {
  kUnknown, kManifest /*m*/, kAudio /*a*/, kVideo /*v*/, kMuxed /*av*/, kInit /*i*/,
  kCaption /*c*/, kTimedText /*tt*/, kKey /*k*/, kOther /*o*/
};

struct CmcdData {
  std::optional<uint64_t> br_kbps;   // encoded bitrate of the object requested
  std::optional<uint64_t> bl_ms;     // buffer length
  std::optional<uint64_t> d_ms;      // object duration
  std::optional<uint64_t> mtp_kbps;  // measured throughput
  bool bs = false;                   // buffer starvation since the last request
  bool su = false;                   // startup
  CmcdObjectType ot = CmcdObjectType::kUnknown;
  char st = 0;                       // stream type: 'v' (VOD), 'l' (live), 0 unknown
  bool has_nor = false;              // next object request named (a prefetch hint)
  bool has_nrr = false;              // next range request named
  bool had_sid = false;              // a session id was sent (its value is never kept)
  bool had_cid = false;              // a content id was sent (its value is never kept)
  bool any = false;                  // at least one valid list was read
  // The nor value: the next object's URL relative to this request's (CTA-5004 §3.3), with the
  // string escapes and percent-encoding undone. Held inline: parsing never allocates.
  std::array<char, kMaxCmcdNorBytes> nor_buf;
  uint16_t nor_len = 0;
  std::string_view nor() const { return {nor_buf.data(), nor_len}; }

  void merge(const CmcdData& other);  // members of `other` win where both have them
};

// Reads one list (a header field value, or a decoded query parameter value) into `out`
// (merged). False when the list is invalid: `out` is then unchanged.
bool parseCmcdList(std::string_view list, CmcdData& out);

// Finds the CMCD parameter in a raw query (with or without '?'), percent-decodes it into
// `scratch` (bounded by kMaxCmcdBytes) and reads it. Returns false when absent or invalid.
// The parameter name matches case-insensitively ("cmcd" too), as the key policy drops it.
bool parseCmcdQuery(std::string_view query, CmcdData& out);

// True for a CMCD header field name (CMCD-Request, CMCD-Object, CMCD-Status, CMCD-Session,
// and any other "CMCD-" name), case-insensitively.
bool isCmcdField(std::string_view name);

}  // namespace streamedge::streaming
