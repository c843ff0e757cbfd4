#include "backends/async/wait_queue.h"

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

}  // namespace
}  // namespace tollgate
