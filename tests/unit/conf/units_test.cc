#include "conf/units.h"

#include <gtest/gtest.h>

namespace streamedge {
namespace {

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;
constexpr uint64_t kGiB = 1024 * kMiB;
constexpr uint64_t kTiB = 1024 * kGiB;

// ---- parseByteSize --------------------------------------------------------------------------

TEST(ParseByteSize, BareNumberAndBIsBytes) {
  EXPECT_EQ(parseByteSize("0"), 0u);
  EXPECT_EQ(parseByteSize("4096"), 4096u);
  EXPECT_EQ(parseByteSize("4096B"), 4096u);
  EXPECT_EQ(parseByteSize("007"), 7u);
}

TEST(ParseByteSize, BinaryUnitsArePowersOf1024) {
  EXPECT_EQ(parseByteSize("64KiB"), 64 * kKiB);
  EXPECT_EQ(parseByteSize("256MiB"), 256 * kMiB);
  EXPECT_EQ(parseByteSize("1GiB"), kGiB);
  EXPECT_EQ(parseByteSize("2TiB"), 2 * kTiB);
}

TEST(ParseByteSize, DecimalUnitsArePowersOf1000) {
  EXPECT_EQ(parseByteSize("1KB"), 1000u);
  EXPECT_EQ(parseByteSize("10MB"), 10'000'000u);
  EXPECT_EQ(parseByteSize("3GB"), 3'000'000'000u);
  EXPECT_EQ(parseByteSize("1TB"), 1'000'000'000'000u);
}

TEST(ParseByteSize, UnitsAreCaseInsensitive) {
  EXPECT_EQ(parseByteSize("256mib"), 256 * kMiB);
  EXPECT_EQ(parseByteSize("256MIB"), 256 * kMiB);
  EXPECT_EQ(parseByteSize("1gb"), 1'000'000'000u);
  EXPECT_EQ(parseByteSize("12b"), 12u);
  EXPECT_EQ(parseByteSize("1kIb"), kKiB);
}

TEST(ParseByteSize, FractionsAreExactAndTruncatedToWholeBytes) {
  EXPECT_EQ(parseByteSize("1.5GiB"), kGiB + kGiB / 2);
  EXPECT_EQ(parseByteSize("0.5KiB"), 512u);
  EXPECT_EQ(parseByteSize("0.1GB"), 100'000'000u);  // no floating-point 99999999
  EXPECT_EQ(parseByteSize("1.25MB"), 1'250'000u);
  EXPECT_EQ(parseByteSize("1.001KiB"), 1025u);  // 1025.024 truncated
  EXPECT_EQ(parseByteSize("0.000000000000000001TiB"), 0u);
}

TEST(ParseByteSize, FractionOfAByteIsRejected) {
  EXPECT_EQ(parseByteSize("1.5"), std::nullopt);
  EXPECT_EQ(parseByteSize("1.5B"), std::nullopt);
  EXPECT_EQ(parseByteSize("1.0B"), std::nullopt);
}

TEST(ParseByteSize, MalformedNumbersAreRejected) {
  EXPECT_EQ(parseByteSize(""), std::nullopt);
  EXPECT_EQ(parseByteSize("MiB"), std::nullopt);
  EXPECT_EQ(parseByteSize(".5MiB"), std::nullopt);
  EXPECT_EQ(parseByteSize("5.MiB"), std::nullopt);
  EXPECT_EQ(parseByteSize("1..5MiB"), std::nullopt);
  EXPECT_EQ(parseByteSize("1.5.5MiB"), std::nullopt);
  EXPECT_EQ(parseByteSize("1e6"), std::nullopt);
  EXPECT_EQ(parseByteSize("0x10"), std::nullopt);
  EXPECT_EQ(parseByteSize("1,5MiB"), std::nullopt);
  EXPECT_EQ(parseByteSize("1_000"), std::nullopt);
}

TEST(ParseByteSize, UnknownUnitsAreRejected) {
  EXPECT_EQ(parseByteSize("12XB"), std::nullopt);
  EXPECT_EQ(parseByteSize("12K"), std::nullopt);
  EXPECT_EQ(parseByteSize("12M"), std::nullopt);
  EXPECT_EQ(parseByteSize("12PiB"), std::nullopt);
  EXPECT_EQ(parseByteSize("12MiBs"), std::nullopt);
  EXPECT_EQ(parseByteSize("12 bytes"), std::nullopt);
}

TEST(ParseByteSize, SignsAreRejected) {
  EXPECT_EQ(parseByteSize("-1"), std::nullopt);
  EXPECT_EQ(parseByteSize("-5MiB"), std::nullopt);
  EXPECT_EQ(parseByteSize("+5MiB"), std::nullopt);
  EXPECT_EQ(parseByteSize("-0"), std::nullopt);
}

TEST(ParseByteSize, WhitespaceIsRejected) {
  EXPECT_EQ(parseByteSize(" 256MiB"), std::nullopt);
  EXPECT_EQ(parseByteSize("256MiB "), std::nullopt);
  EXPECT_EQ(parseByteSize("256 MiB"), std::nullopt);
  EXPECT_EQ(parseByteSize("256\tMiB"), std::nullopt);
  EXPECT_EQ(parseByteSize("256MiB\n"), std::nullopt);
  EXPECT_EQ(parseByteSize(std::string_view("256\0MiB", 7)), std::nullopt);
}

TEST(ParseByteSize, LargestValueParsesAndOneMoreOverflows) {
  EXPECT_EQ(parseByteSize("18446744073709551615"), UINT64_MAX);
  EXPECT_EQ(parseByteSize("18446744073709551615B"), UINT64_MAX);
  EXPECT_EQ(parseByteSize("18446744073709551616"), std::nullopt);
  EXPECT_EQ(parseByteSize("99999999999999999999"), std::nullopt);
  EXPECT_EQ(parseByteSize("000000000000000000001"), std::nullopt);  // > 20 digits
}

TEST(ParseByteSize, MultiplicationOverflowIsRejected) {
  // 2^64 bytes = 16777216 TiB; one below fits.
  EXPECT_EQ(parseByteSize("16777215TiB"), 16777215 * kTiB);
  EXPECT_EQ(parseByteSize("16777216TiB"), std::nullopt);
  EXPECT_EQ(parseByteSize("16777215.99999TiB").has_value(), true);
  EXPECT_EQ(parseByteSize("16777216.5TiB"), std::nullopt);
  EXPECT_EQ(parseByteSize("18446744073709551615KiB"), std::nullopt);
  EXPECT_EQ(parseByteSize("18446744073709552TB"), std::nullopt);
}

TEST(ParseByteSize, OverlongFractionIsRejected) {
  EXPECT_EQ(parseByteSize("1.000000000000000001GiB"), kGiB);  // 18 digits
  EXPECT_EQ(parseByteSize("1.0000000000000000001GiB"), std::nullopt);  // 19 digits
}

// ---- parseDuration --------------------------------------------------------------------------

TEST(ParseDuration, EveryUnitScalesToMilliseconds) {
  EXPECT_EQ(parseDuration("250ms"), Millis(250));
  EXPECT_EQ(parseDuration("30s"), Millis(30'000));
  EXPECT_EQ(parseDuration("5m"), Millis(300'000));
  EXPECT_EQ(parseDuration("2h"), Millis(7'200'000));
  EXPECT_EQ(parseDuration("1d"), Millis(86'400'000));
  EXPECT_EQ(parseDuration("0s"), Millis(0));
  EXPECT_EQ(parseDuration("0ms"), Millis(0));
}

TEST(ParseDuration, BareNumberIsSeconds) {
  EXPECT_EQ(parseDuration("30"), Millis(30'000));
  EXPECT_EQ(parseDuration("0"), Millis(0));
  EXPECT_EQ(parseDuration("1.5"), Millis(1'500));
}

TEST(ParseDuration, FractionsAreTruncatedToWholeMilliseconds) {
  EXPECT_EQ(parseDuration("1.5s"), Millis(1'500));
  EXPECT_EQ(parseDuration("0.25s"), Millis(250));
  EXPECT_EQ(parseDuration("0.5m"), Millis(30'000));
  EXPECT_EQ(parseDuration("1.5h"), Millis(5'400'000));
  EXPECT_EQ(parseDuration("0.0015s"), Millis(1));
}

TEST(ParseDuration, FractionOfAMillisecondIsRejected) {
  EXPECT_EQ(parseDuration("1.5ms"), std::nullopt);
  EXPECT_EQ(parseDuration("0.0ms"), std::nullopt);
}

TEST(ParseDuration, UnitsAreLowercaseOnly) {
  EXPECT_EQ(parseDuration("5M"), std::nullopt);
  EXPECT_EQ(parseDuration("30S"), std::nullopt);
  EXPECT_EQ(parseDuration("250MS"), std::nullopt);
  EXPECT_EQ(parseDuration("1H"), std::nullopt);
  EXPECT_EQ(parseDuration("1D"), std::nullopt);
}

TEST(ParseDuration, UnknownUnitsAreRejected) {
  EXPECT_EQ(parseDuration("5min"), std::nullopt);
  EXPECT_EQ(parseDuration("5sec"), std::nullopt);
  EXPECT_EQ(parseDuration("1w"), std::nullopt);
  EXPECT_EQ(parseDuration("10us"), std::nullopt);
  EXPECT_EQ(parseDuration("1h30m"), std::nullopt);
}

TEST(ParseDuration, MalformedAndSignedInputIsRejected) {
  EXPECT_EQ(parseDuration(""), std::nullopt);
  EXPECT_EQ(parseDuration("s"), std::nullopt);
  EXPECT_EQ(parseDuration("-1s"), std::nullopt);
  EXPECT_EQ(parseDuration("+1s"), std::nullopt);
  EXPECT_EQ(parseDuration(".5s"), std::nullopt);
  EXPECT_EQ(parseDuration("5.s"), std::nullopt);
  EXPECT_EQ(parseDuration("1e3ms"), std::nullopt);
}

TEST(ParseDuration, WhitespaceIsRejected) {
  EXPECT_EQ(parseDuration(" 10s"), std::nullopt);
  EXPECT_EQ(parseDuration("10s "), std::nullopt);
  EXPECT_EQ(parseDuration("10 s"), std::nullopt);
  EXPECT_EQ(parseDuration("10\ts"), std::nullopt);
}

TEST(ParseDuration, OverflowIsRejected) {
  // INT64_MAX milliseconds is the largest representable duration.
  EXPECT_EQ(parseDuration("9223372036854775807ms"), Millis(INT64_MAX));
  EXPECT_EQ(parseDuration("9223372036854775808ms"), std::nullopt);
  EXPECT_EQ(parseDuration("9223372036854775s"), Millis(9223372036854775000));
  EXPECT_EQ(parseDuration("9223372036854776s"), std::nullopt);
  EXPECT_EQ(parseDuration("9223372036854776"), std::nullopt);  // bare seconds
  EXPECT_EQ(parseDuration("106751991168d"), std::nullopt);
  EXPECT_EQ(parseDuration("99999999999999999999999h"), std::nullopt);
}

// ---- formatByteSize -------------------------------------------------------------------------

TEST(FormatByteSize, WholeUnitsAreExact) {
  EXPECT_EQ(formatByteSize(0), "0B");
  EXPECT_EQ(formatByteSize(1000), "1000B");
  EXPECT_EQ(formatByteSize(1023), "1023B");
  EXPECT_EQ(formatByteSize(kKiB), "1KiB");
  EXPECT_EQ(formatByteSize(16 * kKiB), "16KiB");
  EXPECT_EQ(formatByteSize(256 * kMiB), "256MiB");
  EXPECT_EQ(formatByteSize(8 * kGiB), "8GiB");
  EXPECT_EQ(formatByteSize(3 * kTiB), "3TiB");
  EXPECT_EQ(formatByteSize(4096 * kTiB), "4096TiB");  // no unit above TiB
}

TEST(FormatByteSize, OtherValuesRoundToOneDecimal) {
  EXPECT_EQ(formatByteSize(kGiB + kGiB / 2), "1.5GiB");
  EXPECT_EQ(formatByteSize(1536), "1.5KiB");
  EXPECT_EQ(formatByteSize(123'456'789), "117.7MiB");
  EXPECT_EQ(formatByteSize(2 * kMiB - 1), "2.0MiB");  // rounds up into the next whole unit
  EXPECT_EQ(formatByteSize(UINT64_MAX), "16777216.0TiB");
}

TEST(FormatByteSize, ExactOutputParsesBackToTheSameValue) {
  for (uint64_t v : {uint64_t{0}, uint64_t{1}, uint64_t{1000}, kKiB, 64 * kKiB, 256 * kMiB,
                     5 * kGiB, 7 * kTiB, uint64_t{1023}}) {
    EXPECT_EQ(parseByteSize(formatByteSize(v)), v) << formatByteSize(v);
  }
}

}  // namespace
}  // namespace streamedge
