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

TEST_F(LeaseManagerTest, LookupByIdFollowsTheLeaseAndKeepsAcquiredAt) {
  LeaseManager m(Opts());
  const WallTime t0 = clock_.WallNow();
  auto g = m.TryAcquire(Req("k", seconds(30), Duration(0), "w"));
  ASSERT_TRUE(g.ok() && g->has_value());
  EXPECT_EQ((*g)->acquired_at, t0);
  const std::string id = (*g)->lock_id;

  auto info = m.Info("k");
  ASSERT_TRUE(info.ok() && info->has_value());
  EXPECT_EQ((*info)->lock_id, id);
  EXPECT_EQ((*info)->acquired_at, t0);
  EXPECT_EQ(journal_.leases().at("k").acquired_at, t0);
  EXPECT_TRUE(journal_.leases().at("k").indexed);

  clock_.Advance(seconds(5));
  auto found = m.LookupById(id);
  ASSERT_TRUE(found.ok()) << found.status();
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->key, "k");
  EXPECT_EQ((*found)->info.fence, (*g)->fence);
  EXPECT_EQ((*found)->info.ttl_remaining, seconds(25));
  EXPECT_EQ((*found)->info.owner, "w");
  EXPECT_EQ((*found)->info.lock_id, id);
  EXPECT_EQ((*found)->info.acquired_at, t0);

  // Extend keeps the acquisition time (in memory and in the journal).
  ASSERT_TRUE(m.Extend("k", id, seconds(60)).ok());
  EXPECT_EQ((*m.LookupById(id))->info.acquired_at, t0);
  EXPECT_EQ((*m.LookupById(id))->info.ttl_remaining, seconds(60));
  EXPECT_EQ(journal_.leases().at("k").acquired_at, t0);

  ASSERT_TRUE(m.Release("k", id).ok());
  EXPECT_FALSE(m.LookupById(id)->has_value());
  // The key granted again: the old lock_id finds nothing, the new one its lease.
  auto g2 = m.TryAcquire(Req("k", seconds(30)));
  ASSERT_TRUE(g2->has_value());
  EXPECT_FALSE(m.LookupById(id)->has_value());
  EXPECT_EQ((*m.LookupById((*g2)->lock_id))->key, "k");
  EXPECT_EQ((*m.LookupById((*g2)->lock_id))->info.acquired_at, t0 + seconds(5));
}

TEST_F(LeaseManagerTest, LookupByIdFindsNothingAfterExpiry) {
  LeaseManager m(Opts());
  auto g = m.TryAcquire(Req("k", seconds(10)));
  clock_.Advance(milliseconds(9'999));
  EXPECT_TRUE(m.LookupById((*g)->lock_id)->has_value());
  clock_.Advance(milliseconds(1));
  EXPECT_FALSE(m.LookupById((*g)->lock_id)->has_value());  // expired, no Tick needed
  // And after the timer has run as well.
  auto h = m.TryAcquire(Req("other", seconds(1)));
  clock_.Advance(seconds(1));
  m.Tick();
  EXPECT_FALSE(m.LookupById((*h)->lock_id)->has_value());
  EXPECT_EQ(m.key_count(), 0u);
}

TEST_F(LeaseManagerTest, LookupByIdRejectsMalformedIdsAndMissesUnknownOnes) {
  LeaseManager m(Opts());
  for (std::string_view bad : {std::string_view(""), std::string_view("abc"),
                               std::string_view("9F1C2A7E0B5D4C3E8A6F1B2D3C4E5F60"),
                               std::string_view("9f1c2a7e0b5d4c3e8a6f1b2d3c4e5f60 ")}) {
    auto r = m.LookupById(bad);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(r.status().message(), "lock_id must be 32 lowercase hex characters");
  }
  auto r = m.LookupById("9f1c2a7e0b5d4c3e8a6f1b2d3c4e5f60");
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->has_value());
}

TEST_F(LeaseManagerTest, QueuedWaiterIsIndexedWithItsOwnAcquisitionTime) {
  LeaseManager m(Opts());
  auto a = m.TryAcquire(Req("k", seconds(10)));
  Outcome o;
  auto start = m.AcquireAsync(Req("k", seconds(10), seconds(30), "next"), Record(&o));
  ASSERT_TRUE(start.ok() && start->queued);
  clock_.Advance(seconds(3));
  const WallTime handover = clock_.WallNow();
  ASSERT_TRUE(m.Release("k", (*a)->lock_id).ok());
  ASSERT_TRUE(o.called && o.grant.has_value());
  EXPECT_EQ(o.grant->acquired_at, handover);
  EXPECT_FALSE(m.LookupById((*a)->lock_id)->has_value());
  auto found = m.LookupById(o.grant->lock_id);
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->key, "k");
  EXPECT_EQ((*found)->info.owner, "next");
  EXPECT_EQ((*found)->info.acquired_at, handover);
}

TEST_F(LeaseManagerTest, MultiKeyGroupsAreNotIndexed) {
  LeaseManager m(Opts());
  const WallTime t0 = clock_.WallNow();
  auto g = m.TryMultiAcquire({{"a", "b"}, seconds(10), Duration(0), std::nullopt});
  ASSERT_TRUE(g.ok() && g->has_value());
  EXPECT_EQ((*g)->acquired_at, t0);
  EXPECT_EQ((*m.Info("a"))->acquired_at, t0);
  EXPECT_EQ((*m.Info("b"))->lock_id, (*g)->lock_id);
  EXPECT_FALSE(journal_.leases().at("a").indexed);
  EXPECT_FALSE(m.LookupById((*g)->lock_id)->has_value());
  // A single key group is a group too.
  auto one = m.TryMultiAcquire({{"c"}, seconds(10), Duration(0), std::nullopt});
  EXPECT_FALSE(m.LookupById((*one)->lock_id)->has_value());
  // A single-key lease released through MultiRelease leaves the index.
  auto s = m.TryAcquire(Req("d", seconds(10)));
  ASSERT_TRUE(m.LookupById((*s)->lock_id)->has_value());
  const std::vector<std::string> keys = {"d"};
  ASSERT_EQ(*m.MultiRelease(keys, (*s)->lock_id), 1u);
  EXPECT_FALSE(m.LookupById((*s)->lock_id)->has_value());
}

TEST_F(LeaseManagerTest, RestoredLeasesKeepAcquiredAtAndIndexOnlySingleKeyGrants) {
  LeaseManager m(Opts());
  const WallTime t0 = clock_.WallNow() - seconds(3);
  StoredLease single{
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 40, clock_.WallNow() + seconds(20), "o", t0, true};
  StoredLease grouped{
      "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", 41, clock_.WallNow() + seconds(20), {}, t0, false};
  StoredLease v1{"cccccccccccccccccccccccccccccccc", 42, clock_.WallNow() + seconds(20), {}};
  StoredLease expired{
      "dddddddddddddddddddddddddddddddd", 43, clock_.WallNow() - seconds(1), {}, t0, true};
  m.RestoreLease("single", single);
  m.RestoreLease("g1", grouped);
  m.RestoreLease("g2", grouped);
  m.RestoreLease("v1", v1);
  m.RestoreLease("expired", expired);
  auto found = m.LookupById(single.lock_id);
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->key, "single");
  EXPECT_EQ((*found)->info.acquired_at, t0);
  EXPECT_EQ((*found)->info.ttl_remaining, seconds(20));
  EXPECT_FALSE(m.LookupById(grouped.lock_id)->has_value());
  EXPECT_FALSE(m.LookupById(v1.lock_id)->has_value());
  EXPECT_FALSE(m.LookupById(expired.lock_id)->has_value());
  EXPECT_EQ((*m.Info("g2"))->acquired_at, t0);
  EXPECT_EQ((*m.Info("v1"))->acquired_at, std::nullopt);  // unknown: a version 1 record
  EXPECT_EQ((*m.Info("v1"))->lock_id, v1.lock_id);
  // Extending a restored lease journals it again with what it had.
  ASSERT_TRUE(m.Extend("single", single.lock_id, seconds(30)).ok());
  EXPECT_EQ(journal_.leases().at("single").acquired_at, t0);
  EXPECT_TRUE(journal_.leases().at("single").indexed);
  ASSERT_TRUE(m.Extend("v1", v1.lock_id, seconds(30)).ok());
  EXPECT_EQ(journal_.leases().at("v1").acquired_at, std::nullopt);
  EXPECT_FALSE(journal_.leases().at("v1").indexed);
  ASSERT_TRUE(m.Release("single", single.lock_id).ok());
  EXPECT_FALSE(m.LookupById(single.lock_id)->has_value());
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
// Lookups race with acquires, releases and expiries on other threads: whatever a lookup finds is
// the lease of that lock_id on the right key (the index is checked against the lease).
TEST(LeaseManagerConcurrencyTest, LookupByIdNeverFindsAnotherHoldersLease) {
  LeaseManager m({.timer_thread = false});
  std::atomic<int> found{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) {
        const std::string key = "k" + std::to_string((t + i) % 3);
        auto g = m.TryAcquire({key, milliseconds(i % 2 == 0 ? 1 : 10'000), Duration(0), {}});
        ASSERT_TRUE(g.ok());
        if (!g->has_value()) continue;
        auto r = m.LookupById((*g)->lock_id);
        ASSERT_TRUE(r.ok());
        if (r->has_value()) {
          ++found;
          EXPECT_EQ((*r)->key, key);
          EXPECT_EQ((*r)->info.fence, (*g)->fence);
          EXPECT_EQ((*r)->info.lock_id, (*g)->lock_id);
        }
        (void)m.Release(key, (*g)->lock_id);
        EXPECT_FALSE(m.LookupById((*g)->lock_id)->has_value());
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_GT(found.load(), 0);
  EXPECT_EQ(m.key_count(), 0u);
}

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
