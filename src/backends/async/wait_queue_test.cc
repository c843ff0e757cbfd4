#include "backends/async/wait_queue.h"

#include <set>
#include <vector>

#include "gtest/gtest.h"
#include "tollgate/event_loop.h"

namespace tollgate {
namespace {

using std::chrono::milliseconds;
using Result = absl::StatusOr<std::optional<LeaseGrant>>;

// A fake backend acquire on the loop: `free` decides; each call is counted.
struct FakeStore {
  bool free = false;
  absl::Status error = absl::OkStatus();
  int attempts = 0;
  std::vector<std::string> released;
  uint64_t fence = 0;
  void TryAcquire(const AcquireRequest& req, Completion<std::optional<LeaseGrant>> done) {
    ++attempts;
    if (!error.ok()) return done(error);
    if (!free) return done(std::optional<LeaseGrant>());
    free = false;
    done(std::optional<LeaseGrant>(LeaseGrant{"id" + std::to_string(++fence), fence, req.ttl}));
  }
};

class WaitQueueTest : public ::testing::Test {
 protected:
  WaitQueueTest()
      : loop_(std::move(*EpollEventLoop::Create())),
        queue_(
            *loop_,
            [this](const AcquireRequest& r, Completion<std::optional<LeaseGrant>> d) {
              store_.TryAcquire(r, std::move(d));
            },
            [this](const std::string&, const std::string& id) { store_.released.push_back(id); },
            {.poll = milliseconds(5)}) {}

  AcquireRequest Req(Duration wait) { return {"k", milliseconds(1000), wait, std::nullopt}; }
  bool RunUntil(const std::function<bool()>& f) {
    return loop_->RunUntil(f, loop_->clock()->SteadyNow() + std::chrono::seconds(5));
  }

  FakeStore store_;
  std::unique_ptr<EpollEventLoop> loop_;
  WaitQueue queue_;
};

TEST_F(WaitQueueTest, WaiterGetsTheKeyOnceItIsFreeAndWaitersAreServedInOrder) {
  std::vector<std::string> got;
  queue_.Acquire(Req(milliseconds(2000)), [&](Result r) { got.push_back("a:" + (*r)->lock_id); });
  queue_.Acquire(Req(milliseconds(2000)), [&](Result r) { got.push_back("b:" + (*r)->lock_id); });
  EXPECT_EQ(queue_.Count("k"), 2u);
  loop_->RunOnce(milliseconds(20));
  EXPECT_TRUE(got.empty());
  store_.free = true;
  ASSERT_TRUE(RunUntil([&] { return got.size() == 1; }));
  store_.free = true;
  ASSERT_TRUE(RunUntil([&] { return got.size() == 2; }));
  EXPECT_EQ(got, (std::vector<std::string>{"a:id1", "b:id2"}));
  EXPECT_EQ(queue_.Count("k"), 0u);
}

TEST_F(WaitQueueTest, NewcomerWithoutWaitIsNotGrantedAheadOfWaiters) {
  bool waiter_done = false;
  queue_.Acquire(Req(milliseconds(2000)), [&](Result) { waiter_done = true; });
  store_.free = true;  // free, but someone is queued
  std::optional<Result> newcomer;
  EXPECT_EQ(queue_.Acquire(Req(Duration(0)), [&](Result r) { newcomer = r; }), 0u);
  ASSERT_TRUE(newcomer.has_value());
  ASSERT_TRUE(newcomer->ok());
  EXPECT_FALSE(newcomer->value().has_value());
  ASSERT_TRUE(RunUntil([&] { return waiter_done; }));
}

TEST_F(WaitQueueTest, DeadlineGivesNullOrTheOutageError) {
  std::optional<Result> a, b;
  queue_.Acquire(Req(milliseconds(30)), [&](Result r) { a = r; });
  ASSERT_TRUE(RunUntil([&] { return a.has_value(); }));
  ASSERT_TRUE(a->ok());
  EXPECT_FALSE(a->value().has_value());
  store_.error = absl::UnavailableError("backend down");
  queue_.Acquire(Req(milliseconds(30)), [&](Result r) { b = r; });
  ASSERT_TRUE(RunUntil([&] { return b.has_value(); }));
  EXPECT_EQ(b->status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(WaitQueueTest, BadInputFailsAtOnce) {
  store_.error = absl::InvalidArgumentError("bad ttl");
  std::optional<Result> a;
  queue_.Acquire(Req(milliseconds(2000)), [&](Result r) { a = r; });
  ASSERT_TRUE(a.has_value());  // the first attempt runs inline with this fake
  EXPECT_EQ(a->status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(WaitQueueTest, CancelledWaiterIsNeverAnsweredAndItsLateGrantIsReleased) {
  // An acquire that completes only when the test says so.
  std::unique_ptr<EpollEventLoop> loop = std::move(*EpollEventLoop::Create());
  Completion<std::optional<LeaseGrant>> pending;
  std::vector<std::string> released;
  WaitQueue q(
      *loop,
      [&](const AcquireRequest&, Completion<std::optional<LeaseGrant>> d) {
        pending = std::move(d);
      },
      [&](const std::string&, const std::string& id) { released.push_back(id); });
  bool answered = false;
  const uint64_t ticket = q.Acquire(Req(milliseconds(2000)), [&](Result) { answered = true; });
  ASSERT_NE(ticket, 0u);
  ASSERT_TRUE(pending);
  q.Cancel(ticket);
  EXPECT_EQ(q.Count("k"), 0u);
  pending(std::optional<LeaseGrant>(LeaseGrant{"late", 7, milliseconds(1000)}));
  EXPECT_FALSE(answered);
  EXPECT_EQ(released, (std::vector<std::string>{"late"}));
}

TEST_F(WaitQueueTest, PokeTriesAtOnceInsteadOfAtTheNextPoll) {
  std::unique_ptr<EpollEventLoop> loop = std::move(*EpollEventLoop::Create());
  FakeStore store;
  WaitQueue q(
      *loop,
      [&](const AcquireRequest& r, Completion<std::optional<LeaseGrant>> d) {
        store.TryAcquire(r, std::move(d));
      },
      [](const std::string&, const std::string&) {}, {.poll = std::chrono::seconds(60)});
  std::optional<Result> got;
  q.Acquire(Req(std::chrono::seconds(30)), [&](Result r) { got = r; });
  EXPECT_EQ(store.attempts, 1);
  EXPECT_EQ(q.WaitingKeys(), std::vector<std::string>{"k"});
  store.free = true;
  q.Poke("k");
  ASSERT_TRUE(got.has_value());  // the fake answers inline
  ASSERT_TRUE(got->ok() && got->value().has_value());
  EXPECT_EQ(store.attempts, 2);
  q.Poke("nobody");  // no waiters: nothing happens
  EXPECT_EQ(store.attempts, 2);
}

// Two queues (two I/O threads) sharing one WaitOrder serve a key in arrival order across both, and
// a newcomer without WAIT on either is not granted while anyone waits.
TEST(WaitOrderTest, QueuesSharingAnOrderServeAKeyInArrivalOrder) {
  std::unique_ptr<EpollEventLoop> loop = std::move(*EpollEventLoop::Create());
  FakeStore store;
  WaitOrder order;
  auto make = [&] {
    auto q = std::make_unique<WaitQueue>(
        *loop,
        [&](const AcquireRequest& r, Completion<std::optional<LeaseGrant>> d) {
          store.TryAcquire(r, std::move(d));
        },
        [](const std::string&, const std::string&) {},
        WaitQueue::Options{.poll = std::chrono::milliseconds(5)});
    q->set_order(&order);
    return q;
  };
  auto a = make(), b = make();
  std::vector<std::string> got;
  auto req = [](Duration wait) {
    return AcquireRequest{"k", std::chrono::seconds(10), wait, std::nullopt};
  };
  b->Acquire(req(std::chrono::seconds(5)), [&](Result r) { got.push_back("b1:" + (*r)->lock_id); });
  a->Acquire(req(std::chrono::seconds(5)), [&](Result r) { got.push_back("a1:" + (*r)->lock_id); });
  b->Acquire(req(std::chrono::seconds(5)), [&](Result r) { got.push_back("b2:" + (*r)->lock_id); });
  EXPECT_EQ(a->Count("k"), 3u);  // the whole server's waiters
  std::optional<Result> newcomer;
  store.free = true;
  a->Acquire(req(Duration(0)), [&](Result r) { newcomer = r; });
  ASSERT_TRUE(newcomer && newcomer->ok());
  EXPECT_FALSE(newcomer->value().has_value());  // behind the waiters, on the other queue too
  for (size_t n = 1; n <= 3; ++n) {
    store.free = true;
    ASSERT_TRUE(loop->RunUntil([&] { return got.size() == n; },
                               loop->clock()->SteadyNow() + std::chrono::seconds(5)));
  }
  EXPECT_EQ(got, (std::vector<std::string>{"b1:id1", "a1:id2", "b2:id3"}));
  EXPECT_EQ(order.Count("k"), 0u);
}

TEST_F(WaitQueueTest, ShutdownAnswersEveryWaiterWithNull) {
  int nulls = 0;
  for (int i = 0; i < 3; ++i) {
    queue_.Acquire(Req(milliseconds(2000)), [&](Result r) {
      if (r.ok() && !r->has_value()) ++nulls;
    });
  }
  queue_.Shutdown();
  EXPECT_EQ(nulls, 3);
}

TEST_F(WaitQueueTest, ManyWaitingKeysAllProgressWithoutThreads) {
  int granted = 0;
  for (int i = 0; i < 200; ++i) {
    queue_.Acquire(
        {"key" + std::to_string(i), milliseconds(1000), milliseconds(3000), std::nullopt},
        [&](Result r) {
          if (r.ok() && r->has_value()) ++granted;
          store_.free = true;  // the next key may go
        });
  }
  store_.free = true;
  ASSERT_TRUE(RunUntil([&] { return granted == 200; }));
}


// Multi-key and semaphore waiters: a fake store of held lease keys and semaphore permits.
struct FakeMultiStore {
  std::set<std::string> held;
  int sem_limit = 2;
  int sem_holders = 0;
  uint64_t fence = 0;
  std::vector<std::string> released;
  WaitQueue::Ops Ops() {
    WaitQueue::Ops ops;
    ops.acquire = [this](const AcquireRequest& r, Completion<std::optional<LeaseGrant>> d) {
      if (held.count(r.key)) return d(std::optional<LeaseGrant>());
      held.insert(r.key);
      d(std::optional<LeaseGrant>(LeaseGrant{"s" + std::to_string(++fence), fence, r.ttl}));
    };
    ops.release = [this](const std::string& key, const std::string& id) {
      held.erase(key);
      released.push_back(id);
    };
    ops.multi_acquire = [this](const MultiAcquireRequest& r,
                               Completion<std::optional<LeaseGrant>> d) {
      for (const auto& k : r.keys) {
        if (held.count(k)) return d(std::optional<LeaseGrant>());
      }
      for (const auto& k : r.keys) held.insert(k);
      d(std::optional<LeaseGrant>(LeaseGrant{"m" + std::to_string(++fence), fence, r.ttl}));
    };
    ops.multi_release = [this](const std::vector<std::string>& keys, const std::string& id) {
      for (const auto& k : keys) held.erase(k);
      released.push_back(id);
    };
    ops.sem_acquire = [this](const SemAcquireRequest& r, Completion<std::optional<PermitGrant>> d) {
      if (sem_holders >= sem_limit) return d(std::optional<PermitGrant>());
      ++sem_holders;
      d(std::optional<PermitGrant>(PermitGrant{"p" + std::to_string(++fence), 0, fence, r.ttl}));
    };
    ops.sem_release = [this](const std::string&, const std::string& id) {
      --sem_holders;
      released.push_back(id);
    };
    return ops;
  }
};

class MultiWaitTest : public ::testing::Test {
 protected:
  MultiWaitTest() : loop_(std::move(*EpollEventLoop::Create())) {}
  bool RunUntil(const std::function<bool()>& f) {
    return loop_->RunUntil(f, loop_->clock()->SteadyNow() + std::chrono::seconds(5));
  }
  static MultiAcquireRequest Multi(std::vector<std::string> keys, Duration wait) {
    return {std::move(keys), milliseconds(1000), wait, std::nullopt};
  }
  FakeMultiStore store_;
  std::unique_ptr<EpollEventLoop> loop_;
};

TEST_F(MultiWaitTest, SingleKeyAcquirersArrivingLaterCannotStarveAMultiKeyWaiter) {
  WaitQueue q(*loop_, store_.Ops(), {.poll = milliseconds(5)});
  store_.held.insert("a");  // someone holds a; b is free
  std::optional<Result> multi, single, nowait;
  ASSERT_NE(q.MultiAcquire(Multi({"a", "b"}, milliseconds(3000)), [&](Result r) { multi = r; }),
            0u);
  EXPECT_EQ(q.Count("a"), 1u);
  EXPECT_EQ(q.Count("b"), 1u);
  // b is free, but the multi-key waiter came first: a newcomer for b waits behind it.
  q.Acquire({"b", milliseconds(1000), milliseconds(3000), std::nullopt},
            [&](Result r) { single = r; });
  q.Acquire({"b", milliseconds(1000), Duration(0), std::nullopt}, [&](Result r) { nowait = r; });
  ASSERT_TRUE(nowait.has_value());
  EXPECT_FALSE(nowait->value().has_value());
  loop_->RunOnce(milliseconds(30));
  EXPECT_FALSE(multi.has_value());
  EXPECT_FALSE(single.has_value());
  EXPECT_FALSE(store_.held.count("b")) << "the multi-key waiter must hold nothing while it waits";
  store_.held.erase("a");
  ASSERT_TRUE(RunUntil([&] { return multi.has_value(); }));
  EXPECT_EQ((*multi)->value().lock_id.substr(0, 1), "m");
  EXPECT_FALSE(single.has_value());
  store_.held.erase("b");
  ASSERT_TRUE(RunUntil([&] { return single.has_value(); }));
  EXPECT_TRUE((*single)->has_value());
}

TEST_F(MultiWaitTest, OppositeKeyOrdersAcrossQueuesSharingAnOrderDoNotDeadlock) {
  WaitOrder order;
  WaitQueue q1(*loop_, store_.Ops(), {.poll = milliseconds(5)});
  WaitQueue q2(*loop_, store_.Ops(), {.poll = milliseconds(5)});
  q1.set_order(&order);
  q2.set_order(&order);
  store_.held = {"a", "b"};
  std::vector<std::string> got;
  q1.MultiAcquire(Multi({"a", "b"}, milliseconds(3000)), [&](Result r) {
    ASSERT_TRUE(r.ok() && r->has_value());
    got.push_back("w1");
  });
  q2.MultiAcquire(Multi({"b", "a"}, milliseconds(3000)), [&](Result r) {
    ASSERT_TRUE(r.ok() && r->has_value());
    got.push_back("w2");
  });
  EXPECT_EQ(q1.Count("a"), 2u);
  store_.held.clear();
  ASSERT_TRUE(RunUntil([&] { return got.size() == 1; }));
  EXPECT_EQ(got[0], "w1");
  store_.held.clear();
  ASSERT_TRUE(RunUntil([&] { return got.size() == 2; }));
  EXPECT_EQ(got[1], "w2");
}

TEST_F(MultiWaitTest, CancelledMultiKeyWaiterLetsTheNextGoAndItsGrantIsReleased) {
  WaitQueue q(*loop_, store_.Ops(), {.poll = milliseconds(5)});
  store_.held.insert("a");
  bool multi_called = false;
  std::optional<Result> single;
  uint64_t t = q.MultiAcquire(Multi({"a", "b"}, milliseconds(3000)),
                              [&](Result) { multi_called = true; });
  q.Acquire({"b", milliseconds(1000), milliseconds(3000), std::nullopt},
            [&](Result r) { single = r; });
  q.Cancel(t);
  ASSERT_TRUE(RunUntil([&] { return single.has_value(); }));
  EXPECT_TRUE((*single)->has_value());
  EXPECT_FALSE(multi_called);
  EXPECT_EQ(q.Count("a"), 0u);
}

TEST_F(MultiWaitTest, FreedSemaphoreSlotsServeSeveralWaitersAtOnceInOrder) {
  WaitQueue q(*loop_, store_.Ops(), {.poll = milliseconds(1000)});  // polls would be too late
  store_.sem_holders = 2;  // full
  std::vector<int> got;
  for (int i = 0; i < 3; ++i) {
    q.SemAcquire({"s", 2, milliseconds(1000), milliseconds(5000), std::nullopt},
                 [&, i](absl::StatusOr<std::optional<PermitGrant>> r) {
                   if (r.ok() && r->has_value()) got.push_back(i);
                 });
  }
  EXPECT_EQ(q.SemCount("s"), 3u);
  EXPECT_EQ(q.Count("s"), 0u) << "semaphore and lease waiters are separate namespaces";
  store_.sem_holders = 0;  // two slots free
  q.PokeSemaphore("s");
  ASSERT_TRUE(RunUntil([&] { return got.size() == 2; }));
  EXPECT_EQ(got, (std::vector<int>{0, 1}));
  EXPECT_EQ(q.SemCount("s"), 1u);
  EXPECT_EQ(q.WaitingSemaphores(), (std::vector<std::string>{"s"}));
  EXPECT_TRUE(q.WaitingKeys().empty());
}

TEST_F(MultiWaitTest, BackendWithoutSemaphoresAnswersUnimplemented) {
  WaitQueue q(
      *loop_, [](const AcquireRequest&, Completion<std::optional<LeaseGrant>> d) { d(std::nullopt); },
      [](const std::string&, const std::string&) {});
  std::optional<absl::Status> st;
  q.SemAcquire({"s", 2, milliseconds(1000), milliseconds(10), std::nullopt},
               [&](absl::StatusOr<std::optional<PermitGrant>> r) { st = r.status(); });
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->code(), absl::StatusCode::kUnimplemented);
}

}  // namespace
}  // namespace tollgate
