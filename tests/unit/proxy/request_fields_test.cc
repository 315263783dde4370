// The request field policy: which of a viewer's fields reach the origin on fills and passes.
#include "proxy/request_fields.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <string>
#include <vector>

namespace streamedge::proxy {
namespace {

using Fields = std::vector<HeaderField>;

FieldList select(const Fields& fields, const conf::RouteConfig& route, std::string_view method,
                 bool shared, const sockaddr* client = nullptr, ForwardedFields* flags = nullptr) {
  FieldContext context;
  context.method = method;
  context.shared_fill = shared;
  context.client = client;
  FieldList out;
  ForwardedFields f = selectRequestFields(fields.data(), fields.size(), route, context, out);
  if (flags) *flags = f;
  return out;
}

std::vector<std::string> names(const FieldList& list) {
  std::vector<std::string> out;
  for (const auto& [n, v] : list) out.push_back(n);
  return out;
}

sockaddr_in v4(const char* text) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(40000);
  inet_pton(AF_INET, text, &a.sin_addr);
  return a;
}

sockaddr_in6 v6(const char* text) {
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_port = htons(40000);
  inet_pton(AF_INET6, text, &a.sin6_addr);
  return a;
}

const sockaddr* sa(const sockaddr_in& a) { return reinterpret_cast<const sockaddr*>(&a); }
const sockaddr* sa(const sockaddr_in6& a) { return reinterpret_cast<const sockaddr*>(&a); }

TEST(RequestFields, EndToEndFieldsGoInTheirOrderWithRepeatsKept) {
  const Fields viewer = {{"User-Agent", "player/1.0"},  {"Accept-Language", "fr-CH, fr;q=0.9"},
                         {"Origin", "https://app.example"}, {"X-Custom", "one"},
                         {"Accept-Encoding", "gzip"},   {"X-Custom", "two"},
                         {"Via", "1.1 corp-proxy"}};
  const FieldList out = select(viewer, conf::RouteConfig{}, "GET", true);
  ASSERT_EQ(out.size(), viewer.size());
  for (size_t i = 0; i < viewer.size(); ++i) {
    EXPECT_EQ(out[i].first, viewer[i].name);
    EXPECT_EQ(out[i].second, viewer[i].value);
  }
}

TEST(RequestFields, MaxForwardsOfAnOptionsRequestCountsThisHop) {
  const conf::RouteConfig route;
  const Fields fields = {{"Max-Forwards", "3"}, {"Accept", "*/*"}};
  EXPECT_EQ(select(fields, route, "OPTIONS", false),
            (FieldList{{"Max-Forwards", "2"}, {"Accept", "*/*"}}));
  // Other methods: the field means nothing (RFC 9110 §7.6.2) and goes as sent.
  EXPECT_EQ(select(fields, route, "POST", false),
            (FieldList{{"Max-Forwards", "3"}, {"Accept", "*/*"}}));
  // A value that is not a number is passed on untouched rather than guessed at.
  EXPECT_EQ(select({{"Max-Forwards", "x"}}, route, "OPTIONS", false),
            (FieldList{{"Max-Forwards", "x"}}));
}

TEST(RequestFields, HopByHopFieldsNeverReachTheOrigin) {
  const Fields viewer = {{"Connection", "keep-alive"}, {"Keep-Alive", "timeout=5"},
                         {"TE", "trailers"},           {"Transfer-Encoding", "chunked"},
                         {"Upgrade", "h2c"},           {"Trailer", "X-Sum"},
                         {"Proxy-Authorization", "Basic eA=="},
                         {"Proxy-Connection", "keep-alive"},
                         {"proxy-anything", "x"},      {"Accept", "*/*"}};
  for (bool shared : {true, false}) {
    for (std::string_view method : {"GET", "POST"}) {
      EXPECT_EQ(names(select(viewer, conf::RouteConfig{}, method, shared)),
                std::vector<std::string>{"Accept"})
          << method << " shared=" << shared;
    }
  }
}

TEST(RequestFields, FieldsNamedByConnectionAreHopByHop) {
  const Fields viewer = {{"Connection", "close,  x-hop ,X-Other"},
                         {"Connection", "X-Third"},
                         {"X-Hop", "1"},
                         {"x-other", "2"},
                         {"X-Third", "3"},
                         {"X-Keep", "4"}};
  EXPECT_EQ(names(select(viewer, conf::RouteConfig{}, "GET", true)),
            std::vector<std::string>{"X-Keep"});
  EXPECT_TRUE(namedByConnection(viewer.data(), viewer.size(), "X-HOP"));
  EXPECT_TRUE(namedByConnection(viewer.data(), viewer.size(), "x-third"));
  EXPECT_FALSE(namedByConnection(viewer.data(), viewer.size(), "X-Keep"));
  EXPECT_FALSE(namedByConnection(viewer.data(), viewer.size(), "X-Ho"));
}

TEST(RequestFields, HostExpectAndContentLengthAreTheProxysOwn) {
  const Fields viewer = {{"Host", "edge.example"}, {"Expect", "100-continue"},
                         {"Content-Length", "3"}, {"Content-Type", "text/plain"}};
  EXPECT_EQ(names(select(viewer, conf::RouteConfig{}, "POST", false)),
            std::vector<std::string>{"Content-Type"});
}

TEST(RequestFields, TheViewersOwnAddressClaimsAreNeverForwarded) {
  const Fields viewer = {{"X-Forwarded-For", "10.0.0.1"}, {"X-Forwarded-Proto", "https"},
                         {"Forwarded", "for=10.0.0.1"},   {"X-Real-IP", "10.0.0.1"},
                         {"True-Client-IP", "10.0.0.1"},  {"Accept", "*/*"}};
  conf::RouteConfig route;
  EXPECT_EQ(names(select(viewer, route, "GET", true)), std::vector<std::string>{"Accept"});
  // Asked for an address, the origin gets the one the proxy saw, once, not the viewer's claim.
  route.fields.forward_client_address = conf::ClientAddressForwarding::kXForwardedFor;
  const sockaddr_in client = v4("198.51.100.77");
  const FieldList out = select(viewer, route, "GET", false, sa(client));
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[1], (std::pair<std::string, std::string>{"X-Forwarded-For", "198.51.100.0"}));
}

TEST(RequestFields, GetAndHeadLeaveRangeAndCacheConditionalsToTheProxyButPreconditionsGo) {
  const Fields viewer = {{"Range", "bytes=0-1"},         {"If-Range", "\"e\""},
                         {"If-None-Match", "\"e\""},     {"If-Modified-Since", "x"},
                         {"If-Match", "\"e\""},          {"If-Unmodified-Since", "x"},
                         {"Accept", "*/*"}};
  for (std::string_view method : {"GET", "HEAD"}) {
    for (bool shared : {true, false}) {
      // If-Match / If-Unmodified-Since make the request a pass; the origin must see them.
      EXPECT_EQ(names(select(viewer, conf::RouteConfig{}, method, shared)),
                (std::vector<std::string>{"If-Match", "If-Unmodified-Since", "Accept"}));
    }
  }
  // Other methods are the origin's to answer: everything goes.
  EXPECT_EQ(select(viewer, conf::RouteConfig{}, "PUT", false).size(), viewer.size());
  EXPECT_EQ(select(viewer, conf::RouteConfig{}, "DELETE", false).size(), viewer.size());
}

TEST(RequestFields, SharedFillsCarryNoCredentialsByDefault) {
  const Fields viewer = {{"Cookie", "session=abc"}, {"Authorization", "Bearer alice"},
                         {"Accept", "*/*"}};
  ForwardedFields flags;
  conf::RouteConfig route;
  EXPECT_EQ(names(select(viewer, route, "GET", true, nullptr, &flags)),
            std::vector<std::string>{"Accept"});
  EXPECT_FALSE(flags.authorization);
  EXPECT_FALSE(flags.cookie);
}

TEST(RequestFields, SharedFillsCarryCredentialsOnlyWhereTheRouteSaysSo) {
  const Fields viewer = {{"Cookie", "session=abc"}, {"Authorization", "Bearer alice"}};
  ForwardedFields flags;
  conf::RouteConfig route;
  route.cache.cache_authorized = true;
  EXPECT_EQ(names(select(viewer, route, "GET", true, nullptr, &flags)),
            std::vector<std::string>{"Authorization"});
  EXPECT_TRUE(flags.authorization);
  EXPECT_FALSE(flags.cookie);

  route.cache.cache_authorized = false;
  route.fields.forward_cookie = true;
  EXPECT_EQ(names(select(viewer, route, "GET", true, nullptr, &flags)),
            std::vector<std::string>{"Cookie"});
  EXPECT_FALSE(flags.authorization);
  EXPECT_TRUE(flags.cookie);
}

TEST(RequestFields, PassesCarryTheViewersCredentials) {
  const Fields viewer = {{"Cookie", "session=abc"}, {"Authorization", "Bearer alice"}};
  ForwardedFields flags;
  for (std::string_view method : {"GET", "HEAD", "POST"}) {
    const FieldList out = select(viewer, conf::RouteConfig{}, method, false, nullptr, &flags);
    EXPECT_EQ(names(out), (std::vector<std::string>{"Cookie", "Authorization"})) << method;
    EXPECT_TRUE(flags.authorization);
    EXPECT_TRUE(flags.cookie);
  }
}

TEST(RequestFields, StripHeadersRemovesWhateverTheCase) {
  const Fields viewer = {{"User-Agent", "p"}, {"x-tracking-id", "42"}, {"Accept", "*/*"}};
  conf::RouteConfig route;
  route.fields.strip_headers = {"X-Tracking-Id", "user-agent"};
  EXPECT_EQ(names(select(viewer, route, "GET", true)), std::vector<std::string>{"Accept"});
}

TEST(RequestFields, ForwardHeadersKeepsOnlyItsNamesAndNeverWidensTheRules) {
  const Fields viewer = {{"User-Agent", "p"},      {"accept-language", "de"},
                         {"X-Other", "1"},         {"Cookie", "s=1"},
                         {"Authorization", "B x"}, {"Connection", "close"},
                         {"Range", "bytes=0-1"}};
  conf::RouteConfig route;
  route.fields.forward_headers = {"Accept-Language", "Cookie", "Authorization", "Range",
                                  "Connection"};
  // Shared GET fill: credentials, Range and hop-by-hop stay out even when listed.
  EXPECT_EQ(names(select(viewer, route, "GET", true)),
            std::vector<std::string>{"accept-language"});
  // A pass carries the listed credentials; a POST the listed Range.
  EXPECT_EQ(names(select(viewer, route, "GET", false)),
            (std::vector<std::string>{"accept-language", "Cookie", "Authorization"}));
  EXPECT_EQ(names(select(viewer, route, "POST", false)),
            (std::vector<std::string>{"accept-language", "Cookie", "Authorization", "Range"}));
}

TEST(RequestFields, ClientAddressIsNeverSentUnlessAsked) {
  const sockaddr_in client = v4("203.0.113.55");
  const FieldList out = select({{"Accept", "*/*"}}, conf::RouteConfig{}, "GET", true, sa(client));
  EXPECT_EQ(names(out), std::vector<std::string>{"Accept"});
  for (const auto& [n, v] : out) EXPECT_EQ(v.find("203.0.113"), std::string::npos);
}

TEST(RequestFields, XForwardedForIsTruncatedUnlessFullIsAsked) {
  conf::RouteConfig route;
  route.fields.forward_client_address = conf::ClientAddressForwarding::kXForwardedFor;
  const sockaddr_in client4 = v4("203.0.113.55");
  const sockaddr_in6 client6 = v6("2001:db8:1:2:3::9");
  const sockaddr_in6 mapped = v6("::ffff:192.0.2.130");
  auto only = [&](const sockaddr* client) {
    FieldList out = select({}, route, "GET", true, client);
    EXPECT_EQ(out.size(), 1u);
    return out.empty() ? std::pair<std::string, std::string>{} : out[0];
  };
  EXPECT_EQ(only(sa(client4)), (std::pair<std::string, std::string>{"X-Forwarded-For", "203.0.113.0"}));
  EXPECT_EQ(only(sa(client6)).second, "2001:db8:1::");
  EXPECT_EQ(only(sa(mapped)).second, "192.0.2.0");
  route.fields.forwarded_address = conf::AddressAnonymization::kFull;
  EXPECT_EQ(only(sa(client4)).second, "203.0.113.55");
  EXPECT_EQ(only(sa(client6)).second, "2001:db8:1:2:3::9");
  // Nothing to say without an IP address (X-Forwarded-For has no "unknown").
  EXPECT_TRUE(select({}, route, "GET", true, nullptr).empty());
}

TEST(RequestFields, ForwardedFollowsRfc7239Syntax) {
  conf::RouteConfig route;
  route.fields.forward_client_address = conf::ClientAddressForwarding::kForwarded;
  const sockaddr_in client4 = v4("203.0.113.55");
  const sockaddr_in6 client6 = v6("2001:db8:1:2:3::9");
  FieldList out = select({}, route, "POST", false, sa(client4));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0], (std::pair<std::string, std::string>{"Forwarded", "for=203.0.113.0"}));
  out = select({}, route, "GET", true, sa(client6));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].second, "for=\"[2001:db8:1::]\"");  // §6: IPv6 quoted and bracketed
  route.fields.forwarded_address = conf::AddressAnonymization::kFull;
  out = select({}, route, "GET", true, sa(client6));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].second, "for=\"[2001:db8:1:2:3::9]\"");
  out = select({}, route, "GET", true, nullptr);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].second, "for=unknown");  // §6.2
}

TEST(RequestFields, TheListsDoNotTouchTheClientAddressField) {
  conf::RouteConfig route;
  route.fields.forward_client_address = conf::ClientAddressForwarding::kForwarded;
  route.fields.forward_headers = {"Accept"};
  const sockaddr_in client = v4("203.0.113.55");
  EXPECT_EQ(names(select({{"Accept", "*/*"}, {"X-Other", "1"}}, route, "GET", true, sa(client))),
            (std::vector<std::string>{"Accept", "Forwarded"}));
}

}  // namespace
}  // namespace streamedge::proxy
