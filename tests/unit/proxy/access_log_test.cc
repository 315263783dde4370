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

TEST(AccessLog, LineNamesTheOriginDataCenterAndTlsVersionUsed) {
  AccessLogEntry e;
  e.time_unix_ms = 1700000000000;
  e.vhost = "vod";
  e.client = "2001:db8:abcd::";
  e.method = "GET";
  e.path = "/vod/a/seg_1.ts";
  e.status = 200;
  e.bytes = 1;
  e.cache = "MISS";
  e.origin = "origin-fra";
  e.dc = "fra1";
  e.tls = "1.3";
  std::string line;
  formatAccessLogLine(e, line);
  EXPECT_NE(line.find("\"query\":\"\",\"status\":200"), std::string::npos) << line;
  EXPECT_NE(line.find("\"cache\":\"MISS\",\"origin\":\"origin-fra\",\"dc\":\"fra1\",\"tls\":\"1.3\"}"),
            std::string::npos)
      << line;
}

TEST(AccessLog, LineHasExactlyTheDocumentedFieldsAndNothingPersonal) {
  AccessLogEntry e;
  std::string line;
  formatAccessLogLine(e, line);
  // Field names in order; no User-Agent, Referer, cookie or authorization ever.
  size_t pos = 0;
  for (const char* key : {"time", "vhost", "client", "method", "path", "query", "status", "bytes",
                          "duration_ms", "ttfb_ms", "cache", "origin", "dc", "tls"}) {
    const size_t at = line.find(std::string("\"") + key + "\":", pos);
    ASSERT_NE(at, std::string::npos) << key << " in " << line;
    pos = at + 1;
  }
  for (const char* absent : {"agent", "referer", "cookie", "authorization"}) {
    EXPECT_EQ(line.find(absent), std::string::npos) << absent;
  }
  // Empty values become "-" rather than "" where a value is expected.
  EXPECT_NE(line.find("\"vhost\":\"-\""), std::string::npos) << line;
  EXPECT_NE(line.find("\"origin\":\"-\",\"dc\":\"-\",\"tls\":\"-\""), std::string::npos) << line;
}

TEST(AccessLog, TimesAndDurationsAreFormattedExactly) {
  // The per-second time prefix is cached per thread: alternate seconds to exercise it.
  auto line = [](int64_t unix_ms, double duration_ms) {
    AccessLogEntry e;
    e.time_unix_ms = unix_ms;
    e.duration_ms = duration_ms;
    std::string out;
    formatAccessLogLine(e, out);
    return out;
  };
  EXPECT_NE(line(1700000000999, 0).find("\"time\":\"2023-11-14T22:13:20.999Z\""), std::string::npos);
  EXPECT_NE(line(1700000001000, 0).find("\"time\":\"2023-11-14T22:13:21.000Z\""), std::string::npos);
  EXPECT_NE(line(1700000000005, 0).find("\"time\":\"2023-11-14T22:13:20.005Z\""), std::string::npos);
  EXPECT_NE(line(0, 0).find("\"time\":\"1970-01-01T00:00:00.000Z\""), std::string::npos);
  EXPECT_NE(line(0, 0).find("\"duration_ms\":0.000,"), std::string::npos);
  EXPECT_NE(line(0, -3).find("\"duration_ms\":0.000,"), std::string::npos);
  EXPECT_NE(line(0, 1.0005).find("\"duration_ms\":1.001,"), std::string::npos);
  EXPECT_NE(line(0, 0.0424).find("\"duration_ms\":0.042,"), std::string::npos);
  EXPECT_NE(line(0, 12345.678).find("\"duration_ms\":12345.678,"), std::string::npos);
}

TEST(AccessLog, ControlCharactersAreEscapedAsUnicode) {
  AccessLogEntry e;
  e.path = "/a\x01" "b\x7f" "\\c";
  std::string out;
  formatAccessLogLine(e, out);
  EXPECT_NE(out.find("\"path\":\"/a\\u0001b\\u007f\\\\c\""), std::string::npos) << out;
}

TEST(AccessLog, AnonymiserHandlesEdgeAddressesAndNull) {
  EXPECT_EQ(anonymize("0.0.0.0", conf::AddressAnonymization::kTruncate), "0.0.0.0");
  EXPECT_EQ(anonymize("255.255.255.255", conf::AddressAnonymization::kTruncate), "255.255.255.0");
  EXPECT_EQ(anonymize("::1", conf::AddressAnonymization::kTruncate), "::");
  EXPECT_EQ(anonymize("2001:db8:abcd:ffff:ffff:ffff:ffff:ffff", conf::AddressAnonymization::kTruncate),
            "2001:db8:abcd::");
  EXPECT_EQ(anonymize("2001:db8::1", conf::AddressAnonymization::kFull), "2001:db8::1");
  EXPECT_EQ(anonymize("2001:db8::1", conf::AddressAnonymization::kNone), "-");
  std::string out = "stale";
  anonymizeAddress(nullptr, conf::AddressAnonymization::kFull, out);
  EXPECT_EQ(out, "-");
}

}  // namespace
}  // namespace streamedge::proxy
