// [dns]: nameservers and hosts_file for origin names, their defaults and errors with file:line.
#include <gtest/gtest.h>

#include <string>

#include "conf/config_loader.h"

namespace streamedge::conf {
namespace {

constexpr std::string_view kBase = R"([[listener]]
address = "127.0.0.1:8080"

[[origin_group]]
name = "main"
  [[origin_group.origin]]
  url = "http://origin.example:8081"

[[vhost]]
hostnames = ["*"]
  [[vhost.route]]
  prefix = "/"
  origin_group = "main"

)";

LoadResult load(std::string_view dns) {
  std::string text(kBase);
  text += "[dns]\n";
  text += dns;
  return loadConfigText(text, "test.toml");
}

std::string errors(const LoadResult& r) {
  std::string out;
  for (const ConfigError& e : r.errors) out += e.toString() + "\n";
  return out;
}

TEST(DnsConfig, DefaultsAreTheSystemResolversAndEtcHosts) {
  const LoadResult r = loadConfigText(std::string(kBase), "test.toml");
  ASSERT_TRUE(r.ok()) << errors(r);
  EXPECT_TRUE(r.config->dns.nameservers.empty());
  EXPECT_EQ(r.config->dns.hosts_file, "/etc/hosts");
  EXPECT_EQ(r.config->origin_groups[0].origins[0].dns_cache_time, std::chrono::seconds(30));
}

TEST(DnsConfig, NameserversInEveryFormAreRead) {
  const LoadResult r = load(
      "nameservers = [\"10.0.0.2\", \"10.0.0.3:5353\", \"::1\", \"[fd00::53]:53\"]\n"
      "hosts_file = \"\"\n");
  ASSERT_TRUE(r.ok()) << errors(r);
  EXPECT_EQ(r.config->dns.nameservers,
            (std::vector<std::string>{"10.0.0.2", "10.0.0.3:5353", "::1", "[fd00::53]:53"}));
  EXPECT_EQ(r.config->dns.hosts_file, "");
}

TEST(DnsConfig, ABadNameserverNamesFileLineAndElement) {
  const LoadResult r = load("nameservers = [\"10.0.0.2\", \"dns.example\", \"10.0.0.3:0\"]\n");
  ASSERT_FALSE(r.ok());
  const std::string text = errors(r);
  const int line = 15;  // kBase has 14 lines, then "[dns]"
  EXPECT_NE(text.find("test.toml:" + std::to_string(line + 1) + ": dns.nameservers[1]"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("dns.nameservers[2]"), std::string::npos) << text;
  EXPECT_EQ(text.find("dns.nameservers[0]"), std::string::npos) << text;
}

TEST(DnsConfig, UnknownKeyIsAnError) {
  const LoadResult r = load("nameserver = [\"10.0.0.2\"]\n");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(errors(r).find("dns.nameserver"), std::string::npos) << errors(r);
}

}  // namespace
}  // namespace streamedge::conf
