// DNS messages (RFC 1035 section 4) for the cluster's membership queries: a one-question query,
// and a parser of the answer that keeps the records of the asked name (SRV, A, AAAA; RFC 2782
// for SRV) and follows CNAMEs inside the message. The parser trusts no length in the message:
// every read is bounds-checked, compression pointers (RFC 1035 4.1.4) may only point backwards
// and are followed a bounded number of times, names longer than 255 bytes are refused.
//
// Pure functions, no I/O; any thread.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace streamedge::proxy::dns {

inline constexpr uint16_t kTypeA = 1;
inline constexpr uint16_t kTypeCname = 5;
inline constexpr uint16_t kTypeAaaa = 28;
inline constexpr uint16_t kTypeSrv = 33;
inline constexpr uint16_t kClassIn = 1;
inline constexpr uint8_t kRcodeNxDomain = 3;

// The UDP answer size our queries announce (EDNS(0)) and the receive buffer's size.
inline constexpr size_t kMaxUdpPayload = 4096;
// A message over TCP (RFC 1035 4.2.2, RFC 7766) follows its two-byte length: at most this.
inline constexpr size_t kMaxTcpMessage = 65535;

// A query for `name` (dotted, a trailing dot allowed) of `type`, recursion desired, with an
// EDNS(0) OPT record announcing kMaxUdpPayload. False when
// the name is not a valid DNS name (empty label, label over 63 bytes, name over 253 bytes).
bool buildQuery(uint16_t id, std::string_view name, uint16_t type, std::vector<uint8_t>& out);

struct SrvRecord {
  uint16_t priority = 0;
  uint16_t weight = 0;
  uint16_t port = 0;
  std::string target;  // lower case, no trailing dot
  uint32_t ttl = 0;
};

struct Answer {
  uint8_t rcode = 0;
  bool truncated = false;  // TC: the records were not read; ask again over TCP
  std::vector<SrvRecord> srv;
  std::vector<std::string> addresses;  // A and AAAA records of the name, as IP text
  uint32_t min_ttl = UINT32_MAX;       // of the records kept
};

// Parses `message` as the response to a query `id` for `name` of `type`. Returns nullptr and
// fills `out`, or a static sentence saying why the message is not a usable response (not a
// response, wrong id, wrong question, malformed). An answer with rcode != 0 parses fine (the
// caller looks at rcode).
const char* parseAnswer(std::span<const uint8_t> message, uint16_t id, std::string_view name,
                        uint16_t type, Answer& out);

// Reads the (possibly compressed) name at `offset`: its dotted lower-case text in `out`, and
// `offset` moved past it in the message (past the first pointer when compressed). Exposed for
// the tests and the fuzz target.
const char* readName(std::span<const uint8_t> message, size_t& offset, std::string& out);

}  // namespace streamedge::proxy::dns
