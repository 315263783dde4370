#include "proxy/dns_message.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

namespace streamedge::proxy::dns {
namespace {

// A response builder for the tests: header, the question, then records appended as raw bytes.
struct Msg {
  std::vector<uint8_t> b;
  explicit Msg(uint16_t id, uint16_t ancount, uint16_t flags = 0x8180) {
    b = {static_cast<uint8_t>(id >> 8), static_cast<uint8_t>(id), static_cast<uint8_t>(flags >> 8),
         static_cast<uint8_t>(flags), 0, 1, static_cast<uint8_t>(ancount >> 8),
         static_cast<uint8_t>(ancount), 0, 0, 0, 0};
  }
  void name(const std::string& dotted) {
    size_t start = 0;
    while (start < dotted.size()) {
      size_t dot = dotted.find('.', start);
      if (dot == std::string::npos) dot = dotted.size();
      b.push_back(static_cast<uint8_t>(dot - start));
      b.insert(b.end(), dotted.begin() + static_cast<long>(start),
               dotted.begin() + static_cast<long>(dot));
      start = dot + 1;
    }
    b.push_back(0);
  }
  void pointer(size_t offset) {
    b.push_back(static_cast<uint8_t>(0xC0 | (offset >> 8)));
    b.push_back(static_cast<uint8_t>(offset));
  }
  void u16(uint16_t v) {
    b.push_back(static_cast<uint8_t>(v >> 8));
    b.push_back(static_cast<uint8_t>(v));
  }
  void u32(uint32_t v) {
    u16(static_cast<uint16_t>(v >> 16));
    u16(static_cast<uint16_t>(v));
  }
  void question(const std::string& n, uint16_t type) {
    name(n);
    u16(type);
    u16(kClassIn);
  }
  // Record owned by the question's name (pointer to offset 12).
  void recordHead(uint16_t type, uint32_t ttl, uint16_t rdlength) {
    pointer(12);
    u16(type);
    u16(kClassIn);
    u32(ttl);
    u16(rdlength);
  }
  void a(uint8_t last, uint32_t ttl = 30) {
    recordHead(kTypeA, ttl, 4);
    b.insert(b.end(), {127, 0, 0, last});
  }
  void srv(uint16_t port, const std::string& target, uint32_t ttl = 30) {
    recordHead(kTypeSrv, ttl, static_cast<uint16_t>(6 + target.size() + 2));
    u16(0);
    u16(10);
    u16(port);
    name(target);
  }
};

constexpr const char* kSrvName = "_http._tcp.edge.ns.svc.cluster.local";

TEST(DnsMessage, QueryHasOneQuestionWithRecursionDesired) {
  std::vector<uint8_t> q;
  ASSERT_TRUE(buildQuery(0x1234, "a.example.", kTypeSrv, q));
  const std::vector<uint8_t> want = {0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1,
                                     1, 'a', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0,
                                     0, 33, 0, 1,
                                     0, 0, 41, 0x10, 0x00, 0, 0, 0, 0, 0, 0};  // OPT, 4096
  EXPECT_EQ(q, want);
  EXPECT_FALSE(buildQuery(1, "", kTypeA, q));
  EXPECT_FALSE(buildQuery(1, "a..b", kTypeA, q));
  EXPECT_FALSE(buildQuery(1, std::string(64, 'a') + ".b", kTypeA, q));
}

TEST(DnsMessage, SrvRecordsWithTargetsAndPorts) {
  Msg m(7, 2);
  m.question(kSrvName, kTypeSrv);
  m.srv(8080, "edge-0.edge.ns.svc.cluster.local", 30);
  m.srv(8081, "Edge-1.edge.ns.svc.cluster.local", 5);
  Answer a;
  ASSERT_EQ(parseAnswer(m.b, 7, kSrvName, kTypeSrv, a), nullptr);
  ASSERT_EQ(a.srv.size(), 2u);
  EXPECT_EQ(a.srv[0].port, 8080);
  EXPECT_EQ(a.srv[0].weight, 10);
  EXPECT_EQ(a.srv[0].target, "edge-0.edge.ns.svc.cluster.local");
  EXPECT_EQ(a.srv[1].target, "edge-1.edge.ns.svc.cluster.local");  // lower-cased
  EXPECT_EQ(a.min_ttl, 5u);
  EXPECT_EQ(a.rcode, 0);
}

TEST(DnsMessage, ARecordsAndCaseInsensitiveQuestion) {
  Msg m(9, 2);
  m.question("Edge.NS.svc", kTypeA);
  m.a(2);
  m.a(3);
  Answer a;
  ASSERT_EQ(parseAnswer(m.b, 9, "edge.ns.svc.", kTypeA, a), nullptr);
  EXPECT_EQ(a.addresses, (std::vector<std::string>{"127.0.0.2", "127.0.0.3"}));
}

TEST(DnsMessage, AaaaRecord) {
  Msg m(9, 1);
  m.question("edge", kTypeAaaa);
  m.recordHead(kTypeAaaa, 10, 16);
  for (int i = 0; i < 15; ++i) m.b.push_back(0);
  m.b.push_back(1);
  Answer a;
  ASSERT_EQ(parseAnswer(m.b, 9, "edge", kTypeAaaa, a), nullptr);
  EXPECT_EQ(a.addresses, (std::vector<std::string>{"::1"}));
  // A wrong record length is malformed, not a short address.
  Msg bad(9, 1);
  bad.question("edge", kTypeAaaa);
  bad.recordHead(kTypeAaaa, 10, 4);
  bad.b.insert(bad.b.end(), {1, 2, 3, 4});
  EXPECT_NE(parseAnswer(bad.b, 9, "edge", kTypeAaaa, a), nullptr);
}

TEST(DnsMessage, CompressedSrvTargetAndCname) {
  // edge → CNAME svc.example (compressed against the question), then SRV of svc.example whose
  // target is a label plus a pointer to "example".
  Msg m(3, 2);
  m.question("edge.example", kTypeSrv);  // "edge" at 12, "example" at 17
  m.recordHead(kTypeCname, 60, 6);
  m.b.insert(m.b.end(), {3, 's', 'v', 'c'});
  m.pointer(17);
  const size_t cname_target = m.b.size() - 6;
  m.pointer(cname_target);
  m.u16(kTypeSrv);
  m.u16(kClassIn);
  m.u32(20);
  m.u16(6 + 3 + 2);
  m.u16(1);
  m.u16(1);
  m.u16(9000);
  m.b.insert(m.b.end(), {2, 'n', '1'});
  m.pointer(17);
  Answer a;
  ASSERT_EQ(parseAnswer(m.b, 3, "edge.example", kTypeSrv, a), nullptr);
  ASSERT_EQ(a.srv.size(), 1u);
  EXPECT_EQ(a.srv[0].target, "n1.example");
  EXPECT_EQ(a.srv[0].port, 9000);
}

TEST(DnsMessage, PointerLoopsAndForwardPointersAreRefused) {
  std::string name;
  // A pointer to itself.
  std::vector<uint8_t> self(12, 0);
  self.push_back(0xC0);
  self.push_back(12);
  size_t at = 12;
  EXPECT_STREQ(readName(self, at, name), "name pointer does not point backwards");
  // Two pointers to each other: the second points backwards to the first, which points forward.
  std::vector<uint8_t> pair(12, 0);
  pair.insert(pair.end(), {0xC0, 14, 0xC0, 12});
  at = 14;
  EXPECT_NE(readName(pair, at, name), nullptr);
  // A pointer chain longer than any real name needs.
  std::vector<uint8_t> chain(12, 0);
  chain.push_back(0);  // root name at 12
  for (int i = 0; i < 100; ++i) {
    const size_t prev = chain.size() - (i == 0 ? 1 : 2);
    chain.push_back(static_cast<uint8_t>(0xC0 | (prev >> 8)));
    chain.push_back(static_cast<uint8_t>(prev));
  }
  at = chain.size() - 2;
  EXPECT_STREQ(readName(chain, at, name), "too many name pointers");
}

TEST(DnsMessage, TruncatedMessagesAreRefusedAtEveryLength) {
  Msg m(5, 2);
  m.question(kSrvName, kTypeSrv);
  m.srv(8080, "a.example");
  m.srv(8081, "b.example");
  Answer a;
  ASSERT_EQ(parseAnswer(m.b, 5, kSrvName, kTypeSrv, a), nullptr);
  for (size_t len = 0; len < m.b.size(); ++len) {
    const std::vector<uint8_t> cut(m.b.begin(), m.b.begin() + static_cast<long>(len));
    EXPECT_NE(parseAnswer(cut, 5, kSrvName, kTypeSrv, a), nullptr) << "length " << len;
  }
}

TEST(DnsMessage, LabelLengthPastTheEndAndOverlongNames) {
  std::vector<uint8_t> m(12, 0);
  m.insert(m.end(), {63, 'a', 'b'});
  size_t at = 12;
  std::string name;
  EXPECT_STREQ(readName(m, at, name), "label runs past the message");
  std::vector<uint8_t> big(12, 0);
  for (int i = 0; i < 5; ++i) {
    big.push_back(63);
    big.insert(big.end(), 63, 'a');
  }
  big.push_back(0);
  at = 12;
  EXPECT_STREQ(readName(big, at, name), "name longer than 255 bytes");
}

TEST(DnsMessage, WrongIdQuestionOrFlagsAreNotAnAnswer) {
  Msg m(5, 1);
  m.question("edge", kTypeA);
  m.a(2);
  Answer a;
  EXPECT_STREQ(parseAnswer(m.b, 6, "edge", kTypeA, a), "wrong id");
  EXPECT_STREQ(parseAnswer(m.b, 5, "other", kTypeA, a), "answers another question");
  EXPECT_STREQ(parseAnswer(m.b, 5, "edge", kTypeAaaa, a), "answers another question");
  Msg query(5, 1, 0x0100);  // QR clear
  query.question("edge", kTypeA);
  EXPECT_STREQ(parseAnswer(query.b, 5, "edge", kTypeA, a), "not a response");
}

TEST(DnsMessage, RcodeAndTruncationFlagAreReported) {
  Msg nx(5, 0, 0x8183);
  nx.question("edge", kTypeA);
  Answer a;
  ASSERT_EQ(parseAnswer(nx.b, 5, "edge", kTypeA, a), nullptr);
  EXPECT_EQ(a.rcode, kRcodeNxDomain);
  Msg tc(5, 0, 0x8380);
  tc.question("edge", kTypeA);
  ASSERT_EQ(parseAnswer(tc.b, 5, "edge", kTypeA, a), nullptr);
  EXPECT_TRUE(a.truncated);
  // Cut in the middle of its second record (the count still says two), as a server truncating
  // at 512 bytes leaves it: still a truncated answer, with no records taken from it.
  Msg cut(5, 2, 0x8380);
  cut.question(kSrvName, kTypeSrv);
  cut.srv(8080, "a.example");
  cut.srv(8081, "b.example");
  cut.b.erase(cut.b.end() - 5, cut.b.end());
  ASSERT_EQ(parseAnswer(cut.b, 5, kSrvName, kTypeSrv, a), nullptr);
  EXPECT_TRUE(a.truncated);
  EXPECT_TRUE(a.srv.empty());
  // The question itself must still be whole and ours.
  EXPECT_STREQ(parseAnswer(cut.b, 5, "other.example", kTypeSrv, a), "answers another question");
}

TEST(DnsMessage, RecordsOfOtherNamesAreIgnored) {
  Msg m(5, 1);
  m.question("edge", kTypeA);
  m.name("other");
  m.u16(kTypeA);
  m.u16(kClassIn);
  m.u32(30);
  m.u16(4);
  m.b.insert(m.b.end(), {10, 0, 0, 1});
  Answer a;
  ASSERT_EQ(parseAnswer(m.b, 5, "edge", kTypeA, a), nullptr);
  EXPECT_TRUE(a.addresses.empty());
}

}  // namespace
}  // namespace streamedge::proxy::dns
