#include "cache/targeted_cache_control.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "conf/clock.h"

namespace streamedge::cache {
namespace {

using std::chrono::seconds;
using Fields = std::vector<std::pair<std::string, std::string>>;

constexpr TargetedFields kDefaultTargets{"Streamedge-Cache-Control", false};
constexpr TargetedFields kWithSurrogate{"Streamedge-Cache-Control", true};

// An origin answer as the fill sees it: fields interned, head built.
ResponseHead answer(Fields fields, const TargetedFields& targets = kDefaultTargets) {
  internEdgeFields(fields, targets);
  ResponseHead head;
  head.status = 200;
  head.headers = std::move(fields);
  head.buildWire();
  return head;
}

// ---------------------------------------------------------------- parsing (RFC 9213 §2.2)

TEST(TargetedCacheControlParse, ReadsTheDirectivesOfADictionary) {
  const std::optional<CacheControl> cc = parseTargetedCacheControl(
      "max-age=60, s-maxage=30, stale-while-revalidate=10, stale-if-error=300, must-revalidate, "
      "proxy-revalidate, public, immutable, no-cache");
  ASSERT_TRUE(cc.has_value());
  EXPECT_EQ(cc->max_age, seconds(60));
  EXPECT_EQ(cc->s_maxage, seconds(30));
  EXPECT_EQ(cc->stale_while_revalidate, seconds(10));
  EXPECT_EQ(cc->stale_if_error, seconds(300));
  EXPECT_TRUE(cc->must_revalidate);
  EXPECT_TRUE(cc->proxy_revalidate);
  EXPECT_TRUE(cc->is_public);
  EXPECT_TRUE(cc->immutable);
  EXPECT_TRUE(cc->no_cache);
  EXPECT_FALSE(cc->no_store);
  EXPECT_FALSE(cc->is_private);
  EXPECT_TRUE(cc->from_targeted_field);
}

TEST(TargetedCacheControlParse, NoStoreAndPrivateAreHonoured) {
  EXPECT_TRUE(parseTargetedCacheControl("no-store")->no_store);
  EXPECT_TRUE(parseTargetedCacheControl("private")->is_private);
  // The qualified form (a String of field names) restricts the whole answer here.
  EXPECT_TRUE(parseTargetedCacheControl("private=\"Set-Cookie\"")->is_private);
  EXPECT_TRUE(parseTargetedCacheControl("no-cache=\"Set-Cookie\", max-age=5")->no_cache);
  // Only an explicit Boolean false unsets one.
  EXPECT_FALSE(parseTargetedCacheControl("no-store=?0, max-age=5")->no_store);
  EXPECT_TRUE(parseTargetedCacheControl("no-store=?1")->no_store);
}

TEST(TargetedCacheControlParse, AValidFieldWithoutKnownDirectivesStillCounts) {
  // RFC 9213 §3.1's example: "none" lets the CDN store what Cache-Control forbids elsewhere.
  const std::optional<CacheControl> cc = parseTargetedCacheControl("none");
  ASSERT_TRUE(cc.has_value());
  EXPECT_FALSE(cc->no_store || cc->max_age.has_value());
}

TEST(TargetedCacheControlParse, ValuesOfTheWrongTypeAreNotConsumed) {
  // §2.2: a max-age that is not an Integer is not coerced; the field itself stays valid.
  for (const char* v : {"max-age=1.5", "max-age=\"60\"", "max-age=sixty", "max-age=?1",
                        "max-age", "max-age=-5", "max-age=:AAA=:", "max-age=(60)"}) {
    const std::optional<CacheControl> cc = parseTargetedCacheControl(v);
    ASSERT_TRUE(cc.has_value()) << v;
    EXPECT_FALSE(cc->max_age.has_value()) << v;
  }
  EXPECT_FALSE(parseTargetedCacheControl("public=\"yes\"")->is_public);
  EXPECT_FALSE(parseTargetedCacheControl("immutable=1")->immutable);
}

TEST(TargetedCacheControlParse, ParametersAreIgnoredAndTheLastRepeatWins) {
  EXPECT_EQ(parseTargetedCacheControl("max-age=60;foo=bar;baz")->max_age, seconds(60));
  EXPECT_EQ(parseTargetedCacheControl("max-age=5, max-age=100")->max_age, seconds(100));
  // A last occurrence that is not an Integer leaves no max-age at all.
  EXPECT_FALSE(parseTargetedCacheControl("max-age=5, max-age=1.5")->max_age.has_value());
  EXPECT_EQ(parseTargetedCacheControl("max-age=999999999999999")->max_age,
            seconds(int64_t{1} << 31));  // clamped as in Cache-Control
}

TEST(TargetedCacheControlParse, EveryBareItemTypeParses) {
  const std::optional<CacheControl> cc = parseTargetedCacheControl(
      "a=1, b=-2, c=3.25, d=\"q\\\"uo\\\\te\", e=tok/en:x, f=:aGk=:, g=?0, h=(1 \"x\" y);p=1, "
      "i=(), *j, k.l_m-n*=1, max-age=7");
  ASSERT_TRUE(cc.has_value());
  EXPECT_EQ(cc->max_age, seconds(7));
}

TEST(TargetedCacheControlParse, WhitespaceFollowsTheGrammar) {
  EXPECT_EQ(parseTargetedCacheControl("  max-age=60 ,\tno-cache  ")->max_age, seconds(60));
  EXPECT_FALSE(parseTargetedCacheControl("\tmax-age=60").has_value());  // leading HTAB
  EXPECT_FALSE(parseTargetedCacheControl("max-age = 60").has_value());
  EXPECT_TRUE(parseTargetedCacheControl("max-age=60; foo").has_value());  // SP after ';' is fine
}

TEST(TargetedCacheControlParse, AFieldThatFailsToParseIsIgnoredWhole) {
  for (const char* v :
       {"", "   ", "Max-Age=60", "max-age=60,", "max-age=60,,no-store", ",max-age=60",
        "max-age=60 no-store", "max-age=60s", "max-age=\"60", "max-age=\"\\x\"", "max-age=1.",
        "max-age=1.2345", "max-age=1234567890123456", "a=(1 2", "a=(1,2)", "a=?2", "a=:a*:",
        "a=@1", "1abc", "max-age=60;Foo", "no-store, ;", "a=\"\x01\""}) {
    EXPECT_FALSE(parseTargetedCacheControl(v).has_value()) << '"' << v << '"';
  }
}

// ---------------------------------------------------------------- precedence (RFC 9213 §2.1)

TEST(TargetedCacheControlSelect, OwnTargetWinsOverEveryOtherField) {
  const ResponseHead head = answer({{"Cache-Control", "max-age=1"},
                                    {"Surrogate-Control", "max-age=2"},
                                    {"CDN-Cache-Control", "max-age=3"},
                                    {"streamedge-cache-control", "max-age=4"}},
                                   kWithSurrogate);
  const SelectedCacheControl s = selectCacheControl(head);
  EXPECT_EQ(s.source, CacheControlSource::kOwnTarget);
  EXPECT_EQ(s.cc.max_age, seconds(4));
  EXPECT_TRUE(s.cc.from_targeted_field);
}

TEST(TargetedCacheControlSelect, CdnCacheControlWinsOverSurrogateAndCacheControl) {
  const ResponseHead head = answer({{"Cache-Control", "max-age=1"},
                                    {"Surrogate-Control", "max-age=2"},
                                    {"CDN-Cache-Control", "max-age=3"}},
                                   kWithSurrogate);
  const SelectedCacheControl s = selectCacheControl(head);
  EXPECT_EQ(s.source, CacheControlSource::kCdnCacheControl);
  EXPECT_EQ(s.cc.max_age, seconds(3));
}

TEST(TargetedCacheControlSelect, SurrogateControlCountsOnlyWhenEnabled) {
  const Fields fields = {{"Cache-Control", "max-age=1"}, {"Surrogate-Control", "max-age=2"}};
  const SelectedCacheControl on = selectCacheControl(answer(fields, kWithSurrogate));
  EXPECT_EQ(on.source, CacheControlSource::kSurrogateControl);
  EXPECT_EQ(on.cc.max_age, seconds(2));
  EXPECT_TRUE(on.cc.from_targeted_field);
  const SelectedCacheControl off = selectCacheControl(answer(fields, kDefaultTargets));
  EXPECT_EQ(off.source, CacheControlSource::kCacheControl);
  EXPECT_EQ(off.cc.max_age, seconds(1));
  EXPECT_FALSE(off.cc.from_targeted_field);
}

TEST(TargetedCacheControlSelect, CacheControlWhenNoTargetedFieldIsPresent) {
  const SelectedCacheControl s =
      selectCacheControl(answer({{"Cache-Control", "no-store"}, {"Cache-Control", "max-age=9"}}));
  EXPECT_EQ(s.source, CacheControlSource::kCacheControl);
  EXPECT_TRUE(s.cc.no_store);  // both lines joined
  EXPECT_EQ(s.cc.max_age, seconds(9));
}

TEST(TargetedCacheControlSelect, AnInvalidTargetedFieldFallsThroughToTheNextOne) {
  // Own target invalid → CDN-Cache-Control; both invalid → Cache-Control.
  const SelectedCacheControl a = selectCacheControl(answer(
      {{"Streamedge-Cache-Control", "Max-Age=60"}, {"CDN-Cache-Control", "max-age=30"},
       {"Cache-Control", "no-store"}}));
  EXPECT_EQ(a.source, CacheControlSource::kCdnCacheControl);
  EXPECT_EQ(a.cc.max_age, seconds(30));
  const SelectedCacheControl b = selectCacheControl(answer(
      {{"Streamedge-Cache-Control", "max-age=60,"}, {"CDN-Cache-Control", ""},
       {"Cache-Control", "no-store"}}));
  EXPECT_EQ(b.source, CacheControlSource::kCacheControl);
  EXPECT_TRUE(b.cc.no_store);
}

TEST(TargetedCacheControlSelect, SplitTargetedFieldLinesAreOneDictionary) {
  const SelectedCacheControl s = selectCacheControl(
      answer({{"CDN-Cache-Control", "max-age=60"}, {"CDN-Cache-Control", "stale-if-error=5"}}));
  EXPECT_EQ(s.cc.max_age, seconds(60));
  EXPECT_EQ(s.cc.stale_if_error, seconds(5));
}

TEST(TargetedCacheControlSelect, AnotherCachesOwnTargetChangesNothing) {
  // RFC 9213 §2.1: targeted fields not on our list must not change our behaviour.
  const SelectedCacheControl s = selectCacheControl(
      answer({{"Acme-Cache-Control", "max-age=600"}, {"Cache-Control", "max-age=5"}}));
  EXPECT_EQ(s.source, CacheControlSource::kCacheControl);
  EXPECT_EQ(s.cc.max_age, seconds(5));
}

TEST(TargetedCacheControlSelect, NoOwnTargetConfiguredLeavesThatFieldAlone) {
  const ResponseHead head = answer(
      {{"Streamedge-Cache-Control", "max-age=600"}, {"Cache-Control", "max-age=5"}}, {"", false});
  EXPECT_EQ(selectCacheControl(head).source, CacheControlSource::kCacheControl);
  EXPECT_NE(head.wire.find("Streamedge-Cache-Control: max-age=600\r\n"), std::string::npos);
}

// ---------------------------------------------------------------- forwarding

TEST(TargetedCacheControlForwarding, EdgeFieldsAreStoredButNeverOnTheWire) {
  const ResponseHead head = answer({{"Cache-Control", "no-store"},
                                    {"Streamedge-Cache-Control", "max-age=60"},
                                    {"CDN-Cache-Control", "max-age=30"},
                                    {"Surrogate-Control", "max-age=20"}},
                                   kWithSurrogate);
  EXPECT_EQ(head.wire, "Cache-Control: no-store\r\nCDN-Cache-Control: max-age=30\r\n");
  ASSERT_NE(head.find(kStoredOwnTargetField), nullptr);
  EXPECT_EQ(*head.find(kStoredOwnTargetField), "max-age=60");
  ASSERT_NE(head.find(kStoredSurrogateControlField), nullptr);
  // With Surrogate-Control not enabled it is someone else's field: passed on.
  const ResponseHead off = answer({{"Surrogate-Control", "max-age=20"}});
  EXPECT_EQ(off.wire, "Surrogate-Control: max-age=20\r\n");
}

// ---------------------------------------------------------------- storage and freshness

class TargetedFreshnessTest : public ::testing::Test {
 protected:
  StoreDecision store(const ResponseHead& head) {
    return decideStore(head.status, false, head, selectCacheControl(head).cc, policy_);
  }
  Freshness freshness(const ResponseHead& head) {
    const WallTime now = clock_.wallNow();
    return computeFreshness(head, selectCacheControl(head).cc, now, now, ContentKind::kOther,
                            policy_);
  }
  ManualClock clock_;
  conf::CachePolicy policy_;
};

TEST_F(TargetedFreshnessTest, CdnMaxAgeStoresWhatCacheControlForbidsForSixtySeconds) {
  const ResponseHead head =
      answer({{"CDN-Cache-Control", "max-age=60"}, {"Cache-Control", "no-store"}});
  EXPECT_TRUE(store(head).store);
  const Freshness f = freshness(head);
  EXPECT_EQ(f.lifetime, seconds(60));
  EXPECT_TRUE(f.explicit_lifetime);
  clock_.advance(seconds(59));
  EXPECT_TRUE(f.isFresh(clock_.wallNow()));
  clock_.advance(seconds(1));
  EXPECT_FALSE(f.isFresh(clock_.wallNow()));
}

TEST_F(TargetedFreshnessTest, TargetedNoStoreAndPrivateKeepTheAnswerOut) {
  const ResponseHead a =
      answer({{"Streamedge-Cache-Control", "no-store"}, {"Cache-Control", "max-age=600"}});
  EXPECT_FALSE(store(a).store);
  EXPECT_STREQ(store(a).reason, "no-store");
  const ResponseHead b =
      answer({{"CDN-Cache-Control", "private"}, {"Cache-Control", "public, max-age=600"}});
  EXPECT_STREQ(store(b).reason, "private");
}

TEST_F(TargetedFreshnessTest, ExpiresIsIgnoredWhenATargetedFieldDecides) {
  const std::string past = formatHttpDate(clock_.wallNow() - seconds(3600));
  const std::string now = formatHttpDate(clock_.wallNow());
  // Targeted field without a lifetime: the route default, not the (past) Expires.
  const ResponseHead head = answer(
      {{"CDN-Cache-Control", "stale-if-error=30"}, {"Expires", past}, {"Date", now}});
  const Freshness f = freshness(head);
  EXPECT_EQ(f.lifetime, policy_.default_ttl);
  EXPECT_FALSE(f.explicit_lifetime);
  EXPECT_EQ(f.stale_if_error, seconds(30));
  // And Expires does not make a 302 storable on its own.
  ResponseHead redirect = answer({{"CDN-Cache-Control", "none"}, {"Expires", past}});
  redirect.status = 302;
  EXPECT_FALSE(store(redirect).store);
  // Without a targeted field Expires still counts.
  const Freshness g = freshness(answer({{"Expires", past}, {"Date", now}}));
  EXPECT_EQ(g.lifetime, seconds(0));
  EXPECT_TRUE(g.explicit_lifetime);
}

TEST_F(TargetedFreshnessTest, StaleDirectivesAndMustRevalidateComeFromTheTargetedField) {
  const Freshness f = freshness(answer(
      {{"Streamedge-Cache-Control", "max-age=10, stale-while-revalidate=20, stale-if-error=40"},
       {"Cache-Control", "max-age=1, must-revalidate"}}));
  EXPECT_EQ(f.lifetime, seconds(10));
  EXPECT_EQ(f.stale_while_revalidate, seconds(20));
  EXPECT_EQ(f.stale_if_error, seconds(40));
  EXPECT_FALSE(f.must_revalidate);
  clock_.advance(seconds(15));
  EXPECT_TRUE(f.withinStaleWhileRevalidate(clock_.wallNow()));
}

}  // namespace
}  // namespace streamedge::cache
