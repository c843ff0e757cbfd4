#include "tollgate/lease_manager.h"

#include <atomic>
#include <set>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/support/memory_journal.h"
#include "tollgate/testing/fake_clock.h"

namespace tollgate {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

class LeaseManagerTest : public ::testing::Test {
 protected:
  LeaseManager::Options Opts(Duration lock_delay = Duration(0)) {
    return {
        .clock = &clock_, .journal = &journal_, .lock_delay = lock_delay, .timer_thread = false};
  }
  static AcquireRequest Req(std::string key, Duration ttl, Duration wait = Duration(0),
                            std::optional<std::string> owner = std::nullopt) {
    return {std::move(key), ttl, wait, std::move(owner)};
  }
  // A waiter's callback that records what it got.
  struct Outcome {
    bool called = false;
    std::optional<LeaseGrant> grant;
  };
  static GrantCallback Record(Outcome* o) {
    return [o](std::optional<LeaseGrant> g) {
      EXPECT_FALSE(o->called) << "callback called twice";
      o->called = true;
      o->grant = std::move(g);
    };
  }

  FakeClock clock_;
  testing::MemoryJournal journal_;
};

TEST_F(LeaseManagerTest, AcquireReleaseLifecycle) {
  LeaseManager m(Opts());
  auto g = m.TryAcquire(Req("k", seconds(30), Duration(0), "worker-1"));
  ASSERT_TRUE(g.ok());
  ASSERT_TRUE(g->has_value());
  EXPECT_EQ((*g)->fence, 1u);
  EXPECT_EQ((*g)->ttl, seconds(30));
  EXPECT_EQ((*g)->lock_id.size(), 32u);

  auto info = m.Info("k");
  ASSERT_TRUE(info.ok() && info->has_value());
  EXPECT_EQ((*info)->fence, 1u);
  EXPECT_EQ((*info)->owner, "worker-1");
  EXPECT_EQ((*info)->ttl_remaining, seconds(30));
  EXPECT_EQ((*info)->waiters, 0u);
  ASSERT_EQ(journal_.leases().count("k"), 1u);
  EXPECT_EQ(journal_.leases().at("k").lock_id, (*g)->lock_id);

  EXPECT_TRUE(m.Release("k", (*g)->lock_id).ok());
  EXPECT_FALSE(m.Info("k")->has_value());
  EXPECT_EQ(journal_.leases().count("k"), 0u);
  EXPECT_EQ(m.key_count(), 0u);
  // Releasing twice is "not held".
  EXPECT_EQ(m.Release("k", (*g)->lock_id).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(LeaseManagerTest, ContentionGivesNothingToSecondAcquirer) {
  LeaseManager m(Opts());
  auto a = m.TryAcquire(Req("k", seconds(30)));
  auto b = m.TryAcquire(Req("k", seconds(30)));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(a->has_value());
  EXPECT_FALSE(b->has_value());
  // Other keys are independent.
  EXPECT_TRUE(m.TryAcquire(Req("other", seconds(30)))->has_value());
}

TEST_F(LeaseManagerTest, OnlyTheHolderCanReleaseOrExtend) {
  LeaseManager m(Opts());
  auto a = m.TryAcquire(Req("k", seconds(30)));
  ASSERT_TRUE(a.ok() && a->has_value());
  EXPECT_EQ(m.Release("k", "0123456789abcdef0123456789abcdef").code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(m.Extend("k", "nope", seconds(5)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(m.Release("other", (*a)->lock_id).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(m.Info("k")->has_value());
}

TEST_F(LeaseManagerTest, ExpiryFreesTheKeyAndKillsTheOldLockId) {
  LeaseManager m(Opts());
  auto a = m.TryAcquire(Req("k", seconds(30)));
  clock_.Advance(milliseconds(29'999));
  EXPECT_FALSE(m.TryAcquire(Req("k", seconds(30)))->has_value());
  EXPECT_EQ((*m.Info("k"))->ttl_remaining, milliseconds(1));
  clock_.Advance(milliseconds(1));
  EXPECT_FALSE(m.Info("k")->has_value());
  auto b = m.TryAcquire(Req("k", seconds(30)));
  ASSERT_TRUE(b->has_value());
  EXPECT_GT((*b)->fence, (*a)->fence);
  // The stale holder can neither release nor extend the new lease.
  EXPECT_FALSE(m.Release("k", (*a)->lock_id).ok());
  EXPECT_FALSE(m.Extend("k", (*a)->lock_id, seconds(30)).ok());
  EXPECT_TRUE(m.Release("k", (*b)->lock_id).ok());
}

TEST_F(LeaseManagerTest, ExtendSetsExpiryFromNowAndNeverRevives) {
  LeaseManager m(Opts());
  auto a = m.TryAcquire(Req("k", seconds(10)));
  clock_.Advance(seconds(8));
  auto ext = m.Extend("k", (*a)->lock_id, seconds(5));
  ASSERT_TRUE(ext.ok());
  EXPECT_EQ(*ext, seconds(5));
  EXPECT_EQ((*m.Info("k"))->ttl_remaining, seconds(5));  // now + 5 s, not 2 s + 5 s
  // Shortening works too.
  EXPECT_EQ(*m.Extend("k", (*a)->lock_id, milliseconds(1)), milliseconds(1));
  clock_.Advance(milliseconds(1));
  EXPECT_EQ(m.Extend("k", (*a)->lock_id, seconds(60)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(m.Info("k")->has_value());
}

// Regression (issue 9, item 5): a shortening EXTEND must move the expiry timer, or a waiter sits
// until its own deadline although the key was free long before.
TEST_F(LeaseManagerTest, ShorteningExtendGrantsWaiterAtTheNewExpiry) {
  LeaseManager m(Opts());
  auto a = m.TryAcquire(Req("k", seconds(60)));
  ASSERT_TRUE(a.ok() && a->has_value());
  Outcome waiter;
  auto start = m.AcquireAsync(Req("k", seconds(30), seconds(5)), Record(&waiter));
  ASSERT_TRUE(start.ok());
  ASSERT_TRUE(start->queued);
  ASSERT_TRUE(m.Extend("k", (*a)->lock_id, milliseconds(100)).ok());
  clock_.Advance(milliseconds(99));
  m.Tick();
  EXPECT_FALSE(waiter.called);
  clock_.Advance(milliseconds(1));
  m.Tick();  // only timers that are due run: the lease's new expiry must be one of them
  ASSERT_TRUE(waiter.called);
  ASSERT_TRUE(waiter.grant.has_value());
  EXPECT_GT(waiter.grant->fence, (*a)->fence);
}

TEST_F(LeaseManagerTest, FencesStrictlyIncreaseAcrossKeysReleasesAndExpiries) {
  LeaseManager m(Opts());
  uint64_t last = 0;
  for (int i = 0; i < 200; ++i) {
    std::string key = "k" + std::to_string(i % 3);
    auto g = m.TryAcquire(Req(key, milliseconds(5)));
    ASSERT_TRUE(g.ok() && g->has_value()) << i;
    EXPECT_GT((*g)->fence, last);
    last = (*g)->fence;
    if (i % 2 == 0) {
      ASSERT_TRUE(m.Release(key, (*g)->lock_id).ok());
    } else {
      clock_.Advance(milliseconds(5));  // let it expire
    }
  }
  EXPECT_EQ(m.last_fence(), last);
}

TEST_F(LeaseManagerTest, RestoredFenceCounterNeverGoesBack) {
  LeaseManager m(Opts());
  m.RestoreFence(1000);
  m.RestoreFence(10);  // lower values are ignored
  EXPECT_EQ((*m.TryAcquire(Req("k", seconds(1))))->fence, 1001u);
}

TEST_F(LeaseManagerTest, WaitersAreGrantedInFifoOrderOnRelease) {
  LeaseManager m(Opts());
  auto holder = m.TryAcquire(Req("k", seconds(30)));
  Outcome o1, o2, o3;
  auto w1 = m.AcquireAsync(Req("k", seconds(10), seconds(60), "w1"), Record(&o1));
  auto w2 = m.AcquireAsync(Req("k", seconds(10), seconds(60), "w2"), Record(&o2));
  auto w3 = m.AcquireAsync(Req("k", seconds(10), seconds(60), "w3"), Record(&o3));
  ASSERT_TRUE(w1.ok() && w2.ok() && w3.ok());
  EXPECT_TRUE(w1->queued && w2->queued && w3->queued);
  EXPECT_EQ((*m.Info("k"))->waiters, 3u);
  // A newcomer without WAIT does not jump the queue.
  EXPECT_FALSE(m.TryAcquire(Req("k", seconds(1)))->has_value());

  ASSERT_TRUE(m.Release("k", (*holder)->lock_id).ok());
  ASSERT_TRUE(o1.called && o1.grant.has_value());
  EXPECT_FALSE(o2.called);
  EXPECT_EQ((*m.Info("k"))->owner, "w1");
  EXPECT_GT(o1.grant->fence, (*holder)->fence);

  ASSERT_TRUE(m.Release("k", o1.grant->lock_id).ok());
  ASSERT_TRUE(o2.called && o2.grant.has_value());
  EXPECT_FALSE(o3.called);
  ASSERT_TRUE(m.Release("k", o2.grant->lock_id).ok());
  ASSERT_TRUE(o3.called && o3.grant.has_value());
  EXPECT_LT(o1.grant->fence, o2.grant->fence);
  EXPECT_LT(o2.grant->fence, o3.grant->fence);
}

TEST_F(LeaseManagerTest, WaiterIsGrantedWhenTheLeaseExpires) {
  LeaseManager m(Opts());
  auto holder = m.TryAcquire(Req("k", seconds(5)));
  Outcome o;
  ASSERT_TRUE(m.AcquireAsync(Req("k", seconds(10), seconds(60)), Record(&o)).ok());
  EXPECT_EQ(m.NextDeadline(), clock_.SteadyNow() + seconds(5));
  clock_.Advance(seconds(5));
  m.Tick();  // no client polls: the timer grants it
  ASSERT_TRUE(o.called);
  ASSERT_TRUE(o.grant.has_value());
  EXPECT_EQ((*m.Info("k"))->ttl_remaining, seconds(10));
}

TEST_F(LeaseManagerTest, WaiterTimesOutWithNothing) {
  LeaseManager m(Opts());
  auto holder = m.TryAcquire(Req("k", seconds(30)));
  Outcome o;
  ASSERT_TRUE(m.AcquireAsync(Req("k", seconds(10), seconds(2)), Record(&o)).ok());
  clock_.Advance(milliseconds(1999));
  m.Tick();
  EXPECT_FALSE(o.called);
  clock_.Advance(milliseconds(1));
  m.Tick();
  EXPECT_TRUE(o.called);
  EXPECT_FALSE(o.grant.has_value());
  EXPECT_EQ((*m.Info("k"))->waiters, 0u);
}

TEST_F(LeaseManagerTest, CancelledWaiterIsSkipped) {
  LeaseManager m(Opts());
  auto holder = m.TryAcquire(Req("k", seconds(30)));
  Outcome o1, o2;
  auto w1 = m.AcquireAsync(Req("k", seconds(10), seconds(60)), Record(&o1));
  auto w2 = m.AcquireAsync(Req("k", seconds(10), seconds(60)), Record(&o2));
  EXPECT_TRUE(m.CancelWaiter("k", w1->waiter_id));
  EXPECT_FALSE(m.CancelWaiter("k", w1->waiter_id));
  ASSERT_TRUE(m.Release("k", (*holder)->lock_id).ok());
  EXPECT_FALSE(o1.called);
  EXPECT_TRUE(o2.called && o2.grant.has_value());
}

TEST_F(LeaseManagerTest, WaitOnFreeKeyGrantsImmediately) {
  LeaseManager m(Opts());
  Outcome o;
  auto w = m.AcquireAsync(Req("k", seconds(10), seconds(60)), Record(&o));
  ASSERT_TRUE(w.ok());
  EXPECT_FALSE(w->queued);
  EXPECT_TRUE(w->grant.has_value());
  EXPECT_FALSE(o.called);
}

TEST_F(LeaseManagerTest, LockDelayBlocksKeyAfterUnreleasedExpiryOnly) {
  LeaseManager m(Opts(seconds(3)));
  auto a = m.TryAcquire(Req("k", seconds(5)));
  clock_.Advance(seconds(5));
  EXPECT_FALSE(m.TryAcquire(Req("k", seconds(5)))->has_value());  // expired, in lock-delay
  EXPECT_FALSE(m.Info("k")->has_value());                         // but nobody holds it
  clock_.Advance(milliseconds(2999));
  EXPECT_FALSE(m.TryAcquire(Req("k", seconds(5)))->has_value());
  clock_.Advance(milliseconds(1));
  auto b = m.TryAcquire(Req("k", seconds(5)));
  ASSERT_TRUE(b->has_value());
  // A released lease has no lock-delay.
  ASSERT_TRUE(m.Release("k", (*b)->lock_id).ok());
  EXPECT_TRUE(m.TryAcquire(Req("k", seconds(5)))->has_value());
}

TEST_F(LeaseManagerTest, LockDelayAlsoHoldsBackWaiters) {
  LeaseManager m(Opts(seconds(3)));
  auto a = m.TryAcquire(Req("k", seconds(5)));
  Outcome o;
  ASSERT_TRUE(m.AcquireAsync(Req("k", seconds(10), seconds(60)), Record(&o)).ok());
  clock_.Advance(seconds(5));
  m.Tick();
  EXPECT_FALSE(o.called);
  EXPECT_EQ(m.NextDeadline(), clock_.SteadyNow() + seconds(3));
  clock_.Advance(seconds(3));
  m.Tick();
  EXPECT_TRUE(o.called && o.grant.has_value());
}

TEST_F(LeaseManagerTest, IdleKeysAreForgotten) {
  LeaseManager m(Opts());
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(m.TryAcquire(Req("k" + std::to_string(i), seconds(1)))->has_value());
  }
  EXPECT_EQ(m.key_count(), 100u);
  EXPECT_EQ(journal_.leases().size(), 100u);
  clock_.Advance(seconds(1));
  m.Tick();
  EXPECT_EQ(m.key_count(), 0u);
  EXPECT_EQ(journal_.leases().size(), 0u);
}

TEST_F(LeaseManagerTest, RestoreReinstatesLeasesByRemainingWallTime) {
  LeaseManager m(Opts(seconds(10)));
  StoredLease live{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 40, clock_.WallNow() + seconds(20), "o"};
  StoredLease recent{"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", 41, clock_.WallNow() - seconds(4), {}};
  StoredLease old{"cccccccccccccccccccccccccccccccc", 42, clock_.WallNow() - seconds(11), {}};
  m.RestoreLease("live", live);
  m.RestoreLease("recent", recent);
  m.RestoreLease("old", old);
  EXPECT_EQ(m.last_fence(), 42u);
  auto info = m.Info("live");
  ASSERT_TRUE(info->has_value());
  EXPECT_EQ((*info)->ttl_remaining, seconds(20));
  EXPECT_EQ((*info)->fence, 40u);
  EXPECT_FALSE(m.TryAcquire(Req("live", seconds(1)))->has_value());
  EXPECT_TRUE(m.Extend("live", live.lock_id, seconds(30)).ok());
  // "recent" expired 4 s ago: 6 s of lock-delay remain.
  EXPECT_FALSE(m.TryAcquire(Req("recent", seconds(1)))->has_value());
  clock_.Advance(seconds(6));
  auto r = m.TryAcquire(Req("recent", seconds(1)));
  ASSERT_TRUE(r->has_value());
  EXPECT_EQ((*r)->fence, 43u);
  EXPECT_TRUE(m.TryAcquire(Req("old", seconds(1)))->has_value());
  EXPECT_TRUE(m.Release("live", live.lock_id).ok());
}

TEST_F(LeaseManagerTest, BadInputIsRejectedAndChangesNothing) {
  LeaseManager m(Opts());
  EXPECT_EQ(m.TryAcquire(Req("", seconds(1))).status().code(), absl::StatusCode::kInvalidArgument);
  auto too_long = m.TryAcquire(Req(std::string(513, 'k'), seconds(1)));
  EXPECT_EQ(too_long.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(too_long.status().message().find("512"), std::string::npos);
  EXPECT_TRUE(m.TryAcquire(Req(std::string(512, 'k'), seconds(1)))->has_value());
  auto zero_ttl = m.TryAcquire(Req("k", Duration(0)));
  EXPECT_EQ(zero_ttl.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(zero_ttl.status().message().find("[1, 86400000]"), std::string::npos);
  EXPECT_EQ(m.TryAcquire(Req("k", milliseconds(86'400'001))).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(m.TryAcquire(Req("k", milliseconds(86'400'000)))->has_value());
  EXPECT_EQ(m.AcquireAsync(Req("w", seconds(1), milliseconds(86'400'001)), nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m.Extend("k", "x", Duration(0)).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m.Release("", "x").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m.last_fence(), 2u);  // only the two good acquires issued fences
}

TEST_F(LeaseManagerTest, BinarySafeKeys) {
  LeaseManager m(Opts());
  std::string k1("a\0b", 3), k2("a\0c", 3);
  EXPECT_TRUE(m.TryAcquire(Req(k1, seconds(1)))->has_value());
  EXPECT_TRUE(m.TryAcquire(Req(k2, seconds(1)))->has_value());
  EXPECT_FALSE(m.TryAcquire(Req(k1, seconds(1)))->has_value());
}

// Real threads and the real clock: mutual exclusion holds and every fence is unique.
TEST(LeaseManagerConcurrencyTest, ThreadsNeverHoldTheSameKeyAtOnce) {
  LeaseManager m({});
  std::atomic<int> inside{0};
  std::atomic<int> violations{0};
  std::atomic<int> grants{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) {
        auto g = m.Acquire({"shared", seconds(10), seconds(10), std::nullopt});
        ASSERT_TRUE(g.ok());
        ASSERT_TRUE(g->has_value());
        if (inside.fetch_add(1) != 0) violations++;
        grants++;
        inside.fetch_sub(1);
        ASSERT_TRUE(m.Release("shared", (*g)->lock_id).ok());
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(violations.load(), 0);
  EXPECT_EQ(grants.load(), 1600);
  EXPECT_EQ(m.last_fence(), 1600u);
}

// With the internal timer thread, a blocked Acquire returns when the holder's lease expires.
TEST(LeaseManagerTimerThreadTest, BlockedAcquireWakesOnExpiry) {
  FakeClock clock;
  LeaseManager m({.clock = &clock});
  auto a = m.TryAcquire({"k", seconds(5), Duration(0), std::nullopt});
  ASSERT_TRUE(a.ok() && a->has_value());
  std::thread t([&] {
    std::this_thread::sleep_for(milliseconds(20));
    clock.Advance(seconds(5));
  });
  auto b = m.Acquire({"k", seconds(5), seconds(60), std::nullopt});
  t.join();
  ASSERT_TRUE(b.ok());
  EXPECT_TRUE(b->has_value());
}

}  // namespace
}  // namespace tollgate
