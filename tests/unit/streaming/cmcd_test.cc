#include "streaming/cmcd.h"

#include <gtest/gtest.h>

#include <string>

namespace streamedge::streaming {
namespace {

TEST(Cmcd, ReadsTheKeysTheEdgeAggregates) {
  CmcdData d;
  ASSERT_TRUE(parseCmcdList(
      "br=3200,bl=21300,bs,d=4004,mtp=25400,ot=v,sid=\"6e2fb550-c457-11e9-bb97-0800200c9a66\","
      "st=l,su,nor=\"../300kbps/segment35.m4v\",cid=\"faec5fc2-ac30-11ea-bb37-0242ac130002\","
      "com.example-myNumericKey=500",
      d));
  EXPECT_TRUE(d.any);
  EXPECT_EQ(d.br_kbps, 3200u);
  EXPECT_EQ(d.bl_ms, 21300u);
  EXPECT_EQ(d.d_ms, 4004u);
  EXPECT_EQ(d.mtp_kbps, 25400u);
  EXPECT_TRUE(d.bs);
  EXPECT_TRUE(d.su);
  EXPECT_EQ(d.ot, CmcdObjectType::kVideo);
  EXPECT_EQ(d.st, 'l');
  EXPECT_TRUE(d.has_nor);
  EXPECT_FALSE(d.has_nrr);
  // Personal identifiers: only their presence.
  EXPECT_TRUE(d.had_sid);
  EXPECT_TRUE(d.had_cid);
}

TEST(Cmcd, HeadersMergeAndBooleansMayBeFalse) {
  CmcdData d;
  ASSERT_TRUE(parseCmcdList("br=800, ot=av", d));     // CMCD-Object
  ASSERT_TRUE(parseCmcdList("bl=1200,bs=?0", d));     // CMCD-Status... bs false
  ASSERT_TRUE(parseCmcdList("sid=\"a \\\"quoted\\\" id\"", d));  // CMCD-Session
  EXPECT_EQ(d.br_kbps, 800u);
  EXPECT_EQ(d.ot, CmcdObjectType::kMuxed);
  EXPECT_EQ(d.bl_ms, 1200u);
  EXPECT_FALSE(d.bs);
  EXPECT_TRUE(d.had_sid);
}

TEST(Cmcd, RefusesBrokenListsWholeAndKeepsWhatWasReadBefore) {
  CmcdData d;
  ASSERT_TRUE(parseCmcdList("br=800", d));
  for (const char* bad : {"", ",", "br=", "br=abc", "br=-5", "br=\"800\"", "bs=maybe", "ot=x",
                          "st=q", "sid=unquoted", "sid=\"open", "sid=\"a\\x\"", "k=\"a\"b\"",
                          "=1", "b r=1", "br=1,,bl=2", "br=99999999999999999999",
                          "nor=1", "br=800\x01", "key=a\"b"}) {
    CmcdData copy = d;
    EXPECT_FALSE(parseCmcdList(bad, copy)) << bad;
    EXPECT_EQ(copy.br_kbps, 800u) << bad;
    EXPECT_FALSE(copy.bs) << bad;
  }
}

TEST(Cmcd, IsBounded) {
  std::string many;
  for (int i = 0; i < 65; ++i) many += (i ? ",k" : "k") + std::to_string(i);
  CmcdData d;
  EXPECT_FALSE(parseCmcdList(many, d)) << "more than kMaxCmcdMembers members";
  EXPECT_FALSE(parseCmcdList("br=1," + std::string(kMaxCmcdBytes, 'a'), d));
  EXPECT_FALSE(d.any);
}

TEST(Cmcd, ReadsTheQueryParameterPercentDecoded) {
  CmcdData d;
  EXPECT_TRUE(parseCmcdQuery("?v=1&CMCD=bl%3D21300%2Cbr%3D3200%2Cbs%2Csid%3D%22x%22&b=2", d));
  EXPECT_EQ(d.br_kbps, 3200u);
  EXPECT_EQ(d.bl_ms, 21300u);
  EXPECT_TRUE(d.bs);
  EXPECT_TRUE(d.had_sid);
  CmcdData lower;
  EXPECT_TRUE(parseCmcdQuery("cmcd=br%3D400", lower));
  EXPECT_EQ(lower.br_kbps, 400u);
  CmcdData none;
  EXPECT_FALSE(parseCmcdQuery("v=1&CMCDX=br%3D1", none));
  EXPECT_FALSE(parseCmcdQuery("CMCD=br%3", none));
  EXPECT_FALSE(parseCmcdQuery("CMCD=br%ZZ1", none));
  EXPECT_FALSE(none.any);
}

TEST(Cmcd, KnowsItsFieldNames) {
  EXPECT_TRUE(isCmcdField("CMCD-Request"));
  EXPECT_TRUE(isCmcdField("cmcd-session"));
  EXPECT_TRUE(isCmcdField("CMCD-Object"));
  EXPECT_FALSE(isCmcdField("CMCD"));
  EXPECT_FALSE(isCmcdField("CMCD-"));
  EXPECT_FALSE(isCmcdField("X-CMCD-Request"));
}

TEST(Cmcd, KeepsTheNextObjectDecodedAndBounded) {
  CmcdData d;
  ASSERT_TRUE(parseCmcdList("br=800,nor=\"..%2F300kbps%2Fseg_35.m4v\",nrr=\"12323-48763\"", d));
  EXPECT_TRUE(d.has_nor);
  EXPECT_TRUE(d.has_nrr);
  EXPECT_EQ(d.nor(), "../300kbps/seg_35.m4v");

  CmcdData q;
  ASSERT_TRUE(parseCmcdQuery("CMCD=nor%3D%22seg_2.m4s%22", q));
  EXPECT_EQ(q.nor(), "seg_2.m4s");

  // Badly encoded or longer than kept: noted, not kept.
  CmcdData bad;
  ASSERT_TRUE(parseCmcdList("nor=\"seg%2\"", bad));
  EXPECT_TRUE(bad.has_nor);
  EXPECT_TRUE(bad.nor().empty());
  CmcdData longer;
  ASSERT_TRUE(parseCmcdList("nor=\"" + std::string(kMaxCmcdNorBytes + 1, 'a') + "\"", longer));
  EXPECT_TRUE(longer.has_nor);
  EXPECT_TRUE(longer.nor().empty());
  // A later list's nor wins when merged.
  CmcdData merged = d;
  merged.merge(q);
  EXPECT_EQ(merged.nor(), "seg_2.m4s");
}

}  // namespace
}  // namespace streamedge::streaming
