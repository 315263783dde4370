// The audit log: one JSON line per event (who, from where, what, when, result), appended, and
// reopened by path after logrotate moved the file.
#include "proxy/audit_log.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

namespace streamedge::proxy {
namespace {

TEST(AuditLog, OneJsonLinePerEventAppendedAndReopened) {
  AuditEvent e;
  e.time_unix_ms = 1'700'000'000'123;
  e.who = "purger";
  e.client = "127.0.0.1";
  e.action = "purge";
  e.method = "POST";
  e.path = "/purge";
  e.params = {{"kind", "tag"}, {"tag", "a\"b"}};
  e.result = "ok";
  e.status = 200;
  e.objects = 3;
  EXPECT_EQ(formatAuditLine(e),
            "{\"time\":\"2023-11-14T22:13:20.123Z\",\"who\":\"purger\",\"client\":\"127.0.0.1\","
            "\"action\":\"purge\",\"method\":\"POST\",\"path\":\"/purge\",\"kind\":\"tag\","
            "\"tag\":\"a\\\"b\",\"result\":\"ok\",\"status\":200,\"objects\":3}\n");

  char tmpl[] = "/tmp/streamedge-audit-XXXXXX";
  const int fd = ::mkstemp(tmpl);
  ASSERT_GE(fd, 0);
  ::close(fd);
  const std::string path = tmpl;
  const std::string rotated = path + ".1";
  {
    AuditLog log(path);
    ASSERT_TRUE(log.open());
    log.record(e);
    ASSERT_EQ(::rename(path.c_str(), rotated.c_str()), 0);  // logrotate moves it
    log.reopen();
    AuditEvent refused;
    refused.time_unix_ms = e.time_unix_ms;
    refused.action = "refused";
    refused.result = "refused";
    refused.status = 401;
    refused.detail = "no token";
    log.record(refused);
    EXPECT_EQ(log.failedLines(), 0u);
  }
  const auto slurp = [](const std::string& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  EXPECT_EQ(slurp(rotated), formatAuditLine(e));
  const std::string now = slurp(path);
  EXPECT_NE(now.find("\"who\":\"-\""), std::string::npos) << now;
  EXPECT_NE(now.find("\"detail\":\"no token\""), std::string::npos) << now;
  EXPECT_EQ(now.find("objects"), std::string::npos) << "no count for a refusal: " << now;
  ::unlink(path.c_str());
  ::unlink(rotated.c_str());
}

}  // namespace
}  // namespace streamedge::proxy
