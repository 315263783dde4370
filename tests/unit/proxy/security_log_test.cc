#include "proxy/security_log.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

namespace streamedge::proxy {
namespace {

TEST(SecurityLog, OneJsonLinePerEventWithDashesForEmptyFields) {
  SecurityEvent e;
  e.time_unix_ms = 1'700'000'000'123;
  e.event = "token_rejected";
  e.reason = "expired";
  e.vhost = "video";
  e.client = "203.0.113.0";
  e.method = "GET";
  e.path = "/live/a\"b\\c\x01.m3u8";
  e.source = "query";
  std::string out;
  formatSecurityLogLine(e, out);
  EXPECT_EQ(out,
            "{\"time\":\"2023-11-14T22:13:20.123Z\",\"event\":\"token_rejected\","
            "\"reason\":\"expired\",\"vhost\":\"video\",\"client\":\"203.0.113.0\","
            "\"method\":\"GET\",\"path\":\"/live/a\\\"b\\\\c\\u0001.m3u8\",\"source\":\"query\","
            "\"key_id\":\"-\"}\n");
  formatSecurityLogLine(e, out);  // appends
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 2);
}

}  // namespace
}  // namespace streamedge::proxy
