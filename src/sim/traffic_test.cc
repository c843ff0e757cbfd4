// The traffic models emit what their parameters say, in time order.
#include "sim/traffic.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

namespace tollgate::sim {
namespace {

// Counts per kind over `seconds` for `users` users.
std::map<std::string, double> Count(const TrafficParams& p, int users, double seconds) {
  const std::vector<std::string> kinds = TrafficKinds(p.kind);
  std::map<std::string, double> out;
  const int64_t end = static_cast<int64_t>(seconds * 1e9);
  for (int u = 0; u < users; ++u) {
    TrafficSource src(&p, 1000 + u, 0);
    int64_t last = 0;
    while (src.next() < end) {
      EXPECT_GE(src.next(), last);
      last = src.next();
      out[kinds[src.Pop()]] += 1;
    }
  }
  return out;
}

TEST(TrafficTest, GamingTickAndCombos) {
  TrafficParams p = *BuiltinTraffic("gaming");
  p.tick_rate = 20;
  p.combos_per_min = 6;
  p.combo_size = 3;
  auto c = Count(p, 10, 3600);
  EXPECT_NEAR(c["input"], 10 * 20 * 3600, 10);  // a fixed tick: exact
  EXPECT_NEAR(c["ability"], 10 * 60 * 6 * 3, 10 * 60 * 6 * 3 * 0.1);
}

TEST(TrafficTest, ChatRates) {
  TrafficParams p = *BuiltinTraffic("chat");
  p.message_mean_s = 5;
  p.paste_share = 0.1;
  p.paste_burst = 3;
  p.channel_switch_mean_s = 600;
  p.history_messages = 4;
  auto c = Count(p, 20, 3600);
  const double blocks = c["text"] + c["code_paste"] / 3;
  EXPECT_NEAR(blocks, 20 * 3600 / 5.0, 20 * 3600 / 5.0 * 0.05);
  EXPECT_NEAR(c["code_paste"] / 3 / blocks, 0.1, 0.02);
  // One channel entry at the start, then one per 600 s on average.
  EXPECT_NEAR(c["history"], 20 * 4 * (1 + 3600 / 600.0), 20 * 4 * 7 * 0.2);
  EXPECT_GT(c["cursor"], blocks);  // typing shows before most messages
}

TEST(TrafficTest, StreamingFillThenSteady) {
  TrafficParams p = *BuiltinTraffic("streaming");
  p.seeks_per_min = 0;
  p.quality_per_min = 0;
  p.fill_segments = 10;
  p.fill_rate = 10;
  p.segment_s = 2;
  p.heartbeat_s = 10;
  auto c = Count(p, 5, 600);
  // 10 segments in the first second, then one every 2 s.
  EXPECT_NEAR(c["segment"], 5 * (10 + (600 - 0.9) / 2), 5 * 1.0);
  EXPECT_NEAR(c["heartbeat"], 5 * 59, 5 * 1.0);
  p.seeks_per_min = 2;
  p.quality_per_min = 1;
  auto d = Count(p, 20, 3600);
  EXPECT_NEAR(d["seek"], 20 * 60 * 2, 20 * 60 * 2 * 0.1);
  EXPECT_NEAR(d["quality"], 20 * 60 * 1, 20 * 60 * 0.15);
  // Every seek refills the buffer: more segments than without seeks.
  EXPECT_GT(d["segment"], 20 * (10 + 3600 / 2.0) + d["seek"] * 5);
}

TEST(TrafficTest, SameSeedSameStream) {
  const TrafficParams p = *BuiltinTraffic("chat");
  TrafficSource a(&p, 5, 100), b(&p, 5, 100), c(&p, 6, 100);
  bool differs = false;
  for (int i = 0; i < 1000; ++i) {
    ASSERT_EQ(a.next(), b.next());
    differs |= a.next() != c.next();
    EXPECT_EQ(a.Pop(), b.Pop());
    c.Pop();
  }
  EXPECT_TRUE(differs);
}

TEST(TrafficTest, Validation) {
  TrafficParams p = *BuiltinTraffic("gaming");
  EXPECT_TRUE(ValidateTraffic(p).ok());
  p.combo_size = 2.5;
  EXPECT_NE(ValidateTraffic(p).message().find("combo_size"), std::string::npos);
  p = *BuiltinTraffic("gaming");
  p.types["text"] = "x";
  EXPECT_NE(ValidateTraffic(p).message().find("'text' is not a message kind"), std::string::npos);
  EXPECT_FALSE(BuiltinTraffic("video").ok());
}

}  // namespace
}  // namespace tollgate::sim
