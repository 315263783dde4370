// What the origin hears of a viewer's request (README "Access log and privacy"), and invalidation
// by unsafe methods (RFC 9111 §4.4): the real streamedge binary in front of the origin simulator,
// whose echo=1 knob answers with the request fields it received ("name: value" lines, names
// lowercased) and whose location= / content_location= knobs add those fields to its answer.
#include <gtest/gtest.h>

#include <string>

#include "tests/scenario/scenario_env.h"

namespace streamedge::scenario {
namespace {

using namespace std::chrono_literals;
using testsupport::simBody;

bool hasLine(const std::string& body, const std::string& line) {
  return body.find(line + "\n") != std::string::npos;
}

bool mentions(const std::string& body, const std::string& name) {
  return body.find(name + ": ") != std::string::npos;
}

class RequestFieldsTest : public ScenarioTest {
 protected:
  std::string metrics() { return testsupport::httpGet(proxy_->admin_port, "/metrics").body; }
  HttpResponse post(const std::string& target, const Headers& headers = {}) {
    return testsupport::httpRequest(port(), "POST", target, headers, 10s, "payload");
  }
  // A GET that must be answered 200 with X-Cache `expected`.
  void expectGet(const std::string& target, const std::string& expected, size_t size) {
    HttpResponse r = get(target);
    ASSERT_TRUE(r.ok()) << r.error << proxyLog();
    EXPECT_EQ(r.status, 200) << target;
    EXPECT_EQ(r.header("X-Cache"), expected) << target;
    const std::string path = target.substr(0, target.find('?'));
    EXPECT_EQ(r.body, simBody(path, size)) << target;
  }
};

const Headers kViewer = {{"User-Agent", "ExamplePlayer/4.2 (SmartTV)"},
                         {"Accept-Language", "de-CH, de;q=0.9"},
                         {"Origin", "https://player.example"},
                         {"X-Custom-Field", "custom value 1"},
                         {"Cookie", "session=secret-cookie"},
                         {"Authorization", "Bearer secret-token"},
                         {"X-Forwarded-For", "10.66.66.66"},
                         {"Connection", "X-Hop"},
                         {"X-Hop", "hop value"},
                         {"Via", "1.1 corp-proxy"}};

TEST_F(RequestFieldsTest, AFillCarriesTheViewersEndToEndFieldsButNoCredentialsOrAddress) {
  HttpResponse first = get("/obj/rf/a.txt?echo=1&cc=max-age%3D60", kViewer);
  ASSERT_EQ(first.status, 200) << first.error << proxyLog();
  EXPECT_EQ(first.header("X-Cache"), "MISS");
  const std::string& seen = first.body;
  EXPECT_TRUE(hasLine(seen, "user-agent: ExamplePlayer/4.2 (SmartTV)")) << seen;
  EXPECT_TRUE(hasLine(seen, "accept-language: de-ch, de;q=0.9")) << seen;
  EXPECT_TRUE(hasLine(seen, "origin: https://player.example")) << seen;
  EXPECT_TRUE(hasLine(seen, "x-custom-field: custom value 1")) << seen;
  // RFC 9110 §7.6.3: the viewer's Via, then ours.
  const size_t their_via = seen.find("via: 1.1 corp-proxy\n");
  EXPECT_NE(their_via, std::string::npos) << seen;
  EXPECT_GT(seen.find("via: 1.1 streamedge\n"), their_via) << seen;
  EXPECT_NE(seen.find("via: 1.1 streamedge\n"), std::string::npos) << seen;
  EXPECT_TRUE(hasLine(seen, "host: 127.0.0.1:" + std::to_string(simPort()))) << seen;
  // A shared fill: one viewer's credentials never shape what every viewer gets, and the
  // origin hears of no address (neither the proxy's view nor the viewer's own claim).
  EXPECT_FALSE(mentions(seen, "cookie")) << seen;
  EXPECT_FALSE(mentions(seen, "authorization")) << seen;
  EXPECT_FALSE(mentions(seen, "x-forwarded-for")) << seen;
  EXPECT_FALSE(mentions(seen, "forwarded")) << seen;
  EXPECT_EQ(seen.find("127.0.0.1\n"), std::string::npos) << seen;
  // Hop-by-hop: the field Connection names stops here.
  EXPECT_FALSE(mentions(seen, "x-hop")) << seen;
  EXPECT_FALSE(mentions(seen, "connection: X-Hop")) << seen;

  // The key is unchanged: a viewer with other fields gets the stored object.
  HttpResponse second = get("/obj/rf/a.txt?echo=1&cc=max-age%3D60", {{"Accept-Language", "fr"}});
  EXPECT_EQ(second.header("X-Cache"), "HIT");
  EXPECT_EQ(second.body, first.body);
  EXPECT_EQ(originCount("/obj/rf/a.txt"), 1);
}

TEST_F(RequestFieldsTest, CookieCredentialsAndTheClientAddressGoWhereTheRouteSaysSo) {
  start("  forward_cookie = true\n"
        "  forward_client_address = \"x-forwarded-for\"\n"
        "\n  [[vhost.route]]\n  prefix = \"/obj/rf-full/\"\n  origin_group = \"main\"\n"
        "  cache_authorized = true\n"
        "  forward_client_address = \"forwarded\"\n  forwarded_address = \"full\"\n"
        "  strip_headers = [\"X-Custom-Field\"]\n"
        "\n  [[vhost.route]]\n  prefix = \"/obj/rf-only/\"\n  origin_group = \"main\"\n"
        "  forward_headers = [\"Accept-Language\", \"Cookie\"]\n");

  HttpResponse r = get("/obj/rf/b.txt?echo=1&cc=max-age%3D60", kViewer);
  ASSERT_EQ(r.status, 200) << r.error << proxyLog();
  EXPECT_TRUE(hasLine(r.body, "cookie: session=secret-cookie")) << r.body;
  EXPECT_FALSE(mentions(r.body, "authorization")) << r.body;
  // Truncated to the /24 by default; the viewer's own claim is replaced, not extended.
  EXPECT_TRUE(hasLine(r.body, "x-forwarded-for: 127.0.0.0")) << r.body;
  EXPECT_EQ(r.body.find("10.66.66.66"), std::string::npos) << r.body;

  HttpResponse full = get("/obj/rf-full/c.txt?echo=1&cc=max-age%3D60", kViewer);
  ASSERT_EQ(full.status, 200) << full.error;
  EXPECT_TRUE(hasLine(full.body, "authorization: Bearer secret-token")) << full.body;
  EXPECT_FALSE(mentions(full.body, "cookie")) << full.body;
  EXPECT_TRUE(hasLine(full.body, "forwarded: for=127.0.0.1")) << full.body;
  EXPECT_FALSE(mentions(full.body, "x-forwarded-for")) << full.body;
  EXPECT_FALSE(mentions(full.body, "x-custom-field")) << full.body;
  EXPECT_TRUE(mentions(full.body, "user-agent")) << full.body;

  HttpResponse only = get("/obj/rf-only/d.txt?echo=1&cc=max-age%3D60", kViewer);
  ASSERT_EQ(only.status, 200) << only.error;
  EXPECT_TRUE(hasLine(only.body, "accept-language: de-ch, de;q=0.9")) << only.body;
  // Listed, but a shared fill of a route without forward_cookie still sends no cookie.
  EXPECT_FALSE(mentions(only.body, "cookie")) << only.body;
  EXPECT_FALSE(mentions(only.body, "user-agent")) << only.body;
  EXPECT_FALSE(mentions(only.body, "origin")) << only.body;
  EXPECT_FALSE(mentions(only.body, "x-custom-field")) << only.body;
}

TEST_F(RequestFieldsTest, PassesCarryTheViewersCredentialsAndTheAskedAddress) {
  start("\n  [[vhost.route]]\n  prefix = \"/obj/rf-api/\"\n  origin_group = \"main\"\n"
        "  cache = \"pass\"\n  forward_client_address = \"x-forwarded-for\"\n");
  HttpResponse r = get("/obj/rf-api/me?echo=1", kViewer);
  ASSERT_EQ(r.status, 200) << r.error << proxyLog();
  EXPECT_EQ(r.header("X-Cache"), "PASS");
  EXPECT_TRUE(hasLine(r.body, "cookie: session=secret-cookie")) << r.body;
  EXPECT_TRUE(hasLine(r.body, "authorization: Bearer secret-token")) << r.body;
  EXPECT_TRUE(hasLine(r.body, "x-forwarded-for: 127.0.0.0")) << r.body;
  EXPECT_TRUE(hasLine(r.body, "x-custom-field: custom value 1")) << r.body;
  EXPECT_FALSE(mentions(r.body, "x-hop")) << r.body;
}

TEST_F(RequestFieldsTest, OriginPreconditionsGoToTheOriginAndLeaveTheStoredObject) {
  const std::string target = "/obj/rf-pre/a.ts?size=700";
  expectGet(target, "MISS", 700);
  // RFC 9111 §4.3.2: If-Match is the origin's to evaluate; the stored object is not used.
  HttpResponse r = get(target, {{"If-Match", "*"}});
  EXPECT_EQ(r.status, 200) << r.error << proxyLog();
  EXPECT_EQ(r.body, simBody("/obj/rf-pre/a.ts", 700));
  EXPECT_EQ(originCount("/obj/rf-pre/a.ts"), 2);
  expectGet(target, "HIT", 700);
  EXPECT_EQ(originCount("/obj/rf-pre/a.ts"), 2);
}

// The route keeps "size" in the key and drops the simulator's answer knobs, so that the POST
// and the GETs name the same stored object.
const char* kInvalidatingRoute =
    "  forward_other_methods = true\n"
    "  drop_params = [\"status\", \"location\", \"content_location\"]\n";

TEST_F(RequestFieldsTest, ASuccessfulPostInvalidatesTheStoredGet) {
  start(kInvalidatingRoute);
  const std::string target = "/obj/inv/a.ts?size=500";
  expectGet(target, "MISS", 500);
  expectGet(target, "HIT", 500);
  HttpResponse p = post("/obj/inv/a.ts?size=500&status=200");
  ASSERT_EQ(p.status, 200) << p.error << proxyLog();
  EXPECT_EQ(p.header("X-Cache"), "PASS");
  expectGet(target, "MISS", 500);
  expectGet(target, "HIT", 500);
  EXPECT_EQ(originCount("/obj/inv/a.ts"), 3);  // two GET fills and the POST
  EXPECT_EQ(metricValue(metrics(), "streamedge_invalidations_total"), 1);
}

TEST_F(RequestFieldsTest, SameOriginLocationAndContentLocationAreInvalidatedToo) {
  start(kInvalidatingRoute);
  const std::string host = "127.0.0.1:" + std::to_string(port());
  for (const char* name : {"b1", "b2", "b3", "b4", "b5"}) {
    expectGet("/obj/inv2/" + std::string(name) + ".ts?size=300", "MISS", 300);
  }
  // Absolute path in Location; a relative reference in Content-Location (resolved against
  // /obj/inv2/c/post); the keys keep only "size" as a GET's would.
  HttpResponse created = post(
      "/obj/inv2/c/post?status=201&location=/obj/inv2/b1.ts%3Fsize%3D300%26token%3Dx"
      "&content_location=../b2.ts%3Fsize%3D300");
  ASSERT_EQ(created.status, 201) << created.error << proxyLog();
  // An absolute URI of the same origin counts; another host never does (RFC 9111 §4.4).
  HttpResponse moved = post("/obj/inv2/c/move?status=303&location=http://" + host +
                            "/obj/inv2/b3.ts%3Fsize%3D300&content_location=http://"
                            "other.example/obj/inv2/b4.ts%3Fsize%3D300");
  ASSERT_EQ(moved.status, 303) << moved.error << proxyLog();
  expectGet("/obj/inv2/b1.ts?size=300", "MISS", 300);
  expectGet("/obj/inv2/b2.ts?size=300", "MISS", 300);
  expectGet("/obj/inv2/b3.ts?size=300", "MISS", 300);
  expectGet("/obj/inv2/b4.ts?size=300", "HIT", 300);
  expectGet("/obj/inv2/b5.ts?size=300", "HIT", 300);
  EXPECT_EQ(metricValue(metrics(), "streamedge_invalidations_total"), 3);  // b1, b2, b3
}

TEST_F(RequestFieldsTest, AnErrorAnswerToAPostInvalidatesNothing) {
  start(kInvalidatingRoute);
  const std::string target = "/obj/inv3/d.ts?size=400";
  expectGet(target, "MISS", 400);
  expectGet("/obj/inv3/e.ts?size=400", "MISS", 400);
  for (const char* status : {"400", "403", "409", "500"}) {
    HttpResponse p = post("/obj/inv3/d.ts?size=400&status=" + std::string(status) +
                          "&location=/obj/inv3/e.ts%3Fsize%3D400");
    EXPECT_EQ(std::to_string(p.status), status) << p.error << proxyLog();
  }
  // The simulator's own refusal (405, no status knob) is an error answer too.
  EXPECT_EQ(post("/obj/inv3/d.ts?size=400").status, 405);
  expectGet(target, "HIT", 400);
  expectGet("/obj/inv3/e.ts?size=400", "HIT", 400);
  EXPECT_EQ(originCount("/obj/inv3/d.ts"), 1 + 5);
  EXPECT_EQ(metricValue(metrics(), "streamedge_invalidations_total"), 0);
}

}  // namespace
}  // namespace streamedge::scenario
