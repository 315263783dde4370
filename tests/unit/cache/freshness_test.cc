#include "cache/freshness.h"

#include <gtest/gtest.h>

#include <string>

namespace streamedge::cache {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// ---------------------------------------------------------------- Cache-Control

TEST(CacheControlParse, ReadsDirectivesWhateverTheCase) {
  const CacheControl cc = CacheControl::parse(
      "Max-Age=60, S-MAXAGE=30, PUBLIC, must-revalidate, Proxy-Revalidate, immutable, "
      "no-cache, stale-while-revalidate=5, Stale-If-Error=600, only-if-cached");
  EXPECT_EQ(cc.max_age, seconds(60));
  EXPECT_EQ(cc.s_maxage, seconds(30));
  EXPECT_TRUE(cc.is_public);
  EXPECT_TRUE(cc.must_revalidate);
  EXPECT_TRUE(cc.proxy_revalidate);
  EXPECT_TRUE(cc.immutable);
  EXPECT_TRUE(cc.no_cache);
  EXPECT_TRUE(cc.only_if_cached);
  EXPECT_EQ(cc.stale_while_revalidate, seconds(5));
  EXPECT_EQ(cc.stale_if_error, seconds(600));
  EXPECT_FALSE(cc.no_store);
  EXPECT_FALSE(cc.is_private);
}

TEST(CacheControlParse, EmptyAndCommaOnlyValuesMeanNothing) {
  for (const char* v : {"", " ", ",", " , ,, ", "\t"}) {
    const CacheControl cc = CacheControl::parse(v);
    EXPECT_FALSE(cc.max_age.has_value()) << v;
    EXPECT_FALSE(cc.no_store || cc.no_cache || cc.is_private || cc.is_public) << v;
  }
}

TEST(CacheControlParse, QuotedDeltaSecondsAreAccepted) {
  EXPECT_EQ(CacheControl::parse("max-age=\"30\"").max_age, seconds(30));
  EXPECT_EQ(CacheControl::parse("max-age=\"\\3\\0\"").max_age, seconds(30));  // quoted-pairs
}

TEST(CacheControlParse, DeltaSecondsOverflowClampsToTwoToThe31) {
  EXPECT_EQ(CacheControl::parse("max-age=99999999999999999999999").max_age,
            seconds(2147483648LL));
  EXPECT_EQ(CacheControl::parse("s-maxage=2147483648").s_maxage, seconds(2147483648LL));
  EXPECT_EQ(CacheControl::parse("max-age=2147483647").max_age, seconds(2147483647LL));
  EXPECT_EQ(CacheControl::parse("max-age=0").max_age, seconds(0));
  EXPECT_EQ(CacheControl::parse("max-age=007").max_age, seconds(7));
}

TEST(CacheControlParse, InvalidArgumentMakesDirectiveAbsent) {
  for (const char* v : {"max-age=abc", "max-age=-1", "max-age=", "max-age=1.5", "max-age=5s",
                        "max-age = 5", "max-age=\"\"", "max-age=\"5", "max-age"}) {
    EXPECT_FALSE(CacheControl::parse(v).max_age.has_value()) << v;
  }
  EXPECT_FALSE(CacheControl::parse("public=\"yes\"").is_public);
  EXPECT_FALSE(CacheControl::parse("immutable=1").immutable);
}

TEST(CacheControlParse, RestrictiveDirectivesAreHonouredEvenWithArguments) {
  EXPECT_TRUE(CacheControl::parse("private=\"Set-Cookie\"").is_private);
  EXPECT_TRUE(CacheControl::parse("private=\"Set-Cookie, X-User\", max-age=5").is_private);
  EXPECT_TRUE(CacheControl::parse("no-cache=\"Set-Cookie\"").no_cache);
  EXPECT_TRUE(CacheControl::parse("no-store=1").no_store);
  EXPECT_TRUE(CacheControl::parse("no-store;junk").no_store);
  EXPECT_TRUE(CacheControl::parse("private=\"unterminated").is_private);
  EXPECT_TRUE(CacheControl::parse("must-revalidate=1").must_revalidate);
}

TEST(CacheControlParse, CommaInsideQuotesDoesNotSplitDirectives) {
  const CacheControl cc = CacheControl::parse("no-cache=\"a, max-age=9\", max-age=5");
  EXPECT_TRUE(cc.no_cache);
  EXPECT_EQ(cc.max_age, seconds(5));
  const CacheControl cc2 = CacheControl::parse("foo=\"x, no-store\", public");
  EXPECT_FALSE(cc2.no_store);
  EXPECT_TRUE(cc2.is_public);
}

TEST(CacheControlParse, MalformedElementDoesNotHideTheNextOne) {
  const CacheControl cc = CacheControl::parse("max-age=5 junk, s-maxage=7, @@@, public");
  EXPECT_FALSE(cc.max_age.has_value());
  EXPECT_EQ(cc.s_maxage, seconds(7));
  EXPECT_TRUE(cc.is_public);
}

TEST(CacheControlParse, UnknownDirectivesAreIgnoredAndFirstRepeatWins) {
  const CacheControl cc = CacheControl::parse("x-ext=\"a\", foo, max-age=5, max-age=100");
  EXPECT_EQ(cc.max_age, seconds(5));
  EXPECT_FALSE(cc.is_public);
}

// ---------------------------------------------------------------- dates

constexpr int64_t kRfcExample = 784111777;  // Sun, 06 Nov 1994 08:49:37 GMT

TEST(HttpDate, AllThreeFormatsParseToTheSameInstant) {
  const WallTime want{seconds(kRfcExample)};
  EXPECT_EQ(parseHttpDate("Sun, 06 Nov 1994 08:49:37 GMT"), want);
  EXPECT_EQ(parseHttpDate("Sunday, 06-Nov-94 08:49:37 GMT"), want);
  EXPECT_EQ(parseHttpDate("Sun Nov  6 08:49:37 1994"), want);
  EXPECT_EQ(parseHttpDate("  Sun, 06 Nov 1994 08:49:37 GMT "), want);  // OWS around the value
}

TEST(HttpDate, Rfc850TwoDigitYearIsTheRecentPast) {
  // RFC 9110 §5.6.7: more than 50 years ahead means the previous century.
  EXPECT_EQ(parseHttpDate("Friday, 01-Jan-99 00:00:00 GMT"), WallTime(seconds(915148800)));
  EXPECT_EQ(parseHttpDate("Saturday, 01-Jan-00 00:00:00 GMT"), WallTime(seconds(946684800)));
}

TEST(HttpDate, FormatRoundTrips) {
  EXPECT_EQ(formatHttpDate(WallTime(seconds(kRfcExample))), "Sun, 06 Nov 1994 08:49:37 GMT");
  EXPECT_EQ(formatHttpDate(WallTime(seconds(0))), "Thu, 01 Jan 1970 00:00:00 GMT");
  EXPECT_EQ(formatHttpDate(WallTime(seconds(1709164800))), "Thu, 29 Feb 2024 00:00:00 GMT");
  EXPECT_EQ(formatHttpDate(WallTime(seconds(-1))), "Wed, 31 Dec 1969 23:59:59 GMT");
  // Sub-second parts are floored, never rounded into the future.
  EXPECT_EQ(formatHttpDate(WallTime(milliseconds(1999))), "Thu, 01 Jan 1970 00:00:01 GMT");
  for (int64_t t : {int64_t{0}, kRfcExample, int64_t{1700000000}, int64_t{1709164800},
                    int64_t{4102444799}, int64_t{951782400}}) {
    const WallTime w{seconds(t)};
    EXPECT_EQ(parseHttpDate(formatHttpDate(w)), w) << formatHttpDate(w);
  }
}

TEST(HttpDate, FarFutureYearIsClampedNotOverflowed) {
  // Found by the range fuzzer: year 3988 overflowed the nanosecond clock.
  std::optional<WallTime> far = parseHttpDate("Sun, 02 Nov 3988 08:49:37 GMT");
  ASSERT_TRUE(far.has_value());
  EXPECT_EQ(*far, *parseHttpDate("Sat, 01 Jan 2200 00:00:00 GMT"));
  EXPECT_FALSE(parseHttpDate("Sun, 06 Nov 1894 08:49:37 GMT").has_value());
}

TEST(HttpDate, InvalidDatesAreRejected) {
  for (const char* v : {
           "", "0", "-1", "now", "Sun, 06 Nov 1994 08:49:37 UTC", "Sun, 06 Nov 1994 08:49:37",
           "Sun, 6 Nov 1994 08:49:37 GMT", "Sun, 06 nov 1994 08:49:37 GMT",
           "sun, 06 Nov 1994 08:49:37 GMT", "Xyz, 06 Nov 1994 08:49:37 GMT",
           "Sun, 31 Feb 1994 08:49:37 GMT", "Sun, 29 Feb 1900 08:49:37 GMT",
           "Sun, 00 Nov 1994 08:49:37 GMT", "Sun, 06 Nov 1994 24:00:00 GMT",
           "Sun, 06 Nov 1994 08:60:00 GMT", "Sun, 06 Nov 1994 08:49:61 GMT",
           "Sun, 06 Nov 1994 08:49:37 GMTX", "Sun, 06 Nov 1994 8:49:37 GMT",
           "Sun, 06 Nov 94 08:49:37 GMT", "Sun, 06-Nov-94 08:49:37 GMT",
           "Sunday, 06-Nov-1994 08:49:37 GMT", "Sunday, 06 Nov 1994 08:49:37 GMT",
           "Sun Nov 6 08:49:37 1994", "Sun Nov  6 08:49:37 94", "Sun Nov 32 08:49:37 1994",
           "Sun, 06 Nov 1994 08:49:37 GMT\r\n", "Sun,  06 Nov 1994 08:49:37 GMT"}) {
    EXPECT_FALSE(parseHttpDate(v).has_value()) << v;
  }
  EXPECT_TRUE(parseHttpDate("Thu, 29 Feb 2024 00:00:00 GMT").has_value());
  EXPECT_TRUE(parseHttpDate("Sat, 29 Feb 2000 00:00:00 GMT").has_value());
}

// ---------------------------------------------------------------- content kinds

TEST(ClassifyPath, PlaylistsAndSegmentsByLastSegmentExtension) {
  EXPECT_EQ(classifyPath("/live/index.m3u8"), ContentKind::kPlaylist);
  EXPECT_EQ(classifyPath("/live/INDEX.M3U8"), ContentKind::kPlaylist);
  EXPECT_EQ(classifyPath("/vod/manifest.mpd"), ContentKind::kPlaylist);
  EXPECT_EQ(classifyPath("/live/index.m3u8?token=1"), ContentKind::kPlaylist);
  for (const char* p : {"/a/seg-1.ts", "/a/chunk.m4s", "/a/init.mp4", "/a/x.M4S", "/a/a.aac",
                        "/a/s.vtt", "/a/s.webvtt", "/a/v.cmfv", "/a/t.jpg", "/a/x.fmp4"}) {
    EXPECT_EQ(classifyPath(p), ContentKind::kSegment) << p;
  }
  for (const char* p : {"/", "/a/b", "/a.ts/b", "/a/key.key", "/a/file.", "/a/.", "/crossdomain.xml",
                        "/a/x.verylongextension", "/a/m3u8", "/a/x.m3u8.bak"}) {
    EXPECT_EQ(classifyPath(p), ContentKind::kOther) << p;
  }
}

// ---------------------------------------------------------------- storability

ResponseHead headWith(std::vector<std::pair<std::string, std::string>> headers) {
  ResponseHead head;
  head.status = 200;
  head.headers = std::move(headers);
  return head;
}

StoreDecision decide(int status, bool auth, const ResponseHead& head,
                     const conf::CachePolicy& policy = conf::CachePolicy{}) {
  const std::string* cc = head.find("Cache-Control");
  return decideStore(status, auth, head, CacheControl::parse(cc ? *cc : ""), policy);
}

TEST(DecideStore, PlainSuccessIsStored) {
  EXPECT_TRUE(decide(200, false, headWith({})).store);
  EXPECT_TRUE(decide(404, false, headWith({})).store);
  EXPECT_TRUE(decide(301, false, headWith({})).store);
  EXPECT_TRUE(decide(200, false, headWith({{"Vary", "Accept-Encoding"}})).store);
}

TEST(DecideStore, NoStoreAndPrivateAreNeverStored) {
  const StoreDecision ns = decide(200, false, headWith({{"Cache-Control", "no-store, max-age=60"}}));
  EXPECT_FALSE(ns.store);
  EXPECT_STREQ(ns.reason, "no-store");
  const StoreDecision pv = decide(200, false, headWith({{"Cache-Control", "private, max-age=60"}}));
  EXPECT_FALSE(pv.store);
  EXPECT_STREQ(pv.reason, "private");
  EXPECT_FALSE(decide(200, false, headWith({{"Cache-Control", "private=\"Set-Cookie\""}})).store);
  // no-cache is storable: it only forces revalidation.
  EXPECT_TRUE(decide(200, false, headWith({{"Cache-Control", "no-cache"}})).store);
}

TEST(DecideStore, SetCookieIsStoredOnlyWhenTheRouteAllows) {
  const ResponseHead head = headWith({{"set-cookie", "id=42"}, {"Cache-Control", "max-age=60"}});
  const StoreDecision d = decide(200, false, head);
  EXPECT_FALSE(d.store);
  EXPECT_STREQ(d.reason, "set-cookie");
  conf::CachePolicy allow;
  allow.cache_set_cookie = true;
  EXPECT_TRUE(decide(200, false, head, allow).store);
}

TEST(DecideStore, AuthorizedRequestNeedsPublicSMaxageOrMustRevalidate) {
  const StoreDecision d = decide(200, true, headWith({{"Cache-Control", "max-age=60"}}));
  EXPECT_FALSE(d.store);
  EXPECT_STREQ(d.reason, "authorization");
  EXPECT_TRUE(decide(200, true, headWith({{"Cache-Control", "public, max-age=60"}})).store);
  EXPECT_TRUE(decide(200, true, headWith({{"Cache-Control", "s-maxage=60"}})).store);
  EXPECT_TRUE(decide(200, true, headWith({{"Cache-Control", "must-revalidate"}})).store);
  conf::CachePolicy allow;
  allow.cache_authorized = true;
  EXPECT_TRUE(decide(200, true, headWith({}), allow).store);
  EXPECT_TRUE(decide(200, false, headWith({{"Cache-Control", "max-age=60"}})).store);
}

TEST(DecideStore, ErrorStatusWithoutExplicitFreshnessIsNotStored) {
  for (int status : {500, 502, 503, 504, 302, 307, 403}) {
    const StoreDecision d = decide(status, false, headWith({}));
    EXPECT_FALSE(d.store) << status;
    EXPECT_STREQ(d.reason, "status");
  }
  // RFC 9111 §3: explicit freshness makes any final status storable.
  EXPECT_TRUE(decide(302, false, headWith({{"Cache-Control", "max-age=10"}})).store);
  EXPECT_TRUE(decide(403, false, headWith({{"Expires", "Thu, 01 Jan 2099 00:00:00 GMT"}})).store);
}

TEST(DecideStore, PartialNotModifiedAndInformationalAreNeverStored) {
  EXPECT_STREQ(decide(206, false, headWith({{"Cache-Control", "max-age=60"}})).reason,
               "partial-content");
  EXPECT_FALSE(decide(304, false, headWith({{"Cache-Control", "max-age=60"}})).store);
  EXPECT_FALSE(decide(100, false, headWith({{"Cache-Control", "max-age=60"}})).store);
  EXPECT_FALSE(decide(600, false, headWith({{"Cache-Control", "max-age=60"}})).store);
}

TEST(DecideStore, VaryStarIsNotStored) {
  const StoreDecision d = decide(200, false, headWith({{"Vary", "*"}}));
  EXPECT_FALSE(d.store);
  EXPECT_STREQ(d.reason, "vary-star");
  EXPECT_FALSE(decide(200, false, headWith({{"Vary", "Accept-Encoding"}, {"vary", "Origin , *"}})).store);
}

TEST(DecideStore, PassRouteStoresNothing) {
  conf::CachePolicy pass;
  pass.mode = conf::CacheMode::kPass;
  EXPECT_FALSE(decide(200, false, headWith({{"Cache-Control", "max-age=60"}}), pass).store);
}

// ---------------------------------------------------------------- freshness

class FreshnessTest : public ::testing::Test {
 protected:
  // Request sent at T, response head at T+1s; Date equal to the response time unless a test
  // sets it.
  Freshness compute(std::vector<std::pair<std::string, std::string>> headers,
                    ContentKind kind = ContentKind::kOther,
                    std::optional<StreamLifetime> stream = std::nullopt, bool add_date = true) {
    request_time_ = clock_.wallNow();
    clock_.advance(seconds(1));
    const WallTime response_time = clock_.wallNow();
    if (add_date) headers.emplace_back("Date", formatHttpDate(response_time));
    ResponseHead head = headWith(std::move(headers));
    const std::string* cc = head.find("Cache-Control");
    return computeFreshness(head, CacheControl::parse(cc ? *cc : ""), request_time_,
                            response_time, kind, policy_, stream);
  }

  ManualClock clock_;
  WallTime request_time_;
  conf::CachePolicy policy_;
};

TEST_F(FreshnessTest, MaxAgeGivesTheLifetime) {
  const Freshness f = compute({{"Cache-Control", "max-age=60"}});
  EXPECT_EQ(f.lifetime, seconds(60));
  EXPECT_TRUE(f.explicit_lifetime);
  // response_delay (1 s) counts towards the age, as RFC 9111 §4.2.3 asks.
  EXPECT_EQ(f.corrected_initial_age, seconds(1));
  EXPECT_TRUE(f.isFresh(clock_.wallNow()));
  clock_.advance(seconds(58));
  EXPECT_EQ(f.currentAge(clock_.wallNow()), seconds(59));
  EXPECT_TRUE(f.isFresh(clock_.wallNow()));
  clock_.advance(seconds(1));
  EXPECT_FALSE(f.isFresh(clock_.wallNow()));
}

TEST_F(FreshnessTest, SMaxageWinsOverMaxAgeAndExpires) {
  const Freshness f = compute({{"Cache-Control", "max-age=600, s-maxage=10"},
                               {"Expires", "Thu, 01 Jan 2099 00:00:00 GMT"}});
  EXPECT_EQ(f.lifetime, seconds(10));
  EXPECT_TRUE(f.must_revalidate);  // §5.2.2.10: s-maxage implies proxy-revalidate
}

TEST_F(FreshnessTest, MaxAgeWinsOverExpires) {
  const Freshness f = compute({{"Cache-Control", "max-age=5"},
                               {"Expires", "Thu, 01 Jan 2099 00:00:00 GMT"}});
  EXPECT_EQ(f.lifetime, seconds(5));
  EXPECT_FALSE(f.must_revalidate);
}

TEST_F(FreshnessTest, ExpiresMinusDateGivesTheLifetime) {
  const WallTime expires = clock_.wallNow() + seconds(1) + seconds(300);  // response time + 300
  const Freshness f = compute({{"Expires", formatHttpDate(expires)}});
  EXPECT_EQ(f.lifetime, seconds(300));
  EXPECT_TRUE(f.explicit_lifetime);
}

TEST_F(FreshnessTest, InvalidOrPastExpiresIsAlreadyExpired) {
  const Freshness invalid = compute({{"Expires", "0"}}, ContentKind::kSegment);
  EXPECT_EQ(invalid.lifetime, seconds(0));
  EXPECT_TRUE(invalid.explicit_lifetime);
  EXPECT_FALSE(invalid.isFresh(clock_.wallNow()));
  const Freshness past = compute({{"Expires", "Sun, 06 Nov 1994 08:49:37 GMT"}});
  EXPECT_EQ(past.lifetime, seconds(0));
  EXPECT_FALSE(past.isFresh(clock_.wallNow()));
}

TEST_F(FreshnessTest, AgeHeaderRaisesTheAge) {
  const Freshness f = compute({{"Cache-Control", "max-age=60"}, {"Age", "50"}});
  EXPECT_EQ(f.corrected_initial_age, seconds(51));  // age_value + response_delay
  EXPECT_TRUE(f.isFresh(clock_.wallNow()));
  clock_.advance(seconds(9));
  EXPECT_FALSE(f.isFresh(clock_.wallNow()));
  // An invalid Age is ignored rather than trusted.
  EXPECT_EQ(compute({{"Age", "-5"}}).corrected_initial_age, seconds(1));
  EXPECT_GE(compute({{"Age", "99999999999999"}}).corrected_initial_age, seconds(2147483648LL));
}

TEST_F(FreshnessTest, OldDateRaisesTheApparentAge) {
  // Date 100 s before the response arrived: apparent_age 100 beats age_value + delay.
  const WallTime date = clock_.wallNow() + seconds(1) - seconds(100);
  const Freshness f =
      compute({{"Cache-Control", "max-age=60"}, {"Date", formatHttpDate(date)}}, ContentKind::kOther,
              std::nullopt, /*add_date=*/false);
  EXPECT_EQ(f.corrected_initial_age, seconds(100));
  EXPECT_FALSE(f.isFresh(clock_.wallNow()));
}

TEST_F(FreshnessTest, DateInTheFutureDoesNotMakeTheObjectYounger) {
  const WallTime date = clock_.wallNow() + seconds(3600);
  const Freshness f = compute({{"Date", formatHttpDate(date)}}, ContentKind::kOther,
                              std::nullopt, /*add_date=*/false);
  EXPECT_EQ(f.corrected_initial_age, seconds(1));
}

TEST_F(FreshnessTest, PlaylistWithoutExplicitLifetimeUsesTheShortDefault) {
  const Freshness f = compute({}, ContentKind::kPlaylist);
  EXPECT_EQ(f.lifetime, seconds(2));
  EXPECT_FALSE(f.explicit_lifetime);
}

TEST_F(FreshnessTest, StreamLifetimeReplacesOrBoundsThePlaylistDefault) {
  policy_.playlist_ttl = seconds(10);
  const StreamLifetime live{seconds(3), true, "hls-live"};
  const StreamLifetime long_live{seconds(15), true, "hls-live"};
  const StreamLifetime ended{seconds(3600), false, "hls-ended"};
  EXPECT_EQ(compute({}, ContentKind::kPlaylist, live).lifetime, seconds(3));
  EXPECT_EQ(compute({}, ContentKind::kPlaylist, long_live).lifetime, seconds(10));  // bounded
  EXPECT_EQ(compute({}, ContentKind::kPlaylist, ended).lifetime, seconds(3600));     // replaces
  EXPECT_FALSE(compute({}, ContentKind::kPlaylist, ended).explicit_lifetime);
  // The origin's explicit lifetime wins only where it is stricter.
  EXPECT_EQ(compute({{"Cache-Control", "max-age=30"}}, ContentKind::kPlaylist, live).lifetime,
            seconds(3));
  EXPECT_EQ(compute({{"Cache-Control", "max-age=30"}}, ContentKind::kPlaylist, ended).lifetime,
            seconds(30));
  EXPECT_EQ(compute({{"Cache-Control", "max-age=1"}}, ContentKind::kPlaylist, live).lifetime,
            seconds(1));
}

TEST_F(FreshnessTest, SegmentsAndOthersUseTheirRouteDefaults) {
  EXPECT_EQ(compute({}, ContentKind::kSegment).lifetime, seconds(86400));
  EXPECT_EQ(compute({}, ContentKind::kOther).lifetime, seconds(60));
  // No heuristic from Last-Modified.
  EXPECT_EQ(compute({{"Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT"}}).lifetime, seconds(60));
}

TEST_F(FreshnessTest, StaleWindowsComeFromTheOriginElseThePolicy) {
  policy_.stale_while_revalidate = seconds(3);
  policy_.stale_if_error = seconds(60);
  const Freshness f =
      compute({{"Cache-Control", "max-age=10, stale-while-revalidate=5, stale-if-error=20"}});
  EXPECT_EQ(f.stale_while_revalidate, seconds(5));
  EXPECT_EQ(f.stale_if_error, seconds(20));
  const Freshness g = compute({{"Cache-Control", "max-age=10"}});
  EXPECT_EQ(g.stale_while_revalidate, seconds(3));
  EXPECT_EQ(g.stale_if_error, seconds(60));
  // Playlists and MPDs get their own, shorter bound; the origin's word still wins.
  policy_.playlist_stale_if_error = seconds(8);
  EXPECT_EQ(compute({{"Cache-Control", "max-age=1"}}, ContentKind::kPlaylist).stale_if_error,
            seconds(8));
  EXPECT_EQ(compute({{"Cache-Control", "max-age=1, stale-if-error=30"}}, ContentKind::kPlaylist)
                .stale_if_error,
            seconds(30));
}

TEST_F(FreshnessTest, StaleWhileRevalidateWindowFollowsExpiry) {
  const Freshness f = compute({{"Cache-Control", "max-age=10, stale-while-revalidate=5"}});
  // age 1 now.
  EXPECT_FALSE(f.withinStaleWhileRevalidate(clock_.wallNow()));  // still fresh
  clock_.advance(seconds(9));                                     // age 10: stale
  EXPECT_FALSE(f.isFresh(clock_.wallNow()));
  EXPECT_TRUE(f.withinStaleWhileRevalidate(clock_.wallNow()));
  clock_.advance(seconds(4));  // age 14
  EXPECT_TRUE(f.withinStaleWhileRevalidate(clock_.wallNow()));
  clock_.advance(seconds(1));  // age 15
  EXPECT_FALSE(f.withinStaleWhileRevalidate(clock_.wallNow()));
  EXPECT_TRUE(f.withinStaleIfError(clock_.wallNow()));  // policy default 60
  clock_.advance(seconds(55));                           // age 70
  EXPECT_FALSE(f.withinStaleIfError(clock_.wallNow()));
}

TEST_F(FreshnessTest, MustRevalidateForbidsAnyStaleUse) {
  for (const char* cc : {"max-age=1, must-revalidate, stale-if-error=60, stale-while-revalidate=60",
                         "max-age=1, proxy-revalidate, stale-if-error=60, stale-while-revalidate=60",
                         "s-maxage=1, stale-if-error=60, stale-while-revalidate=60"}) {
    const Freshness f = compute({{"Cache-Control", cc}});
    clock_.advance(seconds(5));
    EXPECT_TRUE(f.must_revalidate) << cc;
    EXPECT_FALSE(f.withinStaleWhileRevalidate(clock_.wallNow())) << cc;
    EXPECT_FALSE(f.withinStaleIfError(clock_.wallNow())) << cc;
  }
}

TEST_F(FreshnessTest, NoCacheIsNeverFreshNorServedStale) {
  const Freshness f = compute({{"Cache-Control", "no-cache, max-age=60, stale-if-error=60"}});
  EXPECT_TRUE(f.no_cache);
  EXPECT_FALSE(f.isFresh(clock_.wallNow()));
  clock_.advance(seconds(70));
  EXPECT_FALSE(f.withinStaleIfError(clock_.wallNow()));
  EXPECT_FALSE(f.withinStaleWhileRevalidate(clock_.wallNow()));
}

TEST_F(FreshnessTest, AgeNeverGoesBackwardsWithTheClock) {
  const Freshness f = compute({{"Cache-Control", "max-age=60"}});
  const WallTime before = f.response_time - seconds(30);
  EXPECT_EQ(f.currentAge(before), f.corrected_initial_age);
  // Sub-second residence is floored.
  EXPECT_EQ(f.currentAge(f.response_time + milliseconds(999)), f.corrected_initial_age);
}

}  // namespace
}  // namespace streamedge::cache
