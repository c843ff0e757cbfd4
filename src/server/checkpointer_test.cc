#include "server/checkpointer.h"

#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "tollgate/limiter.h"
#include "tollgate/testing/fake_clock.h"

namespace tollgate::server {
namespace {

using std::chrono::seconds;

Decimal D(const char* s) { return *Decimal::ParsePositive(s, "test", kMaxCapacity); }
BucketParams P(const char* cap, const char* rate) { return {D(cap), D(rate)}; }

// Debt in whole tokens (the snapshot's debt is in 1e-18 tokens).
double Tokens(const BucketSnapshot& s) {
  return (static_cast<double>(s.debt_hi) * 18446744073709551616.0 +
          static_cast<double>(s.debt_lo)) /
         1e18;
}

// A store of bucket checkpoints, applied as DurableStore applies them (deletions, then puts),
// whose writes fail while fail_writes > 0.
struct FakeStore {
  absl::Status Write(const std::vector<BucketSnapshot>& changed,
                     const std::vector<std::pair<std::string, std::string>>& dropped) {
    ++attempts;
    for (const BucketSnapshot& s : changed) {
      EXPECT_EQ(std::count(dropped.begin(), dropped.end(), std::pair(s.table, s.key)), 0)
          << "a key is both written and deleted: " << s.key;
    }
    if (fail_writes > 0) {
      --fail_writes;
      return absl::UnavailableError("disk full");
    }
    for (const auto& tk : dropped) rows.erase(tk);
    for (const BucketSnapshot& s : changed) rows[{s.table, s.key}] = s;
    return absl::OkStatus();
  }
  std::optional<double> Debt(const std::string& table, const std::string& key) const {
    auto it = rows.find({table, key});
    if (it == rows.end()) return std::nullopt;
    return Tokens(it->second);
  }

  int fail_writes = 0;
  int attempts = 0;
  std::map<std::pair<std::string, std::string>, BucketSnapshot> rows;
};

class CheckpointerTest : public ::testing::Test {
 protected:
  Checkpointer::Writer Writer() {
    return
        [this](const auto& changed, const auto& dropped) { return store_.Write(changed, dropped); };
  }
  FakeClock clock_;
  Throttler throttler_{{.clock = &clock_}};
  PolicyEngine policies_{{.clock = &clock_}};
  FakeStore store_;
};

// Regression (issue 9): CollectChanges clears the changed marks, so a bucket whose checkpoint
// write failed was never written again, and a restart handed it a full bucket.
TEST_F(CheckpointerTest, FailedWriteIsCarriedToTheNextAttempt) {
  Checkpointer c(throttler_, policies_, Writer(), {.start_thread = false});
  ASSERT_TRUE(throttler_.Check("a", P("10", "0.001"), D("3"))->allowed);
  store_.fail_writes = 1;
  EXPECT_EQ(c.RunOnce().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(c.pending(), 1u);
  EXPECT_FALSE(store_.Debt("t", "a").has_value());
  // Nothing changed since; the next attempt still writes a.
  EXPECT_TRUE(c.RunOnce().ok());
  EXPECT_EQ(store_.Debt("t", "a"), 3.0);
  EXPECT_EQ(c.pending(), 0u);
  // And once written, it is not written again.
  const int attempts = store_.attempts;
  EXPECT_TRUE(c.RunOnce().ok());
  EXPECT_EQ(store_.attempts, attempts);
}

// Per bucket, the latest outcome wins: a newer snapshot replaces an older one, a drop replaces a
// snapshot, a snapshot replaces a drop. Policy layers' buckets are carried the same way.
TEST_F(CheckpointerTest, LatestOutcomePerBucketIsWritten) {
  PolicySpec p;
  p.name = "p";
  p.layers = {{"user", "u:{user}", P("10", "1")}};
  ASSERT_TRUE(policies_.Install({p}).ok());
  Checkpointer c(throttler_, policies_, Writer(), {.start_thread = false});
  const BucketParams slow = P("10", "0.001");
  // "gone" and "back" are in the store before the outage.
  ASSERT_TRUE(throttler_.Check("gone", P("1", "1"), D("1"))->allowed);
  ASSERT_TRUE(throttler_.Check("back", P("1", "1"), D("1"))->allowed);
  ASSERT_TRUE(c.RunOnce().ok());
  ASSERT_TRUE(store_.Debt("t", "gone").has_value());

  store_.fail_writes = 3;
  ASSERT_TRUE(throttler_.Check("newer", slow, D("1"))->allowed);
  ASSERT_TRUE(throttler_.Check("dropped", P("1", "1"), D("1"))->allowed);
  std::vector<Field> ann = {{"user", "ann"}};
  ASSERT_TRUE(policies_.Check("p", ann, D("4"))->allowed);
  EXPECT_FALSE(c.RunOnce().ok());
  clock_.Advance(seconds(1));  // gone, back and dropped refill and are swept
  ASSERT_TRUE(throttler_.Check("newer", slow, D("2"))->allowed);  // now owes 2.999
  EXPECT_FALSE(c.RunOnce().ok());
  ASSERT_TRUE(throttler_.Check("back", P("1", "0.5"), D("1"))->allowed);  // used again
  EXPECT_FALSE(c.RunOnce().ok());
  EXPECT_EQ(c.pending(), 5u);  // newer, dropped, gone, back, p's ann

  EXPECT_TRUE(c.RunOnce().ok());
  EXPECT_NEAR(store_.Debt("t", "newer").value_or(-1), 2.999, 1e-9);
  EXPECT_FALSE(store_.Debt("t", "dropped").has_value());
  EXPECT_FALSE(store_.Debt("t", "gone").has_value());
  EXPECT_EQ(store_.Debt("t", "back"), 1.0);
  // As collected by the first failed attempt (the store stamps it with the time of the write
  // that succeeds, so a restart would see it owing up to the outage's refill more: tighter).
  EXPECT_EQ(store_.Debt("p:p/user/u:{user}", "u:ann"), 4.0);
  EXPECT_EQ(c.pending(), 0u);
}

// While writes keep failing, pending drops stop at the cap; pending snapshots are one per live
// bucket whatever the cap.
TEST_F(CheckpointerTest, PendingDropsAreBounded) {
  Checkpointer c(throttler_, policies_, Writer(), {.start_thread = false, .max_pending_drops = 2});
  store_.fail_writes = 1'000;
  for (int round = 0; round < 5; ++round) {
    ASSERT_TRUE(throttler_.Check("k" + std::to_string(round), P("1", "1"), D("1"))->allowed);
    ASSERT_TRUE(throttler_.Check("live", P("100", "0.01"), D("1"))->allowed);
    EXPECT_FALSE(c.RunOnce().ok());
    clock_.Advance(seconds(1));  // k<round> refills and is dropped at the next run
  }
  EXPECT_FALSE(c.RunOnce().ok());
  EXPECT_EQ(c.pending(), 3u);  // live, and two drops
  EXPECT_EQ(c.discarded_drops(), 3u);
  store_.fail_writes = 0;
  EXPECT_TRUE(c.RunOnce().ok());
  // Five tokens taken one second apart, collected with the last one: 0.04 refilled.
  EXPECT_NEAR(store_.Debt("t", "live").value_or(-1), 4.96, 1e-9);
}

}  // namespace
}  // namespace tollgate::server
