// libFuzzer target: the DNS answer parser of the cluster's membership queries
// (proxy/dns_message.h). The first 3 bytes pick the expected id and question type, the rest is
// the message. Whatever the bytes, the parser must stay inside them (ASan) and end (no loop on
// compression pointers); what it accepts must be consistent with the question.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "proxy/dns_message.h"

namespace {

namespace dns = streamedge::proxy::dns;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  const uint16_t id = static_cast<uint16_t>((data[0] << 8) | data[1]);
  const uint16_t types[] = {dns::kTypeA, dns::kTypeAaaa, dns::kTypeSrv};
  const uint16_t type = types[data[2] % 3];
  const std::span<const uint8_t> message(data + 3, size - 3);

  // The question name is whatever the message asks (so that the answer section is reached).
  size_t at = 12;
  std::string name;
  if (message.size() >= 12 && !dns::readName(message, at, name)) {
    check(at <= message.size());
    check(name.size() <= 255);
  }
  dns::Answer answer;
  if (!dns::parseAnswer(message, id, name.empty() ? "x" : name, type, answer)) {
    if (type != dns::kTypeSrv) check(answer.srv.empty());
    if (type == dns::kTypeSrv) check(answer.addresses.empty());
    for (const dns::SrvRecord& srv : answer.srv) check(srv.target.size() <= 255);
  }
  return 0;
}
