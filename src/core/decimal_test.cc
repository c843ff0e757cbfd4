#include "tollgate/decimal.h"

#include "gtest/gtest.h"

namespace tollgate {
namespace {

constexpr Decimal kMax = Decimal::Units(1'000'000);

TEST(DecimalTest, ParsesExactly) {
  EXPECT_EQ(Decimal::ParsePositive("0.1", "rate", kMax)->nanos, 100'000'000u);
  EXPECT_EQ(Decimal::ParsePositive("0.5", "cost", kMax)->nanos, 500'000'000u);
  EXPECT_EQ(Decimal::ParsePositive("95000", "capacity", kMax)->nanos, 95'000'000'000'000u);
  EXPECT_EQ(Decimal::ParsePositive("1.000000001", "x", kMax)->nanos, 1'000'000'001u);
  EXPECT_EQ(Decimal::ParsePositive(".5", "x", kMax)->nanos, 500'000'000u);
  EXPECT_EQ(Decimal::ParsePositive("5.", "x", kMax)->nanos, 5'000'000'000u);
  EXPECT_EQ(Decimal::ParsePositive("1000000", "x", kMax)->nanos, kMax.nanos);
  // 0.1 + 0.2 == 0.3, exactly.
  EXPECT_EQ(Decimal::ParsePositive("0.1", "x", kMax)->nanos +
                Decimal::ParsePositive("0.2", "x", kMax)->nanos,
            Decimal::ParsePositive("0.3", "x", kMax)->nanos);
}

TEST(DecimalTest, RejectsEverythingElseNamingTheArgument) {
  for (const char* bad : {"",
                          "0",
                          "0.0",
                          "-1",
                          "+1",
                          "nan",
                          "NaN",
                          "inf",
                          "-inf",
                          "Infinity",
                          "1e3",
                          "1.2.3",
                          ".",
                          "abc",
                          " 1",
                          "1 ",
                          "0x10",
                          "1.0000000001",
                          "1000000.000000001",
                          "99999999999999999999999"}) {
    auto r = Decimal::ParsePositive(bad, "rate", kMax);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(std::string(r.status().message()).rfind("rate must be a positive decimal", 0), 0u)
        << r.status().message();
  }
}

TEST(DecimalTest, ToStringIsShortestExact) {
  EXPECT_EQ(Decimal{100'000'000}.ToString(), "0.1");
  EXPECT_EQ(Decimal::Units(95000).ToString(), "95000");
  EXPECT_EQ(Decimal{1}.ToString(), "0.000000001");
  EXPECT_EQ(Decimal{1'500'000'000}.ToString(), "1.5");
}

}  // namespace
}  // namespace tollgate
