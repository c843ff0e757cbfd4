// Replay logs: good rows, and every kind of bad row named by line and column.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "tollgate/simulate.h"

namespace tollgate::sim {
namespace {

using ::testing::HasSubstr;

std::string Err(std::string_view text, ReplayFormat f = ReplayFormat::kAuto) {
  auto r = ParseReplayLog(text, "log", f);
  EXPECT_FALSE(r.ok()) << text;
  return r.ok() ? "" : std::string(r.status().message());
}

TEST(ReplayTest, JsonLines) {
  auto rows = ParseReplayLog(
      "{\"timestamp\": 100.5, \"user\": \"ann\", \"type\": \"text\", \"n\": 7}\n"
      "\n"
      "{\"timestamp\": 101, \"user\": \"bob\", \"cost\": 2.5, \"ip\": null}\n"
      "{\"timestamp\": 101, \"user\": \"bob\", \"cost\": \"0.25\"}\r\n",
      "log", ReplayFormat::kAuto);
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 3u);
  EXPECT_EQ((*rows)[0].t, 0);
  EXPECT_EQ((*rows)[0].line, 1);
  EXPECT_FALSE((*rows)[0].cost);
  EXPECT_EQ((*rows)[0].fields.size(), 3u);  // n, type, user (integers become text)
  EXPECT_DOUBLE_EQ((*rows)[1].t, 0.5);
  EXPECT_EQ((*rows)[1].line, 3);
  EXPECT_EQ((*rows)[1].cost->ToString(), "2.5");
  EXPECT_EQ((*rows)[1].fields.size(), 1u);  // null = absent
  EXPECT_EQ((*rows)[2].cost->ToString(), "0.25");
}

TEST(ReplayTest, Csv) {
  auto rows = ParseReplayLog(
      "timestamp,user,cost,type\n"
      "5,ann,,text\n"
      "5.25,\"b,\"\"o\"\"b\",3,\n",
      "log", ReplayFormat::kAuto);
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[0].t, 0);
  EXPECT_FALSE((*rows)[0].cost);
  ASSERT_EQ((*rows)[0].fields.size(), 2u);
  EXPECT_EQ((*rows)[0].fields[0].first, "user");
  EXPECT_DOUBLE_EQ((*rows)[1].t, 0.25);
  EXPECT_EQ((*rows)[1].cost->ToString(), "3");
  ASSERT_EQ((*rows)[1].fields.size(), 1u);  // empty type = absent
  EXPECT_EQ((*rows)[1].fields[0].second, "b,\"o\"b");
}

TEST(ReplayTest, CsvErrorsNameLineAndColumn) {
  EXPECT_EQ(Err("user,type\nann,text\n"), "log:1:1: the header has no 'timestamp' column");
  EXPECT_THAT(Err("timestamp,user,user\n"), HasSubstr("log:1:16: duplicate column 'user'"));
  EXPECT_THAT(Err("timestamp,User\n"), HasSubstr("log:1:11: column 'User' is not a field name"));
  EXPECT_THAT(Err("timestamp,user\n1,ann,extra\n"),
              HasSubstr("log:2:7: expected 2 columns, got 3"));
  EXPECT_THAT(Err("timestamp,user\n1\n"), HasSubstr("log:2:2: expected 2 columns, got 1"));
  EXPECT_THAT(Err("timestamp,user\nann,1\n"),
              HasSubstr("log:2:1: timestamp must be a non-negative number of seconds, got 'ann'"));
  EXPECT_THAT(Err("user,timestamp\nann,-1\n"), HasSubstr("log:2:5: timestamp must be"));
  EXPECT_THAT(Err("timestamp,user\n2,a\n1,b\n"),
              HasSubstr("log:3:1: timestamp 1 is before the previous row's 2"));
  EXPECT_THAT(Err("timestamp,cost\n1,0\n"), HasSubstr("log:2:3: cost must be a positive decimal"));
  EXPECT_THAT(Err("timestamp,user\n1,\"ann\n"), HasSubstr("log:2:3: unterminated quoted field"));
  EXPECT_THAT(Err("timestamp,user\n1,\"a\"b\n"),
              HasSubstr("log:2:6: unexpected character after a quoted field"));
  EXPECT_THAT(Err("", ReplayFormat::kCsv), HasSubstr("log:1:1: empty log"));
}

TEST(ReplayTest, JsonErrorsNameLineAndColumn) {
  EXPECT_THAT(Err("{\"timestamp\": 1}\n{\"timestamp\": 2,}\n"),
              HasSubstr("log:2:17: not valid JSON"));
  EXPECT_THAT(Err("{\"timestamp\": 1}\n[1]\n", ReplayFormat::kJsonLines),
              HasSubstr("log:2:1: expected a JSON object"));
  EXPECT_THAT(Err("{\"user\": \"a\"}\n"), HasSubstr("log:1:1: missing key 'timestamp'"));
  EXPECT_THAT(Err("{\"user\": \"a\", \"timestamp\": \"x\"}\n"),
              HasSubstr("log:1:15: timestamp must be a non-negative number of seconds, got \"x\""));
  EXPECT_THAT(Err("{\"timestamp\": 3}\n{\"timestamp\": 2}\n"),
              HasSubstr("log:2:2: timestamp 2 is before the previous row's 3"));
  EXPECT_THAT(Err("{\"timestamp\": 1, \"cost\": -1}\n"), HasSubstr("log:1:18: cost must be"));
  EXPECT_THAT(Err("{\"timestamp\": 1, \"cost\": true}\n"),
              HasSubstr("log:1:18: cost must be a number"));
  EXPECT_THAT(Err("{\"timestamp\": 1, \"Bad\": \"x\"}\n"),
              HasSubstr("log:1:18: key 'Bad' is not a field name"));
  EXPECT_THAT(Err("{\"timestamp\": 1, \"user\": [1]}\n"),
              HasSubstr("log:1:18: field 'user' must be a string or an integer, got [1]"));
}

}  // namespace
}  // namespace tollgate::sim
