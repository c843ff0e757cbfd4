// The asynchronous etcd backend against a throwaway etcd: many operations in one pass (in order per
// key), requests really in flight together, an outage with requests in flight, WAIT with watches.
// Timing assertions are loose bounds (the test box is small and noisy).
#include "backends/etcd/async_etcd.h"

#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tests/support/etcd_server.h"
#include "tollgate/etcd_backend.h"
#include "tollgate/event_loop.h"

namespace tollgate {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::EtcdServer;
using Clock = std::chrono::steady_clock;

AcquireRequest Req(const std::string& key, Duration ttl, Duration wait = Duration(0)) {
  AcquireRequest req;
  req.key = key;
  req.ttl = ttl;
  req.wait = wait;
  return req;
}

SemAcquireRequest SemReq(const std::string& key, int64_t limit, Duration ttl,
                         Duration wait = Duration(0)) {
  SemAcquireRequest req;
  req.key = key;
  req.limit = limit;
  req.ttl = ttl;
  req.wait = wait;
  return req;
}

MultiAcquireRequest MultiReq(std::vector<std::string> keys, Duration ttl,
                             Duration wait = Duration(0)) {
  MultiAcquireRequest req;
  req.keys = std::move(keys);
  req.ttl = ttl;
  req.wait = wait;
  return req;
}

class AsyncEtcdTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new EtcdServer();
    if (!server_->Start()) {
      delete server_;
      server_ = nullptr;
    }
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(server_, nullptr) << "etcd did not start";
    auto loop = EpollEventLoop::Create();
    ASSERT_TRUE(loop.ok()) << loop.status();
    loop_ = std::move(*loop);
    b_ = Open(server_->url(), seconds(2));
    ASSERT_NE(b_, nullptr);
  }
  void TearDown() override {
    b_.reset();
    loop_.reset();
  }

  std::unique_ptr<AsyncBackend> Open(const std::string& url, Duration timeout) {
    auto b = NewAsyncEtcdBackend(url, *loop_, timeout);
    EXPECT_TRUE(b.ok()) << b.status();
    return b.ok() ? std::move(*b) : nullptr;
  }
  static etcd::AsyncEtcdBackend& Etcd(AsyncBackend& b) {
    return static_cast<etcd::AsyncEtcdBackend&>(b);
  }
  // A key no other test uses.
  static std::string Key(const std::string& name) {
    return name + "-" + std::to_string(Clock::now().time_since_epoch().count());
  }

  bool RunUntil(const std::function<bool()>& done, Duration limit = seconds(20)) {
    return loop_->RunUntil([&] { return done(); }, Clock::now() + limit);
  }
  void RunFor(Duration d) {
    loop_->RunUntil([] { return false; }, Clock::now() + d);
  }

  template <class T, class Submit>
  absl::StatusOr<T> Sync(Submit submit) {
    std::optional<absl::StatusOr<T>> out;
    submit([&](absl::StatusOr<T> r) { out = std::move(r); });
    EXPECT_TRUE(RunUntil([&] { return out.has_value(); }));
    return out.has_value() ? *std::move(out) : absl::DeadlineExceededError("no completion");
  }
  absl::StatusOr<std::optional<LeaseGrant>> Acquire(AsyncBackend& b, const std::string& key,
                                                    Duration ttl) {
    return Sync<std::optional<LeaseGrant>>(
        [&](auto done) { b.Acquire(Req(key, ttl), std::move(done)); });
  }
  absl::Status Release(AsyncBackend& b, const std::string& key, const std::string& id) {
    return Sync<bool>([&](auto done) {
             b.Release(key, id, [done = std::move(done)](absl::Status st) mutable {
               if (st.ok()) {
                 done(true);
               } else {
                 done(st);
               }
             });
           })
        .status();
  }

  static EtcdServer* server_;
  std::unique_ptr<EpollEventLoop> loop_;
  std::unique_ptr<AsyncBackend> b_;
};

EtcdServer* AsyncEtcdTest::server_ = nullptr;

// 1. 200 operations of every kind submitted in one pass: each completes once, correctly, and the
// operations on one key complete in submission order.
TEST_F(AsyncEtcdTest, ManyOperationsInOnePassCompleteInOrderPerKey) {
  constexpr int kKeys = 20;
  const std::string base = Key("mixed");
  std::vector<std::vector<int>> lock_order(kKeys), reg_order(kKeys);
  std::vector<std::optional<LeaseGrant>> grants(kKeys);
  int completed = 0;
  int failures = 0;
  auto check = [&](bool ok, const std::string& what) {
    if (!ok) {
      ++failures;
      ADD_FAILURE() << what;
    }
  };
  for (int k = 0; k < kKeys; ++k) {
    const std::string key = base + "-" + std::to_string(k);
    auto note = [&, k](std::vector<std::vector<int>>& order, int step) {
      order[k].push_back(step);
      ++completed;
    };
    // On the lock: acquire, acquire again (taken), info, release and extend by a stranger.
    b_->Acquire(Req(key, seconds(30)), [&, k, note](absl::StatusOr<std::optional<LeaseGrant>> r) {
      note(lock_order, 0);
      check(r.ok() && r->has_value(), "first acquire: " + r.status().ToString());
      if (r.ok()) grants[k] = *r;
    });
    b_->Acquire(Req(key, seconds(30)), [&, note](absl::StatusOr<std::optional<LeaseGrant>> r) {
      note(lock_order, 1);
      check(r.ok() && !r->has_value(), "second acquire: " + r.status().ToString());
    });
    b_->Info(key, [&, k, note](absl::StatusOr<std::optional<LeaseInfo>> r) {
      note(lock_order, 2);
      check(r.ok() && r->has_value() && grants[k] && (*r)->fence == grants[k]->fence,
            "info: " + r.status().ToString());
    });
    b_->Release(key, "stranger", [&, note](absl::Status st) {
      note(lock_order, 3);
      check(st.code() == absl::StatusCode::kFailedPrecondition, "release: " + st.ToString());
    });
    b_->Extend(key, "stranger", seconds(30), [&, note](absl::StatusOr<Duration> r) {
      note(lock_order, 4);
      check(r.status().code() == absl::StatusCode::kFailedPrecondition,
            "extend: " + r.status().ToString());
    });
    // On a register of the same name: set, get, set, get, get.
    for (int i = 0; i < 2; ++i) {
      const std::string value = i == 0 ? "a" : "b";
      b_->FencedSet(key, 1, value, [&, note, i](absl::Status st) {
        note(reg_order, 2 * i);
        check(st.ok(), "fenced set: " + st.ToString());
      });
      b_->FencedGet(key, [&, note, i, value](absl::StatusOr<std::optional<FencedValue>> r) {
        note(reg_order, 2 * i + 1);
        check(r.ok() && r->has_value() && (*r)->value == value,
              "fenced get: " + r.status().ToString());
      });
    }
    b_->FencedGet(key, [&, note](absl::StatusOr<std::optional<FencedValue>> r) {
      note(reg_order, 4);
      check(r.ok() && r->has_value() && (*r)->value == "b" && (*r)->fence == 1,
            "last fenced get: " + r.status().ToString());
    });
  }
  EXPECT_GT(Etcd(*b_).pending_operations(), 100u);
  ASSERT_TRUE(RunUntil([&] { return completed == 10 * kKeys; }));
  RunFor(milliseconds(100));
  EXPECT_EQ(completed, 10 * kKeys);  // each exactly once
  EXPECT_EQ(failures, 0);
  for (int k = 0; k < kKeys; ++k) {
    EXPECT_EQ(lock_order[k], (std::vector<int>{0, 1, 2, 3, 4})) << "key " << k;
    EXPECT_EQ(reg_order[k], (std::vector<int>{0, 1, 2, 3, 4})) << "key " << k;
  }
  EXPECT_EQ(Etcd(*b_).pending_operations(), 0u);
  for (int k = 0; k < kKeys; ++k) {
    if (grants[k]) {
      EXPECT_TRUE(Release(*b_, base + "-" + std::to_string(k), grants[k]->lock_id).ok());
    }
  }
}

// 2. Acquires on different keys are in flight together, not one round trip after another.
TEST_F(AsyncEtcdTest, AcquiresOnDifferentKeysRunConcurrently) {
  const std::string base = Key("conc");
  auto start = Clock::now();
  auto one = Acquire(*b_, base + "-single", seconds(30));
  ASSERT_TRUE(one.ok() && one->has_value()) << one.status();
  const Duration single = Clock::now() - start;

  constexpr int kKeys = 50;
  int done = 0;
  std::vector<std::optional<LeaseGrant>> grants(kKeys);
  start = Clock::now();
  for (int k = 0; k < kKeys; ++k) {
    b_->Acquire(Req(base + "-" + std::to_string(k), seconds(30)),
                [&, k](absl::StatusOr<std::optional<LeaseGrant>> r) {
                  ++done;
                  EXPECT_TRUE(r.ok() && r->has_value()) << r.status();
                  if (r.ok()) grants[k] = *r;
                });
  }
  ASSERT_TRUE(RunUntil([&] { return done == kKeys; }));
  const Duration all = Clock::now() - start;
  std::printf(
      "one acquire: %.1f ms; %d acquires on different keys: %.1f ms; most HTTP requests "
      "in flight at once: %zu\n",
      std::chrono::duration<double, std::milli>(single).count(), kKeys,
      std::chrono::duration<double, std::milli>(all).count(), Etcd(*b_).max_http_in_flight());
  EXPECT_GT(Etcd(*b_).max_http_in_flight(), 1u);
  EXPECT_LT(all, kKeys * single + seconds(1));
  for (int k = 0; k < kKeys; ++k) {
    if (grants[k]) {
      EXPECT_TRUE(Release(*b_, base + "-" + std::to_string(k), grants[k]->lock_id).ok());
    }
  }
  EXPECT_TRUE(Release(*b_, base + "-single", (*one)->lock_id).ok());
}

// The in-flight bound: beyond kEtcdMaxInFlight pending operations, one completes at once.
TEST_F(AsyncEtcdTest, PipelineFullCompletesAtOnce) {
  const std::string base = Key("full");
  int done = 0, full = 0;
  for (size_t i = 0; i < kEtcdMaxInFlight + 10; ++i) {
    b_->FencedGet(base + std::to_string(i % 100),
                  [&](absl::StatusOr<std::optional<FencedValue>> r) {
                    ++done;
                    if (!r.ok() &&
                        r.status().message() == "backend pipeline full (1024 requests in flight)") {
                      EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
                      ++full;
                    } else {
                      EXPECT_TRUE(r.ok()) << r.status();
                    }
                  });
  }
  EXPECT_EQ(full, 10);  // at once
  ASSERT_TRUE(RunUntil([&] { return done == static_cast<int>(kEtcdMaxInFlight) + 10; }));
  EXPECT_EQ(full, 10);
}

// 4. WAIT: the waiter gets the key soon after the holder releases it (the watch pokes it); a wait
// that runs out gives nullopt; a cancelled wait never completes.
TEST_F(AsyncEtcdTest, WaiterGetsTheKeySoonAfterTheRelease) {
  auto holder = Open(server_->url(), seconds(2));
  ASSERT_NE(holder, nullptr);
  const std::string key = Key("wait");
  auto g = Acquire(*holder, key, seconds(60));
  ASSERT_TRUE(g.ok() && g->has_value()) << g.status();

  std::optional<absl::StatusOr<std::optional<LeaseGrant>>> got;
  Clock::time_point granted_at;
  const uint64_t ticket = b_->Acquire(Req(key, seconds(30), seconds(5)),
                                      [&](absl::StatusOr<std::optional<LeaseGrant>> r) {
                                        granted_at = Clock::now();
                                        got = std::move(r);
                                      });
  EXPECT_NE(ticket, 0u);
  RunFor(milliseconds(200));
  EXPECT_FALSE(got.has_value());
  EXPECT_EQ(b_->LocalWaiters(key), 1u);
  EXPECT_EQ(Etcd(*b_).key_watches(), 1u);
  std::optional<absl::Status> released;
  Clock::time_point released_at;
  holder->Release(key, (*g)->lock_id, [&](absl::Status st) {
    released_at = Clock::now();
    released = st;
  });
  ASSERT_TRUE(RunUntil([&] { return got.has_value(); }, seconds(10)));
  ASSERT_TRUE(released.has_value());
  EXPECT_TRUE(released->ok()) << *released;
  ASSERT_TRUE(got->ok() && (*got)->has_value()) << got->status();
  EXPECT_GT((**got)->fence, (*g)->fence);
  const Duration lag = granted_at - released_at;
  std::printf("granted %.1f ms after the release completed\n",
              std::chrono::duration<double, std::milli>(lag).count());
  EXPECT_LT(lag, seconds(1));
  RunFor(milliseconds(50));
  EXPECT_EQ(Etcd(*b_).key_watches(), 0u);  // no more waiters: the watch is gone
  EXPECT_TRUE(Release(*b_, key, (**got)->lock_id).ok());
}

TEST_F(AsyncEtcdTest, WaitRunsOutOrIsCancelled) {
  const std::string key = Key("held");
  auto g = Acquire(*b_, key, seconds(60));
  ASSERT_TRUE(g.ok() && g->has_value()) << g.status();

  // Runs out: nullopt.
  std::optional<absl::StatusOr<std::optional<LeaseGrant>>> got;
  const auto start = Clock::now();
  b_->Acquire(Req(key, seconds(30), milliseconds(400)),
              [&](absl::StatusOr<std::optional<LeaseGrant>> r) { got = std::move(r); });
  ASSERT_TRUE(RunUntil([&] { return got.has_value(); }, seconds(10)));
  ASSERT_TRUE(got->ok()) << got->status();
  EXPECT_FALSE((*got)->has_value());
  EXPECT_GE(Clock::now() - start, milliseconds(350));
  EXPECT_LT(Clock::now() - start, seconds(3));

  // Cancelled: never completes, not even when the key is released.
  int calls = 0;
  const uint64_t ticket = b_->Acquire(Req(key, seconds(30), seconds(5)),
                                      [&](absl::StatusOr<std::optional<LeaseGrant>>) { ++calls; });
  ASSERT_NE(ticket, 0u);
  RunFor(milliseconds(100));
  b_->CancelWait(ticket);
  EXPECT_EQ(b_->LocalWaiters(key), 0u);
  EXPECT_TRUE(Release(*b_, key, (*g)->lock_id).ok());
  RunFor(milliseconds(500));
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(Etcd(*b_).key_watches(), 0u);
  // Nothing was left held for the cancelled waiter.
  auto info = Sync<std::optional<LeaseInfo>>([&](auto done) { b_->Info(key, std::move(done)); });
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_FALSE(info->has_value());
}

TEST_F(AsyncEtcdTest, ShutdownEndsWaitsAndRefusesLaterCalls) {
  const std::string key = Key("shut");
  auto g = Acquire(*b_, key, seconds(60));
  ASSERT_TRUE(g.ok() && g->has_value()) << g.status();
  std::optional<absl::StatusOr<std::optional<LeaseGrant>>> got;
  b_->Acquire(Req(key, seconds(30), seconds(5)),
              [&](absl::StatusOr<std::optional<LeaseGrant>> r) { got = std::move(r); });
  RunFor(milliseconds(100));
  b_->Shutdown();
  ASSERT_TRUE(got.has_value());
  ASSERT_TRUE(got->ok());
  EXPECT_FALSE((*got)->has_value());
  auto info = Sync<std::optional<LeaseInfo>>([&](auto done) { b_->Info(key, std::move(done)); });
  EXPECT_EQ(info.status().code(), absl::StatusCode::kUnavailable);
  RunFor(milliseconds(50));
  EXPECT_EQ(Etcd(*b_).key_watches(), 0u);
  auto other = Open(server_->url(), seconds(2));
  ASSERT_NE(other, nullptr);
  EXPECT_TRUE(Release(*other, key, (*g)->lock_id).ok());
}

// Semaphores with WAIT: the waiter gets a permit soon after a holder releases one (the watch on
// the semaphore's permit keys pokes it) and is counted in SemInfo meanwhile.
TEST_F(AsyncEtcdTest, SemaphoreWaiterIsServedSoonAfterARelease) {
  auto holder = Open(server_->url(), seconds(2));
  ASSERT_NE(holder, nullptr);
  const std::string key = Key("semwait");
  auto held = Sync<std::optional<PermitGrant>>(
      [&](auto done) { holder->SemAcquire(SemReq(key, 1, seconds(60)), std::move(done)); });
  ASSERT_TRUE(held.ok() && held->has_value()) << held.status();

  std::optional<absl::StatusOr<std::optional<PermitGrant>>> got;
  Clock::time_point granted_at;
  const uint64_t ticket = b_->SemAcquire(SemReq(key, 1, seconds(30), seconds(10)),
                                         [&](absl::StatusOr<std::optional<PermitGrant>> r) {
                                           granted_at = Clock::now();
                                           got = std::move(r);
                                         });
  EXPECT_NE(ticket, 0u);
  RunFor(milliseconds(200));
  EXPECT_FALSE(got.has_value());
  EXPECT_EQ(Etcd(*b_).key_watches(), 1u);
  auto info =
      Sync<std::optional<SemaphoreInfo>>([&](auto done) { b_->SemInfo(key, std::move(done)); });
  ASSERT_TRUE(info.ok() && info->has_value()) << info.status();
  EXPECT_EQ((*info)->waiters, 1u);
  EXPECT_EQ((*info)->holders, 1);

  std::optional<absl::Status> released;
  Clock::time_point released_at;
  holder->SemRelease(key, (*held)->permit_id, [&](absl::Status st) {
    released_at = Clock::now();
    released = st;
  });
  ASSERT_TRUE(RunUntil([&] { return got.has_value(); }, seconds(10)));
  ASSERT_TRUE(released.has_value() && released->ok());
  ASSERT_TRUE(got->ok() && (*got)->has_value()) << got->status();
  EXPECT_EQ((**got)->slot, 0);
  EXPECT_GT((**got)->fence, (*held)->fence);
  EXPECT_LT(granted_at - released_at, seconds(1));
  RunFor(milliseconds(50));
  EXPECT_EQ(Etcd(*b_).key_watches(), 0u);
}

// Multi-key WAIT: the waiter takes every key once the last one is free, holding none meanwhile.
TEST_F(AsyncEtcdTest, MultiKeyWaiterTakesAllKeysWhenTheLastIsFree) {
  auto holder = Open(server_->url(), seconds(2));
  ASSERT_NE(holder, nullptr);
  const std::string a = Key("mwa"), b = Key("mwb"), c = Key("mwc");
  auto ga = Acquire(*holder, a, seconds(60)), gb = Acquire(*holder, b, seconds(60));
  ASSERT_TRUE(ga.ok() && ga->has_value() && gb.ok() && gb->has_value());

  std::optional<absl::StatusOr<std::optional<LeaseGrant>>> got;
  b_->MultiAcquire(MultiReq({a, b, c}, seconds(30), seconds(10)),
                   [&](absl::StatusOr<std::optional<LeaseGrant>> r) { got = std::move(r); });
  RunFor(milliseconds(200));
  EXPECT_FALSE(got.has_value());
  EXPECT_EQ(b_->LocalWaiters(a), 1u);
  EXPECT_GE(Etcd(*b_).key_watches(), 2u);  // at least the held keys
  auto info_c = Sync<std::optional<LeaseInfo>>([&](auto done) { b_->Info(c, std::move(done)); });
  ASSERT_TRUE(info_c.ok()) << info_c.status();
  EXPECT_FALSE(info_c->has_value());  // holds nothing while it waits

  EXPECT_TRUE(Release(*holder, a, (*ga)->lock_id).ok());
  RunFor(milliseconds(300));
  EXPECT_FALSE(got.has_value());
  EXPECT_TRUE(Release(*holder, b, (*gb)->lock_id).ok());
  ASSERT_TRUE(RunUntil([&] { return got.has_value(); }, seconds(10)));
  ASSERT_TRUE(got->ok() && (*got)->has_value()) << got->status();
  EXPECT_GT((**got)->fence, (*gb)->fence);
  for (const std::string& k : {a, b, c}) {
    auto info = Sync<std::optional<LeaseInfo>>([&](auto done) { b_->Info(k, std::move(done)); });
    ASSERT_TRUE(info.ok() && info->has_value()) << k;
    EXPECT_EQ((*info)->fence, (**got)->fence);
  }
  RunFor(milliseconds(50));
  EXPECT_EQ(Etcd(*b_).key_watches(), 0u);
}

// A multi-key operation keeps its place in each of its keys' order: submitted in one pass, a
// multi acquire, then single-key operations on its keys, complete in that order.
TEST_F(AsyncEtcdTest, MultiKeyOperationsAreOrderedWithSingleKeyOnes) {
  const std::string x = Key("ox"), y = Key("oy");
  std::vector<std::string> order;
  std::optional<LeaseGrant> multi;
  std::optional<bool> info_held, single_granted;
  b_->MultiAcquire(MultiReq({x, y}, seconds(30)), [&](absl::StatusOr<std::optional<LeaseGrant>> r) {
    order.push_back("multi");
    if (r.ok() && r->has_value()) multi = **r;
  });
  b_->Info(y, [&](absl::StatusOr<std::optional<LeaseInfo>> r) {
    order.push_back("info");
    if (r.ok()) info_held = r->has_value();
  });
  b_->Acquire(Req(x, seconds(30)), [&](absl::StatusOr<std::optional<LeaseGrant>> r) {
    order.push_back("acquire");
    if (r.ok()) single_granted = r->has_value();
  });
  ASSERT_TRUE(RunUntil([&] { return order.size() == 3; }));
  ASSERT_TRUE(multi.has_value());
  EXPECT_EQ(order[0], "multi");
  EXPECT_EQ(info_held, true);
  EXPECT_EQ(single_granted, false);
  std::vector<std::string> keys = {x, y};
  auto n =
      Sync<size_t>([&](auto done) { b_->MultiRelease(keys, multi->lock_id, std::move(done)); });
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 2u);
}

// LookupById through the asynchronous backend: a lookup submitted in the same pass right after a
// release of its key runs after that release (it joins the key's FIFO once it knows the key), so
// it finds nothing; one submitted after an extend finds the lease with its acquired_at unchanged.
// A malformed id is refused at once.
TEST_F(AsyncEtcdTest, LookupByIdIsOrderedWithTheKeysOperations) {
  const std::string key = Key("lookup");
  const WallTime before = std::chrono::system_clock::now();
  auto g = Acquire(*b_, key, seconds(30));
  ASSERT_TRUE(g.ok() && g->has_value()) << g.status();
  EXPECT_GE((*g)->acquired_at, before);
  EXPECT_LE((*g)->acquired_at, std::chrono::system_clock::now());
  auto lookup = [&] {
    return Sync<std::optional<LeaseById>>(
        [&](auto done) { b_->LookupById((*g)->lock_id, std::move(done)); });
  };
  auto found = lookup();
  ASSERT_TRUE(found.ok() && found->has_value()) << found.status();
  EXPECT_EQ((*found)->key, key);
  EXPECT_EQ((*found)->info.fence, (*g)->fence);
  EXPECT_EQ((*found)->info.acquired_at, (*g)->acquired_at);
  EXPECT_EQ((*found)->info.waiters, 0u);

  auto ext = Sync<Duration>(
      [&](auto done) { b_->Extend(key, (*g)->lock_id, seconds(40), std::move(done)); });
  ASSERT_TRUE(ext.ok()) << ext.status();
  found = lookup();
  ASSERT_TRUE(found.ok() && found->has_value()) << found.status();
  EXPECT_EQ((*found)->info.acquired_at, (*g)->acquired_at);

  std::optional<absl::Status> released;
  std::optional<absl::StatusOr<std::optional<LeaseById>>> after;
  b_->Release(key, (*g)->lock_id, [&](absl::Status st) { released = st; });
  b_->LookupById((*g)->lock_id,
                 [&](absl::StatusOr<std::optional<LeaseById>> r) { after = std::move(r); });
  ASSERT_TRUE(RunUntil([&] { return released.has_value() && after.has_value(); }));
  EXPECT_TRUE(released->ok()) << *released;
  ASSERT_TRUE(after->ok()) << after->status();
  EXPECT_FALSE((*after)->has_value());

  bool answered = false;
  b_->LookupById("not-a-lock-id", [&](absl::StatusOr<std::optional<LeaseById>> r) {
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    answered = true;
  });
  EXPECT_TRUE(answered);
}

// 3. etcd goes away with requests in flight: each completes with Unavailable, exactly once, naming
// the server; once it is back the same backend works again. Its own server, since it stops it.
TEST(AsyncEtcdOutageTest, RequestsInFlightFailOnceAndTheBackendRecovers) {
  EtcdServer server;
  ASSERT_TRUE(server.Start());
  auto loop = EpollEventLoop::Create();
  ASSERT_TRUE(loop.ok());
  auto b = NewAsyncEtcdBackend(server.url(), **loop, seconds(1));
  ASSERT_TRUE(b.ok()) << b.status();
  auto run_until = [&](const std::function<bool()>& done, Duration limit) {
    return (*loop)->RunUntil([&] { return done(); }, Clock::now() + limit);
  };
  const std::string where = "etcd http://127.0.0.1:" + std::to_string(server.port());

  // Submits `n` operations of mixed kinds; counts[i] counts operation i's completions.
  auto submit = [&](int n, std::vector<int>& counts, std::vector<absl::Status>& results) {
    counts.assign(n, 0);
    results.assign(n, absl::OkStatus());
    for (int i = 0; i < n; ++i) {
      const std::string key = "outage-" + std::to_string(i);
      auto note = [&counts, &results, i](absl::Status st) {
        ++counts[i];
        results[i] = std::move(st);
      };
      switch (i % 3) {
        case 0:
          (*b)->Acquire(Req(key, seconds(5)),
                        [note](absl::StatusOr<std::optional<LeaseGrant>> r) { note(r.status()); });
          break;
        case 1:
          (*b)->Info(key, [note](absl::StatusOr<std::optional<LeaseInfo>> r) { note(r.status()); });
          break;
        default:
          (*b)->FencedGet(
              key, [note](absl::StatusOr<std::optional<FencedValue>> r) { note(r.status()); });
      }
    }
  };
  auto all_done = [](const std::vector<int>& counts) {
    for (int c : counts) {
      if (c == 0) return false;
    }
    return true;
  };
  std::vector<int> counts;
  std::vector<absl::Status> results;

  // The server hangs (SIGSTOP; its kernel still accepts connections and requests) with 30
  // requests sent to it: each times out.
  ASSERT_EQ(kill(server.pid(), SIGSTOP), 0);
  submit(30, counts, results);
  const auto start = Clock::now();
  ASSERT_TRUE(run_until([&] { return all_done(counts); }, seconds(15)));
  EXPECT_LT(Clock::now() - start, seconds(5));  // about the 1 s timeout (twice for an acquire)
  (*loop)->RunUntil([] { return false; }, Clock::now() + milliseconds(300));
  for (int i = 0; i < 30; ++i) {
    EXPECT_EQ(counts[i], 1) << i;
    EXPECT_EQ(results[i].code(), absl::StatusCode::kUnavailable) << i << ": " << results[i];
    EXPECT_NE(results[i].message().find(where), std::string::npos) << results[i];
  }
  ASSERT_EQ(kill(server.pid(), SIGCONT), 0);

  // Recovered.
  submit(6, counts, results);
  ASSERT_TRUE(run_until([&] { return all_done(counts); }, seconds(15)));
  for (int i = 0; i < 6; ++i) EXPECT_TRUE(results[i].ok()) << i << ": " << results[i];

  // The server stops: requests fail promptly, once each.
  submit(12, counts, results);
  server.Stop();
  ASSERT_TRUE(run_until([&] { return all_done(counts); }, seconds(15)));
  (*loop)->RunUntil([] { return false; }, Clock::now() + milliseconds(300));
  for (int i = 0; i < 12; ++i) {
    EXPECT_EQ(counts[i], 1) << i;
    EXPECT_EQ(results[i].code(), absl::StatusCode::kUnavailable) << i << ": " << results[i];
    EXPECT_NE(results[i].message().find(where), std::string::npos) << results[i];
  }

  // Back again: the same backend works.
  ASSERT_TRUE(server.Restart());
  submit(6, counts, results);
  ASSERT_TRUE(run_until([&] { return all_done(counts); }, seconds(15)));
  for (int i = 0; i < 6; ++i) EXPECT_TRUE(results[i].ok()) << i << ": " << results[i];
  b->reset();
}

}  // namespace
}  // namespace tollgate
