// HTTP/2 scenarios with the real binary and a real HTTP/2 client (Python's h2, driven by
// tests/support/h2_client.py over TLS with ALPN h2): hits and misses, HEAD, 304, Range,
// coalescing of 100 streams on one uncached object, a large body through a small client window,
// and a stream cancelled mid-body beside one that goes on. Every stream runs the same request
// steps as HTTP/1.1 (proxy/exchange.h).
#include <gtest/gtest.h>

#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/http_client.h"
#include "tests/support/origin_sim.h"
#include "tests/support/process.h"
#include "tls/self_signed.h"

namespace streamedge::scenario {
namespace {

using namespace std::chrono_literals;

struct StreamResult {
  std::string status, x_cache, content_range, sha, reset, fields;
  long length = -1;
};

std::string field(const std::string& line, const std::string& name) {
  const std::string key = name + "=";
  size_t at = line.find(" " + key);
  if (at == std::string::npos) {
    if (line.compare(0, key.size(), key) != 0) return "";
    at = 0;
  } else {
    at += 1;
  }
  at += key.size();
  const size_t end = line.find(' ', at);
  return line.substr(at, end == std::string::npos ? std::string::npos : end - at);
}

class Http2ScenarioTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tls::CertificateSpec ca_spec;
    ca_spec.common_name = "streamedge h2 scenario ca";
    ca_spec.is_ca = true;
    ca_ = tls::generateCertificate(ca_spec);
    ASSERT_EQ(tls::writePem(dir_.file("ca.pem"), dir_.file("ca.key"), ca_.cert.get(), ca_.key.get()), "");
    tls::CertificateSpec leaf;
    leaf.common_name = "localhost";
    leaf.dns_names = {"localhost"};
    leaf.ip_addresses = {"127.0.0.1"};
    leaf.issuer_cert = ca_.cert.get();
    leaf.issuer_key = ca_.key.get();
    tls::GeneratedCertificate g = tls::generateCertificate(leaf);
    ASSERT_EQ(g.error, "");
    ASSERT_EQ(tls::writePem(dir_.file("leaf.pem"), dir_.file("leaf.key"), g.cert.get(), g.key.get(),
                            {ca_.cert.get()}),
              "");
    std::string error;
    sim_ = testsupport::startOriginSim({"--name", "h2-origin"}, &error);
    ASSERT_TRUE(sim_) << error;
    const std::string config =
        "[server]\nworkers = 2\nhttp2_stream_window = \"256KiB\"\n"
        "[admin]\naddress = \"127.0.0.1:0\"\n[log]\naccess_log = \"off\"\n"
        "[[listener]]\naddress = \"127.0.0.1:0\"\nh2c = true\n"
        "[[listener]]\naddress = \"127.0.0.1:0\"\n"
        "  [[listener.certificate]]\n  cert = \"" + dir_.file("leaf.pem") + "\"\n  key = \"" +
        dir_.file("leaf.key") + "\"\n"
        "[[origin_group]]\nname = \"main\"\n  [[origin_group.origin]]\n  url = \"http://127.0.0.1:" +
        std::to_string(sim_->port) + "\"\n"
        "[[vhost]]\nhostnames = [\"*\"]\n  [[vhost.route]]\n  prefix = \"/\"\n  origin_group = \"main\"\n";
    proxy_ = testsupport::startStreamedge(config, &error);
    ASSERT_TRUE(proxy_) << error;
    https_port_ = proxy_->port("https");
    ASSERT_NE(https_port_, 0) << proxy_->process.logTail();
  }

  void TearDown() override {
    if (proxy_ && proxy_->process.running()) {
      EXPECT_EQ(proxy_->process.stop(15s), 0) << proxy_->process.logTail(80);
    }
  }

  // Runs the client (bounded by `timeout`) and parses its lines; `output` keeps what it said.
  // `cleartext`: h2c with prior knowledge on the plain listener instead of TLS.
  std::vector<StreamResult> h2(const std::string& args, std::string* output = nullptr,
                               bool cleartext = false) {
    const std::string command =
        "timeout 30 /usr/bin/python3 " STREAMEDGE_SOURCE_DIR "/tests/support/h2_client.py " +
        (cleartext ? std::to_string(proxy_->http_port) + " -"
                   : std::to_string(https_port_) + " " + dir_.file("ca.pem")) +
        " " + args + " 2>&1";
    std::string out;
    if (FILE* p = ::popen(command.c_str(), "r")) {
      char buf[4096];
      size_t n = 0;
      while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
      ::pclose(p);
    }
    if (output) *output = out;
    std::vector<StreamResult> results;
    std::istringstream lines(out);
    std::string line;
    while (std::getline(lines, line)) {
      if (line.rfind("stream=", 0) != 0) continue;
      StreamResult r;
      r.status = field(line, "status");
      r.x_cache = field(line, "x-cache");
      r.content_range = field(line, "content-range");
      r.sha = field(line, "sha");
      r.reset = field(line, "reset");
      r.fields = field(line, "fields");
      r.length = std::stol(field(line, "length"));
      results.push_back(r);
    }
    return results;
  }

  testsupport::TempDir dir_{"streamedge-h2"};
  tls::GeneratedCertificate ca_;
  std::optional<testsupport::OriginSimProcess> sim_;
  std::optional<testsupport::StreamedgeProcess> proxy_;
  uint16_t https_port_ = 0;
};

TEST_F(Http2ScenarioTest, MissThenHitThenHeadWithLowercaseFieldsAndStatusFirst) {
  std::string out;
  std::vector<StreamResult> r = h2("'/obj/h2-basic?size=70000'", &out);
  ASSERT_EQ(r.size(), 1u) << out;
  EXPECT_EQ(r[0].status, "200");
  EXPECT_EQ(r[0].x_cache, "MISS");
  EXPECT_EQ(r[0].length, 70000);
  // RFC 9113 §8.3 and §8.2.2: :status first, lowercase names, no connection-specific fields.
  EXPECT_EQ(r[0].fields.rfind(":status,", 0), 0u) << r[0].fields;
  for (char c : r[0].fields) EXPECT_FALSE(c >= 'A' && c <= 'Z') << r[0].fields;
  EXPECT_EQ(r[0].fields.find("connection"), std::string::npos) << r[0].fields;
  EXPECT_EQ(r[0].fields.find("transfer-encoding"), std::string::npos) << r[0].fields;

  std::vector<StreamResult> hit = h2("'/obj/h2-basic?size=70000'", &out);
  ASSERT_EQ(hit.size(), 1u) << out;
  EXPECT_EQ(hit[0].x_cache, "HIT");
  EXPECT_EQ(hit[0].length, 70000);
  EXPECT_EQ(hit[0].sha, r[0].sha);  // the same bytes, from the cache

  std::vector<StreamResult> head = h2("--head '/obj/h2-basic?size=70000'", &out);
  ASSERT_EQ(head.size(), 1u) << out;
  EXPECT_EQ(head[0].status, "200");
  EXPECT_EQ(head[0].length, 0);
  EXPECT_EQ(testsupport::simCount(sim_->port, "/obj/h2-basic"), 1);

  // The same request path, counted under protocol="h2"; an HTTP/1.1 hit beside it counts apart.
  ASSERT_EQ(testsupport::httpGet(proxy_->http_port, "/obj/h2-basic?size=70000").status, 200);
  const std::string m = testsupport::httpGet(proxy_->admin_port, "/metrics").body;
  EXPECT_NE(m.find("streamedge_requests_total{vhost=\"*\",result=\"miss\",status_class=\"2xx\","
                   "protocol=\"h2\"} 1\n"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("streamedge_requests_total{vhost=\"*\",result=\"hit\",status_class=\"2xx\","
                   "protocol=\"h2\"} 2\n"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("streamedge_requests_total{vhost=\"*\",result=\"hit\",status_class=\"2xx\","
                   "protocol=\"http/1.1\"} 1\n"),
            std::string::npos)
      << m;
}

// h2c with prior knowledge (RFC 9113 §3.3) on a plain listener that allows it: the same request
// path (miss, coalescing, hit) over cleartext HTTP/2, and HTTP/1.1 on the same listener is
// unchanged (ViewerIoTest has the preface on a listener without h2c).
TEST_F(Http2ScenarioTest, CleartextHttp2WithPriorKnowledgeOnAPlainListener) {
  std::string out;
  std::vector<StreamResult> r = h2("--count 20 '/obj/h2c?size=300000'", &out, true);
  ASSERT_EQ(r.size(), 20u) << out;
  int misses = 0;
  for (const StreamResult& s : r) {
    EXPECT_EQ(s.status, "200") << out;
    EXPECT_EQ(s.length, 300000);
    EXPECT_EQ(s.sha, r[0].sha);
    misses += s.x_cache == "MISS" ? 1 : 0;
  }
  EXPECT_LE(misses, 1) << out;
  EXPECT_EQ(testsupport::simCount(sim_->port, "/obj/h2c"), 1);
  std::vector<StreamResult> hit = h2("'/obj/h2c?size=300000'", &out, true);
  ASSERT_EQ(hit.size(), 1u) << out;
  EXPECT_EQ(hit[0].x_cache, "HIT");
  EXPECT_EQ(hit[0].sha, r[0].sha);
  const testsupport::HttpResponse h1 = testsupport::httpGet(proxy_->http_port, "/obj/h2c?size=300000");
  EXPECT_EQ(h1.status, 200);
  EXPECT_EQ(h1.header("X-Cache"), "HIT");
  const std::string m = testsupport::httpGet(proxy_->admin_port, "/metrics").body;
  EXPECT_NE(m.find("result=\"hit\",status_class=\"2xx\",protocol=\"h2\"}"), std::string::npos) << m;
}

TEST_F(Http2ScenarioTest, ConditionalAndRangeRequestsAreAnsweredFromTheCache) {
  std::string out;
  ASSERT_EQ(h2("'/obj/h2-cond?size=5000'", &out).size(), 1u) << out;
  const testsupport::HttpResponse plain = [&] {
    // The ETag, from the origin directly (the simulator's answer is deterministic).
    return testsupport::httpGet(sim_->port, "/obj/h2-cond?size=5000");
  }();
  const std::string etag = plain.header("ETag");
  ASSERT_FALSE(etag.empty()) << plain.raw_head;
  std::vector<StreamResult> r = h2("--header 'if-none-match: " + etag + "' '/obj/h2-cond?size=5000'", &out);
  ASSERT_EQ(r.size(), 1u) << out;
  EXPECT_EQ(r[0].status, "304");
  EXPECT_EQ(r[0].length, 0);

  r = h2("--header 'range: bytes=100-1099' '/obj/h2-cond?size=5000'", &out);
  ASSERT_EQ(r.size(), 1u) << out;
  EXPECT_EQ(r[0].status, "206");
  EXPECT_EQ(r[0].length, 1000);
  EXPECT_EQ(r[0].content_range, "bytes_100-1099/5000");
  EXPECT_EQ(testsupport::simCount(sim_->port, "/obj/h2-cond"), 2);  // ours + the direct one
}

TEST_F(Http2ScenarioTest, HundredStreamsOnOneUncachedObjectMakeOneOriginRequest) {
  std::string out;
  std::vector<StreamResult> r = h2("--count 100 '/obj/h2-herd?size=60000&delay_ms=300'", &out);
  ASSERT_EQ(r.size(), 100u) << out;
  size_t miss = 0;
  for (const StreamResult& s : r) {
    EXPECT_EQ(s.status, "200");
    EXPECT_EQ(s.length, 60000);
    EXPECT_EQ(s.sha, r[0].sha);
    if (s.x_cache == "MISS") ++miss;
    EXPECT_TRUE(s.x_cache == "MISS" || s.x_cache == "COALESCED") << s.x_cache;
  }
  EXPECT_EQ(miss, 1u);
  EXPECT_EQ(testsupport::simCount(sim_->port, "/obj/h2-herd"), 1);
}

TEST_F(Http2ScenarioTest, LargeBodyThroughASmallClientWindowArrivesWhole) {
  std::string out;
  // 16 KiB window: the server sends a frame, then waits for the client's WINDOW_UPDATE.
  std::vector<StreamResult> r = h2("--window 16384 '/obj/h2-big?size=2000000'", &out);
  ASSERT_EQ(r.size(), 1u) << out;
  EXPECT_EQ(r[0].status, "200");
  EXPECT_EQ(r[0].length, 2000000);
  std::vector<StreamResult> again = h2("'/obj/h2-big?size=2000000'", &out);  // a hit
  ASSERT_EQ(again.size(), 1u) << out;
  EXPECT_EQ(again[0].x_cache, "HIT");
  EXPECT_EQ(again[0].sha, r[0].sha);
}

TEST_F(Http2ScenarioTest, AStreamCancelledMidBodyLeavesTheOthersWhole) {
  std::string out;
  std::vector<StreamResult> r =
      h2("--window 65535 --reset-after 20000 '/obj/h2-cancel?size=1000000' "
         "'/obj/h2-cancel?size=1000000' '/obj/h2-other?size=300000'",
         &out);
  ASSERT_EQ(r.size(), 3u) << out;
  EXPECT_EQ(r[0].reset, "yes");
  EXPECT_LT(r[0].length, 1000000);
  EXPECT_EQ(r[1].status, "200");
  EXPECT_EQ(r[1].length, 1000000);
  EXPECT_EQ(r[2].length, 300000);
  // The connection is still good for more.
  std::vector<StreamResult> after = h2("'/obj/h2-cancel?size=1000000'", &out);
  ASSERT_EQ(after.size(), 1u) << out;
  EXPECT_EQ(after[0].x_cache, "HIT");
  EXPECT_EQ(after[0].sha, r[1].sha);
}

// LL-HLS over HTTP/2, as Apple's server profile expects it: many streams of one connection
// waiting on the same blocking reload cost one origin request, and a blocking reload for what
// the stored playlist already has is a hit at once.
TEST_F(Http2ScenarioTest, LlHlsBlockingReloadsOnManyStreamsCoalesceAndStoredPartsAreHits) {
  const testsupport::HttpResponse live =
      testsupport::httpGet(proxy_->http_port, "/ll/h2/index.m3u8", {}, 15s);
  ASSERT_EQ(live.status, 200) << live.error << proxy_->process.logTail();
  ASSERT_EQ(testsupport::simCount(sim_->port, "/ll/h2/index.m3u8"), 1);
  // The newest complete segment and the hinted part ("part_<msn>_<i>.m4s").
  const size_t seq_at = live.body.find("#EXT-X-MEDIA-SEQUENCE:");
  ASSERT_NE(seq_at, std::string::npos) << live.body;
  long newest = std::stol(live.body.substr(seq_at + 22)) - 1;
  for (size_t p = live.body.find("#EXTINF:"); p != std::string::npos;
       p = live.body.find("#EXTINF:", p + 1)) {
    ++newest;
  }
  const std::string hint_tag = "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part_";
  const size_t hint_at = live.body.find(hint_tag);
  ASSERT_NE(hint_at, std::string::npos) << live.body;
  const size_t msn_at = hint_at + hint_tag.size();
  const size_t underscore = live.body.find('_', msn_at);
  ASSERT_NE(underscore, std::string::npos) << live.body;
  const std::string hint_msn = live.body.substr(msn_at, underscore - msn_at);
  const std::string hint_part = std::to_string(std::stol(live.body.substr(underscore + 1)));

  // What the stored playlist has: answered from it, over h2, without the origin.
  std::string out;
  std::vector<StreamResult> stored =
      h2("'/ll/h2/index.m3u8?_HLS_msn=" + std::to_string(newest) + "'", &out);
  ASSERT_EQ(stored.size(), 1u) << out;
  EXPECT_EQ(stored[0].status, "200");
  EXPECT_EQ(stored[0].x_cache, "HIT") << out;
  EXPECT_EQ(testsupport::simCount(sim_->port, "/ll/h2/index.m3u8"), 1);

  // 40 streams wait for the hinted part, in both parameter orders: one origin request.
  std::vector<StreamResult> waited =
      h2("--count 20 '/ll/h2/index.m3u8?_HLS_msn=" + hint_msn + "&_HLS_part=" + hint_part +
             "' '/ll/h2/index.m3u8?_HLS_part=" + hint_part + "&_HLS_msn=" + hint_msn + "'",
         &out);
  ASSERT_EQ(waited.size(), 40u) << out;
  for (const StreamResult& s : waited) {
    EXPECT_EQ(s.status, "200") << out;
    EXPECT_GT(s.length, 0);
    EXPECT_EQ(s.sha, waited[0].sha) << "every stream gets the one answer";
  }
  EXPECT_EQ(testsupport::simCount(sim_->port, "/ll/h2/index.m3u8"), 2) << proxy_->process.logTail();
}

}  // namespace
}  // namespace streamedge::scenario
