#include "proxy/dns_message.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cctype>

namespace streamedge::proxy::dns {
namespace {

constexpr size_t kHeaderSize = 12;
constexpr size_t kMaxNameLength = 255;  // wire form, RFC 1035 2.3.4
// A name of at most 127 labels can need at most that many jumps without looping; refusing
// more bounds the work on a hostile message.
constexpr int kMaxPointers = 64;

std::string lowerName(std::string_view name) {
  std::string out(name);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (!out.empty() && out.back() == '.') out.pop_back();
  return out;
}

bool read16(std::span<const uint8_t> m, size_t& at, uint16_t& v) {
  if (at > m.size() || m.size() - at < 2) return false;
  v = static_cast<uint16_t>((m[at] << 8) | m[at + 1]);
  at += 2;
  return true;
}

bool read32(std::span<const uint8_t> m, size_t& at, uint32_t& v) {
  uint16_t hi = 0;
  uint16_t lo = 0;
  if (!read16(m, at, hi) || !read16(m, at, lo)) return false;
  v = (static_cast<uint32_t>(hi) << 16) | lo;
  return true;
}

}  // namespace

bool buildQuery(uint16_t id, std::string_view name, uint16_t type, std::vector<uint8_t>& out) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  if (name.empty() || name.size() > 253) return false;
  out.clear();
  out.reserve(kHeaderSize + name.size() + 6);
  const uint8_t header[kHeaderSize] = {
      static_cast<uint8_t>(id >> 8), static_cast<uint8_t>(id), 0x01, 0x00,  // RD
      0, 1, 0, 0, 0, 0, 0, 1};  // one question, one additional record (OPT)
  out.insert(out.end(), header, header + kHeaderSize);
  size_t start = 0;
  while (start <= name.size()) {
    size_t dot = name.find('.', start);
    if (dot == std::string_view::npos) dot = name.size();
    const size_t len = dot - start;
    if (len == 0 || len > 63) return false;
    out.push_back(static_cast<uint8_t>(len));
    out.insert(out.end(), name.begin() + static_cast<ptrdiff_t>(start),
               name.begin() + static_cast<ptrdiff_t>(dot));
    start = dot + 1;
  }
  out.push_back(0);
  out.push_back(static_cast<uint8_t>(type >> 8));
  out.push_back(static_cast<uint8_t>(type));
  out.push_back(0);
  out.push_back(kClassIn);
  // EDNS(0) OPT record (RFC 6891 6.1.2): answers up to kMaxUdpPayload bytes, so that the SRV
  // records of a large Service are not truncated at 512 bytes. Root name, type 41, the payload
  // size in the class field, TTL 0, no options.
  const uint8_t opt[] = {0,  0, 41, static_cast<uint8_t>(kMaxUdpPayload >> 8),
                         static_cast<uint8_t>(kMaxUdpPayload & 0xFF), 0, 0, 0, 0, 0, 0};
  out.insert(out.end(), opt, opt + sizeof opt);
  return true;
}

const char* readName(std::span<const uint8_t> m, size_t& offset, std::string& out) {
  out.clear();
  size_t at = offset;
  size_t after = 0;  // where the caller goes on: past the first pointer, else past the name
  bool jumped = false;
  int pointers = 0;
  size_t wire_length = 0;
  for (;;) {
    if (at >= m.size()) return "name runs past the message";
    const uint8_t len = m[at];
    if ((len & 0xC0) == 0xC0) {
      if (at + 1 >= m.size()) return "name pointer runs past the message";
      const size_t target = (static_cast<size_t>(len & 0x3F) << 8) | m[at + 1];
      // Only backwards, to an earlier name: a pointer forwards or to itself could loop.
      if (target >= at) return "name pointer does not point backwards";
      if (++pointers > kMaxPointers) return "too many name pointers";
      if (!jumped) after = at + 2;
      jumped = true;
      at = target;
      continue;
    }
    if ((len & 0xC0) != 0) return "unknown label type";
    if (len == 0) {
      if (!jumped) after = at + 1;
      break;
    }
    wire_length += 1 + len;
    if (wire_length + 1 > kMaxNameLength) return "name longer than 255 bytes";
    if (m.size() - at - 1 < len) return "label runs past the message";
    if (!out.empty()) out += '.';
    for (size_t i = 0; i < len; ++i) {
      out += static_cast<char>(std::tolower(m[at + 1 + i]));
    }
    at += 1 + len;
  }
  offset = after;
  return nullptr;
}

const char* parseAnswer(std::span<const uint8_t> m, uint16_t id, std::string_view name,
                        uint16_t type, Answer& out) {
  out = Answer{};
  if (m.size() < kHeaderSize) return "shorter than a DNS header";
  size_t at = 0;
  uint16_t got_id = 0, flags = 0, qdcount = 0, ancount = 0;
  read16(m, at, got_id);
  read16(m, at, flags);
  read16(m, at, qdcount);
  read16(m, at, ancount);
  at = kHeaderSize;  // authority and additional sections are not needed
  if (got_id != id) return "wrong id";
  if ((flags & 0x8000) == 0) return "not a response";
  if (((flags >> 11) & 0xF) != 0) return "not a standard query response";
  out.truncated = (flags & 0x0200) != 0;
  out.rcode = static_cast<uint8_t>(flags & 0xF);
  if (qdcount != 1) return "not one question";
  const std::string asked = lowerName(name);
  std::string qname;
  if (const char* error = readName(m, at, qname)) return error;
  uint16_t qtype = 0, qclass = 0;
  if (!read16(m, at, qtype) || !read16(m, at, qclass)) return "question runs past the message";
  if (qname != asked || qtype != type || qclass != kClassIn) return "answers another question";
  // A truncated answer's records are not read: servers cut it anywhere (some in the middle of a
  // record, with the full count in the header), and a partial set is not to be used (RFC 2181
  // section 9). The caller asks again over TCP.
  if (out.truncated) return nullptr;

  // Records of the asked name, or of the name a CNAME of it (in this message) points to.
  std::string owner = asked;
  for (uint16_t i = 0; i < ancount; ++i) {
    std::string rname;
    if (const char* error = readName(m, at, rname)) return error;
    uint16_t rtype = 0, rclass = 0, rdlength = 0;
    uint32_t ttl = 0;
    if (!read16(m, at, rtype) || !read16(m, at, rclass) || !read32(m, at, ttl) ||
        !read16(m, at, rdlength)) {
      return "record runs past the message";
    }
    if (m.size() - at < rdlength) return "record data runs past the message";
    const std::span<const uint8_t> rdata = m.subspan(at, rdlength);
    const size_t rdata_at = at;
    at += rdlength;
    if (rclass != kClassIn || rname != owner) continue;
    if (ttl > 0x7FFFFFFF) ttl = 0;  // RFC 2181 8: a TTL with the top bit set means zero
    if (rtype == kTypeCname) {
      size_t p = rdata_at;  // the target may be compressed against the whole message
      std::string target;
      if (const char* error = readName(m, p, target)) return error;
      if (p != rdata_at + rdlength) return "CNAME data has the wrong length";
      owner = std::move(target);
      continue;
    }
    if (rtype != type) continue;
    if (rtype == kTypeA || rtype == kTypeAaaa) {
      const bool v4 = rtype == kTypeA;
      if (rdata.size() != (v4 ? 4u : 16u)) return "address record has the wrong length";
      char text[INET6_ADDRSTRLEN] = {};
      if (!inet_ntop(v4 ? AF_INET : AF_INET6, rdata.data(), text, sizeof text)) {
        return "address record cannot be printed";
      }
      out.addresses.emplace_back(text);
    } else if (rtype == kTypeSrv) {
      SrvRecord srv;
      size_t p = rdata_at;
      if (!read16(m, p, srv.priority) || !read16(m, p, srv.weight) || !read16(m, p, srv.port) ||
          p > rdata_at + rdlength) {
        return "SRV record too short";
      }
      // RFC 2782 forbids compressing the target, but servers do it; both are read.
      if (const char* error = readName(m, p, srv.target)) return error;
      if (p != rdata_at + rdlength) return "SRV data has the wrong length";
      srv.ttl = ttl;
      out.srv.push_back(std::move(srv));
    } else {
      continue;
    }
    if (ttl < out.min_ttl) out.min_ttl = ttl;
  }
  return nullptr;
}

}  // namespace streamedge::proxy::dns
