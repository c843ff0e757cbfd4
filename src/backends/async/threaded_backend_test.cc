#include "backends/async/threaded_backend.h"

#include <atomic>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tollgate/event_loop.h"

namespace tollgate {
namespace {

using std::chrono::milliseconds;

// A memory backend shared by every worker "connection" (the real backends share their server).
class SharedMemory final : public Backend {
 public:
  explicit SharedMemory(Backend* b, std::atomic<int>* calls) : b_(b), calls_(calls) {}
  std::string_view kind() const override { return "memory"; }
  absl::StatusOr<std::optional<LeaseGrant>> Acquire(std::string_view key, Duration ttl,
                                                    std::optional<std::string> owner) override {
    ++*calls_;
    return b_->Acquire(key, ttl, std::move(owner));
  }
  absl::Status Release(std::string_view key, std::string_view id) override {
    return b_->Release(key, id);
  }
  absl::StatusOr<Duration> Extend(std::string_view key, std::string_view id, Duration t) override {
    return b_->Extend(key, id, t);
  }
  absl::StatusOr<std::optional<LeaseInfo>> Info(std::string_view key) override {
    return b_->Info(key);
  }
  absl::StatusOr<std::optional<LeaseById>> LookupById(std::string_view id) override {
    return b_->LookupById(id);
  }
  absl::Status FencedSet(std::string_view r, uint64_t f, std::string_view v) override {
    return b_->FencedSet(r, f, v);
  }
  absl::StatusOr<std::optional<FencedValue>> FencedGet(std::string_view r) override {
    return b_->FencedGet(r);
  }
  absl::StatusOr<Decision> Throttle(std::string_view k, const BucketParams& p, Decimal c) override {
    return b_->Throttle(k, p, c);
  }
  absl::StatusOr<PolicyDecision> CheckLayers(std::span<const LayerCheck> l, Decimal c) override {
    return b_->CheckLayers(l, c);
  }

 private:
  Backend* b_;
  std::atomic<int>* calls_;
};

class ThreadedBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    loop_ = std::move(*EpollEventLoop::Create());
    auto b = NewThreadedAsyncBackend(
        [this]() -> absl::StatusOr<std::unique_ptr<Backend>> {
          return std::make_unique<SharedMemory>(memory_.get(), &acquires_);
        },
        *loop_, {.workers = 4});
    ASSERT_TRUE(b.ok()) << b.status();
    backend_ = std::move(*b);
  }
  bool RunUntil(const std::function<bool()>& f) {
    return loop_->RunUntil(f, loop_->clock()->SteadyNow() + std::chrono::seconds(10));
  }

  std::unique_ptr<Backend> memory_ = NewMemoryBackend();
  std::atomic<int> acquires_{0};
  std::unique_ptr<EpollEventLoop> loop_;
  std::unique_ptr<AsyncBackend> backend_;
};

TEST_F(ThreadedBackendTest, OperationsOnOneKeyCompleteInOrderOnTheLoopThread) {
  const std::thread::id loop_thread = std::this_thread::get_id();
  std::vector<int> order;
  for (int i = 1; i <= 100; ++i) {
    backend_->FencedSet("r", static_cast<uint64_t>(i), "v" + std::to_string(i),
                        [&, i](absl::Status st) {
                          // Fences issued by nobody: the memory backend refuses them all the same
                          // way, in order.
                          EXPECT_EQ(std::this_thread::get_id(), loop_thread);
                          (void)st;
                          order.push_back(i);
                        });
  }
  ASSERT_TRUE(RunUntil([&] { return order.size() == 100; }));
  for (int i = 0; i < 100; ++i) EXPECT_EQ(order[i], i + 1);
}

TEST_F(ThreadedBackendTest, AcquireReleaseAndWaitOverTheWorkers) {
  std::optional<LeaseGrant> held;
  backend_->Acquire({"k", milliseconds(5000), Duration(0), std::nullopt},
                    [&](absl::StatusOr<std::optional<LeaseGrant>> g) {
                      ASSERT_TRUE(g.ok());
                      held = **g;
                    });
  ASSERT_TRUE(RunUntil([&] { return held.has_value(); }));
  std::optional<absl::StatusOr<std::optional<LeaseGrant>>> waiter;
  backend_->Acquire({"k", milliseconds(5000), milliseconds(3000), std::nullopt},
                    [&](absl::StatusOr<std::optional<LeaseGrant>> g) { waiter = g; });
  EXPECT_EQ(backend_->LocalWaiters("k"), 1u);
  bool released = false;
  loop_->RunAt(loop_->clock()->SteadyNow() + milliseconds(50), [&] {
    backend_->Release("k", held->lock_id, [&](absl::Status st) {
      EXPECT_TRUE(st.ok()) << st;
      released = true;
    });
  });
  ASSERT_TRUE(RunUntil([&] { return waiter.has_value(); }));
  EXPECT_TRUE(released);
  ASSERT_TRUE(waiter->ok());
  ASSERT_TRUE(waiter->value().has_value());
  EXPECT_GT(waiter->value()->fence, held->fence);
}

TEST_F(ThreadedBackendTest, LookupByIdIsForwarded) {
  std::optional<LeaseGrant> held;
  backend_->Acquire({"k", milliseconds(5000), Duration(0), std::string("w")},
                    [&](absl::StatusOr<std::optional<LeaseGrant>> g) {
                      ASSERT_TRUE(g.ok());
                      held = **g;
                    });
  ASSERT_TRUE(RunUntil([&] { return held.has_value(); }));
  std::optional<absl::StatusOr<std::optional<LeaseById>>> found;
  backend_->LookupById(held->lock_id,
                       [&](absl::StatusOr<std::optional<LeaseById>> r) { found = std::move(r); });
  ASSERT_TRUE(RunUntil([&] { return found.has_value(); }));
  ASSERT_TRUE(found->ok()) << found->status();
  ASSERT_TRUE(found->value().has_value());
  EXPECT_EQ(found->value()->key, "k");
  EXPECT_EQ(found->value()->info.fence, held->fence);
  EXPECT_EQ(found->value()->info.owner, "w");
  EXPECT_EQ(found->value()->info.acquired_at, held->acquired_at);
  found.reset();
  backend_->LookupById("not-a-lock-id",
                       [&](absl::StatusOr<std::optional<LeaseById>> r) { found = std::move(r); });
  ASSERT_TRUE(RunUntil([&] { return found.has_value(); }));
  EXPECT_EQ(found->status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ThreadedBackendTest, FullQueueAnswersUnavailableAtOnce) {
  auto loop = std::move(*EpollEventLoop::Create());
  auto b = NewThreadedAsyncBackend(
      [this]() -> absl::StatusOr<std::unique_ptr<Backend>> {
        return std::make_unique<SharedMemory>(memory_.get(), &acquires_);
      },
      *loop, {.workers = 1, .max_queued = 1});
  ASSERT_TRUE(b.ok());
  int unavailable = 0, done = 0;
  for (int i = 0; i < 200; ++i) {
    (*b)->Throttle("t", {Decimal::Units(10), Decimal::Units(1)}, Decimal::Units(1),
                   [&](absl::StatusOr<Decision> d) {
                     ++done;
                     if (d.status().code() == absl::StatusCode::kUnavailable) {
                       EXPECT_NE(d.status().message().find("backend queue full"),
                                 std::string_view::npos);
                       ++unavailable;
                     }
                   });
  }
  EXPECT_GT(unavailable, 0);
  ASSERT_TRUE(loop->RunUntil([&] { return done == 200; },
                             loop->clock()->SteadyNow() + std::chrono::seconds(10)));
}

TEST(ThreadedBackendOptionsTest, BadOptionsAndConnectErrorsAreReturned) {
  auto loop = std::move(*EpollEventLoop::Create());
  auto connect = []() -> absl::StatusOr<std::unique_ptr<Backend>> { return NewMemoryBackend(); };
  EXPECT_EQ(NewThreadedAsyncBackend(connect, *loop, {.workers = 0}).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto failing = []() -> absl::StatusOr<std::unique_ptr<Backend>> {
    return absl::UnavailableError("no server");
  };
  EXPECT_EQ(NewThreadedAsyncBackend(failing, *loop).status().code(),
            absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace tollgate
