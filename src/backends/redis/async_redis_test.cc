// The asynchronous Redis backend against a private redis-server (and a private 3-node Redis
// Cluster): pipelining, failures with requests in flight, deadlines, WAIT, cluster routing.
#include "backends/redis/async_redis.h"

#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "backends/redis/cluster_slot.h"
#include "gtest/gtest.h"
#include "hiredis/hiredis.h"
#include "tests/support/raw_redis.h"
#include "tests/support/redis_cluster.h"
#include "tests/support/redis_server.h"
#include "tollgate/event_loop.h"
#include "tollgate/redis_backend.h"
#include "tollgate/testing/fake_clock.h"

namespace tollgate {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::RedisCluster;
using testing::RedisServer;

Decimal D(const char* s) { return *Decimal::ParsePositive(s, "test", kMaxCapacity); }

using Raw = testing::RawRedis;

bool Contains(const absl::Status& st, const std::string& part) {
  return std::string(st.message()).find(part) != std::string::npos;
}

class AsyncRedisTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.Start());
    auto loop = EpollEventLoop::Create();
    ASSERT_TRUE(loop.ok()) << loop.status();
    loop_ = std::move(*loop);
    b_ = Open(seconds(2));
    ASSERT_NE(b_, nullptr);
  }
  void TearDown() override {
    b_.reset();
    loop_.reset();
  }
  std::unique_ptr<AsyncBackend> Open(Duration timeout) {
    auto b = NewAsyncRedisBackend(server_.url(), *loop_, timeout);
    EXPECT_TRUE(b.ok()) << b.status();
    return b.ok() ? std::move(*b) : nullptr;
  }
  // Standalone Redis refuses fences above its one counter (never issued): tests that write
  // made-up fences raise the counter first.
  void IssueFencesUpTo(uint64_t n) {
    Raw raw(server_.port());
    ASSERT_EQ(raw.Cmd({"SET", std::string(redis::kGlobalFenceKey), std::to_string(n)}), "OK");
  }
  static redis::AsyncRedisBackend& Impl(AsyncBackend& b) {
    return dynamic_cast<redis::AsyncRedisBackend&>(b);
  }
  // Runs the loop until `done` or `limit` passes; returns done().
  bool Run(absl::FunctionRef<bool()> done, Duration limit = seconds(10)) {
    return loop_->RunUntil(done, RealClock()->SteadyNow() + limit);
  }
  void RunFor(Duration d) {
    loop_->RunUntil([] { return false; }, RealClock()->SteadyNow() + d);
  }
  // A synchronous Acquire through the async backend (wait 0).
  std::optional<LeaseGrant> Grab(AsyncBackend& b, const std::string& key, Duration ttl) {
    std::optional<absl::StatusOr<std::optional<LeaseGrant>>> r;
    b.Acquire({key, ttl, Duration(0), std::nullopt},
              [&](absl::StatusOr<std::optional<LeaseGrant>> g) { r = std::move(g); });
    EXPECT_TRUE(Run([&] { return r.has_value(); }));
    EXPECT_TRUE(r.has_value() && r->ok()) << (r ? r->status() : absl::OkStatus());
    return r && r->ok() ? **r : std::nullopt;
  }
  std::optional<LeaseInfo> InfoOf(AsyncBackend& b, const std::string& key) {
    std::optional<absl::StatusOr<std::optional<LeaseInfo>>> r;
    b.Info(key, [&](absl::StatusOr<std::optional<LeaseInfo>> i) { r = std::move(i); });
    EXPECT_TRUE(Run([&] { return r.has_value(); }));
    EXPECT_TRUE(r.has_value() && r->ok()) << (r ? r->status() : absl::OkStatus());
    return r && r->ok() ? **r : std::nullopt;
  }

  RedisServer server_;
  std::unique_ptr<EpollEventLoop> loop_;
  std::unique_ptr<AsyncBackend> b_;
};

// 1000 mixed operations submitted in one pass: written in a few writes, completed in order, each
// answer the one its position implies.
TEST_F(AsyncRedisTest, AThousandOperationsInOnePassArePipelinedAndCompleteInOrder) {
  IssueFencesUpTo(100000);
  const redis::ClientStats before = Impl(*b_).stats();
  uint64_t last_grant = 100000;
  constexpr int kOps = 1000;
  std::vector<int> order;
  int failures = 0;
  std::set<std::string> seen_keys;
  int throttles = 0;
  const BucketParams bucket{D("1000"), D("0.001")};
  for (int i = 0; i < kOps; ++i) {
    auto check = [&, i](bool ok) {
      order.push_back(i);
      if (!ok) ++failures;
    };
    switch (i % 4) {
      case 0: {  // 50 keys, 5 acquires each: the first is granted (the next global fence), the
                 // rest are not
        const std::string key = "L" + std::to_string((i / 4) % 50);
        const bool first = seen_keys.insert(key).second;
        b_->Acquire({key, seconds(30), Duration(0), "o"},
                    [check, first, i, &last_grant](absl::StatusOr<std::optional<LeaseGrant>> g) {
                      EXPECT_TRUE(g.ok()) << i << " " << g.status();
                      const bool ok = g.ok() && g->has_value() == first &&
                                      (!first || (*g)->fence == last_grant + 1);
                      if (ok && first) last_grant = (*g)->fence;
                      EXPECT_TRUE(ok) << i;
                      check(ok);
                    });
        break;
      }
      case 1: {  // one bucket of 1000: the k-th charge leaves 1000 - k
        const uint64_t remaining = 1000 - static_cast<uint64_t>(++throttles);
        b_->Throttle("T", bucket, D("1"), [check, remaining, i](absl::StatusOr<Decision> d) {
          const bool ok = d.ok() && d->allowed && d->remaining == remaining;
          EXPECT_TRUE(ok) << i << " " << d.status() << " " << (d.ok() ? d->remaining : 0);
          check(ok);
        });
        break;
      }
      case 2:  // increasing fences: each accepted
        b_->FencedSet("R", static_cast<uint64_t>(i), std::to_string(i),
                      [check, i](absl::Status st) {
                        EXPECT_TRUE(st.ok()) << i << " " << st;
                        check(st.ok());
                      });
        break;
      default:  // sees the set just before it
        b_->FencedGet("R", [check, i](absl::StatusOr<std::optional<FencedValue>> v) {
          const bool ok = v.ok() && v->has_value() && (*v)->fence == static_cast<uint64_t>(i - 1) &&
                          (*v)->value == std::to_string(i - 1);
          EXPECT_TRUE(ok) << i << " " << v.status();
          check(ok);
        });
    }
  }
  EXPECT_TRUE(order.empty());  // nothing completes before the loop runs
  ASSERT_TRUE(Run([&] { return order.size() == kOps; }));
  EXPECT_EQ(failures, 0);
  for (int i = 0; i < kOps; ++i) ASSERT_EQ(order[i], i);
  const redis::ClientStats after = Impl(*b_).stats();
  EXPECT_EQ(after.commands - before.commands, static_cast<uint64_t>(kOps));
  EXPECT_EQ(after.connects, before.connects);  // the connection made at setup
  // ~200 KB of requests: one send() if the socket takes it all, a few otherwise.
  EXPECT_LE(after.writes - before.writes, 16u);
  std::printf("1000 operations: %llu writes\n",
              static_cast<unsigned long long>(after.writes - before.writes));
}

// After SCRIPT FLUSH every pipelined EVALSHA is refused with NOSCRIPT (Redis ran none of them):
// each is sent again once, as EVAL, in order, and applied once.
TEST_F(AsyncRedisTest, NoscriptIsRetriedOnceWithEvalInOrder) {
  Raw raw(server_.port());
  ASSERT_EQ(raw.Cmd({"SCRIPT", "FLUSH"}), "OK");
  ASSERT_EQ(raw.Cmd({"CONFIG", "RESETSTAT"}), "OK");
  IssueFencesUpTo(1000);
  constexpr int kOps = 50;
  std::vector<int> order;
  int bad = 0;
  for (int i = 1; i <= kOps; ++i) {
    b_->FencedSet("n", static_cast<uint64_t>(i), std::to_string(i), [&, i](absl::Status st) {
      order.push_back(i);
      if (!st.ok()) ++bad;
    });
  }
  std::optional<absl::StatusOr<std::optional<FencedValue>>> last;
  b_->FencedGet("n", [&](absl::StatusOr<std::optional<FencedValue>> v) { last = std::move(v); });
  ASSERT_TRUE(Run([&] { return last.has_value(); }));
  EXPECT_EQ(bad, 0);
  ASSERT_EQ(order.size(), static_cast<size_t>(kOps));
  for (int i = 0; i < kOps; ++i) EXPECT_EQ(order[i], i + 1);
  ASSERT_TRUE(last->ok() && last->value().has_value()) << last->status();
  EXPECT_EQ((*last)->value().fence, static_cast<uint64_t>(kOps));
  const std::string stats = raw.Cmd({"INFO", "commandstats"});
  EXPECT_NE(stats.find("cmdstat_evalsha:calls=51,"), std::string::npos) << stats;
  EXPECT_NE(stats.find("cmdstat_eval:calls=51,"), std::string::npos) << stats;
  // The EVALs cached the scripts: the next operation is one EVALSHA.
  std::optional<absl::Status> again;
  b_->FencedSet("n", kOps + 1, "x", [&](absl::Status st) { again = st; });
  ASSERT_TRUE(Run([&] { return again.has_value(); }));
  EXPECT_TRUE(again->ok()) << *again;
  EXPECT_NE(raw.Cmd({"INFO", "commandstats"}).find("cmdstat_eval:calls=51,"), std::string::npos);
}

TEST_F(AsyncRedisTest, BeyondTheInFlightLimitOperationsAreUnavailableAtOnce) {
  constexpr size_t kLimit = redis::Client::kMaxInFlight;
  size_t done = 0, full = 0, ok = 0;
  for (size_t i = 0; i < kLimit + 100; ++i) {
    b_->FencedGet("x", [&](absl::StatusOr<std::optional<FencedValue>> v) {
      ++done;
      if (v.ok()) ++ok;
      if (!v.ok() && v.status().code() == absl::StatusCode::kUnavailable &&
          Contains(v.status(), "backend pipeline full (4096 requests in flight)")) {
        ++full;
      }
    });
  }
  EXPECT_EQ(done, 100u);  // at once
  EXPECT_EQ(full, 100u);
  ASSERT_TRUE(Run([&] { return done == kLimit + 100; }));
  EXPECT_EQ(ok, kLimit);
}

// The connection is killed while requests wait in it (the server paused writes, so none ran):
// each completes once with Unavailable naming the server, nothing is sent again, and the next
// operation reconnects.
TEST_F(AsyncRedisTest, AKilledConnectionFailsEveryPendingRequestOnceAndNothingIsApplied) {
  ASSERT_TRUE(Grab(*b_, "warm", seconds(30)).has_value());
  Raw raw(server_.port());
  ASSERT_EQ(raw.Cmd({"CLIENT", "PAUSE", "5000", "WRITE"}), "OK");
  constexpr int kOps = 100;
  std::vector<int> calls(kOps, 0);
  std::vector<absl::Status> results(kOps);
  for (int i = 0; i < kOps; ++i) {
    b_->Acquire({"k" + std::to_string(i), seconds(30), Duration(0), std::nullopt},
                [&, i](absl::StatusOr<std::optional<LeaseGrant>> g) {
                  ++calls[i];
                  results[i] = g.status();
                });
  }
  RunFor(milliseconds(200));  // written; the server holds them
  int answered = 0;
  for (int c : calls) answered += c;
  ASSERT_EQ(answered, 0);
  EXPECT_EQ(raw.Cmd({"CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"}), "1");
  ASSERT_TRUE(Run(
      [&] {
        for (int c : calls) {
          if (c == 0) return false;
        }
        return true;
      },
      seconds(3)));
  RunFor(milliseconds(100));
  for (int i = 0; i < kOps; ++i) {
    EXPECT_EQ(calls[i], 1) << i;
    EXPECT_EQ(results[i].code(), absl::StatusCode::kUnavailable) << results[i];
    EXPECT_TRUE(Contains(results[i], "Redis 127.0.0.1:" + std::to_string(server_.port())))
        << results[i];
  }
  std::printf("after CLIENT KILL: %s\n", std::string(results[0].message()).c_str());
  EXPECT_EQ(raw.Cmd({"CLIENT", "UNPAUSE"}), "OK");
  RunFor(milliseconds(100));
  for (int i = 0; i < kOps; ++i) {  // none ran, none was sent again
    EXPECT_EQ(raw.Cmd({"GET", "tollgate:{k" + std::to_string(i) + "}:fence"}), "(nil)") << i;
  }
  // The next operation reconnects; its fence counts the acquires Redis ran: the warm-up's (1), and
  // none of the 100.
  auto g = Grab(*b_, "k0", seconds(30));
  ASSERT_TRUE(g.has_value());
  EXPECT_EQ(g->fence, 2u);
  EXPECT_EQ(Impl(*b_).stats().connects, 1u);
}

// The server stops with requests in flight, then comes back: Unavailable once each, prompt while
// down, and the backend recovers.
TEST_F(AsyncRedisTest, AStoppedServerFailsPendingRequestsAndTheBackendRecovers) {
  auto g = Grab(*b_, "s", seconds(60));
  ASSERT_TRUE(g.has_value());
  Raw raw(server_.port());
  ASSERT_EQ(raw.Cmd({"CLIENT", "PAUSE", "5000", "WRITE"}), "OK");
  int calls = 0;
  absl::Status st;
  b_->Extend("s", g->lock_id, seconds(60), [&](absl::StatusOr<Duration> r) {
    ++calls;
    st = r.status();
  });
  RunFor(milliseconds(100));
  ASSERT_EQ(calls, 0);
  server_.Stop();
  ASSERT_TRUE(Run([&] { return calls > 0; }, seconds(3)));
  RunFor(milliseconds(100));
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable) << st;
  // Down: each operation is Unavailable promptly (a refused connect, then the back-off).
  for (int i = 0; i < 3; ++i) {
    std::optional<absl::Status> r;
    const auto start = std::chrono::steady_clock::now();
    b_->FencedGet("s", [&](absl::StatusOr<std::optional<FencedValue>> v) { r = v.status(); });
    ASSERT_TRUE(Run([&] { return r.has_value(); }, seconds(2)));
    EXPECT_EQ(r->code(), absl::StatusCode::kUnavailable) << *r;
    EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(500));
  }
  ASSERT_TRUE(server_.Restart());
  std::optional<LeaseInfo> info;
  bool up = false;
  for (int i = 0; i < 50 && !up; ++i) {
    std::optional<absl::StatusOr<std::optional<LeaseInfo>>> r;
    b_->Info("s", [&](absl::StatusOr<std::optional<LeaseInfo>> v) { r = std::move(v); });
    ASSERT_TRUE(Run([&] { return r.has_value(); }, seconds(3)));
    if (r->ok()) {
      up = true;
      info = **r;
    } else {
      RunFor(milliseconds(100));
    }
  }
  ASSERT_TRUE(up);
  ASSERT_TRUE(info.has_value());  // AOF kept the lease
  EXPECT_EQ(info->fence, g->fence);
}

// A request not answered within the timeout fails the connection: Unavailable after about the
// timeout, and the next operation (on a new connection) succeeds.
TEST_F(AsyncRedisTest, ARequestPastItsDeadlineIsUnavailableAfterAboutTheTimeout) {
  auto b = Open(milliseconds(300));
  ASSERT_NE(b, nullptr);
  IssueFencesUpTo(10);
  Raw raw(server_.port());
  ASSERT_EQ(raw.Cmd({"CLIENT", "PAUSE", "3000", "WRITE"}), "OK");
  std::optional<absl::Status> r1, r2;
  const auto start = std::chrono::steady_clock::now();
  b->FencedSet("d", 1, "v", [&](absl::Status st) { r1 = st; });
  b->FencedGet("d", [&](absl::StatusOr<std::optional<FencedValue>> v) { r2 = v.status(); });
  ASSERT_TRUE(Run([&] { return r1 && r2; }, seconds(3)));
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(raw.Cmd({"CLIENT", "UNPAUSE"}), "OK");
  EXPECT_EQ(r1->code(), absl::StatusCode::kUnavailable) << *r1;
  EXPECT_EQ(r2->code(), absl::StatusCode::kUnavailable) << *r2;
  EXPECT_TRUE(Contains(*r1, "no reply within 300 ms")) << *r1;
  EXPECT_GE(took, milliseconds(290));
  EXPECT_LT(took, milliseconds(1000));
  std::optional<absl::Status> r3;
  b->FencedSet("d", 2, "w", [&](absl::Status st) { r3 = st; });
  ASSERT_TRUE(Run([&] { return r3.has_value(); }, seconds(3)));
  EXPECT_TRUE(r3->ok()) << *r3;
  EXPECT_EQ(Impl(*b).stats().connects, 1u);
  // The first set was sent once and never again; it may have run after the pause (it was not
  // retried): the register holds fence 2 now either way.
  EXPECT_EQ(raw.Cmd({"HGET", "tollgate:{d}:reg", "fence"}), "2");
}

TEST_F(AsyncRedisTest, WaitGetsTheLeaseWhenItsHolderReleases) {
  auto holder = Grab(*b_, "w", seconds(30));
  ASSERT_TRUE(holder.has_value());
  std::optional<absl::StatusOr<std::optional<LeaseGrant>>> got;
  const auto start = std::chrono::steady_clock::now();
  const uint64_t ticket =
      b_->Acquire({"w", seconds(30), milliseconds(2000), std::nullopt},
                  [&](absl::StatusOr<std::optional<LeaseGrant>> g) { got = std::move(g); });
  EXPECT_NE(ticket, 0u);
  EXPECT_EQ(b_->LocalWaiters("w"), 1u);
  std::optional<absl::Status> released;
  loop_->RunAt(RealClock()->SteadyNow() + milliseconds(100),
               [&] { b_->Release("w", holder->lock_id, [&](absl::Status st) { released = st; }); });
  ASSERT_TRUE(Run([&] { return got.has_value(); }, seconds(3)));
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(released.has_value() && released->ok());
  ASSERT_TRUE(got->ok()) << got->status();
  ASSERT_TRUE(got->value().has_value());
  EXPECT_EQ((*got)->value().fence, holder->fence + 1);
  EXPECT_GE(took, milliseconds(100));
  EXPECT_LT(took, milliseconds(1000));
  EXPECT_EQ(b_->LocalWaiters("w"), 0u);
}

TEST_F(AsyncRedisTest, AWaiterWhoseWaitRunsOutGetsNotAcquired) {
  ASSERT_TRUE(Grab(*b_, "busy", seconds(30)).has_value());
  std::optional<absl::StatusOr<std::optional<LeaseGrant>>> got;
  const auto start = std::chrono::steady_clock::now();
  b_->Acquire({"busy", seconds(30), milliseconds(200), std::nullopt},
              [&](absl::StatusOr<std::optional<LeaseGrant>> g) { got = std::move(g); });
  ASSERT_TRUE(Run([&] { return got.has_value(); }, seconds(3)));
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(got->ok()) << got->status();
  EXPECT_FALSE(got->value().has_value());
  EXPECT_GE(took, milliseconds(190));
  EXPECT_LT(took, milliseconds(1000));
}

// CancelWait with the waiter's acquire in flight: its completion never runs, and the lease it was
// granted is released.
TEST_F(AsyncRedisTest, ACancelledWaiterIsNeverAnsweredAndItsGrantIsReleased) {
  auto holder = Grab(*b_, "c", milliseconds(100));
  ASSERT_TRUE(holder.has_value());
  int calls = 0;
  const uint64_t ticket = b_->Acquire({"c", seconds(30), seconds(5), std::nullopt},
                                      [&](absl::StatusOr<std::optional<LeaseGrant>>) { ++calls; });
  ASSERT_NE(ticket, 0u);
  RunFor(milliseconds(10));                        // the first attempt: not granted
  std::this_thread::sleep_for(milliseconds(150));  // the holder expires; the loop is idle
  // The next pass runs the poll timer, whose attempt is written at the end of the pass; its reply
  // is read in a later pass.
  const uint64_t commands = Impl(*b_).stats().commands;
  for (int i = 0; i < 100 && Impl(*b_).stats().commands == commands; ++i) {
    loop_->RunOnce(milliseconds(10));
  }
  ASSERT_GT(Impl(*b_).stats().commands, commands);
  b_->CancelWait(ticket);
  EXPECT_EQ(b_->LocalWaiters("c"), 0u);
  RunFor(milliseconds(200));
  EXPECT_EQ(calls, 0);
  EXPECT_FALSE(InfoOf(*b_, "c").has_value());  // the grant was released
  Raw raw(server_.port());
  EXPECT_EQ(raw.Cmd({"GET", "tollgate:{c}:fence"}), std::to_string(holder->fence + 1));
  // Its lock_id index went with it: only the two fence counters are left.
  EXPECT_EQ(raw.Cmd({"DBSIZE"}), "2");
}

TEST_F(AsyncRedisTest, ShutdownAnswersWaitersAndRefusesLaterCalls) {
  ASSERT_TRUE(Grab(*b_, "z", seconds(30)).has_value());
  std::optional<absl::StatusOr<std::optional<LeaseGrant>>> waiter;
  b_->Acquire({"z", seconds(30), seconds(5), std::nullopt},
              [&](absl::StatusOr<std::optional<LeaseGrant>> g) { waiter = std::move(g); });
  RunFor(milliseconds(20));
  b_->Shutdown();
  ASSERT_TRUE(waiter.has_value());
  ASSERT_TRUE(waiter->ok());
  EXPECT_FALSE(waiter->value().has_value());
  std::optional<absl::Status> later;
  b_->FencedSet("z", 1, "v", [&](absl::Status st) { later = st; });
  ASSERT_TRUE(later.has_value());
  EXPECT_EQ(later->code(), absl::StatusCode::kUnavailable) << *later;
  std::optional<absl::Status> acquire;
  b_->Acquire({"z2", seconds(30), Duration(0), std::nullopt},
              [&](absl::StatusOr<std::optional<LeaseGrant>> g) { acquire = g.status(); });
  ASSERT_TRUE(acquire.has_value());
  EXPECT_EQ(acquire->code(), absl::StatusCode::kUnavailable) << *acquire;
}

TEST_F(AsyncRedisTest, BadInputIsInvalidArgumentAtOnce) {
  std::optional<absl::Status> a, t;
  b_->Acquire({"", seconds(1), Duration(0), std::nullopt},
              [&](absl::StatusOr<std::optional<LeaseGrant>> g) { a = g.status(); });
  b_->Throttle("t", {D("1"), D("0.0001")}, D("1"),
               [&](absl::StatusOr<Decision> d) { t = d.status(); });
  ASSERT_TRUE(a && t);
  EXPECT_EQ(a->code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(t->code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(*t, "rate")) << *t;
}

// Issue 13: acquired_at is the tollgate process's clock (the backend's Clock), never Redis TIME:
// with a clock years off, grants, Info and LookupById all carry that clock's time, in whole ms.
TEST_F(AsyncRedisTest, AcquiredAtComesFromTheBackendsClockNotRedisTime) {
  FakeClock clock(WallTime(std::chrono::milliseconds(1'000'000'000'123)) +
                  std::chrono::microseconds(789));
  auto url = redis::ParseUrl(server_.url());
  ASSERT_TRUE(url.ok()) << url.status();
  auto client = redis::Client::Connect(*url, seconds(2), *loop_);
  ASSERT_TRUE(client.ok()) << client.status();
  redis::AsyncRedisBackend b(std::move(*client), *loop_, Duration(0), &clock);
  const WallTime expected(std::chrono::milliseconds(1'000'000'000'123));  // floored to ms
  auto g = Grab(b, "clk", seconds(30));
  ASSERT_TRUE(g.has_value());
  EXPECT_EQ(g->acquired_at, expected);
  Raw raw(server_.port());
  EXPECT_EQ(raw.Cmd({"HGET", "tollgate:{clk}:lock", "at"}), "1000000000123");
  auto info = InfoOf(b, "clk");
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->acquired_at, expected);
  EXPECT_EQ(info->lock_id, g->lock_id);
  clock.Advance(seconds(5));  // Extend keeps acquired_at
  std::optional<absl::StatusOr<Duration>> ext;
  b.Extend("clk", g->lock_id, seconds(60), [&](absl::StatusOr<Duration> d) { ext = std::move(d); });
  ASSERT_TRUE(Run([&] { return ext.has_value(); }));
  ASSERT_TRUE(ext->ok()) << ext->status();
  std::optional<absl::StatusOr<std::optional<LeaseById>>> found;
  b.LookupById(g->lock_id,
               [&](absl::StatusOr<std::optional<LeaseById>> r) { found = std::move(r); });
  ASSERT_TRUE(Run([&] { return found.has_value(); }));
  ASSERT_TRUE(found->ok()) << found->status();
  ASSERT_TRUE(found->value().has_value());
  EXPECT_EQ(found->value()->key, "clk");
  EXPECT_EQ(found->value()->info.fence, g->fence);
  EXPECT_EQ(found->value()->info.acquired_at, expected);
  EXPECT_EQ(found->value()->info.waiters, 0u);
  // A multi-key grant takes its acquired_at from the same clock.
  std::optional<absl::StatusOr<std::optional<LeaseGrant>>> m;
  b.MultiAcquire({{"clk1", "clk2"}, seconds(30), Duration(0), std::nullopt},
                 [&](absl::StatusOr<std::optional<LeaseGrant>> r) { m = std::move(r); });
  ASSERT_TRUE(Run([&] { return m.has_value(); }));
  ASSERT_TRUE(m->ok() && m->value().has_value()) << m->status();
  EXPECT_EQ(m->value()->acquired_at, expected + seconds(5));
  EXPECT_EQ(raw.Cmd({"HGET", "tollgate:{clk2}:lock", "at"}), "1000000005123");
}

// A waiter's grant is indexed like any single-key grant; its release drops the index.
TEST_F(AsyncRedisTest, AWaitersGrantIsIndexedAndItsReleaseDropsTheIndex) {
  auto holder = Grab(*b_, "gb", milliseconds(100));
  ASSERT_TRUE(holder.has_value());
  std::optional<absl::StatusOr<std::optional<LeaseGrant>>> waited;
  b_->Acquire({"gb", seconds(30), seconds(5), std::nullopt},
              [&](absl::StatusOr<std::optional<LeaseGrant>> g) { waited = std::move(g); });
  ASSERT_TRUE(Run([&] { return waited.has_value(); }));
  ASSERT_TRUE(waited->ok() && waited->value().has_value()) << waited->status();
  const std::string index = "tollgate:i:" + waited->value()->lock_id;
  Raw raw(server_.port());
  EXPECT_EQ(raw.Cmd({"GET", index}), "gb");
  std::optional<absl::Status> rel;
  b_->Release("gb", waited->value()->lock_id, [&](absl::Status st) { rel = st; });
  ASSERT_TRUE(Run([&] { return rel.has_value(); }));
  ASSERT_TRUE(rel->ok()) << *rel;
  EXPECT_EQ(raw.Cmd({"EXISTS", index}), "0");
}

// ---- Redis Cluster ----

class AsyncRedisClusterTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    cluster_ = new RedisCluster;
    if (!cluster_->Start()) {
      delete cluster_;
      cluster_ = nullptr;
    }
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(cluster_, nullptr) << "the Redis Cluster did not start";
    auto loop = EpollEventLoop::Create();
    ASSERT_TRUE(loop.ok()) << loop.status();
    loop_ = std::move(*loop);
    prefix_ = std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) + ":" +
              std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()) + ":";
  }
  bool Run(absl::FunctionRef<bool()> done, Duration limit = seconds(10)) {
    return loop_->RunUntil(done, RealClock()->SteadyNow() + limit);
  }
  std::string KeyOn(int owner, int* slot) {
    for (int i = 0;; ++i) {
      std::string k = prefix_ + std::to_string(i);
      const int s = redis::KeySlot(k);
      if (cluster_->OwnerOfSlot(s) == owner) {
        *slot = s;
        return k;
      }
    }
  }
  static long ErrorCount(int i, const std::string& prefix) {
    Raw raw(cluster_->port(i));
    const std::string info = raw.Cmd({"INFO", "errorstats"});
    const std::string tag = "errorstat_" + prefix + ":count=";
    const size_t at = info.find(tag);
    return at == std::string::npos ? 0 : std::stol(info.substr(at + tag.size()));
  }

  static RedisCluster* cluster_;
  std::unique_ptr<EpollEventLoop> loop_;
  std::string prefix_;
};
RedisCluster* AsyncRedisClusterTest::cluster_ = nullptr;

// Operations on keys spread over all three nodes, submitted in one pass: each goes to its slot's
// owner (one pipelined connection per node), all complete in order per key.
TEST_F(AsyncRedisClusterTest, OnePassSpreadOverAllNodes) {
  auto b = NewAsyncRedisBackend(cluster_->url(0), *loop_, seconds(2));
  ASSERT_TRUE(b.ok()) << b.status();
  constexpr int kKeys = 90;
  int done = 0, bad = 0;
  std::set<int> owners;
  for (int i = 0; i < kKeys; ++i) {
    const std::string key = prefix_ + std::to_string(i);
    owners.insert(cluster_->OwnerOfSlot(redis::KeySlot("tollgate:{" + key + "}:lock")));
    (*b)->Acquire({key, seconds(30), Duration(0), std::nullopt},
                  [&](absl::StatusOr<std::optional<LeaseGrant>> g) {
                    ++done;
                    if (!g.ok() || !g->has_value() || (*g)->fence != 1) ++bad;
                  });
    (*b)->FencedSet(key, 5, "v", [&](absl::Status st) {
      ++done;
      if (!st.ok()) ++bad;
    });
    (*b)->FencedGet(key, [&](absl::StatusOr<std::optional<FencedValue>> v) {
      ++done;
      if (!v.ok() || !v->has_value() || (*v)->fence != 5) ++bad;
    });
    (*b)->Throttle(key, {D("1"), D("1")}, D("1"), [&](absl::StatusOr<Decision> d) {
      ++done;
      if (!d.ok() || !d->allowed) ++bad;
    });
  }
  ASSERT_TRUE(Run([&] { return done == 4 * kKeys; }));
  EXPECT_EQ(bad, 0);
  EXPECT_EQ(owners.size(), 3u);
  // The seed's connection came from the setup; the two other nodes were connected on the loop.
  EXPECT_EQ(dynamic_cast<redis::AsyncRedisBackend&>(**b).stats().connects, 2u);
}

TEST_F(AsyncRedisClusterTest, MovedIsFollowedAndRemembered) {
  auto b = NewAsyncRedisBackend(cluster_->url(0), *loop_, seconds(2));
  ASSERT_TRUE(b.ok()) << b.status();
  int slot = 0;
  const std::string key = KeyOn(1, &slot);
  EXPECT_EQ(
      Raw(cluster_->port(2))
          .Cmd({"CLUSTER", "SETSLOT", std::to_string(slot), "IMPORTING", cluster_->node_id(1)}),
      "OK");
  EXPECT_EQ(
      Raw(cluster_->port(1))
          .Cmd({"CLUSTER", "SETSLOT", std::to_string(slot), "MIGRATING", cluster_->node_id(2)}),
      "OK");
  for (int i = 0; i < RedisCluster::kNodes; ++i) {
    EXPECT_EQ(Raw(cluster_->port(i))
                  .Cmd({"CLUSTER", "SETSLOT", std::to_string(slot), "NODE", cluster_->node_id(2)}),
              "OK");
  }
  ASSERT_EQ(cluster_->OwnerOfSlot(slot), 2);
  const long moved_before = ErrorCount(1, "MOVED");
  // Two operations on the key in one pass: both are redirected, in order.
  std::optional<absl::StatusOr<std::optional<LeaseGrant>>> g;
  std::optional<absl::StatusOr<std::optional<LeaseInfo>>> info;
  (*b)->Acquire({key, seconds(30), Duration(0), "me"},
                [&](absl::StatusOr<std::optional<LeaseGrant>> r) { g = std::move(r); });
  (*b)->Info(key, [&](absl::StatusOr<std::optional<LeaseInfo>> r) {
    EXPECT_TRUE(g.has_value());  // completes after the acquire
    info = std::move(r);
  });
  ASSERT_TRUE(Run([&] { return g && info; }));
  ASSERT_TRUE(g->ok()) << g->status();
  ASSERT_TRUE(g->value().has_value());
  ASSERT_TRUE(info->ok()) << info->status();
  ASSERT_TRUE(info->value().has_value());
  EXPECT_EQ((*info)->value().fence, (*g)->value().fence);
  EXPECT_EQ(ErrorCount(1, "MOVED"), moved_before + 2);
  EXPECT_EQ(Raw(cluster_->port(2)).Cmd({"HGET", "tollgate:{" + key + "}:lock", "id"}),
            (*g)->value().lock_id);
  std::optional<absl::Status> released;
  (*b)->Release(key, (*g)->value().lock_id, [&](absl::Status st) { released = st; });
  ASSERT_TRUE(Run([&] { return released.has_value(); }));
  EXPECT_TRUE(released->ok()) << *released;
  EXPECT_EQ(ErrorCount(1, "MOVED"), moved_before + 2);  // straight to node 2 now
}

}  // namespace
namespace {

// Issue 10: every state a Redis server answers with an error while it cannot serve is Unavailable
// (retry), never -ERR (bad input). States no test can provoke on a healthy server (MISCONF needs a
// failing disk, OOM a full memory) are checked on the mapping itself, with Redis's own texts.
TEST(RedisErrorMappingTest, EveryOutageOrOverloadStateIsUnavailable) {
  for (const char* msg :
       {"LOADING Redis is loading the dataset in memory",
        "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
        "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
        "TRYAGAIN Multiple keys request during rehashing of slot",
        "CLUSTERDOWN The cluster is down", "READONLY You can't write against a read only replica.",
        "NOREPLICAS Not enough good replicas to write.",
        "OOM command not allowed when used memory > 'maxmemory'.",
        "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist "
        "to disk.",
        "NOAUTH Authentication required.", "WRONGPASS invalid username-password pair",
        "NOPERM this user has no permissions to run the 'evalsha' command"}) {
    absl::Status st = redis::ErrorReply(msg);
    EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable) << msg;
    EXPECT_NE(st.message().find(msg), std::string_view::npos) << st;
  }
  EXPECT_EQ(redis::ErrorReply("STALE fence 1 is older than 2").code(), absl::StatusCode::kAborted);
  EXPECT_EQ(redis::ErrorReply("ERR something unexpected").code(), absl::StatusCode::kInternal);
}

}  // namespace
}  // namespace tollgate
