// [admin]: the observability keys (health_stall_bound, debug_endpoints), the bearer tokens with
// scopes ([[admin.token]]) and [log] audit: defaults, values and errors with file:line.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "conf/config_loader.h"

namespace streamedge::conf {
namespace {

constexpr std::string_view kBase = R"([[listener]]
address = "127.0.0.1:8080"

[[origin_group]]
name = "main"
  [[origin_group.origin]]
  url = "http://127.0.0.1:8081"

[[vhost]]
hostnames = ["*"]
  [[vhost.route]]
  prefix = "/"
  origin_group = "main"

)";

LoadResult load(std::string_view admin) {
  std::string text(kBase);
  text += "[admin]\n";
  text += admin;
  return loadConfigText(text, "test.toml");
}

std::string errors(const LoadResult& r) {
  std::string out;
  for (const ConfigError& e : r.errors) out += e.toString() + "\n";
  return out;
}

TEST(AdminConfig, DefaultsAreFiveSecondsAndNoDebugEndpoints) {
  const LoadResult r = load("");
  ASSERT_TRUE(r.ok()) << errors(r);
  EXPECT_EQ(r.config->admin.health_stall_bound, std::chrono::milliseconds(5000));
  EXPECT_FALSE(r.config->admin.debug_endpoints);
}

TEST(AdminConfig, StallBoundAndDebugEndpointsAreRead) {
  const LoadResult r = load("health_stall_bound = \"1500ms\"\ndebug_endpoints = true\n");
  ASSERT_TRUE(r.ok()) << errors(r);
  EXPECT_EQ(r.config->admin.health_stall_bound, std::chrono::milliseconds(1500));
  EXPECT_TRUE(r.config->admin.debug_endpoints);
}

TEST(AdminConfig, BadValuesNameFileLineAndKey) {
  const LoadResult r = load("health_stall_bound = \"0s\"\ndebug_endpoints = \"yes\"\n");
  ASSERT_FALSE(r.ok());
  const std::string text = errors(r);
  // Lines of kBase, then "[admin]", then the two keys.
  const auto base_lines = static_cast<int>(std::count(kBase.begin(), kBase.end(), '\n'));
  const std::string stall_at = "test.toml:" + std::to_string(base_lines + 2) + ": admin.health_stall_bound";
  const std::string debug_at = "test.toml:" + std::to_string(base_lines + 3) + ": admin.debug_endpoints";
  EXPECT_NE(text.find(stall_at), std::string::npos) << text;
  EXPECT_NE(text.find(debug_at), std::string::npos) << text;
  EXPECT_NE(text.find("admin.debug_endpoints"), std::string::npos) << text;
}

constexpr std::string_view kHash = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08";

TEST(AdminConfig, TokensAreReadWithLowercasedHashesAndScopeBits) {
  const std::string text = "[[admin.token]]\nname = \"ops\"\nsha256 = \"" + std::string(kHash) +
                           "\"\nscopes = [\"purge\", \"metrics\"]\n[[admin.token]]\nname = "
                           "\"root\"\nsha256 = \"" + std::string(64, 'b') +
                           "\"\nscopes = [\"all\"]\n";
  const LoadResult r = load(text);
  ASSERT_TRUE(r.ok()) << errors(r);
  ASSERT_EQ(r.config->admin.tokens.size(), 2u);
  EXPECT_EQ(r.config->admin.tokens[0].name, "ops");
  EXPECT_EQ(r.config->admin.tokens[0].sha256,
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
  EXPECT_EQ(r.config->admin.tokens[0].scopes, kAdminScopePurge | kAdminScopeMetrics);
  EXPECT_EQ(r.config->admin.tokens[1].scopes, uint32_t{kAdminScopeAll});
  EXPECT_TRUE(r.config->admin.bearer_token.empty());
}

TEST(AdminConfig, BadTokensNameFileLineAndKey) {
  const std::string text =
      "[[admin.token]]\n"                           // base+2
      "name = \"ops\"\n"                            // base+3
      "sha256 = \"s3cret-in-clear\"\n"              // base+4: not a hash
      "scopes = [\"purge\", \"everything\"]\n"      // base+5: unknown scope
      "[[admin.token]]\n"                           // base+6
      "name = \"ops\"\n"                            // base+7: duplicate name
      "sha256 = \"" + std::string(64, 'c') + "\"\n"
      "scopes = []\n"                               // base+9: no scope
      "[[admin.token]]\n"                           // base+10: nothing at all
      "token = \"x\"\n";                            // base+11: unknown key
  const LoadResult r = load(text);
  ASSERT_FALSE(r.ok());
  const std::string all = errors(r);
  const auto base_lines = static_cast<int>(std::count(kBase.begin(), kBase.end(), '\n'));
  const auto at = [&](int offset, const std::string& key) {
    return "test.toml:" + std::to_string(base_lines + offset) + ": " + key;
  };
  EXPECT_NE(all.find(at(4, "admin.token[0].sha256") + ": expected the token's SHA-256"),
            std::string::npos) << all;
  EXPECT_NE(all.find(at(5, "admin.token[0].scopes[1]")), std::string::npos) << all;
  EXPECT_NE(all.find("duplicate token name \"ops\""), std::string::npos) << all;
  EXPECT_NE(all.find(at(9, "admin.token[1].scopes") + ": must name at least one scope"),
            std::string::npos) << all;
  EXPECT_NE(all.find("admin.token[2].name: missing required key"), std::string::npos) << all;
  EXPECT_NE(all.find("admin.token[2].sha256: missing required key"), std::string::npos) << all;
  EXPECT_NE(all.find(at(11, "admin.token[2].token") + ": unknown key"), std::string::npos) << all;
  EXPECT_EQ(all.find("s3cret-in-clear"), std::string::npos) << "a bad hash is not echoed: " << all;
}

TEST(AdminConfig, AuditLogIsAFilePathOrOff) {
  std::string text(kBase);
  text += "[log]\naudit = \"/var/log/streamedge/audit.log\"\n";
  LoadResult r = loadConfigText(text, "test.toml");
  ASSERT_TRUE(r.ok()) << errors(r);
  EXPECT_EQ(r.config->log.audit_log, "/var/log/streamedge/audit.log");
  EXPECT_EQ(load("").config->log.audit_log, "") << "off by default";
  text = std::string(kBase) + "[log]\naudit = \"stderr\"\n";
  r = loadConfigText(text, "test.toml");
  ASSERT_FALSE(r.ok());
  const auto base_lines = static_cast<int>(std::count(kBase.begin(), kBase.end(), '\n'));
  EXPECT_NE(errors(r).find("test.toml:" + std::to_string(base_lines + 2) + ": log.audit: expected a file path"),
            std::string::npos) << errors(r);
}

TEST(AdminConfig, CertificatesAndClientCaMakeATlsAdminListener) {
  const LoadResult r = load(
      "client_ca = \"/etc/streamedge/admin-clients.pem\"\n"
      "[[admin.certificate]]\ncert = \"/etc/streamedge/admin.pem\"\nkey = \"/etc/streamedge/admin.key\"\n");
  ASSERT_TRUE(r.ok()) << errors(r);
  ASSERT_EQ(r.config->admin.certificates.size(), 1u);
  EXPECT_EQ(r.config->admin.certificates[0].cert, "/etc/streamedge/admin.pem");
  EXPECT_EQ(r.config->admin.certificates[0].key, "/etc/streamedge/admin.key");
  EXPECT_EQ(r.config->admin.client_ca, "/etc/streamedge/admin-clients.pem");
  const LoadResult plain = load("");
  EXPECT_TRUE(plain.config->admin.certificates.empty()) << "plain HTTP by default";
  EXPECT_EQ(plain.config->admin.client_ca, "");
}

TEST(AdminConfig, ClientCaWithoutCertificatesAndIncompleteCertificatesAreErrors) {
  LoadResult r = load("client_ca = \"/etc/streamedge/admin-clients.pem\"\n");  // base+2
  ASSERT_FALSE(r.ok());
  const auto base_lines = static_cast<int>(std::count(kBase.begin(), kBase.end(), '\n'));
  EXPECT_NE(errors(r).find("test.toml:" + std::to_string(base_lines + 2) +
                           ": admin.client_ca: a client certificate is asked for in a TLS "
                           "handshake: needs [[admin.certificate]]"),
            std::string::npos) << errors(r);
  r = load("[[admin.certificate]]\ncert = \"/etc/streamedge/admin.pem\"\n");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(errors(r).find("admin.certificate[0].key: missing required key"), std::string::npos)
      << errors(r);
}

TEST(AdminConfig, APublicAddressWarnsWithoutTlsOrWithoutAuthentication) {
  const auto warned = [](const LoadResult& r, std::string_view what) {
    return std::any_of(r.warnings.begin(), r.warnings.end(),
                       [&](const std::string& w) { return w.find(what) != std::string::npos; });
  };
  const std::string token = "[[admin.token]]\nname = \"ops\"\nsha256 = \"" + std::string(64, 'a') +
                            "\"\nscopes = [\"all\"]\n";
  const std::string cert =
      "[[admin.certificate]]\ncert = \"/etc/a.pem\"\nkey = \"/etc/a.key\"\n";
  // No token: anyone can purge.
  LoadResult r = load("address = \"0.0.0.0:9901\"\n");
  ASSERT_TRUE(r.ok()) << errors(r);
  EXPECT_TRUE(warned(r, "anyone who can reach it can purge the cache"));
  // Tokens over plain HTTP: they cross the network in clear.
  r = load("address = \"0.0.0.0:9901\"\n" + token);
  ASSERT_TRUE(r.ok()) << errors(r);
  EXPECT_TRUE(warned(r, "bearer tokens cross the network in clear"));
  // Tokens over TLS, or client certificates: nothing to say.
  r = load("address = \"0.0.0.0:9901\"\n" + token + cert);
  ASSERT_TRUE(r.ok()) << errors(r);
  EXPECT_FALSE(warned(r, "admin.address")) << r.warnings.front();
  r = load("address = \"0.0.0.0:9901\"\nclient_ca = \"/etc/ca.pem\"\n" + cert);
  ASSERT_TRUE(r.ok()) << errors(r);
  EXPECT_FALSE(warned(r, "admin.address"));
  // Loopback: no warning either way.
  r = load("address = \"127.0.0.1:9901\"\n");
  EXPECT_FALSE(warned(r, "admin.address"));
}

}  // namespace
}  // namespace streamedge::conf
