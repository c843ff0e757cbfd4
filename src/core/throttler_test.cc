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
    // Any parameters, however slow to refill: this checks the arithmetic.
    Throttler t({.clock = &clock, .max_refill_horizon = Duration::max()});
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
    Throttler t({.clock = &clock, .max_refill_horizon = Duration::max()});
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

// ---- Issue 9: a client must not wedge the THROTTLE table ----

// Parameters that take ~31 years to refill are refused: an exhausted bucket is neither swept nor
// evicted, so a few thousand of them would deny every new key for decades.
TEST(ThrottlerHorizonTest, RefillSlowerThanADayIsInvalidAndChangesNothing) {
  FakeClock clock;
  Throttler t({.clock = &clock, .max_buckets = 3000});
  auto d = t.Check("k", P("10", "0.000000001"), D("1"));
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(d.status().message(),
            "capacity/rate = 10000000000 s to refill exceeds the maximum refill horizon of 86400 "
            "s; raise rate_per_sec or lower capacity");
  EXPECT_EQ(t.bucket_count(), 0u);
  EXPECT_EQ(t.allowed_count() + t.denied_count(), 0u);  // bad input is not counted
  // One nanosecond past the horizon is refused too; the message rounds up, never down.
  auto over = t.Check("k", P("86400.000000001", "1"), D("1"));
  EXPECT_EQ(over.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(over.status().message().find("= 86400.000000001 s"), std::string_view::npos)
      << over.status();
  EXPECT_EQ(ValidateRefillHorizon(P("1", "3")), absl::OkStatus());
  EXPECT_NE(ValidateRefillHorizon(P("1", "0.00001")).message().find("= 100000 s"),
            std::string_view::npos);
  EXPECT_NE(ValidateRefillHorizon(P("100000", "1.1")).message().find("= 90909.090909091 s"),
            std::string_view::npos);
  EXPECT_EQ(t.bucket_count(), 0u);
  // Exactly 24 h is accepted.
  EXPECT_TRUE(t.Check("k", P("86400", "1"), D("1"))->allowed);
  EXPECT_EQ(t.Check("j", P("1", "0.000011574"), D("1")).status().code(),
            absl::StatusCode::kInvalidArgument);                                    // 86400.55 s
  EXPECT_EQ(ValidateRefillHorizon(P("0.000864", "0.00000001")), absl::OkStatus());  // 86400 s
  EXPECT_EQ(t.bucket_count(), 1u);
}

TEST(ThrottlerHorizonTest, HorizonIsAnOption) {
  FakeClock clock;
  Throttler hour({.clock = &clock, .max_refill_horizon = std::chrono::hours(1)});
  EXPECT_TRUE(hour.Check("k", P("3600", "1"), D("1"))->allowed);
  auto d = hour.Check("k", P("3601", "1"), D("1"));
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(d.status().message().find("horizon of 3600 s"), std::string_view::npos);
  Throttler year({.clock = &clock, .max_refill_horizon = std::chrono::hours(24 * 366)});
  EXPECT_TRUE(year.Check("k", P("10", "0.000001"), D("1"))->allowed);  // 115.7 days
}

// The horizon is for client-supplied parameters: layered checks carry operator policies (weekly
// quotas and the like), which may refill as slowly as they like.
TEST(ThrottlerHorizonTest, LayeredChecksHaveNoHorizon) {
  FakeClock clock;
  Throttler t({.clock = &clock});
  std::vector<LayerCheck> weekly = {{"week", "u", P("1000", "0.001653439"), false}};  // 7 days
  auto d = t.CheckLayers(weekly, D("1"));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_TRUE(d->allowed);
  EXPECT_EQ(ValidateLayerChecks(weekly, D("1")), absl::OkStatus());
}

// Checkpoints written before the horizon existed may owe decades: they are not reinstated (the
// wedge must not survive a restart), and the checkpoint is told to forget them.
TEST(ThrottlerHorizonTest, RestoreForgetsDebtsBeyondTheHorizon) {
  FakeClock clock;
  Throttler old({.clock = &clock, .max_refill_horizon = Duration::max()});
  ASSERT_TRUE(old.Check("wedge", P("10", "0.000000001"), D("10"))->allowed);
  ASSERT_TRUE(old.Check("fine", P("10", "1"), D("10"))->allowed);
  std::vector<BucketSnapshot> snaps;
  old.CollectChanges([&](const BucketSnapshot& s) { snaps.push_back(s); },
                     [](std::string_view, std::string_view) {});
  ASSERT_EQ(snaps.size(), 2u);
  Throttler t({.clock = &clock});
  for (const auto& s : snaps) EXPECT_TRUE(t.Restore(s));
  EXPECT_EQ(t.bucket_count(), 1u);
  EXPECT_FALSE(t.Check("fine", P("10", "1"), D("1"))->allowed);  // its debt was kept
  std::vector<std::string> dropped;
  t.CollectChanges([](const BucketSnapshot&) {},
                   [&](std::string_view, std::string_view key) { dropped.emplace_back(key); });
  EXPECT_EQ(dropped, std::vector<std::string>{"wedge"});
}

// Keys of the THROTTLE table that share one shard (eviction samples the new key's shard).
std::vector<std::string> KeysInOneShard(size_t n, std::string_view prefix) {
  auto shard = [](std::string_view k) {
    return (core::BucketTable::Hash(k) >> 52) % core::BucketTable::kShards;
  };
  std::vector<std::string> out;
  const std::string first = std::string(prefix) + "0";
  for (int i = 0; out.size() < n; ++i) {
    std::string k = std::string(prefix) + std::to_string(i);
    if (shard(k) == shard(first)) out.push_back(std::move(k));
  }
  return out;
}

// The scenario with parameters within the horizon: 3000 keys hold buckets with 7 of 10
// tokens, filling the table. Fresh keys go on being served, each by evicting a bucket.
TEST(ThrottlerEvictionTest, FreshKeyIsServedWhenTheTableIsFullOfBucketsWithTokens) {
  FakeClock clock;
  Throttler t({.clock = &clock, .max_buckets = 3000});
  const BucketParams p = P("10", "0.001");  // 10000 s to refill
  for (int i = 0; i < 3000; ++i) {
    ASSERT_TRUE(t.Check("k" + std::to_string(i), p, D("3"))->allowed);
  }
  ASSERT_EQ(t.bucket_count(), 3000u);
  ASSERT_EQ(t.Sweep(), 0u);  // nothing has refilled
  for (int i = 0; i < 100; ++i) {
    auto d = t.Check("fresh" + std::to_string(i), p, D("1"));
    ASSERT_TRUE(d.ok());
    EXPECT_TRUE(d->allowed) << i;
    EXPECT_EQ(d->remaining, 9u);
  }
  EXPECT_EQ(t.evicted_count(), 100u);
  EXPECT_EQ(t.overflow_count(), 0u);
  EXPECT_EQ(t.bucket_count(), 3000u);
  // The checkpoint records every evicted bucket as dropped, and the live new ones as changed.
  // (A fresh bucket holding 9 of 10 tokens is closer to full than the old ones, so fresh keys
  // mostly evict each other: a flood of new keys churns among itself.)
  size_t changed_fresh = 0, dropped_old = 0, dropped_fresh = 0;
  t.CollectChanges([&](const BucketSnapshot& s) { changed_fresh += s.key.rfind("fresh", 0) == 0; },
                   [&](std::string_view, std::string_view key) {
                     (key.rfind("fresh", 0) == 0 ? dropped_fresh : dropped_old)++;
                   });
  EXPECT_EQ(dropped_old + dropped_fresh, 100u);
  EXPECT_EQ(changed_fresh + dropped_fresh, 100u);
  EXPECT_GE(dropped_old, 1u);
}

// When every bucket is exhausted, no bucket is evicted and the fresh key is denied (on_limit
// deny): eviction never lets a key that is being denied start over with a full bucket.
TEST(ThrottlerEvictionTest, ExhaustedBucketsAreNeverEvicted) {
  FakeClock clock;
  Throttler t({.clock = &clock, .max_buckets = 3000});
  const BucketParams p = P("10", "0.001");
  for (int i = 0; i < 3000; ++i) {
    ASSERT_TRUE(t.Check("k" + std::to_string(i), p, D("10"))->allowed);
  }
  for (int i = 0; i < 100; ++i) {
    auto d = t.Check("fresh" + std::to_string(i), p, D("1"));
    ASSERT_TRUE(d.ok());
    EXPECT_FALSE(d->allowed);
    EXPECT_EQ(d->retry_after, seconds(1));
  }
  EXPECT_EQ(t.evicted_count(), 0u);
  EXPECT_EQ(t.overflow_count(), 100u);
  for (int i = 0; i < 3000; ++i) {
    EXPECT_FALSE(t.Check("k" + std::to_string(i), p, D("1"))->allowed) << i;  // still owes
  }
  // Less than one whole token left (0.9 refilled) still counts as exhausted.
  clock.Advance(seconds(900));
  EXPECT_FALSE(t.Check("fresh", p, D("1"))->allowed);
  EXPECT_EQ(t.evicted_count(), 0u);
  // A whole token refilled (and a little more: the capacity eviction judges by may be low by
  // 2^-14 of it): now the buckets qualify and a fresh key is served.
  clock.Advance(seconds(101));
  EXPECT_TRUE(t.Check("fresh", p, D("1"))->allowed);
  EXPECT_EQ(t.evicted_count(), 1u);
}

// Half the keys exhausted, half with tokens: fresh keys evict only the latter, whatever is
// sampled.
TEST(ThrottlerEvictionTest, MixedTableEvictsOnlyBucketsWithTokens) {
  FakeClock clock;
  Throttler t({.clock = &clock, .max_buckets = 3000});
  const BucketParams p = P("10", "0.001");
  for (int i = 0; i < 3000; ++i) {
    ASSERT_TRUE(t.Check("k" + std::to_string(i), p, D(i % 2 == 0 ? "10" : "3"))->allowed);
  }
  int served = 0;
  for (int i = 0; i < 1000; ++i) served += t.Check("fresh" + std::to_string(i), p, D("1"))->allowed;
  EXPECT_GT(served, 900);
  EXPECT_EQ(t.evicted_count(), static_cast<uint64_t>(served));
  for (int i = 0; i < 3000; i += 2) {
    EXPECT_FALSE(t.Check("k" + std::to_string(i), p, D("1"))->allowed) << i;
  }
}

// Of the sampled buckets holding a whole token, the one closest to full (shortest time to full,
// not smallest debt) goes; an exhausted one is passed over even when it is closest to full.
TEST(ThrottlerEvictionTest, EvictsTheBucketClosestToFull) {
  FakeClock clock;
  Throttler t({.clock = &clock, .max_buckets = 4});
  const std::vector<std::string> k = KeysInOneShard(5, "s");
  ASSERT_TRUE(t.Check(k[0], P("10", "1"), D("2"))->allowed);     // 2 s to full
  ASSERT_TRUE(t.Check(k[1], P("10", "10"), D("4"))->allowed);    // 0.4 s to full
  ASSERT_TRUE(t.Check(k[2], P("10", "100"), D("10"))->allowed);  // 0.1 s, but exhausted
  ASSERT_TRUE(t.Check(k[3], P("10", "0.01"), D("1"))->allowed);  // 100 s
  t.CollectChanges([](const BucketSnapshot&) {}, [](std::string_view, std::string_view) {});
  EXPECT_TRUE(t.Check(k[4], P("10", "1"), D("1"))->allowed);
  std::vector<std::string> dropped;
  t.CollectChanges([](const BucketSnapshot&) {},
                   [&](std::string_view, std::string_view key) { dropped.emplace_back(key); });
  EXPECT_EQ(dropped, std::vector<std::string>{k[1]});
  EXPECT_EQ(t.evicted_count(), 1u);
}

// Fail-open tables evict too (tracking the new key beats not limiting it), and only fall back to
// untracked allowing when nothing qualifies.
TEST(ThrottlerEvictionTest, FailOpenEvictsBeforeGoingUntracked) {
  FakeClock clock;
  Throttler t({.clock = &clock, .max_buckets = 1, .overflow = OverflowPolicy::kFailOpen});
  const BucketParams p = P("10", "1");
  const std::vector<std::string> k = KeysInOneShard(3, "f");  // a, b, c
  ASSERT_TRUE(t.Check(k[0], p, D("3"))->allowed);
  EXPECT_TRUE(t.Check(k[1], p, D("10"))->allowed);  // evicts a
  EXPECT_EQ(t.evicted_count(), 1u);
  EXPECT_EQ(t.overflow_count(), 0u);
  EXPECT_TRUE(t.Check(k[2], p, D("1"))->allowed);  // b is exhausted: c goes untracked
  EXPECT_EQ(t.evicted_count(), 1u);
  EXPECT_EQ(t.overflow_count(), 1u);
  EXPECT_FALSE(t.Check(k[1], p, D("1"))->allowed);
}

// After a restart the checkpoint gives a bucket's debt but not its capacity: the debt stands in
// for it (a lower bound), so a restored bucket can be evicted once it has refilled a whole token,
// and a restored exhausted bucket is not evicted before.
TEST(ThrottlerEvictionTest, RestoredBucketsQualifyOnceAWholeTokenRefilled) {
  FakeClock clock;
  Throttler before({.clock = &clock});
  const BucketParams p = P("10", "0.001");
  const std::vector<std::string> k = KeysInOneShard(3, "r");  // a, b, fresh
  ASSERT_TRUE(before.Check(k[0], p, D("3"))->allowed);
  ASSERT_TRUE(before.Check(k[1], p, D("10"))->allowed);
  std::vector<BucketSnapshot> snaps;
  before.CollectChanges([&](const BucketSnapshot& s) { snaps.push_back(s); },
                        [](std::string_view, std::string_view) {});
  Throttler t({.clock = &clock, .max_buckets = 2});
  for (const auto& s : snaps) ASSERT_TRUE(t.Restore(s));
  // a holds 7 tokens, but all the checkpoint proves is a capacity of at least its debt, 3.
  EXPECT_FALSE(t.Check(k[2], p, D("1"))->allowed);
  EXPECT_EQ(t.evicted_count(), 0u);
  clock.Advance(seconds(1001));  // a whole token refilled in each (and a margin, as above)
  EXPECT_TRUE(t.Check(k[2], p, D("1"))->allowed);
  EXPECT_EQ(t.evicted_count(), 1u);
  EXPECT_FALSE(t.Check(k[1], p, D("2"))->allowed);  // b (1 of 10 tokens) stayed; a went
}

// The capacity an entry keeps for eviction is a lower bound within 2^-14 of the real one.
TEST(BucketEntryTest, CapacityFloorIsATightLowerBound) {
  std::mt19937_64 rng(3);
  core::BucketEntry* e = core::BucketEntry::New("key", 0, 1);
  for (int i = 0; i < 100000; ++i) {
    const uint64_t c = i < 64 ? (i == 0 ? 0 : uint64_t{1} << (i - 1)) + (i % 3)
                              : (rng() >> (rng() % 64)) % (kMaxCapacity.nanos + 1);
    e->set_capacity_floor(c);
    ASSERT_LE(e->capacity_floor(), c);
    ASSERT_LE(c - e->capacity_floor(), c >> 14) << c;
    ASSERT_EQ(e->key(), "key");
    ASSERT_EQ(e->key_bits & core::BucketEntry::kDirty, 0u);
  }
  e->key_bits |= core::BucketEntry::kDirty;
  e->set_capacity_floor(kMaxCapacity.nanos);
  EXPECT_NE(e->key_bits & core::BucketEntry::kDirty, 0u);
  EXPECT_EQ(e->key(), "key");
  core::BucketEntry::Delete(e);
}

// CheckLayers keeps every layer's bucket in one table, under the key (length of the layer name,
// the name, the key). This finds a key for layer `name` whose bucket lands in the same shard as
// layer `other_name`'s bucket `other_key`, so that evaluating it can touch that shard.
std::string KeyInSameShard(std::string_view name, std::string_view other_name,
                           std::string_view other_key) {
  auto table_key = [](std::string_view n, std::string_view k) {
    return std::string(1, static_cast<char>(n.size())).append(n).append(k);
  };
  const size_t target = core::BucketTable::Hash(table_key(other_name, other_key));
  auto shard = [](size_t h) { return (h >> 52) % core::BucketTable::kShards; };
  for (int i = 0;; ++i) {
    std::string k = "y" + std::to_string(i);
    if (shard(core::BucketTable::Hash(table_key(name, k))) == shard(target)) return k;
  }
}

// Regression (issue 9): with the shared layer table at max_buckets, evaluating layer "b" ran the
// overflow sweep on the shard holding layer "a"'s bucket, which had refilled to full: the sweep
// freed it, and the commit then wrote to the freed entry (heap-use-after-free under ASan).
TEST(ThrottlerLayersTest, LaterLayerNeverFreesAnEarlierLayersBucket) {
  FakeClock clock;
  Throttler t({.clock = &clock, .max_buckets = 1});
  const BucketParams p = P("10", "1");
  std::vector<LayerCheck> first = {{"a", "x", p, false}};
  ASSERT_TRUE(t.CheckLayers(first, D("1"))->allowed);
  ASSERT_EQ(t.bucket_count(), 1u);
  clock.Advance(seconds(1));  // a's bucket is full again: the sweep would drop it
  std::vector<LayerCheck> both = {{"a", "x", p, false},
                                  {"b", KeyInSameShard("b", "a", "x"), p, false}};
  auto d = t.CheckLayers(both, D("1"));
  ASSERT_TRUE(d.ok()) << d.status();
  // a's bucket is held by this check, so b finds the table full and denies (on_limit deny).
  EXPECT_FALSE(d->allowed);
  EXPECT_EQ(d->denied_layer, "b");
  EXPECT_EQ(t.bucket_count(), 1u);
  EXPECT_EQ(t.evicted_count(), 0u);
  // The bucket a's evaluation held is intact and still works.
  EXPECT_TRUE(t.CheckLayers(first, D("1"))->allowed);
}

// The same hazard with eviction: a's bucket holds 7 of 10 tokens, so it is the one eviction would
// pick for b's new bucket; it is held by this check, so it is not evicted.
TEST(ThrottlerLayersTest, LaterLayerNeverEvictsAnEarlierLayersBucket) {
  FakeClock clock;
  Throttler t({.clock = &clock, .max_buckets = 1});
  const BucketParams p = P("10", "1");
  std::vector<LayerCheck> first = {{"a", "x", p, false}};
  ASSERT_TRUE(t.CheckLayers(first, D("3"))->allowed);
  std::vector<LayerCheck> both = {{"a", "x", p, false},
                                  {"b", KeyInSameShard("b", "a", "x"), p, false}};
  auto d = t.CheckLayers(both, D("1"));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_FALSE(d->allowed);
  EXPECT_EQ(d->denied_layer, "b");
  EXPECT_EQ(t.evicted_count(), 0u);
  auto again = t.CheckLayers(first, D("7"));  // a still owes its 3 tokens: 7 are left
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->allowed);
  EXPECT_EQ(again->remaining, 0u);
}

// Two layers with the same name and key would evaluate one bucket twice and commit it twice.
TEST(ThrottlerLayersTest, DuplicateLayerIsInvalidAndChangesNothing) {
  FakeClock clock;
  Throttler t({.clock = &clock});
  const BucketParams p = P("10", "1");
  std::vector<LayerCheck> dup = {{"a", "x", p, false}, {"b", "x", p, false}, {"a", "x", p, true}};
  auto d = t.CheckLayers(dup, D("1"));
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(d.status().message().find("layer 'a'"), std::string_view::npos) << d.status();
  EXPECT_EQ(ValidateLayerChecks(dup, D("1")).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(t.bucket_count(), 0u);
  // The same key under different layer names, or different keys under one name, are distinct.
  std::vector<LayerCheck> distinct = {
      {"a", "x", p, false}, {"b", "x", p, false}, {"a", "y", p, false}};
  EXPECT_TRUE(t.CheckLayers(distinct, D("1"))->allowed);
  EXPECT_EQ(t.bucket_count(), 3u);
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
