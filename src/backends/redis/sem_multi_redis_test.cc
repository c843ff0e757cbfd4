// Fenced semaphores and multi-key locks on the Redis backend, against a private redis-server and a
// private 3-master Redis Cluster: slots, limits, expiry, fences from the lease sequence, all or
// nothing, lock-delay, cluster slots, NOSCRIPT.
#include <chrono>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "backends/redis/cluster_slot.h"
#include "gtest/gtest.h"
#include "tests/support/raw_redis.h"
#include "tests/support/redis_cluster.h"
#include "tests/support/redis_server.h"
#include "tollgate/event_loop.h"
#include "tollgate/redis_backend.h"

namespace tollgate {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::RedisCluster;
using testing::RedisServer;
using Raw = testing::RawRedis;
using Keys = std::vector<std::string>;

SemAcquireRequest Sem(const std::string& key, int64_t limit, Duration ttl,
                      std::optional<std::string> owner = std::nullopt) {
  return SemAcquireRequest{key, limit, ttl, Duration(0), std::move(owner)};
}

MultiAcquireRequest Multi(Keys keys, Duration ttl) {
  return MultiAcquireRequest{std::move(keys), ttl, Duration(0), std::nullopt};
}

// A grant, or a failed expectation and nullopt.
template <class T>
std::optional<T> Granted(const absl::StatusOr<std::optional<T>>& r) {
  EXPECT_TRUE(r.ok()) << r.status();
  if (!r.ok()) return std::nullopt;
  EXPECT_TRUE(r->has_value()) << "not granted";
  return *r;
}

template <class T>
bool NotGranted(const absl::StatusOr<std::optional<T>>& r) {
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() && !r->has_value();
}

class RedisSemMultiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.Start());
    b_ = Open(Duration(0));
    ASSERT_NE(b_, nullptr);
  }
  std::unique_ptr<Backend> Open(Duration lock_delay) {
    auto b = NewRedisBackend(server_.url(), seconds(2), lock_delay);
    EXPECT_TRUE(b.ok()) << b.status();
    return b.ok() ? std::move(*b) : nullptr;
  }
  std::string Cmd(const std::vector<std::string>& args) { return Raw(server_.port()).Cmd(args); }

  RedisServer server_;
  std::unique_ptr<Backend> b_;
};

// ---- Semaphores ----

TEST_F(RedisSemMultiTest, PermitsTakeTheLowestFreeSlotUpToTheLimit) {
  std::vector<PermitGrant> p;
  for (int i = 0; i < 3; ++i) {
    auto g = Granted(b_->SemAcquire(Sem("jobs", 3, seconds(30), "w" + std::to_string(i))));
    ASSERT_TRUE(g.has_value());
    EXPECT_EQ(g->slot, i);
    EXPECT_EQ(g->permit_id.size(), 32u);
    EXPECT_EQ(g->ttl, seconds(30));
    p.push_back(*g);
  }
  EXPECT_NE(p[0].permit_id, p[1].permit_id);
  EXPECT_TRUE(NotGranted(b_->SemAcquire(Sem("jobs", 3, seconds(30)))));
  ASSERT_TRUE(b_->SemRelease("jobs", p[1].permit_id).ok());
  auto again = Granted(b_->SemAcquire(Sem("jobs", 3, seconds(30))));
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->slot, 1);
  EXPECT_GT(again->fence, p[2].fence);
  // A semaphore and a lease of the same name are unrelated.
  auto lease = b_->Acquire("jobs", seconds(30), std::nullopt);
  ASSERT_TRUE(lease.ok() && lease->has_value()) << lease.status();
  EXPECT_FALSE(b_->Info("jobs")->value().owner.has_value());
  // Key layout: the hash, its limit, an owner, a PTTL no longer than the furthest permit.
  EXPECT_EQ(Cmd({"HGET", "tollgate:s:{jobs}", "limit"}), "3");
  EXPECT_EQ(Cmd({"HGET", "tollgate:s:{jobs}", p[0].permit_id}).substr(0, 2), "0 ");
  EXPECT_NE(Cmd({"HGET", "tollgate:s:{jobs}", p[0].permit_id}).find(" w0"), std::string::npos);
  const long pttl = std::stol(Cmd({"PTTL", "tollgate:s:{jobs}"}));
  EXPECT_GT(pttl, 29000);
  EXPECT_LE(pttl, 30000);
  EXPECT_EQ(Cmd({"PTTL", "tollgate:s:{jobs}:fence"}), "-1");
}

TEST_F(RedisSemMultiTest, ADifferentLimitIsRefusedNamingBothAndChangesNothing) {
  auto g = Granted(b_->SemAcquire(Sem("pool", 2, seconds(30))));
  ASSERT_TRUE(g.has_value());
  const std::string fence_before = Cmd({"GET", "tollgate:fence"});
  auto r = b_->SemAcquire(Sem("pool", 3, seconds(30)));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(),
            "limit 3 differs from the limit 2 of the current holders of semaphore \"pool\"");
  EXPECT_EQ(Cmd({"GET", "tollgate:fence"}), fence_before);
  auto info = b_->SemInfo("pool");
  ASSERT_TRUE(info.ok() && info->has_value());
  EXPECT_EQ((*info)->limit, 2);
  EXPECT_EQ((*info)->holders, 1);
  // The key in the message is cut to 64 bytes.
  const std::string long_key(100, 'k');
  ASSERT_TRUE(Granted(b_->SemAcquire(Sem(long_key, 1, seconds(30)))).has_value());
  r = b_->SemAcquire(Sem(long_key, 5, seconds(30)));
  EXPECT_EQ(r.status().message(),
            "limit 5 differs from the limit 1 of the current holders of "
            "semaphore \"" +
                std::string(64, 'k') + "\"");
  // Bad requests: the validator's messages, nothing sent.
  EXPECT_EQ(b_->SemAcquire(Sem("pool", 0, seconds(1))).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b_->SemAcquire(Sem("pool", kMaxSemaphoreLimit + 1, seconds(1))).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b_->SemAcquire(Sem("", 1, seconds(1))).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(RedisSemMultiTest, AnExpiredPermitFreesItsSlotAndItsLimit) {
  auto short_lived = Granted(b_->SemAcquire(Sem("e", 2, milliseconds(50))));
  auto long_lived = Granted(b_->SemAcquire(Sem("e", 2, seconds(30))));
  ASSERT_TRUE(short_lived && long_lived);
  EXPECT_EQ(short_lived->slot, 0);
  EXPECT_EQ(long_lived->slot, 1);
  EXPECT_TRUE(NotGranted(b_->SemAcquire(Sem("e", 2, seconds(30)))));
  std::this_thread::sleep_for(milliseconds(120));
  auto info = b_->SemInfo("e");
  ASSERT_TRUE(info.ok() && info->has_value());
  EXPECT_EQ((*info)->holders, 1);
  EXPECT_EQ((*info)->fence, long_lived->fence);
  auto g = Granted(b_->SemAcquire(Sem("e", 2, seconds(30))));
  ASSERT_TRUE(g.has_value());
  EXPECT_EQ(g->slot, 0);
  // The expired permit was purged by that grant.
  EXPECT_EQ(Cmd({"HEXISTS", "tollgate:s:{e}", short_lived->permit_id}), "0");
  // Once every permit has expired, another limit is accepted; the hash itself expires.
  auto brief = Granted(b_->SemAcquire(Sem("e2", 1, milliseconds(40))));
  ASSERT_TRUE(brief.has_value());
  std::this_thread::sleep_for(milliseconds(100));
  EXPECT_EQ(Cmd({"EXISTS", "tollgate:s:{e2}"}), "0");
  EXPECT_FALSE(b_->SemInfo("e2")->has_value());
  auto other_limit = Granted(b_->SemAcquire(Sem("e2", 4, seconds(30))));
  ASSERT_TRUE(other_limit.has_value());
  EXPECT_EQ(other_limit->slot, 0);
  EXPECT_GT(other_limit->fence, brief->fence);
}

TEST_F(RedisSemMultiTest, ExtendMovesTheExpiryAndNeverRevives) {
  auto g = Granted(b_->SemAcquire(Sem("x", 2, milliseconds(300))));
  ASSERT_TRUE(g.has_value());
  auto ext = b_->SemExtend("x", g->permit_id, seconds(20));
  ASSERT_TRUE(ext.ok()) << ext.status();
  EXPECT_EQ(*ext, seconds(20));
  EXPECT_GT(std::stol(Cmd({"PTTL", "tollgate:s:{x}"})), 19000);  // the hash lives as long
  std::this_thread::sleep_for(milliseconds(400));
  EXPECT_TRUE(b_->SemInfo("x")->has_value());  // still held
  // Shortening is allowed too.
  ASSERT_TRUE(b_->SemExtend("x", g->permit_id, milliseconds(30)).ok());
  std::this_thread::sleep_for(milliseconds(80));
  auto late = b_->SemExtend("x", g->permit_id, seconds(20));
  EXPECT_EQ(late.status().code(), absl::StatusCode::kFailedPrecondition) << late.status();
  EXPECT_FALSE(b_->SemInfo("x")->has_value());
  EXPECT_EQ(b_->SemExtend("x", "0123456789abcdef0123456789abcdef", seconds(1)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(b_->SemExtend("x", g->permit_id, Duration(0)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(RedisSemMultiTest, ReleaseFreesOnceAndOnlyAHeldPermit) {
  auto a = Granted(b_->SemAcquire(Sem("r", 2, seconds(30))));
  auto b = Granted(b_->SemAcquire(Sem("r", 2, seconds(30))));
  ASSERT_TRUE(a && b);
  EXPECT_TRUE(b_->SemRelease("r", a->permit_id).ok());
  EXPECT_EQ(b_->SemRelease("r", a->permit_id).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(b_->SemRelease("r", "limit").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(b_->SemRelease("other", b->permit_id).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(b_->SemInfo("r")->value().holders, 1);
  EXPECT_TRUE(b_->SemRelease("r", b->permit_id).ok());
  EXPECT_FALSE(b_->SemInfo("r")->has_value());
  EXPECT_EQ(Cmd({"EXISTS", "tollgate:s:{r}"}), "0");  // idle: deleted
  auto expired = Granted(b_->SemAcquire(Sem("r", 2, milliseconds(20))));
  ASSERT_TRUE(expired.has_value());
  std::this_thread::sleep_for(milliseconds(60));
  EXPECT_EQ(b_->SemRelease("r", expired->permit_id).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(RedisSemMultiTest, InfoCountsUnexpiredPermitsAndShowsTheNewestFence) {
  EXPECT_FALSE(b_->SemInfo("i")->has_value());
  auto a = Granted(b_->SemAcquire(Sem("i", 5, seconds(30))));
  auto b = Granted(b_->SemAcquire(Sem("i", 5, seconds(30))));
  ASSERT_TRUE(a && b);
  auto info = b_->SemInfo("i");
  ASSERT_TRUE(info.ok() && info->has_value()) << info.status();
  EXPECT_EQ((*info)->limit, 5);
  EXPECT_EQ((*info)->holders, 2);
  EXPECT_EQ((*info)->waiters, 0u);
  EXPECT_EQ((*info)->fence, b->fence);
  ASSERT_TRUE(b_->SemRelease("i", b->permit_id).ok());
  EXPECT_EQ(b_->SemInfo("i")->value().fence, a->fence);
}

// Standalone Redis: leases, permits and multi-key grants draw from the one counter tollgate:fence,
// and a semaphore's own counter follows it.
TEST_F(RedisSemMultiTest, FencesComeFromTheGlobalCounterAcrossLeasesAndPermits) {
  uint64_t last = 0;
  for (int i = 0; i < 5; ++i) {
    auto lease = b_->Acquire("lease" + std::to_string(i), seconds(30), std::nullopt);
    ASSERT_TRUE(lease.ok() && lease->has_value());
    EXPECT_EQ((*lease)->fence, last + 1);
    auto permit = Granted(b_->SemAcquire(Sem("sem", 10, seconds(30))));
    ASSERT_TRUE(permit.has_value());
    EXPECT_EQ(permit->fence, last + 2);
    auto multi = Granted(
        b_->MultiAcquire(Multi({"m" + std::to_string(i), "n" + std::to_string(i)}, seconds(30))));
    ASSERT_TRUE(multi.has_value());
    EXPECT_EQ(multi->fence, last + 3);
    last = multi->fence;
  }
  EXPECT_EQ(Cmd({"GET", "tollgate:fence"}), std::to_string(last));
  EXPECT_EQ(Cmd({"GET", "tollgate:s:{sem}:fence"}), std::to_string(last - 1));
  // A permit's fence counts as issued; one above the counter does not.
  EXPECT_TRUE(b_->FencedSet("res", last, "v").ok());
  EXPECT_EQ(b_->FencedSet("res", last + 1, "v").code(), absl::StatusCode::kInvalidArgument);
  // A semaphore counter ahead of the global one (written before global fences) is continued.
  ASSERT_EQ(Cmd({"SET", "tollgate:s:{ahead}:fence", "1000"}), "OK");
  auto p = Granted(b_->SemAcquire(Sem("ahead", 1, seconds(30))));
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->fence, 1001u);
  EXPECT_EQ(Cmd({"GET", "tollgate:fence"}), "1001");
  // All 64 bits, never through a Lua double.
  ASSERT_EQ(Cmd({"SET", "tollgate:fence", "9007199254740993"}), "OK");
  auto big = Granted(b_->SemAcquire(Sem("big", 1, seconds(30))));
  ASSERT_TRUE(big.has_value());
  EXPECT_EQ(big->fence, 9007199254740994u);
  EXPECT_EQ(b_->SemInfo("big")->value().fence, 9007199254740994u);
}

// ---- Multi-key locks ----

TEST_F(RedisSemMultiTest, MultiAcquireIsAllOrNothing) {
  auto b = b_->Acquire("b", seconds(30), std::nullopt);
  ASSERT_TRUE(b.ok() && b->has_value());
  const std::string fence_before = Cmd({"GET", "tollgate:fence"});
  EXPECT_TRUE(NotGranted(b_->MultiAcquire(Multi({"a", "b", "c"}, seconds(30)))));
  EXPECT_FALSE(b_->Info("a")->has_value());
  EXPECT_FALSE(b_->Info("c")->has_value());
  EXPECT_EQ(Cmd({"EXISTS", "tollgate:{a}:fence"}), "0");
  EXPECT_EQ(Cmd({"GET", "tollgate:fence"}), fence_before);
  ASSERT_TRUE(b_->Release("b", (*b)->lock_id).ok());

  auto g = Granted(b_->MultiAcquire(
      MultiAcquireRequest{{"a", "b", "c"}, seconds(30), Duration(0), std::string("owner-x")}));
  ASSERT_TRUE(g.has_value());
  EXPECT_EQ(g->lock_id.size(), 32u);
  EXPECT_EQ(g->ttl, seconds(30));
  for (const char* k : {"a", "b", "c"}) {
    auto info = b_->Info(k);
    ASSERT_TRUE(info.ok() && info->has_value()) << k;
    EXPECT_EQ((*info)->fence, g->fence) << k;
    EXPECT_EQ((*info)->owner, "owner-x") << k;
    EXPECT_EQ(Cmd({"GET", std::string("tollgate:{") + k + "}:fence"}), std::to_string(g->fence));
  }
  EXPECT_GT(g->fence, (*b)->fence);
  // Each key is an ordinary lease now: taken for a single acquire, released one at a time.
  EXPECT_FALSE(b_->Acquire("a", seconds(1), std::nullopt)->has_value());
  EXPECT_TRUE(NotGranted(b_->MultiAcquire(Multi({"c", "d"}, seconds(30)))));
  EXPECT_TRUE(b_->Release("b", g->lock_id).ok());
  EXPECT_TRUE(b_->Info("a")->has_value());
  auto ext = b_->Extend("c", g->lock_id, seconds(60));
  ASSERT_TRUE(ext.ok()) << ext.status();
}

TEST_F(RedisSemMultiTest, MultiReleaseCountsWhatItReleased) {
  auto g = Granted(b_->MultiAcquire(Multi({"p", "q", "r"}, seconds(30))));
  ASSERT_TRUE(g.has_value());
  ASSERT_TRUE(b_->Release("q", g->lock_id).ok());
  auto q = b_->Acquire("q", seconds(30), std::nullopt);  // someone else's now
  ASSERT_TRUE(q.ok() && q->has_value());
  auto n = b_->MultiRelease(Keys{"p", "q", "r", "s"}, g->lock_id);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 2u);
  EXPECT_TRUE(b_->Info("q")->has_value());  // untouched
  EXPECT_FALSE(b_->Info("p")->has_value());
  EXPECT_EQ(*b_->MultiRelease(Keys{"p", "q", "r"}, g->lock_id), 0u);
  EXPECT_EQ(b_->MultiRelease(Keys{"p", "p"}, g->lock_id).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b_->MultiRelease(Keys{}, g->lock_id).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(RedisSemMultiTest, MultiExtendIsAllOrNone) {
  auto g = Granted(b_->MultiAcquire(Multi({"u", "v", "w"}, seconds(10))));
  ASSERT_TRUE(g.has_value());
  auto ext = b_->MultiExtend(Keys{"u", "v", "w"}, g->lock_id, seconds(40));
  ASSERT_TRUE(ext.ok()) << ext.status();
  EXPECT_EQ(*ext, seconds(40));
  for (const char* k : {"u", "v", "w"}) {
    EXPECT_GT(std::stol(Cmd({"PTTL", std::string("tollgate:{") + k + "}:lock"})), 39000) << k;
  }
  ASSERT_TRUE(b_->Release("v", g->lock_id).ok());
  auto bad = b_->MultiExtend(Keys{"u", "v", "w"}, g->lock_id, seconds(100));
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(bad.status().message(), "lease on 'v' is not held by this lock_id");
  for (const char* k : {"u", "w"}) {  // unchanged
    EXPECT_LE(std::stol(Cmd({"PTTL", std::string("tollgate:{") + k + "}:lock"})), 40000) << k;
  }
  EXPECT_EQ(b_->MultiExtend(Keys{"u", "w"}, "0123456789abcdef0123456789abcdef", seconds(1))
                .status()
                .code(),
            absl::StatusCode::kFailedPrecondition);
  // An expired key is never revived.
  auto brief = Granted(b_->MultiAcquire(Multi({"y", "z"}, milliseconds(30))));
  ASSERT_TRUE(brief.has_value());
  std::this_thread::sleep_for(milliseconds(80));
  EXPECT_EQ(b_->MultiExtend(Keys{"y", "z"}, brief->lock_id, seconds(1)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(b_->Info("y")->has_value());
}

// With lock-delay, a key whose lease expired unreleased blocks a multi-key acquire as it blocks a
// single one; a multi-key grant is marked like a single grant, so its keys block after expiry too.
TEST_F(RedisSemMultiTest, MultiAcquireHonoursLockDelay) {
  std::unique_ptr<Backend> b = Open(milliseconds(400));
  ASSERT_NE(b, nullptr);
  auto single = b->Acquire("d1", milliseconds(50), std::nullopt);
  ASSERT_TRUE(single.ok() && single->has_value());
  std::this_thread::sleep_for(milliseconds(100));  // expired, in lock-delay
  EXPECT_FALSE(b->Info("d1")->has_value());
  EXPECT_TRUE(NotGranted(b->MultiAcquire(Multi({"d1", "d2"}, seconds(30)))));
  EXPECT_FALSE(b->Info("d2")->has_value());
  std::this_thread::sleep_for(milliseconds(450));  // the delay is over
  auto g = Granted(b->MultiAcquire(Multi({"d1", "d2"}, milliseconds(50))));
  ASSERT_TRUE(g.has_value());
  EXPECT_EQ(Cmd({"HGET", "tollgate:{d2}:lock", "d"}), "400");
  std::this_thread::sleep_for(milliseconds(100));  // the multi grant expired: both keys in delay
  EXPECT_TRUE(NotGranted(b->Acquire("d2", seconds(1), std::nullopt)));
  EXPECT_EQ(*b->MultiRelease(Keys{"d1", "d2"}, g->lock_id), 0u);  // expired: not released
  EXPECT_EQ(b->MultiExtend(Keys{"d1", "d2"}, g->lock_id, seconds(1)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  // Released before expiry: no delay.
  auto h = Granted(b->MultiAcquire(Multi({"d3", "d4"}, seconds(30))));
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(*b->MultiRelease(Keys{"d3", "d4"}, h->lock_id), 2u);
  EXPECT_TRUE(Granted(b->MultiAcquire(Multi({"d3", "d4"}, seconds(30)))).has_value());
}

// After SCRIPT FLUSH the new scripts are reloaded like the others (NOSCRIPT, then EVAL).
TEST_F(RedisSemMultiTest, NewScriptsAreReloadedAfterScriptFlush) {
  ASSERT_EQ(Cmd({"SCRIPT", "FLUSH"}), "OK");
  auto p = Granted(b_->SemAcquire(Sem("f", 1, seconds(30))));
  ASSERT_TRUE(p.has_value());
  ASSERT_EQ(Cmd({"SCRIPT", "FLUSH"}), "OK");
  EXPECT_TRUE(b_->SemInfo("f")->has_value());
  ASSERT_EQ(Cmd({"SCRIPT", "FLUSH"}), "OK");
  EXPECT_TRUE(b_->SemExtend("f", p->permit_id, seconds(30)).ok());
  ASSERT_EQ(Cmd({"SCRIPT", "FLUSH"}), "OK");
  EXPECT_TRUE(b_->SemRelease("f", p->permit_id).ok());
  ASSERT_EQ(Cmd({"SCRIPT", "FLUSH"}), "OK");
  auto g = Granted(b_->MultiAcquire(Multi({"f1", "f2"}, seconds(30))));
  ASSERT_TRUE(g.has_value());
  ASSERT_EQ(Cmd({"SCRIPT", "FLUSH"}), "OK");
  EXPECT_TRUE(b_->MultiExtend(Keys{"f1", "f2"}, g->lock_id, seconds(30)).ok());
  ASSERT_EQ(Cmd({"SCRIPT", "FLUSH"}), "OK");
  EXPECT_EQ(*b_->MultiRelease(Keys{"f1", "f2"}, g->lock_id), 2u);
  const std::string stats = Cmd({"INFO", "commandstats"});
  EXPECT_NE(stats.find("cmdstat_eval:calls="), std::string::npos) << stats;
}

// ---- Waiting (the asynchronous backend, through its WaitQueue) ----

TEST_F(RedisSemMultiTest, WaitersGetAPermitWhenOneIsReleasedAndAreCounted) {
  auto loop = EpollEventLoop::Create();
  ASSERT_TRUE(loop.ok()) << loop.status();
  auto ab = NewAsyncRedisBackend(server_.url(), **loop, seconds(2));
  ASSERT_TRUE(ab.ok()) << ab.status();
  auto held = Granted(b_->SemAcquire(Sem("ws", 1, seconds(30))));
  ASSERT_TRUE(held.has_value());
  std::optional<absl::StatusOr<std::optional<PermitGrant>>> got;
  const uint64_t ticket =
      (*ab)->SemAcquire(SemAcquireRequest{"ws", 1, seconds(30), seconds(3), std::nullopt},
                        [&](absl::StatusOr<std::optional<PermitGrant>> g) { got = std::move(g); });
  EXPECT_NE(ticket, 0u);
  (*loop)->RunUntil([] { return false; }, RealClock()->SteadyNow() + milliseconds(50));
  std::optional<absl::StatusOr<std::optional<SemaphoreInfo>>> info;
  (*ab)->SemInfo("ws",
                 [&](absl::StatusOr<std::optional<SemaphoreInfo>> i) { info = std::move(i); });
  ASSERT_TRUE(
      (*loop)->RunUntil([&] { return info.has_value(); }, RealClock()->SteadyNow() + seconds(3)));
  ASSERT_TRUE(info->ok() && info->value().has_value()) << info->status();
  EXPECT_EQ((*info)->value().waiters, 1u);
  EXPECT_EQ((*info)->value().holders, 1);
  ASSERT_TRUE(b_->SemRelease("ws", held->permit_id).ok());
  ASSERT_TRUE(
      (*loop)->RunUntil([&] { return got.has_value(); }, RealClock()->SteadyNow() + seconds(3)));
  ASSERT_TRUE(got->ok()) << got->status();
  ASSERT_TRUE(got->value().has_value());
  EXPECT_EQ((*got)->value().slot, 0);
  EXPECT_GT((*got)->value().fence, held->fence);

  // A multi-key waiter gets every key once the last one is released.
  auto k2 = b_->Acquire("wk2", seconds(30), std::nullopt);
  ASSERT_TRUE(k2.ok() && k2->has_value());
  std::optional<absl::StatusOr<std::optional<LeaseGrant>>> all;
  (*ab)->MultiAcquire(MultiAcquireRequest{{"wk1", "wk2"}, seconds(30), seconds(3), std::nullopt},
                      [&](absl::StatusOr<std::optional<LeaseGrant>> g) { all = std::move(g); });
  (*loop)->RunUntil([] { return false; }, RealClock()->SteadyNow() + milliseconds(50));
  EXPECT_FALSE(all.has_value());
  EXPECT_FALSE(b_->Info("wk1")->has_value());  // holds nothing while it waits
  ASSERT_TRUE(b_->Release("wk2", (*k2)->lock_id).ok());
  ASSERT_TRUE(
      (*loop)->RunUntil([&] { return all.has_value(); }, RealClock()->SteadyNow() + seconds(3)));
  ASSERT_TRUE(all->ok()) << all->status();
  ASSERT_TRUE(all->value().has_value());
  EXPECT_EQ(b_->Info("wk1")->value().fence, (*all)->value().fence);
  ab->reset();
}

// ---- Redis Cluster ----

class RedisClusterSemMultiTest : public ::testing::Test {
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
    prefix_ = std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) + ":" +
              std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()) + ":";
    auto b = NewRedisBackend(cluster_->url(0), seconds(2));
    ASSERT_TRUE(b.ok()) << b.status();
    b_ = std::move(*b);
  }
  // The node that holds `redis_key`.
  std::string Get(const std::string& redis_key) {
    const int owner = cluster_->OwnerOfSlot(redis::KeySlot(redis_key));
    return Raw(cluster_->port(owner)).Cmd({"GET", redis_key});
  }

  static RedisCluster* cluster_;
  std::string prefix_;
  std::unique_ptr<Backend> b_;
};
RedisCluster* RedisClusterSemMultiTest::cluster_ = nullptr;

TEST_F(RedisClusterSemMultiTest, KeysInDifferentSlotsAreRefusedNamingBothSlots) {
  // Find two keys whose lease hashes land in different slots.
  const std::string k1 = prefix_ + "a";
  std::string k2;
  for (int i = 0; k2.empty(); ++i) {
    std::string k = prefix_ + "b" + std::to_string(i);
    if (redis::KeySlot("tollgate:{" + k + "}:lock") !=
        redis::KeySlot("tollgate:{" + k1 + "}:lock")) {
      k2 = k;
    }
  }
  const int s1 = redis::KeySlot("tollgate:{" + k1 + "}:lock");
  const int s2 = redis::KeySlot("tollgate:{" + k2 + "}:lock");
  auto r = b_->MultiAcquire(Multi({k1, k2}, seconds(30)));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(),
            "LOCK.MACQUIRE keys must hash to one Redis Cluster slot (use a {hash tag}): \"" + k1 +
                "\" is in slot " + std::to_string(s1) + ", \"" + k2 + "\" in slot " +
                std::to_string(s2));
  EXPECT_FALSE(b_->Info(k1)->has_value());
  EXPECT_EQ(b_->MultiRelease(Keys{k1, k2}, "x").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b_->MultiExtend(Keys{k1, k2}, "x", seconds(1)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Keys with one {hash tag} share a slot: granted with max(per-key counters) + 1, every counter set.
TEST_F(RedisClusterSemMultiTest, KeysWithOneHashTagAreGrantedAboveEveryKeysCounter) {
  const std::string tag = "{" + prefix_ + "}";
  const Keys keys = {tag + ":a", tag + ":b", tag + ":c"};
  for (int i = 0; i < 3; ++i) {  // a's counter to 3
    auto g = b_->Acquire(keys[0], seconds(30), std::nullopt);
    ASSERT_TRUE(g.ok() && g->has_value()) << g.status();
    ASSERT_TRUE(b_->Release(keys[0], (*g)->lock_id).ok());
  }
  auto g = Granted(b_->MultiAcquire(Multi(keys, seconds(30))));
  ASSERT_TRUE(g.has_value());
  EXPECT_EQ(g->fence, 4u);
  for (const std::string& k : keys) {
    EXPECT_EQ(Get("tollgate:{" + k + "}:fence"), "4") << k;
    EXPECT_EQ(b_->Info(k)->value().fence, 4u) << k;
  }
  EXPECT_EQ(*b_->MultiRelease(keys, g->lock_id), 3u);
  auto next = b_->Acquire(keys[2], seconds(30), std::nullopt);
  ASSERT_TRUE(next.ok() && next->has_value());
  EXPECT_EQ((*next)->fence, 5u);
}

// On a Cluster a semaphore's fences come from its own counter.
TEST_F(RedisClusterSemMultiTest, SemaphoresUseTheirOwnCounter) {
  const std::string key = prefix_ + "sem";
  auto a = Granted(b_->SemAcquire(Sem(key, 2, seconds(30))));
  auto b = Granted(b_->SemAcquire(Sem(key, 2, seconds(30))));
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->fence, 1u);
  EXPECT_EQ(b->fence, 2u);
  EXPECT_EQ(b->slot, 1);
  EXPECT_TRUE(NotGranted(b_->SemAcquire(Sem(key, 2, seconds(30)))));
  EXPECT_EQ(Get("tollgate:s:{" + key + "}:fence"), "2");
  ASSERT_TRUE(b_->SemRelease(key, a->permit_id).ok());
  auto c = Granted(b_->SemAcquire(Sem(key, 2, seconds(30))));
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->slot, 0);
  EXPECT_EQ(c->fence, 3u);
  auto info = b_->SemInfo(key);
  ASSERT_TRUE(info.ok() && info->has_value());
  EXPECT_EQ((*info)->holders, 2);
  EXPECT_EQ((*info)->fence, 3u);
}

}  // namespace
}  // namespace tollgate
