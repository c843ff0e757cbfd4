#include <malloc.h>

#include <atomic>
#include <random>
#include <thread>
#include <vector>

#include "core/bucket_table.h"
#include "gtest/gtest.h"
#include "tollgate/limiter.h"
#include "tollgate/testing/fake_clock.h"

namespace tollgate {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;

Decimal D(const char* s) { return *Decimal::ParsePositive(s, "test", kMaxCapacity); }
BucketParams P(const char* cap, const char* rate) { return {D(cap), D(rate)}; }

class ThrottlerTest : public ::testing::Test {
 protected:
  Decision Check(const std::string& key, const BucketParams& p, const char* cost = "1") {
    auto d = t_.Check(key, p, D(cost));
    EXPECT_TRUE(d.ok()) << d.status();
    return d.ok() ? *d : Decision{};
  }
  FakeClock clock_;
  Throttler t_{{.clock = &clock_}};
};

TEST_F(ThrottlerTest, BurstThenExactRefill) {
  const BucketParams p = P("5", "1");
  for (int i = 0; i < 5; ++i) {
    Decision d = Check("k", p);
    EXPECT_TRUE(d.allowed) << i;
    EXPECT_EQ(d.remaining, static_cast<uint64_t>(4 - i));
    EXPECT_EQ(d.retry_after, Duration(0));
    EXPECT_EQ(d.reset_after, seconds(i + 1));
  }
  Decision denied = Check("k", p);
  EXPECT_FALSE(denied.allowed);
  EXPECT_EQ(denied.remaining, 0u);
  EXPECT_EQ(denied.retry_after, seconds(1));
  EXPECT_EQ(denied.reset_after, seconds(5));
  clock_.Advance(milliseconds(999));
  EXPECT_FALSE(Check("k", p).allowed);
  clock_.Advance(milliseconds(1));
  EXPECT_TRUE(Check("k", p).allowed);
  EXPECT_EQ(t_.allowed_count(), 6u);
  EXPECT_EQ(t_.denied_count(), 2u);
  EXPECT_EQ(t_.overflow_count(), 0u);
}

TEST_F(ThrottlerTest, DeniedRequestConsumesNothing) {
  const BucketParams p = P("2", "1");
  EXPECT_TRUE(Check("k", p).allowed);
  EXPECT_TRUE(Check("k", p).allowed);
  for (int i = 0; i < 100; ++i) EXPECT_FALSE(Check("k", p).allowed);
  clock_.Advance(seconds(1));
  EXPECT_TRUE(Check("k", p).allowed);  // 100 denials did not dig a deeper hole
}

TEST_F(ThrottlerTest, FractionalRateAndCost) {
  const BucketParams p = P("1", "0.1");
  EXPECT_TRUE(Check("k", p).allowed);
  Decision d = Check("k", p);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after, seconds(10));  // exactly 1 / 0.1 s
  clock_.Advance(seconds(10) - nanoseconds(1));
  EXPECT_FALSE(Check("k", p).allowed);
  clock_.Advance(nanoseconds(1));
  EXPECT_TRUE(Check("k", p).allowed);

  const BucketParams half = P("1", "1");
  EXPECT_TRUE(Check("h", half, "0.5").allowed);
  Decision second = Check("h", half, "0.5");
  EXPECT_TRUE(second.allowed);
  EXPECT_EQ(second.remaining, 0u);
  Decision third = Check("h", half, "0.5");
  EXPECT_FALSE(third.allowed);
  EXPECT_EQ(third.retry_after, milliseconds(500));
}

TEST_F(ThrottlerTest, CostAboveCapacityIsNeverAndConsumesNothing) {
  const BucketParams p = P("5", "1");
  Decision d = Check("k", p, "6");
  EXPECT_FALSE(d.allowed);
  EXPECT_FALSE(d.retry_after.has_value());
  EXPECT_EQ(d.remaining, 5u);
  EXPECT_TRUE(Check("k", p, "5").allowed);  // the bucket is still full
}

TEST_F(ThrottlerTest, NoCreditAccruesWhileFull) {
  const BucketParams p = P("3", "1");
  clock_.Advance(std::chrono::hours(1));
  int admitted = 0;
  for (int i = 0; i < 10; ++i) admitted += Check("k", p).allowed;
  EXPECT_EQ(admitted, 3);
}

// Polling faster than 1/rate must not lose the fractional part of elapsed time.
// (With capacity > 1 the bucket is never full while polled, so all refill counts.)
TEST_F(ThrottlerTest, FastPollingLosesNoFraction) {
  const BucketParams p = P("5", "3");
  int admitted = 0;
  for (int ms = 0; ms <= 10'000; ++ms) {
    admitted += Check("k", p).allowed;
    clock_.Advance(milliseconds(1));
  }
  // 5 (the initial burst) + 3/s x 10 s: one token every 333.33 ms, fractions carried exactly.
  EXPECT_EQ(admitted, 35);
}

TEST_F(ThrottlerTest, ClockSteppingBackwardsNeitherStarvesNorGrants) {
  const BucketParams p = P("1", "1");
  EXPECT_TRUE(Check("k", p).allowed);
  clock_.StepSteady(-std::chrono::hours(1));
  EXPECT_FALSE(Check("k", p).allowed);  // the step granted nothing
  clock_.Advance(seconds(1));
  EXPECT_TRUE(Check("k", p).allowed);  // and did not cost an hour of refill
  // Another step back: observed as zero elapsed time, then time runs normally from there.
  clock_.StepSteady(-seconds(30));
  EXPECT_FALSE(Check("k", p).allowed);
  clock_.Advance(milliseconds(999));
  EXPECT_FALSE(Check("k", p).allowed);
  clock_.Advance(milliseconds(1));
  EXPECT_TRUE(Check("k", p).allowed);
}

TEST_F(ThrottlerTest, KeysAreIndependent) {
  const BucketParams p = P("1", "1");
  EXPECT_TRUE(Check("a", p).allowed);
  EXPECT_FALSE(Check("a", p).allowed);
  EXPECT_TRUE(Check("b", p).allowed);
  EXPECT_TRUE(Check(std::string("a\0x", 3), p).allowed);
}

TEST_F(ThrottlerTest, NewParametersKeepTheDebt) {
  EXPECT_TRUE(Check("k", P("10", "1"), "10").allowed);  // 10 tokens of debt
  clock_.Advance(seconds(1));                           // 9 left to refill
  Decision d = Check("k", P("10", "3"), "1");           // now refilling at 3/s
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.remaining, 0u);
  EXPECT_EQ(d.reset_after, nanoseconds(3'333'333'334));  // 10 tokens of debt at 3/s, rounded up
}

TEST_F(ThrottlerTest, BadInputChangesNothing) {
  EXPECT_EQ(t_.Check("", P("1", "1"), D("1")).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(t_.Check("k", {Decimal{0}, D("1")}, D("1")).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(t_.Check("k", {D("1"), Decimal{0}}, D("1")).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(t_.Check("k", P("1", "1"), Decimal{0}).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto huge = t_.Check("k", {Decimal::Units(10'000'000'001), D("1")}, D("1"));
  EXPECT_EQ(huge.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(t_.bucket_count(), 0u);
}

TEST_F(ThrottlerTest, FullBucketsAreDropped) {
  const BucketParams p = P("2", "1");
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(Check("k" + std::to_string(i), p).allowed);
  EXPECT_EQ(t_.bucket_count(), 100u);
  clock_.Advance(milliseconds(999));
  EXPECT_EQ(t_.Sweep(), 0u);
  clock_.Advance(milliseconds(1));
  EXPECT_EQ(t_.Sweep(), 100u);
  EXPECT_EQ(t_.bucket_count(), 0u);
}

TEST(ThrottlerBoundTest, DenyAtMaxBuckets) {
  FakeClock clock;
  Throttler t({.clock = &clock, .max_buckets = 3, .overflow = OverflowPolicy::kDeny});
  const BucketParams p = P("2", "1");
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(t.Check("k" + std::to_string(i), p, D("1"))->allowed);
  auto over = t.Check("new", p, D("1"));
  EXPECT_FALSE(over->allowed);
  EXPECT_EQ(over->retry_after, seconds(1));
  EXPECT_TRUE(t.Check("k0", p, D("1"))->allowed);  // tracked keys go on working
  EXPECT_EQ(t.bucket_count(), 3u);
  clock.Advance(
      seconds(2));  // everything refilled; the sweep (every second in the server) frees it
  EXPECT_EQ(t.Sweep(), 3u);
  EXPECT_TRUE(t.Check("new", p, D("1"))->allowed);
  EXPECT_EQ(t.bucket_count(), 1u);
}

TEST(ThrottlerBoundTest, FailOpenAtMaxBuckets) {
  FakeClock clock;
  Throttler t({.clock = &clock, .max_buckets = 1, .overflow = OverflowPolicy::kFailOpen});
  const BucketParams p = P("1", "1");
  EXPECT_TRUE(t.Check("a", p, D("1"))->allowed);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(t.Check("b", p, D("1"))->allowed);  // untracked
  EXPECT_FALSE(t.Check("a", p, D("1"))->allowed);
  EXPECT_EQ(t.bucket_count(), 1u);
}

// Exact retry_after: retrying at exactly that moment succeeds, one nanosecond earlier fails.
TEST(ThrottlerPropertyTest, RetryAfterIsExact) {
  std::mt19937_64 rng(7);
  for (int round = 0; round < 2000; ++round) {
    FakeClock clock;
    Throttler t({.clock = &clock});
    const BucketParams p{Decimal{1 + rng() % 20'000'000'000ull},  // up to 20 tokens
                         Decimal{1'000 + rng() % 50'000'000'000ull}};
    const Decimal cost{1 + rng() % p.capacity.nanos};
    Decision d;
    do {
      d = *t.Check("k", p, cost);
    } while (d.allowed);
    ASSERT_TRUE(d.retry_after.has_value());
    ASSERT_GT(*d.retry_after, Duration(0));
    clock.Advance(*d.retry_after - nanoseconds(1));
    ASSERT_FALSE(t.Check("k", p, cost)->allowed) << round;
    clock.Advance(nanoseconds(1));
    ASSERT_TRUE(t.Check("k", p, cost)->allowed) << round;
  }
}

// Over any window W a key admits at most capacity + rate x W tokens.
TEST(ThrottlerPropertyTest, WindowBound) {
  std::mt19937_64 rng(11);
  for (int round = 0; round < 30; ++round) {
    FakeClock clock;
    Throttler t({.clock = &clock});
    const BucketParams p{Decimal{1'000'000'000ull * (1 + rng() % 10) + rng() % 1'000'000'000},
                         Decimal{1 + rng() % 5'000'000'000ull}};
    struct Admit {
      int64_t t_ns;
      uint64_t cost;
    };
    std::vector<Admit> admitted;
    int64_t now = 0;
    for (int i = 0; i < 1500; ++i) {
      const int64_t step =
          static_cast<int64_t>(rng() % 4 == 0 ? rng() % 2'000'000'000 : rng() % 50'000'000);
      clock.Advance(nanoseconds(step));
      now += step;
      const Decimal cost{1 + rng() % (p.capacity.nanos / 2 + 1)};
      if (t.Check("k", p, cost)->allowed) admitted.push_back({now, cost.nanos});
    }
    ASSERT_GT(admitted.size(), 10u);
    for (size_t i = 0; i < admitted.size(); ++i) {
      core::u128 sum = 0;
      for (size_t j = i; j < admitted.size(); ++j) {
        sum += admitted[j].cost;
        const core::u128 w = static_cast<core::u128>(admitted[j].t_ns - admitted[i].t_ns);
        // tokens in nanos x 1e9: capacity x 1e9 + rate(nanos/s) x W(ns)
        const core::u128 bound =
            static_cast<core::u128>(p.capacity.nanos) * 1'000'000'000 + w * p.rate.nanos;
        ASSERT_LE(sum * 1'000'000'000, bound) << "round " << round << " window " << i << ".." << j;
      }
    }
  }
}

// 10 concurrent cost-1 requests on capacity 5 admit exactly 5.
TEST(ThrottlerConcurrencyTest, ExactlyCapacityUnderConcurrency) {
  FakeClock clock;  // frozen: no refill during the race
  Throttler t({.clock = &clock});
  const BucketParams p = P("5", "0.001");
  for (int round = 0; round < 200; ++round) {
    std::atomic<int> admitted{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> threads;
    const std::string key = "k" + std::to_string(round);
    for (int i = 0; i < 10; ++i) {
      threads.emplace_back([&] {
        while (!go.load()) {
        }
        if (t.Check(key, p, D("1"))->allowed) admitted++;
      });
    }
    go = true;
    for (auto& th : threads) th.join();
    ASSERT_EQ(admitted.load(), 5) << round;
  }
}

TEST_F(ThrottlerTest, CheckpointRoundTrip) {
  const BucketParams p = P("10", "1");
  EXPECT_TRUE(Check("a", p, "7").allowed);
  EXPECT_TRUE(Check("b", p, "2").allowed);
  std::vector<BucketSnapshot> snaps;
  t_.CollectChanges([&](const BucketSnapshot& s) { snaps.push_back(s); },
                    [](std::string_view, std::string_view) {});
  ASSERT_EQ(snaps.size(), 2u);
  // Nothing changed since: the next collection is empty.
  int again = 0;
  t_.CollectChanges([&](const BucketSnapshot&) { ++again; },
                    [](std::string_view, std::string_view) {});
  EXPECT_EQ(again, 0);

  FakeClock clock2;
  Throttler restored({.clock = &clock2});
  for (const auto& s : snaps) EXPECT_TRUE(restored.Restore(s));
  auto d = restored.Check("a", p, D("4"));
  EXPECT_FALSE(d->allowed);  // 7 were used; 3 remain
  EXPECT_EQ(d->remaining, 3u);
  EXPECT_TRUE(restored.Check("a", p, D("3"))->allowed);

  // Dropped buckets are reported once.
  clock_.Advance(seconds(10));
  t_.Sweep();
  std::vector<std::string> dropped;
  t_.CollectChanges([](const BucketSnapshot&) {},
                    [&](std::string_view table, std::string_view key) {
                      EXPECT_EQ(table, "t");
                      dropped.emplace_back(key);
                    });
  EXPECT_EQ(dropped.size(), 2u);
}

// Memory bound: at most 64 bytes per live bucket plus its key bytes.
TEST(ThrottlerMemoryTest, AtMost64BytesPerBucketPlusKey) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer replaces malloc; mallinfo2 does not see its heap";
#endif
  FakeClock clock;
  Throttler t({.clock = &clock, .max_buckets = 2'000'000});
  const BucketParams p = P("10", "1");
  constexpr int kN = 200'000;
  size_t key_bytes = 0;
  std::vector<std::string> keys;
  for (int i = 0; i < kN; ++i) keys.push_back("user:" + std::to_string(1'000'000 + i));
  for (const auto& k : keys) key_bytes += k.size();
  malloc_trim(0);
  const size_t before = mallinfo2().uordblks;
  for (const auto& k : keys) ASSERT_TRUE(t.Check(k, p, D("1"))->allowed);
  const size_t after = mallinfo2().uordblks;
  const double per_bucket = static_cast<double>(after - before - key_bytes) / kN;
  std::printf("bytes per live bucket, excluding %zu key bytes each: %.1f\n", key_bytes / kN,
              per_bucket);
  EXPECT_LE(per_bucket, 64.0);
}

}  // namespace
}  // namespace tollgate
