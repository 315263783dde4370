#include "streaming/ll_hls.h"

#include <gtest/gtest.h>

#include <variant>

namespace streamedge::streaming {
namespace {

TEST(DeliveryDirectives, ReadsAndCanonicalises) {
  const auto d = parseDeliveryDirectives("?_HLS_skip=YES&a=1&_HLS_part=02&_HLS_msn=0100");
  ASSERT_TRUE(d.isOk()) << d.status().detail();
  EXPECT_EQ(d->msn, 100u);
  EXPECT_EQ(d->part, 2u);
  EXPECT_EQ(d->skip, DeliveryDirectives::Skip::kYes);
  EXPECT_TRUE(d->blocking());
  EXPECT_EQ(d->canonical(), "_HLS_msn=100&_HLS_part=2&_HLS_skip=YES");

  const auto none = parseDeliveryDirectives("a=1&b=2");
  ASSERT_TRUE(none.isOk());
  EXPECT_FALSE(none->any());
  const auto v2 = parseDeliveryDirectives("_HLS_skip=v2");
  ASSERT_TRUE(v2.isOk());
  EXPECT_FALSE(v2->blocking());
  EXPECT_EQ(v2->canonical(), "_HLS_skip=v2");
  // Reserved names of later protocol versions are not ours to refuse.
  EXPECT_TRUE(parseDeliveryDirectives("_HLS_future=x").isOk());
}

TEST(DeliveryDirectives, RefusesWhatTheSpecificationCallsABadRequest) {
  for (const char* q : {"_HLS_msn=abc", "_HLS_msn=", "_HLS_msn", "_HLS_msn=-1", "_HLS_msn=1.5",
                        "_HLS_msn=+1", "_HLS_msn=99999999999999999999999", "_HLS_part=1",
                        "_HLS_msn=1&_HLS_part=x", "_HLS_msn=1&_HLS_msn=2", "_HLS_skip=yes",
                        "_HLS_skip=NO", "_HLS_skip=YES&_HLS_skip=YES", "_HLS_msn=%31"}) {
    const auto d = parseDeliveryDirectives(q);
    EXPECT_FALSE(d.isOk()) << q;
    if (!d.isOk()) {
      EXPECT_EQ(d.status().code(), Code::kInvalid) << q;
      EXPECT_EQ(d.status().source(), Source::kDownstream) << q;
    }
  }
}

HlsMediaPlaylist playlist() {
  // Segments 10 and 11 complete (4 parts of 0.5 s in 2 s), segment 12 has parts 0 and 1.
  auto r = parseHlsPlaylist(
      "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.5\n"
      "#EXT-X-PART-INF:PART-TARGET=0.5\n#EXT-X-MEDIA-SEQUENCE:10\n"
      "#EXTINF:2,\ns10.m4s\n#EXTINF:2,\ns11.m4s\n"
      "#EXT-X-PART:DURATION=0.5,URI=\"p12_0\"\n#EXT-X-PART:DURATION=0.5,URI=\"p12_1\"\n"
      "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p12_2\"\n");
  EXPECT_TRUE(r.isOk());
  return std::get<HlsMediaPlaylist>(std::move(r).value());
}

DeliveryDirectives ask(uint64_t msn, std::optional<uint64_t> part = std::nullopt) {
  DeliveryDirectives d;
  d.msn = msn;
  d.part = part;
  return d;
}

TEST(BlockingReload, AnswersFromTheStoredPlaylistWhenItHasWhatIsAsked) {
  const HlsMediaPlaylist p = playlist();
  EXPECT_EQ(decideBlockingReload(p, ask(11)).action, BlockingAction::kAnswerNow);
  EXPECT_EQ(decideBlockingReload(p, ask(12, 1)).action, BlockingAction::kAnswerNow);
  EXPECT_EQ(decideBlockingReload(p, ask(3)).action, BlockingAction::kAnswerNow);
}

TEST(BlockingReload, HoldsUpToThreeTargetDurationsForTheNextPartOrSegment) {
  const HlsMediaPlaylist p = playlist();
  for (const auto& d : {ask(12, 2), ask(12), ask(13), ask(12, 3), ask(13, 0)}) {
    const BlockingDecision b = decideBlockingReload(p, d);
    EXPECT_EQ(b.action, BlockingAction::kHold) << d.canonical();
    EXPECT_EQ(b.hold_limit, Millis(6000)) << d.canonical();
  }
}

TEST(BlockingReload, RefusesRequestsTooFarAhead) {
  const HlsMediaPlaylist p = playlist();
  // More than two segments past the newest complete one (11).
  EXPECT_EQ(decideBlockingReload(p, ask(14)).action, BlockingAction::kBadRequest);
  EXPECT_EQ(decideBlockingReload(p, ask(1000)).action, BlockingAction::kBadRequest);
  // More than three parts past the newest part (12.1): 13.1 is four parts ahead.
  EXPECT_EQ(decideBlockingReload(p, ask(13, 1)).action, BlockingAction::kBadRequest);
  EXPECT_EQ(decideBlockingReload(p, ask(12, 5)).action, BlockingAction::kBadRequest);
  EXPECT_EQ(decideBlockingReload(p, ask(12, 4)).action, BlockingAction::kHold);
}

TEST(BlockingReload, AnEndedStreamAnswersAtOnce) {
  auto r = parseHlsPlaylist("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\na\n#EXT-X-ENDLIST\n");
  ASSERT_TRUE(r.isOk());
  EXPECT_EQ(decideBlockingReload(std::get<HlsMediaPlaylist>(*r), ask(50)).action,
            BlockingAction::kAnswerNow);
}

TEST(PlaylistSummary, DecidesAsThePlaylistItSummarises) {
  const HlsMediaPlaylist p = playlist();
  const PlaylistSummary s = summarizePlaylist(p);
  EXPECT_TRUE(s.live);
  EXPECT_EQ(s.next_msn, p.nextMsn());
  EXPECT_EQ(s.trailing_parts, p.trailing_parts.size());
  // Every request from far behind to far ahead gets the same decision from the summary as
  // from the parsed playlist, and `contains` agrees.
  for (uint64_t msn = 0; msn < 20; ++msn) {
    for (std::optional<uint64_t> part : {std::optional<uint64_t>(), std::optional<uint64_t>(0),
                                         std::optional<uint64_t>(1), std::optional<uint64_t>(2),
                                         std::optional<uint64_t>(5)}) {
      const DeliveryDirectives d = ask(msn, part);
      EXPECT_EQ(decideBlockingReload(s, d).action, decideBlockingReload(p, d).action) << d.canonical();
      EXPECT_EQ(s.contains(msn, part), p.contains(msn, part)) << d.canonical();
    }
  }
}

TEST(PlaylistSummary, APlaylistWithoutSegmentsContainsNoWholeSegment) {
  auto r = parseHlsPlaylist("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PART-INF:PART-TARGET=0.5\n"
                            "#EXT-X-PART:DURATION=0.5,URI=\"p0\"\n");
  ASSERT_TRUE(r.isOk());
  const PlaylistSummary s = summarizePlaylist(std::get<HlsMediaPlaylist>(*r));
  EXPECT_FALSE(s.contains(0, std::nullopt));
  EXPECT_TRUE(s.contains(0, 0));
  EXPECT_FALSE(s.contains(0, 1));
  EXPECT_EQ(decideBlockingReload(s, ask(0, 1)).action, BlockingAction::kHold);
  EXPECT_EQ(holdLimit(s), Millis(6000));
}

}  // namespace
}  // namespace streamedge::streaming
