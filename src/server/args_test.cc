#include "server/args.h"

#include "gtest/gtest.h"

namespace tollgate::server {
namespace {

TEST(ArgsTest, ParseInt64IsStrict) {
  EXPECT_EQ(ParseInt64("0"), 0);
  EXPECT_EQ(ParseInt64("-17"), -17);
  EXPECT_EQ(ParseInt64("9223372036854775807"), INT64_MAX);
  EXPECT_FALSE(ParseInt64("9223372036854775808"));
  EXPECT_FALSE(ParseInt64(""));
  EXPECT_FALSE(ParseInt64("+1"));
  EXPECT_FALSE(ParseInt64(" 1"));
  EXPECT_FALSE(ParseInt64("1 "));
  EXPECT_FALSE(ParseInt64("1.5"));
  EXPECT_FALSE(ParseInt64("1e3"));
  EXPECT_FALSE(ParseInt64("0x10"));
}

TEST(ArgsTest, RangeErrorNamesArgumentAndRange) {
  std::string err;
  EXPECT_EQ(ParseIntInRange("5", "ttl_ms", 1, 10, &err), 5);
  EXPECT_FALSE(ParseIntInRange("0", "ttl_ms", 1, 10, &err));
  EXPECT_EQ(err, "ERR ttl_ms must be an integer in [1, 10]");
  EXPECT_FALSE(ParseIntInRange("abc", "WAIT", 0, 10, &err));
  EXPECT_EQ(err, "ERR WAIT must be an integer in [0, 10]");
}

TEST(ArgsTest, CaseHelpers) {
  EXPECT_TRUE(EqualsIgnoreCase("Wait", "WAIT"));
  EXPECT_FALSE(EqualsIgnoreCase("WAITS", "WAIT"));
  EXPECT_EQ(AsciiLower("LOCK.Acquire"), "lock.acquire");
}

}  // namespace
}  // namespace tollgate::server
