// The simulator's reading of fMP4 init segments (tests/support/origin_sim_media.h): the codec
// string, size or sample rate of the first track, and nothing from a truncated or unknown one.
#include "tests/support/origin_sim_media.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>

namespace streamedge::testsupport {
namespace {

std::string be16(uint16_t v) { return {static_cast<char>(v >> 8), static_cast<char>(v & 0xff)}; }
std::string be32(uint32_t v) { return be16(static_cast<uint16_t>(v >> 16)) + be16(static_cast<uint16_t>(v)); }

std::string box(const char* type, const std::string& payload) {
  return be32(static_cast<uint32_t>(8 + payload.size())) + type + payload;
}

// moov/trak/mdia/minf/stbl/stsd with one sample entry.
std::string init(const std::string& sample_entry) {
  const std::string stsd = box("stsd", std::string(4, '\0') + be32(1) + sample_entry);
  return box("ftyp", "iso6") +
         box("moov", box("trak", box("mdia", box("minf", box("stbl", stsd)))));
}

std::string avc1(uint16_t width, uint16_t height) {
  std::string entry(78, '\0');
  entry.replace(24, 2, be16(width));
  entry.replace(26, 2, be16(height));
  entry += box("avcC", std::string("\x01\x64\x00\x1f\xff", 5));
  return box("avc1", entry);
}

std::string mp4a(uint16_t channels, uint16_t rate, char dsi0) {
  std::string entry(28, '\0');
  entry.replace(16, 2, be16(channels));
  entry.replace(24, 2, be16(rate));
  // ES_Descriptor (tag 3) > DecoderConfigDescriptor (tag 4, object type 0x40: MPEG-4 audio)
  // > DecoderSpecificInfo (tag 5: AudioSpecificConfig, audio object type in the top 5 bits).
  const std::string dsi = std::string("\x05\x02", 2) + dsi0 + '\x10';
  const std::string dc = std::string("\x04", 1) + static_cast<char>(13 + dsi.size()) + '\x40' +
                         std::string(12, '\0') + dsi;
  const std::string es = std::string("\x03", 1) + static_cast<char>(3 + dc.size()) +
                         std::string("\x00\x01\x00", 3) + dc;
  entry += box("esds", std::string(4, '\0') + es);
  return box("mp4a", entry);
}

TEST(OriginSimMedia, AvcInitGivesCodecAndSize) {
  const Mp4TrackInfo info = parseMp4Init(init(avc1(1280, 720)));
  ASSERT_TRUE(info.ok);
  EXPECT_TRUE(info.video);
  EXPECT_EQ(info.codecs, "avc1.64001f");
  EXPECT_EQ(info.width, 1280);
  EXPECT_EQ(info.height, 720);
}

TEST(OriginSimMedia, AacInitGivesAudioObjectTypeAndRate) {
  const Mp4TrackInfo info = parseMp4Init(init(mp4a(2, 48000, '\x11')));  // AOT 2 (AAC-LC)
  ASSERT_TRUE(info.ok);
  EXPECT_FALSE(info.video);
  EXPECT_EQ(info.codecs, "mp4a.40.2");
  EXPECT_EQ(info.channels, 2);
  EXPECT_EQ(info.sample_rate, 48000);
}

TEST(OriginSimMedia, TruncatedOrUnknownInitsGiveNothing) {
  const std::string whole = init(avc1(640, 360));
  for (size_t cut = 0; cut < whole.size(); ++cut) {
    EXPECT_FALSE(parseMp4Init(std::string_view(whole).substr(0, cut)).ok) << cut;
  }
  EXPECT_FALSE(parseMp4Init(init(box("hvc1", std::string(90, '\0')))).ok);
  EXPECT_FALSE(parseMp4Init("").ok);
}

}  // namespace
}  // namespace streamedge::testsupport
