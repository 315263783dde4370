// [dns]: nameservers and hosts_file for origin names, their defaults and errors with file:line.
#include <gtest/gtest.h>

#include <string>

#include "tests/unit/conf/config_test_base.h"

namespace streamedge::conf {
namespace {

using testing::baseLines;
using testing::describe;
using testing::expectOnlyError;

LoadResult loadDns(std::string_view dns) { return testing::load("\n[dns]\n" + std::string(dns)); }

TEST(DnsConfig, DefaultsAreTheSystemResolversAndEtcHosts) {
  const LoadResult r = testing::load("");
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_TRUE(r.config->dns.nameservers.empty());
  EXPECT_EQ(r.config->dns.hosts_file, "/etc/hosts");
  EXPECT_EQ(r.config->origin_groups[0].origins[0].dns_cache_time, std::chrono::seconds(30));
}

TEST(DnsConfig, NameserversInEveryFormAreRead) {
  const LoadResult r = loadDns(
      "nameservers = [\"10.0.0.2\", \"10.0.0.3:5353\", \"::1\", \"[fd00::53]:53\"]\n"
      "hosts_file = \"\"\n");
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r.config->dns.nameservers,
            (std::vector<std::string>{"10.0.0.2", "10.0.0.3:5353", "::1", "[fd00::53]:53"}));
  EXPECT_EQ(r.config->dns.hosts_file, "");
}

TEST(DnsConfig, ABadNameserverNamesFileLineAndElement) {
  const LoadResult r = loadDns("nameservers = [\"10.0.0.2\", \"dns.example\", \"10.0.0.3:0\"]\n");
  ASSERT_FALSE(r.ok());
  const std::string text = describe(r);
  // The base config, a blank line, "[dns]", then the key.
  EXPECT_NE(text.find("test.toml:" + std::to_string(baseLines() + 2) + ": dns.nameservers[1]"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("dns.nameservers[2]"), std::string::npos) << text;
  EXPECT_EQ(text.find("dns.nameservers[0]"), std::string::npos) << text;
}

TEST(DnsConfig, UnknownKeyIsAnError) {
  expectOnlyError("\n[dns]\nnameserver = [\"10.0.0.2\"]\n", "dns.nameserver", 3, "nameserver");
}

}  // namespace
}  // namespace streamedge::conf
