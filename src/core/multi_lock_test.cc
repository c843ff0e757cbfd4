// Multi-key locks in the lease core (LeaseManager::TryMultiAcquire, MultiAcquireAsync, ...).
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/support/memory_journal.h"
#include "tollgate/lease_manager.h"
#include "tollgate/testing/fake_clock.h"

namespace tollgate {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Keys = std::vector<std::string>;

class MultiLockTest : public ::testing::Test {
 protected:
  LeaseManager::Options Opts(Duration lock_delay = Duration(0)) {
    return {
        .clock = &clock_, .journal = &journal_, .lock_delay = lock_delay, .timer_thread = false};
  }
  static MultiAcquireRequest Req(Keys keys, Duration ttl, Duration wait = Duration(0),
                                 std::optional<std::string> owner = std::nullopt) {
    return {std::move(keys), ttl, wait, std::move(owner)};
  }
  static AcquireRequest One(std::string key, Duration ttl, Duration wait = Duration(0)) {
    return {std::move(key), ttl, wait, std::nullopt};
  }
  static LeaseGrant Must(absl::StatusOr<std::optional<LeaseGrant>> g) {
    EXPECT_TRUE(g.ok()) << g.status();
    EXPECT_TRUE(g.ok() && g->has_value());
    return g.ok() && g->has_value() ? **g : LeaseGrant{};
  }
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
  // Queues a waiter that must not be answered at once.
  static uint64_t Queue(absl::StatusOr<LeaseManager::AsyncStart> s) {
    EXPECT_TRUE(s.ok()) << s.status();
    EXPECT_TRUE(s.ok() && s->queued);
    return s.ok() ? s->waiter_id : 0;
  }

  FakeClock clock_;
  testing::MemoryJournal journal_;
};

TEST_F(MultiLockTest, AllOrNothing) {
  LeaseManager m(Opts());
  LeaseGrant b = Must(m.TryAcquire(One("b", seconds(30))));
  const uint64_t fence = m.last_fence();
  auto none = m.TryMultiAcquire(Req({"a", "b", "c"}, seconds(10)));
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  EXPECT_EQ(m.last_fence(), fence);
  EXPECT_FALSE(m.Info("a")->has_value());
  EXPECT_FALSE(m.Info("c")->has_value());
  EXPECT_EQ(journal_.leases().size(), 1u);

  ASSERT_TRUE(m.Release("b", b.lock_id).ok());
  LeaseGrant g = Must(m.TryMultiAcquire(Req({"a", "b", "c"}, seconds(10), Duration(0), "me")));
  EXPECT_EQ(g.fence, fence + 1);
  EXPECT_EQ(g.ttl, seconds(10));
  EXPECT_EQ(g.lock_id.size(), 32u);
  for (const char* k : {"a", "b", "c"}) {
    auto info = m.Info(k);
    ASSERT_TRUE(info->has_value()) << k;
    EXPECT_EQ((*info)->fence, g.fence);
    EXPECT_EQ((*info)->owner, "me");
    // Durable as ordinary lease records, one per key, same lock_id and fence.
    const StoredLease rec = journal_.leases().at(k);
    EXPECT_EQ(rec.lock_id, g.lock_id);
    EXPECT_EQ(rec.fence, g.fence);
  }
  EXPECT_FALSE(m.TryAcquire(One("c", seconds(1)))->has_value());
}

TEST_F(MultiLockTest, EachKeyIsAnOrdinaryLeaseAfterwards) {
  LeaseManager m(Opts());
  LeaseGrant g = Must(m.TryMultiAcquire(Req({"a", "b"}, seconds(10))));
  ASSERT_TRUE(m.Release("a", g.lock_id).ok());
  EXPECT_EQ(*m.Extend("b", g.lock_id, seconds(20)), seconds(20));
  EXPECT_FALSE(m.Info("a")->has_value());
  EXPECT_EQ((*m.Info("b"))->ttl_remaining, seconds(20));
  // MultiExtend is all or none: "a" is gone, so nothing changes.
  EXPECT_EQ(m.MultiExtend(Keys{"a", "b"}, g.lock_id, seconds(60)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*m.Info("b"))->ttl_remaining, seconds(20));
  // MultiRelease releases what lock_id holds.
  EXPECT_EQ(*m.MultiRelease(Keys{"a", "b"}, g.lock_id), 1u);
  EXPECT_EQ(*m.MultiRelease(Keys{"a", "b"}, g.lock_id), 0u);
  EXPECT_EQ(m.key_count(), 0u);
  EXPECT_TRUE(journal_.leases().empty());
}

TEST_F(MultiLockTest, MultiExtendSetsEveryKeyAndNeverRevives) {
  LeaseManager m(Opts());
  LeaseGrant g = Must(m.TryMultiAcquire(Req({"a", "b", "c"}, seconds(10))));
  clock_.Advance(seconds(8));
  EXPECT_EQ(*m.MultiExtend(Keys{"a", "b", "c"}, g.lock_id, seconds(5)), seconds(5));
  for (const char* k : {"a", "b", "c"}) EXPECT_EQ((*m.Info(k))->ttl_remaining, seconds(5));
  // A subset is fine; a wrong lock_id is not.
  EXPECT_TRUE(m.MultiExtend(Keys{"c"}, g.lock_id, seconds(7)).ok());
  EXPECT_EQ(m.MultiExtend(Keys{"a", "b"}, "nope", seconds(5)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  clock_.Advance(seconds(5));
  EXPECT_EQ(m.MultiExtend(Keys{"a", "b"}, g.lock_id, seconds(5)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(*m.MultiRelease(Keys{"a", "b", "c"}, g.lock_id), 1u);  // only "c" was still held
}

TEST_F(MultiLockTest, BadRequestsAreRejected) {
  LeaseManager m(Opts());
  auto dup = m.TryMultiAcquire(Req({"a", "b", "a"}, seconds(1)));
  EXPECT_EQ(dup.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(dup.status().message(), "key \"a\" given twice; keys must be distinct");
  EXPECT_EQ(m.TryMultiAcquire(Req({}, seconds(1))).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m.TryMultiAcquire(Req({"a", ""}, seconds(1))).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m.TryMultiAcquire(Req({"a"}, Duration(0))).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m.MultiRelease(Keys{}, "x").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m.MultiExtend(Keys{"a"}, "x", Duration(0)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m.last_fence(), 0u);
}

TEST_F(MultiLockTest, LockDelayBlocksMultiKeyAcquires) {
  LeaseManager m(Opts(seconds(3)));
  Must(m.TryAcquire(One("a", seconds(5))));
  clock_.Advance(seconds(5));
  EXPECT_FALSE(m.TryMultiAcquire(Req({"a", "b"}, seconds(5)))->has_value());
  Outcome o;
  Queue(m.MultiAcquireAsync(Req({"a", "b"}, seconds(5), seconds(60)), Record(&o)));
  clock_.Advance(milliseconds(2999));
  m.Tick();
  EXPECT_FALSE(o.called);
  EXPECT_EQ(m.NextDeadline(), clock_.SteadyNow() + milliseconds(1));
  clock_.Advance(milliseconds(1));
  m.Tick();
  ASSERT_TRUE(o.called && o.grant.has_value());
}

TEST_F(MultiLockTest, WaiterIsGrantedWhenTheLastKeyFrees) {
  LeaseManager m(Opts());
  LeaseGrant a = Must(m.TryAcquire(One("a", seconds(30))));
  LeaseGrant b = Must(m.TryAcquire(One("b", seconds(5))));
  Outcome o;
  Queue(m.MultiAcquireAsync(Req({"a", "b"}, seconds(10), seconds(60)), Record(&o)));
  EXPECT_EQ((*m.Info("a"))->waiters, 1u);
  EXPECT_EQ((*m.Info("b"))->waiters, 1u);
  clock_.Advance(seconds(5));  // b expires: a is still held
  m.Tick();
  EXPECT_FALSE(o.called);
  // Meanwhile the free "b" is not taken from under the waiter.
  EXPECT_FALSE(m.TryAcquire(One("b", seconds(1)))->has_value());
  ASSERT_TRUE(m.Release("a", a.lock_id).ok());
  ASSERT_TRUE(o.called && o.grant.has_value());
  EXPECT_GT(o.grant->fence, b.fence);
  EXPECT_EQ((*m.Info("a"))->fence, o.grant->fence);
  EXPECT_EQ((*m.Info("b"))->fence, o.grant->fence);
  EXPECT_EQ((*m.Info("a"))->waiters, 0u);
}

// The no-starvation guarantee: once a multi-key waiter is queued, single-key acquirers arriving
// later wait behind it on every one of its keys.
TEST_F(MultiLockTest, StreamOfSingleKeyAcquirersDoesNotStarveAMultiKeyWaiter) {
  std::vector<Outcome> singles(20);  // outlives the manager, which answers leftover waiters
  Outcome multi;
  LeaseManager m(Opts());
  LeaseGrant holder = Must(m.TryAcquire(One("a", seconds(30))));
  Queue(m.MultiAcquireAsync(Req({"a", "b"}, seconds(10), seconds(60)), Record(&multi)));
  for (int i = 0; i < 20; ++i) {
    const char* key = i % 2 ? "a" : "b";
    EXPECT_FALSE(m.TryAcquire(One(key, seconds(1)))->has_value()) << i;
    Queue(m.AcquireAsync(One(key, seconds(1), seconds(60)), Record(&singles[i])));
  }
  ASSERT_TRUE(m.Release("a", holder.lock_id).ok());
  ASSERT_TRUE(multi.called && multi.grant.has_value());
  for (const Outcome& o : singles) EXPECT_FALSE(o.called);
  ASSERT_EQ(*m.MultiRelease(Keys{"a", "b"}, multi.grant->lock_id), 2u);
  // Then the singles, in order, one per key.
  EXPECT_TRUE(singles[0].grant.has_value());  // "b"
  EXPECT_TRUE(singles[1].grant.has_value());  // "a"
  EXPECT_FALSE(singles[2].called);
  EXPECT_GT(singles[0].grant->fence, multi.grant->fence);
}

TEST_F(MultiLockTest, SingleKeyWaiterAheadGoesFirst) {
  LeaseManager m(Opts());
  LeaseGrant holder = Must(m.TryAcquire(One("a", seconds(30))));
  Outcome single, multi;
  Queue(m.AcquireAsync(One("a", seconds(10), seconds(60)), Record(&single)));
  Queue(m.MultiAcquireAsync(Req({"a", "b"}, seconds(10), seconds(60)), Record(&multi)));
  ASSERT_TRUE(m.Release("a", holder.lock_id).ok());
  ASSERT_TRUE(single.grant.has_value());
  EXPECT_FALSE(multi.called);
  ASSERT_TRUE(m.Release("a", single.grant->lock_id).ok());
  ASSERT_TRUE(multi.grant.has_value());
}

TEST_F(MultiLockTest, TwoWaitersInOppositeKeyOrderDoNotDeadlock) {
  LeaseManager m(Opts());
  LeaseGrant x = Must(m.TryAcquire(One("a", seconds(30))));
  LeaseGrant y = Must(m.TryAcquire(One("b", seconds(30))));
  Outcome first, second;
  Queue(m.MultiAcquireAsync(Req({"a", "b"}, seconds(10), seconds(60)), Record(&first)));
  Queue(m.MultiAcquireAsync(Req({"b", "a"}, seconds(10), seconds(60)), Record(&second)));
  ASSERT_TRUE(m.Release("a", x.lock_id).ok());
  EXPECT_FALSE(first.called || second.called);  // "b" is still held; neither holds "a" meanwhile
  EXPECT_FALSE(m.Info("a")->has_value());
  ASSERT_TRUE(m.Release("b", y.lock_id).ok());
  ASSERT_TRUE(first.called && first.grant.has_value());
  EXPECT_FALSE(second.called);
  // The first one's leases expire: the second gets both.
  clock_.Advance(seconds(10));
  m.Tick();
  ASSERT_TRUE(second.called && second.grant.has_value());
  EXPECT_GT(second.grant->fence, first.grant->fence);
}

TEST_F(MultiLockTest, CancelTakesTheWaiterOutOfEveryQueue) {
  LeaseManager m(Opts());
  LeaseGrant holder = Must(m.TryAcquire(One("a", seconds(30))));
  Outcome multi, single;
  const uint64_t id =
      Queue(m.MultiAcquireAsync(Req({"a", "b"}, seconds(10), seconds(60)), Record(&multi)));
  Queue(m.AcquireAsync(One("b", seconds(10), seconds(60)), Record(&single)));
  EXPECT_FALSE(single.called);           // "b" is free but the multi-key waiter is ahead
  EXPECT_TRUE(m.CancelWaiter("b", id));  // any of its keys names it
  EXPECT_FALSE(m.CancelWaiter("a", id));
  EXPECT_FALSE(multi.called);
  ASSERT_TRUE(single.called && single.grant.has_value());  // served as soon as it is first
  EXPECT_EQ((*m.Info("a"))->waiters, 0u);
  ASSERT_TRUE(m.Release("a", holder.lock_id).ok());
  EXPECT_FALSE(multi.called);
}

TEST_F(MultiLockTest, WaiterTimesOutOnceAndLeavesEveryQueue) {
  LeaseManager m(Opts());
  LeaseGrant a = Must(m.TryAcquire(One("a", seconds(30))));
  LeaseGrant b = Must(m.TryAcquire(One("b", seconds(30))));
  Outcome o;
  Queue(m.MultiAcquireAsync(Req({"a", "b", "c"}, seconds(10), seconds(2)), Record(&o)));
  EXPECT_EQ(m.key_count(), 3u);
  clock_.Advance(seconds(2));
  m.Tick();
  ASSERT_TRUE(o.called);  // Record fails the test if it is called twice
  EXPECT_FALSE(o.grant.has_value());
  EXPECT_EQ((*m.Info("a"))->waiters, 0u);
  EXPECT_EQ((*m.Info("b"))->waiters, 0u);
  EXPECT_EQ(m.key_count(), 2u);
  EXPECT_TRUE(m.TryAcquire(One("c", seconds(1)))->has_value());
}

TEST_F(MultiLockTest, ShutdownAnswersMultiKeyWaitersOnce) {
  Outcome o;
  {
    LeaseManager m(Opts());
    Must(m.TryAcquire(One("a", seconds(30))));
    Queue(m.MultiAcquireAsync(Req({"a", "b", "c"}, seconds(10), seconds(60)), Record(&o)));
  }
  EXPECT_TRUE(o.called);
  EXPECT_FALSE(o.grant.has_value());
}

// Real threads with overlapping key sets (single- and multi-key, in random key orders) waiting on
// each other: no key is ever held twice at once, and every request is granted (no deadlock).
TEST(MultiLockConcurrencyTest, OverlappingWaitersAlwaysFinish) {
  FakeClock clock;  // stands still: nothing expires, so every grant is released by its holder
  LeaseManager m({.clock = &clock, .timer_thread = false});
  constexpr int kKeys = 5, kThreads = 6, kRounds = 300;
  std::atomic<int> busy[kKeys] = {};
  std::atomic<int> violations{0}, grants{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t + 1);
      for (int i = 0; i < kRounds; ++i) {
        std::vector<int> ids = {0, 1, 2, 3, 4};
        std::shuffle(ids.begin(), ids.end(), rng);
        ids.resize(1 + rng() % 3);
        Keys keys;
        for (int k : ids) keys.push_back("k" + std::to_string(k));
        std::mutex mu;
        std::condition_variable cv;
        bool done = false;
        std::optional<LeaseGrant> got;
        GrantCallback cb = [&](std::optional<LeaseGrant> g) {
          std::lock_guard<std::mutex> l(mu);
          got = std::move(g);
          done = true;
          cv.notify_all();
        };
        auto start =
            keys.size() == 1
                ? m.AcquireAsync({keys[0], seconds(60), seconds(3600), std::nullopt}, cb)
                : m.MultiAcquireAsync({keys, seconds(60), seconds(3600), std::nullopt}, cb);
        ASSERT_TRUE(start.ok());
        if (start->queued) {
          std::unique_lock<std::mutex> l(mu);
          ASSERT_TRUE(cv.wait_for(l, std::chrono::seconds(30), [&] { return done; }))
              << "deadlock?";
        } else {
          got = std::move(start->grant);
        }
        ASSERT_TRUE(got.has_value());
        for (int k : ids) {
          if (busy[k].fetch_add(1) != 0) violations++;
        }
        grants++;
        if (rng() % 4 == 0) std::this_thread::yield();
        for (int k : ids) busy[k].fetch_sub(1);
        ASSERT_EQ(*m.MultiRelease(keys, got->lock_id), keys.size());
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(violations.load(), 0);
  EXPECT_EQ(grants.load(), kThreads * kRounds);
  EXPECT_EQ(m.key_count(), 0u);
}

}  // namespace
}  // namespace tollgate
