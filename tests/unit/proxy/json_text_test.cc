#include "proxy/json_text.h"

#include <gtest/gtest.h>

namespace streamedge::proxy {
namespace {

TEST(JsonTextTest, QuotesBackslashesAndControlBytesAreEscaped) {
  EXPECT_EQ(jsonString("plain /path?x=1"), "\"plain /path?x=1\"");
  EXPECT_EQ(jsonString("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(jsonString(std::string_view("\n\t\0\x1f\x7f", 5)), "\"\\u000a\\u0009\\u0000\\u001f\\u007f\"");
}

TEST(JsonTextTest, BytesAboveAsciiBecomeEscapesSoALineIsAlwaysValidJson) {
  // A lone continuation byte and a UTF-8 sequence alike: every output byte is printable ASCII.
  const std::string out = jsonString("caf\xc3\xa9\x80");
  EXPECT_EQ(out, "\"caf\\u00c3\\u00a9\\u0080\"");
  for (const char c : out) EXPECT_TRUE(c >= 0x20 && c < 0x7f) << static_cast<int>(c);
}

TEST(JsonTextTest, AppendKeepsWhatIsAlreadyThere) {
  std::string out = "{\"k\":";
  appendJsonString(out, "");
  EXPECT_EQ(out, "{\"k\":\"\"");
}

TEST(JsonTextTest, UtcTimeWithMillisecondsAlsoBefore1970) {
  std::string out;
  appendUtcTimeMs(out, 1748779200123);  // 2025-06-01T12:00:00.123Z
  EXPECT_EQ(out, "2025-06-01T12:00:00.123Z");
  out.clear();
  appendUtcTimeMs(out, 0);
  EXPECT_EQ(out, "1970-01-01T00:00:00.000Z");
  out.clear();
  appendUtcTimeMs(out, -1);  // one millisecond before the epoch, never ".-01"
  EXPECT_EQ(out, "1969-12-31T23:59:59.999Z");
}

}  // namespace
}  // namespace streamedge::proxy
