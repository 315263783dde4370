// Vary end to end (RFC 9111 §4.1): the real streamedge binary in front of the origin simulator,
// whose `vary=<list>&vary_body=1` answers say `Vary: <list>` with a body naming the values of
// those request fields as the origin received them. Each test owns a path prefix and asserts on
// X-Cache, exact bytes (variants never cross) and the simulator's request counters.
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "tests/scenario/scenario_env.h"

namespace streamedge::scenario {
namespace {

using namespace std::chrono_literals;

class VaryScenarioTest : public ScenarioTest {
 protected:
  HttpResponse getWith(const std::string& target, const std::string& name, const std::string& value) {
    return get(target, {{name, value}});
  }
};

TEST_F(VaryScenarioTest, EachOriginGetsItsOwnStoredVariantAndVariantsNeverCross) {
  const std::string target = "/obj/vary-origin/seg.ts?vary=Origin&vary_body=1";
  const std::string a = "origin: https://a.example\n";
  const std::string b = "origin: https://b.example\n";

  HttpResponse a1 = getWith(target, "Origin", "https://a.example");
  ASSERT_TRUE(a1.ok()) << a1.error << proxyLog();
  EXPECT_EQ(a1.header("X-Cache"), "MISS");
  EXPECT_EQ(a1.header("Vary"), "Origin");
  EXPECT_EQ(a1.body, a);

  HttpResponse b1 = getWith(target, "Origin", "https://b.example");
  EXPECT_EQ(b1.header("X-Cache"), "MISS");
  EXPECT_EQ(b1.body, b);
  EXPECT_NE(b1.header("Cache-Status").find("fwd=vary-miss"), std::string::npos)
      << b1.header("Cache-Status");
  EXPECT_NE(a1.header("Cache-Status").find("fwd=uri-miss"), std::string::npos)
      << a1.header("Cache-Status");

  HttpResponse a2 = getWith(target, "Origin", "https://a.example");
  HttpResponse b2 = getWith(target, "Origin", "https://b.example");
  EXPECT_EQ(a2.header("X-Cache"), "HIT");
  EXPECT_EQ(a2.body, a);
  EXPECT_EQ(b2.header("X-Cache"), "HIT");
  EXPECT_EQ(b2.body, b);
  // Scheme and host case and the default port are trivial differences: the same variant.
  HttpResponse a3 = getWith(target, "Origin", "HTTPS://A.Example:443");
  EXPECT_EQ(a3.header("X-Cache"), "HIT");
  EXPECT_EQ(a3.body, a);

  HttpResponse none = get(target);
  EXPECT_EQ(none.header("X-Cache"), "MISS");
  EXPECT_EQ(none.body, "origin: (absent)\n");
  EXPECT_EQ(get(target).header("X-Cache"), "HIT");
  EXPECT_EQ(originCount("/obj/vary-origin/seg.ts"), 3);
}

TEST_F(VaryScenarioTest, AcceptEncodingStaysWithinTheNormalisedVariants) {
  const std::string target = "/obj/vary-ae/master.m3u8?vary=Accept-Encoding&vary_body=1";
  struct Case {
    const char* accept_encoding;  // nullptr: no field
    const char* origin_saw;       // what the stored answer was made for
  };
  const std::vector<Case> cases = {
      {"gzip", "gzip"},
      {"br, gzip", "br, gzip"},
      {nullptr, "identity"},
      {"gzip, br;q=1.0", "br, gzip"},
      {"GZIP", "gzip"},
      {"gzip, deflate, br, zstd", "br, gzip"},
      {"deflate", "identity"},
      {"gzip;q=0", "identity"},
      {"br;q=0.5, gzip", "br, gzip"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.accept_encoding ? c.accept_encoding : "(none)");
    HttpResponse r = c.accept_encoding ? getWith(target, "Accept-Encoding", c.accept_encoding)
                                       : get(target);
    ASSERT_TRUE(r.ok()) << r.error << proxyLog();
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, std::string("accept-encoding: ") + c.origin_saw + "\n");
  }
  // Three normalised variants, each fetched once: every later request was a hit.
  EXPECT_EQ(originCount("/obj/vary-ae/master.m3u8"), 3);
  EXPECT_EQ(getWith(target, "Accept-Encoding", "gzip").header("X-Cache"), "HIT");
}

TEST_F(VaryScenarioTest, ViewersOfDifferentVariantsNeverShareAFill) {
  // The origin answers after 600 ms: B and a second A arrive while A's fill has no head yet.
  const std::string target = "/obj/vary-coalesce/seg.ts?vary=Origin&vary_body=1&delay_ms=600";
  HttpResponse a, a_late, b;
  std::thread first([&] { a = getWith(target, "Origin", "https://a.example"); });
  std::this_thread::sleep_for(200ms);
  std::thread second([&] { b = getWith(target, "Origin", "https://b.example"); });
  std::thread third([&] { a_late = getWith(target, "Origin", "https://a.example"); });
  first.join();
  second.join();
  third.join();
  ASSERT_TRUE(a.ok() && b.ok() && a_late.ok()) << a.error << b.error << a_late.error << proxyLog();
  EXPECT_EQ(a.body, "origin: https://a.example\n");
  EXPECT_EQ(a_late.body, "origin: https://a.example\n");
  EXPECT_EQ(a_late.header("X-Cache"), "COALESCED");
  EXPECT_EQ(b.body, "origin: https://b.example\n");
  EXPECT_EQ(b.header("X-Cache"), "MISS");  // looked up again under its own variant
  EXPECT_EQ(originCount("/obj/vary-coalesce/seg.ts"), 2);
  EXPECT_EQ(getWith(target, "Origin", "https://b.example").header("X-Cache"), "HIT");
}

TEST_F(VaryScenarioTest, ACodedAnswerWithoutVaryIsKeptPerAcceptEncoding) {
  // The origin labels its answer gzip but does not say Vary: a viewer that cannot decode it must
  // not get the copy made for one that can.
  const std::string target = "/obj/vary-implied/seg.ts?ce=gzip";
  HttpResponse gz = getWith(target, "Accept-Encoding", "gzip");
  ASSERT_TRUE(gz.ok()) << gz.error << proxyLog();
  EXPECT_EQ(gz.header("X-Cache"), "MISS");
  EXPECT_EQ(gz.header("Content-Encoding"), "gzip");
  EXPECT_EQ(gz.header("Vary"), "Accept-Encoding");
  HttpResponse plain = get(target);
  EXPECT_EQ(plain.header("X-Cache"), "MISS") << "the gzip copy went to a viewer without gzip";
  EXPECT_EQ(getWith(target, "Accept-Encoding", "gzip").header("X-Cache"), "HIT");
  EXPECT_EQ(get(target).header("X-Cache"), "HIT");
  EXPECT_EQ(originCount("/obj/vary-implied/seg.ts"), 2);
}

TEST_F(VaryScenarioTest, VariantsAreChosenByWhatTheOriginWasSent) {
  // The client address field the route adds selects the variant (truncated, so neighbours
  // share it), and a field the viewer's Connection names never reaches the origin, so it
  // cannot select one either.
  start("  forward_client_address = \"x-forwarded-for\"\n");
  const std::string xff = "/obj/vary-xff/seg.ts?vary=X-Forwarded-For&vary_body=1";
  HttpResponse first = get(xff);
  ASSERT_TRUE(first.ok()) << first.error << proxyLog();
  EXPECT_EQ(first.body, "x-forwarded-for: 127.0.0.0\n");
  EXPECT_EQ(first.header("X-Cache"), "MISS");
  HttpResponse again = get(xff, {{"X-Forwarded-For", "198.51.100.7"}});
  EXPECT_EQ(again.header("X-Cache"), "HIT");
  EXPECT_EQ(again.body, "x-forwarded-for: 127.0.0.0\n");
  EXPECT_EQ(originCount("/obj/vary-xff/seg.ts"), 1);

  const std::string conn = "/obj/vary-conn/seg.ts?vary=X-Variant&vary_body=1";
  const Headers named = {{"Connection", "X-Variant"}, {"X-Variant", "a"}};
  HttpResponse c1 = get(conn, named);
  ASSERT_TRUE(c1.ok()) << c1.error << proxyLog();
  EXPECT_EQ(c1.body, "x-variant: (absent)\n");
  HttpResponse c2 = get(conn, named);
  EXPECT_EQ(c2.header("X-Cache"), "HIT");
  EXPECT_EQ(get(conn).header("X-Cache"), "HIT");
  EXPECT_EQ(originCount("/obj/vary-conn/seg.ts"), 1);
}

TEST_F(VaryScenarioTest, VaryStarIsNeverStored) {
  const std::string target = "/obj/vary-star/seg.ts?vary=*";
  HttpResponse first = get(target);
  ASSERT_TRUE(first.ok()) << first.error << proxyLog();
  EXPECT_EQ(first.status, 200);
  HttpResponse second = get(target);
  EXPECT_EQ(second.status, 200);
  EXPECT_NE(second.header("X-Cache"), "HIT");
  EXPECT_EQ(originCount("/obj/vary-star/seg.ts"), 2);
}

}  // namespace
}  // namespace streamedge::scenario
