// Fenced semaphores in the lease core (LeaseManager::SemAcquireAsync and friends).
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <random>
#include <set>
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

class SemaphoreTest : public ::testing::Test {
 protected:
  LeaseManager::Options Opts(Duration lock_delay = Duration(0)) {
    return {
        .clock = &clock_, .journal = &journal_, .lock_delay = lock_delay, .timer_thread = false};
  }
  static SemAcquireRequest Req(std::string key, int64_t limit, Duration ttl,
                               Duration wait = Duration(0),
                               std::optional<std::string> owner = std::nullopt) {
    return {std::move(key), limit, ttl, wait, std::move(owner)};
  }
  static PermitGrant MustAcquire(LeaseManager& m, const SemAcquireRequest& req) {
    auto g = m.TrySemAcquire(req);
    EXPECT_TRUE(g.ok()) << g.status();
    EXPECT_TRUE(g.ok() && g->has_value());
    return g.ok() && g->has_value() ? **g : PermitGrant{};
  }
  struct Outcome {
    bool called = false;
    std::optional<PermitGrant> grant;
  };
  static PermitCallback Record(Outcome* o) {
    return [o](std::optional<PermitGrant> g) {
      EXPECT_FALSE(o->called) << "callback called twice";
      o->called = true;
      o->grant = std::move(g);
    };
  }

  FakeClock clock_;
  testing::MemoryJournal journal_;
};

TEST_F(SemaphoreTest, GrantsTheLowestFreeSlotWithIncreasingFences) {
  LeaseManager m(Opts());
  PermitGrant a = MustAcquire(m, Req("jobs", 3, seconds(30), {}, "a"));
  PermitGrant b = MustAcquire(m, Req("jobs", 3, seconds(30)));
  PermitGrant c = MustAcquire(m, Req("jobs", 3, seconds(30)));
  EXPECT_EQ(a.slot, 0);
  EXPECT_EQ(b.slot, 1);
  EXPECT_EQ(c.slot, 2);
  EXPECT_LT(a.fence, b.fence);
  EXPECT_LT(b.fence, c.fence);
  EXPECT_EQ(a.permit_id.size(), 32u);
  EXPECT_NE(a.permit_id, b.permit_id);
  EXPECT_EQ(a.ttl, seconds(30));
  // Full.
  auto full = m.TrySemAcquire(Req("jobs", 3, seconds(30)));
  ASSERT_TRUE(full.ok());
  EXPECT_FALSE(full->has_value());
  // Slot 1 frees and is the one given next.
  ASSERT_TRUE(m.SemRelease("jobs", b.permit_id).ok());
  PermitGrant d = MustAcquire(m, Req("jobs", 3, seconds(30)));
  EXPECT_EQ(d.slot, 1);
  EXPECT_GT(d.fence, c.fence);
  // Fences come from the lease counter.
  auto lease = m.TryAcquire({"jobs", seconds(1), Duration(0), std::nullopt});
  ASSERT_TRUE(lease.ok() && lease->has_value());  // a lease "jobs" is another namespace
  EXPECT_EQ((*lease)->fence, d.fence + 1);
  EXPECT_EQ(m.last_fence(), (*lease)->fence);
}

TEST_F(SemaphoreTest, DifferentLimitIsAnErrorNamingBothAndChangesNothing) {
  LeaseManager m(Opts());
  MustAcquire(m, Req("s", 3, seconds(30)));
  const uint64_t fence = m.last_fence();
  auto r = m.TrySemAcquire(Req("s", 5, seconds(30)));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(),
            "limit 5 differs from the limit 3 of the current holders of semaphore \"s\"");
  EXPECT_EQ(m.last_fence(), fence);
  EXPECT_EQ((*m.SemInfo("s"))->holders, 1);
  // The key in the message is cut to 64 bytes.
  const std::string long_key(100, 'k');
  MustAcquire(m, Req(long_key, 1, seconds(30)));
  auto r2 = m.SemAcquireAsync(Req(long_key, 2, seconds(30), seconds(5)), [](auto) {});
  EXPECT_EQ(r2.status().message(),
            "limit 2 differs from the limit 1 of the current holders of semaphore \"" +
                std::string(64, 'k') + "\"");
  // Once the holders are gone, any limit goes.
  clock_.Advance(seconds(30));
  EXPECT_EQ(MustAcquire(m, Req("s", 5, seconds(30))).slot, 0);
}

TEST_F(SemaphoreTest, BadRequestsAreRejected) {
  LeaseManager m(Opts());
  EXPECT_EQ(m.TrySemAcquire(Req("s", 0, seconds(1))).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m.TrySemAcquire(Req("s", kMaxSemaphoreLimit + 1, seconds(1))).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m.TrySemAcquire(Req("", 1, seconds(1))).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m.TrySemAcquire(Req("s", 1, Duration(0))).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m.SemRelease("", "x").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m.SemExtend("s", "x", Duration(0)).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m.SemInfo("").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m.last_fence(), 0u);
  EXPECT_EQ(m.semaphore_count(), 0u);
}

TEST_F(SemaphoreTest, ExpiryFreesTheSlotAndKillsThePermit) {
  LeaseManager m(Opts(seconds(10)));  // lock-delay does not apply to permits
  PermitGrant a = MustAcquire(m, Req("s", 2, seconds(1)));
  PermitGrant b = MustAcquire(m, Req("s", 2, seconds(5)));
  EXPECT_EQ(journal_.permits().size(), 2u);
  clock_.Advance(seconds(1));
  auto info = m.SemInfo("s");
  ASSERT_TRUE(info->has_value());
  EXPECT_EQ((*info)->holders, 1);
  EXPECT_EQ((*info)->fence, b.fence);
  EXPECT_EQ(journal_.permits().size(), 1u);
  PermitGrant c = MustAcquire(m, Req("s", 2, seconds(5)));
  EXPECT_EQ(c.slot, a.slot);
  EXPECT_GT(c.fence, b.fence);
  EXPECT_EQ(m.SemRelease("s", a.permit_id).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(m.SemExtend("s", a.permit_id, seconds(5)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  clock_.Advance(seconds(5));
  m.Tick();  // no client: the timer frees memory and journal
  EXPECT_FALSE(m.SemInfo("s")->has_value());
  EXPECT_EQ(m.semaphore_count(), 0u);
  EXPECT_TRUE(journal_.permits().empty());
}

TEST_F(SemaphoreTest, ExtendSetsExpiryFromNowAndNeverRevives) {
  LeaseManager m(Opts());
  PermitGrant a = MustAcquire(m, Req("s", 1, seconds(10)));
  clock_.Advance(seconds(8));
  auto ext = m.SemExtend("s", a.permit_id, seconds(5));
  ASSERT_TRUE(ext.ok());
  EXPECT_EQ(*ext, seconds(5));
  const auto stored = journal_.permits().at({"s", a.permit_id});
  EXPECT_EQ(stored.expiry, clock_.WallNow() + seconds(5));
  EXPECT_EQ(stored.slot, 0);
  EXPECT_EQ(stored.limit, 1);
  clock_.Advance(milliseconds(4999));
  EXPECT_FALSE(m.TrySemAcquire(Req("s", 1, seconds(1)))->has_value());
  // Shortening frees the slot on time, timer included.
  ASSERT_TRUE(m.SemExtend("s", a.permit_id, milliseconds(1)).ok());
  clock_.Advance(milliseconds(1));
  EXPECT_EQ(m.SemExtend("s", a.permit_id, seconds(60)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(m.SemInfo("s")->has_value());
}

TEST_F(SemaphoreTest, InfoNeverRevealsPermitIdsAndCountsWaiters) {
  Outcome w1, w2;  // outlive the manager, which answers leftover waiters
  LeaseManager m(Opts());
  EXPECT_FALSE(m.SemInfo("s")->has_value());
  MustAcquire(m, Req("s", 2, seconds(10), {}, "a"));
  PermitGrant b = MustAcquire(m, Req("s", 2, seconds(10)));
  ASSERT_TRUE(m.SemAcquireAsync(Req("s", 2, seconds(10), seconds(60)), Record(&w1))->queued);
  ASSERT_TRUE(m.SemAcquireAsync(Req("s", 2, seconds(10), seconds(60)), Record(&w2))->queued);
  auto info = m.SemInfo("s");
  ASSERT_TRUE(info->has_value());
  EXPECT_EQ((*info)->limit, 2);
  EXPECT_EQ((*info)->holders, 2);
  EXPECT_EQ((*info)->waiters, 2u);
  EXPECT_EQ((*info)->fence, b.fence);
}

TEST_F(SemaphoreTest, WaitersAreServedInFifoOrderOnReleaseAndExpiry) {
  LeaseManager m(Opts());
  PermitGrant holder = MustAcquire(m, Req("s", 1, seconds(30)));
  Outcome o1, o2, o3;
  auto w1 = m.SemAcquireAsync(Req("s", 1, seconds(5), seconds(60), "w1"), Record(&o1));
  auto w2 = m.SemAcquireAsync(Req("s", 1, seconds(5), seconds(60), "w2"), Record(&o2));
  auto w3 = m.SemAcquireAsync(Req("s", 1, seconds(5), seconds(60), "w3"), Record(&o3));
  ASSERT_TRUE(w1.ok() && w2.ok() && w3.ok());
  EXPECT_TRUE(w1->queued && w2->queued && w3->queued);
  // A newcomer without WAIT does not jump the queue.
  EXPECT_FALSE(m.TrySemAcquire(Req("s", 1, seconds(1)))->has_value());

  ASSERT_TRUE(m.SemRelease("s", holder.permit_id).ok());
  ASSERT_TRUE(o1.called && o1.grant.has_value());
  EXPECT_FALSE(o2.called);
  EXPECT_GT(o1.grant->fence, holder.fence);
  EXPECT_EQ(o1.grant->slot, 0);
  // w1's permit expires: the timer serves w2.
  clock_.Advance(seconds(5));
  m.Tick();
  ASSERT_TRUE(o2.called && o2.grant.has_value());
  EXPECT_GT(o2.grant->fence, o1.grant->fence);
  EXPECT_FALSE(o3.called);
  EXPECT_TRUE(m.CancelSemWaiter("s", w3->waiter_id));
  EXPECT_FALSE(m.CancelSemWaiter("s", w3->waiter_id));
  ASSERT_TRUE(m.SemRelease("s", o2.grant->permit_id).ok());
  EXPECT_FALSE(o3.called);
  EXPECT_EQ(m.semaphore_count(), 0u);
}

TEST_F(SemaphoreTest, SeveralFreedSlotsServeSeveralWaiters) {
  Outcome o1, o2, o3;
  LeaseManager m(Opts());
  MustAcquire(m, Req("s", 3, seconds(5)));
  MustAcquire(m, Req("s", 3, seconds(5)));
  MustAcquire(m, Req("s", 3, seconds(30)));
  ASSERT_TRUE(m.SemAcquireAsync(Req("s", 3, seconds(5), seconds(60)), Record(&o1))->queued);
  ASSERT_TRUE(m.SemAcquireAsync(Req("s", 3, seconds(5), seconds(60)), Record(&o2))->queued);
  ASSERT_TRUE(m.SemAcquireAsync(Req("s", 3, seconds(5), seconds(60)), Record(&o3))->queued);
  clock_.Advance(seconds(5));
  m.Tick();
  ASSERT_TRUE(o1.grant.has_value() && o2.grant.has_value());
  EXPECT_FALSE(o3.called);
  EXPECT_EQ(std::set<int64_t>({o1.grant->slot, o2.grant->slot}), std::set<int64_t>({0, 1}));
  EXPECT_EQ((*m.SemInfo("s"))->waiters, 1u);
}

TEST_F(SemaphoreTest, WaiterTimesOutWithNothing) {
  LeaseManager m(Opts());
  MustAcquire(m, Req("s", 1, seconds(30)));
  Outcome o;
  ASSERT_TRUE(m.SemAcquireAsync(Req("s", 1, seconds(10), seconds(2)), Record(&o))->queued);
  clock_.Advance(milliseconds(1999));
  m.Tick();
  EXPECT_FALSE(o.called);
  clock_.Advance(milliseconds(1));
  m.Tick();
  EXPECT_TRUE(o.called);
  EXPECT_FALSE(o.grant.has_value());
  EXPECT_EQ((*m.SemInfo("s"))->waiters, 0u);
}

TEST_F(SemaphoreTest, WaitWithAFreeSlotGrantsAtOnce) {
  LeaseManager m(Opts());
  Outcome o;
  auto w = m.SemAcquireAsync(Req("s", 1, seconds(10), seconds(60)), Record(&o));
  ASSERT_TRUE(w.ok());
  EXPECT_FALSE(w->queued);
  EXPECT_TRUE(w->grant.has_value());
  EXPECT_FALSE(o.called);
}

TEST_F(SemaphoreTest, ShutdownAnswersWaiters) {
  Outcome o;
  {
    LeaseManager m(Opts());
    MustAcquire(m, Req("s", 1, seconds(30)));
    ASSERT_TRUE(m.SemAcquireAsync(Req("s", 1, seconds(10), seconds(60)), Record(&o))->queued);
  }
  EXPECT_TRUE(o.called);
  EXPECT_FALSE(o.grant.has_value());
}

TEST_F(SemaphoreTest, RestoreReinstatesLivePermitsAndDropsTheRest) {
  LeaseManager m(Opts());
  const WallTime now = clock_.WallNow();
  m.RestorePermit("s", "p0", {0, 3, 40, now + seconds(20), "o"});
  m.RestorePermit("s", "p2", {2, 3, 42, now + seconds(5), std::nullopt});
  m.RestorePermit("s", "old", {1, 3, 50, now - seconds(1), std::nullopt});    // expired
  m.RestorePermit("s", "clash", {0, 3, 43, now + seconds(5), std::nullopt});  // slot taken
  m.RestorePermit("s", "other", {1, 4, 44, now + seconds(5), std::nullopt});  // another limit
  EXPECT_EQ(m.last_fence(), 50u);
  auto info = m.SemInfo("s");
  ASSERT_TRUE(info->has_value());
  EXPECT_EQ((*info)->holders, 2);
  EXPECT_EQ((*info)->limit, 3);
  EXPECT_EQ((*info)->fence, 42u);
  // The dropped ones had their records deleted (the test journal never held them: no-ops).
  PermitGrant g = MustAcquire(m, Req("s", 3, seconds(1)));
  EXPECT_EQ(g.slot, 1);
  EXPECT_EQ(g.fence, 51u);
  EXPECT_FALSE(m.TrySemAcquire(Req("s", 3, seconds(1)))->has_value());
  EXPECT_TRUE(m.SemExtend("s", "p0", seconds(30)).ok());
  clock_.Advance(seconds(5));
  EXPECT_EQ((*m.SemInfo("s"))->holders, 1);  // p2 and g expired, p0 extended
  EXPECT_TRUE(m.SemRelease("s", "p0").ok());
}

// Real threads waiting on one semaphore (no expiry: the fake clock stands still): never more
// than `limit` holders, never two in one slot, every waiter served.
TEST(SemaphoreConcurrencyTest, ThreadsNeverExceedTheLimit) {
  FakeClock clock;
  LeaseManager m({.clock = &clock, .timer_thread = false});
  constexpr int64_t kLimit = 3;
  constexpr int kThreads = 8, kRounds = 200;
  std::atomic<int> inside{0}, violations{0}, grants{0};
  std::atomic<bool> slot_busy[kLimit] = {};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int i = 0; i < kRounds; ++i) {
        std::mutex mu;
        std::condition_variable cv;
        bool done = false;
        std::optional<PermitGrant> got;
        auto start = m.SemAcquireAsync({"s", kLimit, seconds(60), seconds(3600), std::nullopt},
                                       [&](std::optional<PermitGrant> g) {
                                         std::lock_guard<std::mutex> l(mu);
                                         got = std::move(g);
                                         done = true;
                                         cv.notify_all();
                                       });
        ASSERT_TRUE(start.ok());
        if (start->queued) {
          std::unique_lock<std::mutex> l(mu);
          ASSERT_TRUE(cv.wait_for(l, std::chrono::seconds(30), [&] { return done; }));
        } else {
          got = std::move(start->grant);
        }
        ASSERT_TRUE(got.has_value());
        if (inside.fetch_add(1) >= kLimit) violations++;
        if (got->slot < 0 || got->slot >= kLimit || slot_busy[got->slot].exchange(true)) {
          violations++;
        }
        grants++;
        if (rng() % 4 == 0) std::this_thread::yield();
        slot_busy[got->slot].store(false);
        inside.fetch_sub(1);
        ASSERT_TRUE(m.SemRelease("s", got->permit_id).ok());
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(violations.load(), 0);
  EXPECT_EQ(grants.load(), kThreads * kRounds);
  EXPECT_EQ(m.last_fence(), uint64_t{kThreads * kRounds});
  EXPECT_EQ(m.semaphore_count(), 0u);
}

// Randomized operations with expiry on a fake clock, checked against a model of which permits
// are unexpired: the core never holds more than `limit` of them, never two in one slot, agrees
// on the count, and serves its waiters in FIFO order.
TEST(SemaphoreRandomizedTest, NeverMoreThanTheLimitUnexpired) {
  for (uint32_t seed = 1; seed <= 20; ++seed) {
    FakeClock clock;
    std::mt19937 rng(seed);
    constexpr int64_t kLimit = 4;
    struct Held {
      int64_t slot;
      SteadyTime expiry;
    };
    std::map<std::string, Held> model;  // permit id -> slot, expiry
    std::vector<int> served;            // waiter numbers, in the order served
    int next_waiter = 0;
    int step = 0;
    uint64_t last_fence = 0;
    auto note = [&](const PermitGrant& g) {
      ASSERT_GT(g.fence, last_fence);
      last_fence = g.fence;
      for (auto& [id, h] : model) {
        if (h.expiry > clock.SteadyNow()) {
          ASSERT_NE(h.slot, g.slot) << "seed " << seed << " step " << step;
        }
      }
      model[g.permit_id] = {g.slot, clock.SteadyNow() + g.ttl};
    };
    LeaseManager m({.clock = &clock, .timer_thread = false});  // last: its waiters use the above
    for (step = 0; step < 2000; ++step) {
      const int op = static_cast<int>(rng() % 6);
      const Duration ttl = milliseconds(1 + rng() % 50);
      if (op == 0) {
        auto g = m.TrySemAcquire({"s", kLimit, ttl, Duration(0), std::nullopt});
        ASSERT_TRUE(g.ok());
        if (g->has_value()) note(**g);
      } else if (op == 1) {
        const int n = next_waiter++;
        auto s = m.SemAcquireAsync({"s", kLimit, ttl, milliseconds(1 + rng() % 100), std::nullopt},
                                   [&, n](std::optional<PermitGrant> g) {
                                     if (g) {
                                       note(*g);
                                       served.push_back(n);
                                     }
                                   });
        ASSERT_TRUE(s.ok());
        if (s->grant) {
          note(*s->grant);
          served.push_back(n);
        }
      } else if (op == 2 && !model.empty()) {
        auto it = std::next(model.begin(), static_cast<long>(rng() % model.size()));
        const bool live = it->second.expiry > clock.SteadyNow();
        const std::string id = it->first;
        model.erase(it);  // before the call: the freed slot may go to a waiter during it
        EXPECT_EQ(m.SemRelease("s", id).ok(), live);
      } else if (op == 3 && !model.empty()) {
        auto it = std::next(model.begin(), static_cast<long>(rng() % model.size()));
        const bool live = it->second.expiry > clock.SteadyNow();
        EXPECT_EQ(m.SemExtend("s", it->first, ttl).ok(), live);
        if (live) it->second.expiry = clock.SteadyNow() + ttl;
      } else if (op == 4) {
        clock.Advance(milliseconds(rng() % 20));
        m.Tick();
      } else {
        m.Tick();
      }
      auto info = m.SemInfo("s");  // may serve waiters (noted in the model) before it answers
      ASSERT_TRUE(info.ok());
      int64_t live = 0;
      for (auto& [id, h] : model) live += h.expiry > clock.SteadyNow();
      ASSERT_LE(live, kLimit) << "seed " << seed << " step " << step;
      ASSERT_EQ(info->has_value() ? (*info)->holders : 0, live)
          << "seed " << seed << " step " << step;
    }
    EXPECT_TRUE(std::is_sorted(served.begin(), served.end())) << "seed " << seed;
  }
}

}  // namespace
}  // namespace tollgate
