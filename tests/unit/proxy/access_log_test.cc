#include "proxy/access_log.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

namespace streamedge::proxy {
namespace {

std::string anonymize(const char* text, conf::AddressAnonymization mode) {
  sockaddr_storage ss{};
  if (inet_pton(AF_INET, text, &reinterpret_cast<sockaddr_in*>(&ss)->sin_addr) == 1) {
    ss.ss_family = AF_INET;
  } else {
    EXPECT_EQ(inet_pton(AF_INET6, text, &reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr), 1);
    ss.ss_family = AF_INET6;
  }
  std::string out;
  anonymizeAddress(reinterpret_cast<const sockaddr*>(&ss), mode, out);
  return out;
}

TEST(AccessLog, Ipv4IsTruncatedToSlash24ByDefault) {
  EXPECT_EQ(anonymize("203.0.113.77", conf::AddressAnonymization::kTruncate), "203.0.113.0");
  EXPECT_EQ(anonymize("203.0.113.77", conf::AddressAnonymization::kFull), "203.0.113.77");
  EXPECT_EQ(anonymize("203.0.113.77", conf::AddressAnonymization::kNone), "-");
}

TEST(AccessLog, Ipv6IsTruncatedToSlash48) {
  EXPECT_EQ(anonymize("2001:db8:abcd:1234:5678::1", conf::AddressAnonymization::kTruncate),
            "2001:db8:abcd::");
  EXPECT_EQ(anonymize("::ffff:198.51.100.9", conf::AddressAnonymization::kTruncate),
            "198.51.100.0");
}

TEST(AccessLog, LineIsOneJsonObjectWithEscapedFields) {
  AccessLogEntry e;
  e.time_unix_ms = 1700000000123;
  e.vhost = "live";
  e.client = "203.0.113.0";
  e.method = "GET";
  e.path = "/live/\"evil\"\n.m3u8";
  e.query = "bitrate=3";
  e.status = 200;
  e.bytes = 2048;
  e.duration_ms = 1.5;
  e.ttfb_ms = 0.25;
  e.cache = "HIT";
  std::string line;
  formatAccessLogLine(e, line);
  EXPECT_EQ(line,
            "{\"time\":\"2023-11-14T22:13:20.123Z\",\"vhost\":\"live\",\"client\":\"203.0.113.0\","
            "\"method\":\"GET\",\"path\":\"/live/\\\"evil\\\"\\n.m3u8\",\"query\":\"bitrate=3\","
            "\"status\":200,\"bytes\":2048,\"duration_ms\":1.500,\"ttfb_ms\":0.250,"
            "\"cache\":\"HIT\",\"origin\":\"-\",\"dc\":\"-\",\"tls\":\"-\"}\n");
  EXPECT_EQ(line.find('\n'), line.size() - 1) << "exactly one line";
}

}  // namespace
}  // namespace streamedge::proxy
