#include "protocol/reply_builder.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "gtest/gtest.h"

namespace tollgate::protocol {
namespace {

class ReplyBuilderBothProtocolsTest : public ::testing::TestWithParam<int> {};

TEST(ReplyBuilderTest, ProtocolSelection) {
  std::string out;
  ReplyBuilder rb(&out);
  EXPECT_EQ(rb.protocol(), 2);
  rb.set_protocol(3);
  EXPECT_EQ(rb.protocol(), 3);
  rb.set_protocol(2);
  EXPECT_EQ(rb.protocol(), 2);
  ReplyBuilder rb3(&out, 3);
  EXPECT_EQ(rb3.protocol(), 3);
  EXPECT_EQ(out, "");
}

TEST(ReplyBuilderTest, AppendsWithoutClearing) {
  std::string out = "existing";
  ReplyBuilder rb(&out);
  rb.SimpleString("OK");
  rb.Integer(1);
  EXPECT_EQ(out, "existing+OK\r\n:1\r\n");
}

// Replies that are encoded the same way in both protocols.
TEST_P(ReplyBuilderBothProtocolsTest, SimpleString) {
  std::string out;
  ReplyBuilder rb(&out, GetParam());
  rb.SimpleString("OK");
  rb.SimpleString("");
  rb.SimpleString("a\r\nb\rc\nd");
  EXPECT_EQ(out, "+OK\r\n+\r\n+a  b c d\r\n");
}

TEST_P(ReplyBuilderBothProtocolsTest, Error) {
  std::string out;
  ReplyBuilder rb(&out, GetParam());
  rb.Error("ERR unknown command");
  rb.Error("WRONGTYPE bad\r\nthing");
  EXPECT_EQ(out, "-ERR unknown command\r\n-WRONGTYPE bad  thing\r\n");
}

TEST_P(ReplyBuilderBothProtocolsTest, Integer) {
  std::string out;
  ReplyBuilder rb(&out, GetParam());
  rb.Integer(0);
  rb.Integer(42);
  rb.Integer(-7);
  rb.Integer(std::numeric_limits<int64_t>::max());
  rb.Integer(std::numeric_limits<int64_t>::min());
  EXPECT_EQ(out, ":0\r\n:42\r\n:-7\r\n:9223372036854775807\r\n:-9223372036854775808\r\n");
}

TEST_P(ReplyBuilderBothProtocolsTest, Bulk) {
  std::string out;
  ReplyBuilder rb(&out, GetParam());
  rb.Bulk("hello");
  rb.Bulk("");
  rb.Bulk(std::string("a\r\n\0b", 5));
  EXPECT_EQ(out, std::string("$5\r\nhello\r\n$0\r\n\r\n$5\r\na\r\n\0b\r\n", 28));
}

TEST_P(ReplyBuilderBothProtocolsTest, ArrayHeader) {
  std::string out;
  ReplyBuilder rb(&out, GetParam());
  rb.ArrayHeader(0);
  rb.ArrayHeader(2);
  rb.Bulk("a");
  rb.Integer(1);
  rb.ArrayHeader(1234567);
  EXPECT_EQ(out, "*0\r\n*2\r\n$1\r\na\r\n:1\r\n*1234567\r\n");
}

INSTANTIATE_TEST_SUITE_P(Resp, ReplyBuilderBothProtocolsTest, ::testing::Values(2, 3));

// Replies whose encoding depends on the protocol.
TEST(ReplyBuilderTest, NullResp2) {
  std::string out;
  ReplyBuilder rb(&out, 2);
  rb.Null();
  rb.NullArray();
  EXPECT_EQ(out, "$-1\r\n*-1\r\n");
}

TEST(ReplyBuilderTest, NullResp3) {
  std::string out;
  ReplyBuilder rb(&out, 3);
  rb.Null();
  rb.NullArray();
  EXPECT_EQ(out, "_\r\n_\r\n");
}

TEST(ReplyBuilderTest, MapHeader) {
  std::string out2;
  ReplyBuilder rb2(&out2, 2);
  rb2.MapHeader(0);
  rb2.MapHeader(3);
  EXPECT_EQ(out2, "*0\r\n*6\r\n");
  std::string out3;
  ReplyBuilder rb3(&out3, 3);
  rb3.MapHeader(0);
  rb3.MapHeader(3);
  EXPECT_EQ(out3, "%0\r\n%3\r\n");
}

TEST(ReplyBuilderTest, SetHeader) {
  std::string out2;
  ReplyBuilder rb2(&out2, 2);
  rb2.SetHeader(0);
  rb2.SetHeader(5);
  EXPECT_EQ(out2, "*0\r\n*5\r\n");
  std::string out3;
  ReplyBuilder rb3(&out3, 3);
  rb3.SetHeader(0);
  rb3.SetHeader(5);
  EXPECT_EQ(out3, "~0\r\n~5\r\n");
}

TEST(ReplyBuilderTest, Boolean) {
  std::string out2;
  ReplyBuilder rb2(&out2, 2);
  rb2.Boolean(true);
  rb2.Boolean(false);
  EXPECT_EQ(out2, ":1\r\n:0\r\n");
  std::string out3;
  ReplyBuilder rb3(&out3, 3);
  rb3.Boolean(true);
  rb3.Boolean(false);
  EXPECT_EQ(out3, "#t\r\n#f\r\n");
}

TEST(ReplyBuilderTest, DoubleResp3) {
  std::string out;
  ReplyBuilder rb(&out, 3);
  rb.Double(1.5);
  rb.Double(3.0);
  rb.Double(-0.25);
  rb.Double(0.1);
  rb.Double(1e100);
  rb.Double(std::numeric_limits<double>::infinity());
  rb.Double(-std::numeric_limits<double>::infinity());
  rb.Double(std::nan(""));
  EXPECT_EQ(out, ",1.5\r\n,3\r\n,-0.25\r\n,0.1\r\n,1e+100\r\n,inf\r\n,-inf\r\n,nan\r\n");
}

TEST(ReplyBuilderTest, DoubleResp2IsBulk) {
  std::string out;
  ReplyBuilder rb(&out, 2);
  rb.Double(1.5);
  rb.Double(3.0);
  rb.Double(0.1);
  rb.Double(std::numeric_limits<double>::infinity());
  rb.Double(-std::numeric_limits<double>::infinity());
  rb.Double(std::nan(""));
  EXPECT_EQ(out, "$3\r\n1.5\r\n$1\r\n3\r\n$3\r\n0.1\r\n$3\r\ninf\r\n$4\r\n-inf\r\n$3\r\nnan\r\n");
}

TEST(ReplyBuilderTest, DoubleRoundTrips) {
  std::string out;
  ReplyBuilder rb(&out, 3);
  const double d = 0.30000000000000004;
  rb.Double(d);
  ASSERT_GE(out.size(), 3u);
  EXPECT_EQ(std::stod(out.substr(1, out.size() - 3)), d);
}

TEST(ReplyBuilderTest, Verbatim) {
  std::string out3;
  ReplyBuilder rb3(&out3, 3);
  rb3.Verbatim("hello");
  rb3.Verbatim("");
  EXPECT_EQ(out3, "=9\r\ntxt:hello\r\n=4\r\ntxt:\r\n");
  std::string out2;
  ReplyBuilder rb2(&out2, 2);
  rb2.Verbatim("hello");
  rb2.Verbatim("a\r\nb");
  EXPECT_EQ(out2, "$5\r\nhello\r\n$4\r\na\r\nb\r\n");
}

TEST(ReplyBuilderTest, SwitchingProtocolMidStream) {
  std::string out;
  ReplyBuilder rb(&out);
  rb.Null();
  rb.set_protocol(3);
  rb.Null();
  rb.MapHeader(1);
  rb.Bulk("k");
  rb.Boolean(true);
  EXPECT_EQ(out, "$-1\r\n_\r\n%1\r\n$1\r\nk\r\n#t\r\n");
}

}  // namespace
}  // namespace tollgate::protocol
