// The backend contract suite: the same tests against every backend (memory, embedded, Redis,
// PostgreSQL, etcd), each on a real server where it needs one. Time is the backend's own (server
// time for network backends), so the few timing tests use generous margins.
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/contract/contract_fixture.h"

namespace tollgate::testing {

using std::chrono::milliseconds;
using std::chrono::seconds;

std::vector<std::string> HarnessNames() {
  std::vector<std::string> names = {"memory", "embedded"};
#ifdef TOLLGATE_HAVE_REDIS_BACKEND
  names.push_back("redis");
#endif
#ifdef TOLLGATE_HAVE_REDIS_CLUSTER_HARNESS
  names.push_back("redis_cluster");
#endif
#ifdef TOLLGATE_HAVE_POSTGRES_BACKEND
  names.push_back("postgres");
#endif
#ifdef TOLLGATE_HAVE_ETCD_BACKEND
  names.push_back("etcd");
#endif
  return names;
}

// One started harness per backend kind for the whole test program; torn down by a gtest
// environment, i.e. before static destructors run (RocksDB's statics must outlive the store).
namespace {
std::mutex harness_mu;
std::map<std::string, std::unique_ptr<BackendHarness>>* harnesses =
    new std::map<std::string, std::unique_ptr<BackendHarness>>();

class HarnessEnvironment : public ::testing::Environment {
 public:
  void TearDown() override {
    std::lock_guard<std::mutex> l(harness_mu);
    harnesses->clear();
  }
};
const auto* const kEnvironment = ::testing::AddGlobalTestEnvironment(new HarnessEnvironment);
}  // namespace

BackendHarness* GetHarness(const std::string& name) {
  std::lock_guard<std::mutex> l(harness_mu);
  auto it = harnesses->find(name);
  if (it != harnesses->end()) return it->second.get();
  std::unique_ptr<BackendHarness> h;
  if (name == "memory") h = NewMemoryHarness();
  if (name == "embedded") h = NewEmbeddedHarness();
#ifdef TOLLGATE_HAVE_REDIS_BACKEND
  if (name == "redis") h = NewRedisHarness();
#endif
#ifdef TOLLGATE_HAVE_REDIS_CLUSTER_HARNESS
  if (name == "redis_cluster") h = NewRedisClusterHarness();
#endif
#ifdef TOLLGATE_HAVE_POSTGRES_BACKEND
  if (name == "postgres") h = NewPostgresHarness();
#endif
#ifdef TOLLGATE_HAVE_ETCD_BACKEND
  if (name == "etcd") h = NewEtcdHarness();
#endif
  if (h && !h->Start()) h.reset();
  return ((*harnesses)[name] = std::move(h)).get();
}

namespace {

Decimal D(const char* s) { return *Decimal::ParsePositive(s, "test", kMaxCapacity); }

TEST_P(ContractTest, LeaseLifecycleAndOwnership) {
  auto g = Grant("k", seconds(30), "worker-1");
  ASSERT_TRUE(g.has_value());
  EXPECT_GE(g->lock_id.size(), 32u);
  EXPECT_GT(g->fence, 0u);
  EXPECT_EQ(g->ttl, seconds(30));
  EXPECT_FALSE(Grant("k", seconds(30)).has_value());  // held

  auto info = b_->Info(K("k"));
  ASSERT_TRUE(info.ok()) << info.status();
  ASSERT_TRUE(info->has_value());
  EXPECT_EQ((*info)->fence, g->fence);
  EXPECT_EQ((*info)->owner, "worker-1");
  EXPECT_GT((*info)->ttl_remaining, seconds(25));
  EXPECT_LE((*info)->ttl_remaining, seconds(30));

  EXPECT_EQ(b_->Release(K("k"), "not-the-holder").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(b_->Extend(K("k"), "not-the-holder", seconds(5)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  auto ext = b_->Extend(K("k"), g->lock_id, seconds(60));
  ASSERT_TRUE(ext.ok()) << ext.status();
  EXPECT_EQ(*ext, seconds(60));
  EXPECT_TRUE(b_->Release(K("k"), g->lock_id).ok());
  EXPECT_EQ(b_->Release(K("k"), g->lock_id).code(), absl::StatusCode::kFailedPrecondition);
  auto gone = b_->Info(K("k"));
  ASSERT_TRUE(gone.ok());
  EXPECT_FALSE(gone->has_value());
  auto again = Grant("k", seconds(30));
  ASSERT_TRUE(again.has_value());
  EXPECT_GT(again->fence, g->fence);
  EXPECT_TRUE(b_->Release(K("k"), again->lock_id).ok());
}

TEST_P(ContractTest, ExpiryFreesTheKeyAndNeverRevives) {
  if (!harness_->subsecond_ttl()) GTEST_SKIP() << "no sub-second leases on " << GetParam();
  auto g = Grant("e", milliseconds(200));
  ASSERT_TRUE(g.has_value());
  std::this_thread::sleep_for(milliseconds(400));
  EXPECT_EQ(b_->Extend(K("e"), g->lock_id, seconds(30)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  auto next = Grant("e", seconds(30));
  ASSERT_TRUE(next.has_value());
  EXPECT_GT(next->fence, g->fence);
  EXPECT_EQ(b_->Release(K("e"), g->lock_id).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(b_->Release(K("e"), next->lock_id).ok());
}

TEST_P(ContractTest, FencesStrictlyIncreasePerKey) {
  uint64_t last = 0;
  for (int i = 0; i < 25; ++i) {
    auto g = Grant("f", seconds(30));
    ASSERT_TRUE(g.has_value()) << i;
    EXPECT_GT(g->fence, last);
    last = g->fence;
    ASSERT_TRUE(b_->Release(K("f"), g->lock_id).ok());
  }
}

TEST_P(ContractTest, ContentionNeverTwoHolders) {
  // Each client keeps trying (for up to 20 s) until it has held the lock kWins times.
  constexpr int kThreads = 6, kWins = 3;
  std::atomic<int> inside{0}, violations{0}, grants{0};
  std::mutex order_mu;
  uint64_t last_fence = 0;
  int fence_regressions = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      auto client = harness_->Connect();
      ASSERT_TRUE(client.ok()) << client.status();
      int wins = 0;
      const auto deadline = std::chrono::steady_clock::now() + seconds(20);
      while (wins < kWins && std::chrono::steady_clock::now() < deadline) {
        auto g = (*client)->Acquire(K("shared"), seconds(30), std::nullopt);
        ASSERT_TRUE(g.ok()) << g.status();
        if (!g->has_value()) {
          std::this_thread::yield();
          continue;
        }
        if (inside.fetch_add(1) != 0) violations++;
        {
          std::lock_guard<std::mutex> l(order_mu);
          if ((*g)->fence <= last_fence) ++fence_regressions;
          last_fence = (*g)->fence;
        }
        ++wins;
        grants++;
        inside.fetch_sub(1);
        ASSERT_TRUE((*client)->Release(K("shared"), (*g)->lock_id).ok());
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(violations.load(), 0);
  EXPECT_EQ(fence_regressions, 0);
  EXPECT_EQ(grants.load(), kThreads * kWins);
}

TEST_P(ContractTest, FencedRegisterRejectsStaleWrites) {
  auto empty = b_->FencedGet(K("r"));
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_FALSE(empty->has_value());
  // Real fences: three successive leases on one key.
  std::vector<uint64_t> fences;
  for (int i = 0; i < 3; ++i) {
    auto g = Grant("fence-source", seconds(30));
    ASSERT_TRUE(g.has_value());
    fences.push_back(g->fence);
    ASSERT_TRUE(b_->Release(K("fence-source"), g->lock_id).ok());
  }
  ASSERT_LT(fences[0], fences[1]);
  ASSERT_LT(fences[1], fences[2]);
  EXPECT_TRUE(b_->FencedSet(K("r"), fences[1], "a").ok());
  EXPECT_TRUE(b_->FencedSet(K("r"), fences[1], "b").ok());  // the same holder writes again
  absl::Status stale = b_->FencedSet(K("r"), fences[0], "stale");
  EXPECT_EQ(stale.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(stale.message(),
            "fence " + std::to_string(fences[0]) + " is older than " + std::to_string(fences[1]));
  const std::string bin("v\0\r\n", 4);
  EXPECT_TRUE(b_->FencedSet(K("r"), fences[2], bin).ok());
  auto got = b_->FencedGet(K("r"));
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->value, bin);
  EXPECT_EQ((*got)->fence, fences[2]);
}

// Issue 9, item 6: a fence no lease ever carried would poison the register for every real holder.
TEST_P(ContractTest, FenceNeverIssuedIsRefusedWhereTheBackendKnows) {
  if (!harness_->checks_issued_fences()) GTEST_SKIP() << "not checked on this backend (README)";
  auto g = Grant("k", seconds(30));
  ASSERT_TRUE(g.has_value());
  ASSERT_TRUE(b_->FencedSet(K("r"), g->fence, "real").ok());
  absl::Status st = b_->FencedSet(K("r"), 9223372036854775807u, "poison");
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("fence 9223372036854775807 was never issued"), std::string::npos)
      << st.message();
  auto got = b_->FencedGet(K("r"));
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->value, "real");
  // The real holder can still write.
  EXPECT_TRUE(b_->FencedSet(K("r"), g->fence, "real again").ok());
}

// Issue 10: fence scope. Where the backend has one counter, fences increase across keys: a grant
// of "b" after grants of "a" carries a higher fence than all of them.
TEST_P(ContractTest, FencesIncreaseAcrossKeysWhereTheBackendHasOneCounter) {
  if (!harness_->global_fences()) GTEST_SKIP() << "one counter per key on this backend (README)";
  auto a1 = Grant("a", seconds(30));
  ASSERT_TRUE(a1.has_value());
  ASSERT_TRUE(b_->Release(K("a"), a1->lock_id).ok());
  auto a2 = Grant("a", seconds(30));
  ASSERT_TRUE(a2.has_value());
  auto b = Grant("b", seconds(30));
  ASSERT_TRUE(b.has_value());
  EXPECT_GT(a2->fence, a1->fence);
  EXPECT_GT(b->fence, a2->fence);
  auto c = Grant("c", seconds(30));
  ASSERT_TRUE(c.has_value());
  EXPECT_GT(c->fence, b->fence);
}

// Issue 10: lock-delay where the backend honours it. A lease that expires without release keeps its
// key blocked for the delay (nobody holds it: Info says free, Release and Extend fail); a released
// key is free at once; after the delay the key is granted with a higher fence.
TEST_P(ContractTest, LockDelayKeepsAKeyExpiredUnreleasedBlockedWhereHonoured) {
  auto d = harness_->ConnectWithLockDelay(milliseconds(700));
  if (d.status().code() == absl::StatusCode::kUnimplemented) GTEST_SKIP() << d.status();
  ASSERT_TRUE(d.ok()) << d.status();
  Backend& b = **d;
  auto g = b.Acquire(K("delayed"), milliseconds(150), std::nullopt);
  ASSERT_TRUE(g.ok() && g->has_value()) << g.status();
  const auto granted = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(milliseconds(300));  // expired ~150 ms ago, unreleased
  auto again = b.Acquire(K("delayed"), seconds(5), std::nullopt);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(again->has_value()) << "granted during the lock-delay";
  auto info = b.Info(K("delayed"));
  ASSERT_TRUE(info.ok());
  EXPECT_FALSE(info->has_value());
  EXPECT_EQ(b.Extend(K("delayed"), (*g)->lock_id, seconds(5)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(b.Release(K("delayed"), (*g)->lock_id).code(), absl::StatusCode::kFailedPrecondition);
  // A lease released by its holder leaves no delay behind; a live one can be extended.
  auto r = b.Acquire(K("released"), seconds(5), std::nullopt);
  ASSERT_TRUE(r.ok() && r->has_value());
  auto ext = b.Extend(K("released"), (*r)->lock_id, seconds(6));
  ASSERT_TRUE(ext.ok()) << ext.status();
  ASSERT_TRUE(b.Release(K("released"), (*r)->lock_id).ok());
  auto r2 = b.Acquire(K("released"), seconds(5), std::nullopt);
  ASSERT_TRUE(r2.ok() && r2->has_value());
  // After ttl + delay (150 + 700 ms) the key is free, with a higher fence.
  std::this_thread::sleep_until(granted + milliseconds(150 + 700 + 200));
  auto later = b.Acquire(K("delayed"), seconds(5), std::nullopt);
  ASSERT_TRUE(later.ok() && later->has_value()) << later.status();
  EXPECT_GT((*later)->fence, (*g)->fence);
}

TEST_P(ContractTest, BadInputIsInvalidArgumentAndChangesNothing) {
  const auto kInvalid = absl::StatusCode::kInvalidArgument;
  EXPECT_EQ(b_->Acquire("", seconds(1), std::nullopt).status().code(), kInvalid);
  EXPECT_EQ(b_->Acquire(std::string(513, 'k'), seconds(1), std::nullopt).status().code(), kInvalid);
  EXPECT_EQ(b_->Acquire(K("b"), Duration(0), std::nullopt).status().code(), kInvalid);
  EXPECT_EQ(b_->Acquire(K("b"), kMaxTtl + milliseconds(1), std::nullopt).status().code(), kInvalid);
  EXPECT_EQ(b_->Extend(K("b"), "x", Duration(0)).status().code(), kInvalid);
  EXPECT_EQ(b_->FencedSet(K("r"), 0, "v").code(), kInvalid);
  EXPECT_EQ(b_->FencedSet("", 1, "v").code(), kInvalid);
  auto info = b_->Info(K("b"));
  ASSERT_TRUE(info.ok());
  EXPECT_FALSE(info->has_value());
  auto reg = b_->FencedGet(K("r"));
  ASSERT_TRUE(reg.ok());
  EXPECT_FALSE(reg->has_value());
  if (!harness_->rate_limiting()) return;
  EXPECT_EQ(b_->Throttle(K("t"), {Decimal{0}, D("1")}, D("1")).status().code(), kInvalid);
  EXPECT_EQ(b_->Throttle(K("t"), {D("1"), Decimal{0}}, D("1")).status().code(), kInvalid);
  EXPECT_EQ(b_->Throttle(K("t"), {D("1"), D("1")}, Decimal{0}).status().code(), kInvalid);
  EXPECT_EQ(b_->Throttle("", {D("1"), D("1")}, D("1")).status().code(), kInvalid);
  std::vector<LayerCheck> all_shadow = {{"a", K("x"), {D("1"), D("1")}, true}};
  EXPECT_EQ(b_->CheckLayers(all_shadow, D("1")).status().code(), kInvalid);
  // The bucket is untouched: a fresh capacity-1 bucket still admits one.
  auto d = b_->Throttle(K("t"), {D("1"), D("1")}, D("1"));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_TRUE(d->allowed);
}

TEST_P(ContractTest, ThrottleArithmetic) {
  if (!harness_->rate_limiting()) GTEST_SKIP() << "no rate limiting on " << GetParam();
  const BucketParams p{D("5"), D("1")};
  for (int i = 0; i < 5; ++i) {
    auto d = b_->Throttle(K("t"), p, D("1"));
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_TRUE(d->allowed) << i;
    EXPECT_EQ(d->remaining, static_cast<uint64_t>(4 - i));
  }
  auto denied = b_->Throttle(K("t"), p, D("1"));
  ASSERT_TRUE(denied.ok());
  EXPECT_FALSE(denied->allowed);
  ASSERT_TRUE(denied->retry_after.has_value());
  EXPECT_GT(*denied->retry_after, milliseconds(500));
  EXPECT_LE(*denied->retry_after, seconds(1));
  auto never = b_->Throttle(K("t2"), p, D("6"));
  ASSERT_TRUE(never.ok());
  EXPECT_FALSE(never->allowed);
  EXPECT_FALSE(never->retry_after.has_value());
  // Waiting the stated retry_after is enough.
  std::this_thread::sleep_for(*denied->retry_after);
  auto later = b_->Throttle(K("t"), p, D("1"));
  ASSERT_TRUE(later.ok());
  EXPECT_TRUE(later->allowed);
  // Fractions: capacity 1, cost 0.5 admits exactly two.
  const BucketParams half{D("1"), D("0.1")};
  EXPECT_TRUE(b_->Throttle(K("h"), half, D("0.5"))->allowed);
  EXPECT_TRUE(b_->Throttle(K("h"), half, D("0.5"))->allowed);
  auto third = b_->Throttle(K("h"), half, D("0.5"));
  EXPECT_FALSE(third->allowed);
  ASSERT_TRUE(third->retry_after.has_value());
  EXPECT_GT(*third->retry_after, seconds(4));  // 0.5 token at 0.1/s: about 5 s
  EXPECT_LE(*third->retry_after, seconds(5));
}

TEST_P(ContractTest, LayersAreAllOrNothing) {
  if (!harness_->rate_limiting()) GTEST_SKIP() << "no rate limiting on " << GetParam();
  const BucketParams global{D("3"), D("0.001")}, user{D("2"), D("0.001")};
  auto check = [&](const char* u) {
    std::vector<LayerCheck> layers = {{"global", K("g"), global, false},
                                      {"user", K(u), user, false},
                                      {"shadow", K(u), {D("1"), D("0.001")}, true}};
    auto d = b_->CheckLayers(layers, D("1"));
    EXPECT_TRUE(d.ok()) << d.status();
    return d.ok() ? *d : PolicyDecision{};
  };
  EXPECT_TRUE(check("a").allowed);
  EXPECT_TRUE(check("a").allowed);  // the shadow layer is empty now, and does not deny
  for (int i = 0; i < 5; ++i) {
    auto d = check("a");
    EXPECT_FALSE(d.allowed);
    EXPECT_EQ(d.denied_layer, "user");
  }
  auto b = check("b");  // the five denials charged nothing to the global layer
  EXPECT_TRUE(b.allowed);
  EXPECT_EQ(b.remaining, 0u);
  auto b2 = check("b");
  EXPECT_FALSE(b2.allowed);
  EXPECT_EQ(b2.denied_layer, "global");
}

TEST_P(ContractTest, OutageIsUnavailableNotAHangAndRecovers) {
  if (!harness_->can_restart()) GTEST_SKIP() << GetParam() << " has no server to stop";
  auto before = Grant("o", seconds(60));
  ASSERT_TRUE(before.has_value());
  harness_->StopServer();
  const auto start = std::chrono::steady_clock::now();
  auto down = b_->Acquire(K("o2"), seconds(1), std::nullopt);
  EXPECT_EQ(down.status().code(), absl::StatusCode::kUnavailable) << down.status();
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(10));
  ASSERT_TRUE(harness_->RestartServer());
  absl::StatusOr<std::optional<LeaseGrant>> up = absl::UnavailableError("not tried");
  for (int i = 0; i < 50 && !up.ok(); ++i) {
    up = b_->Acquire(K("o2"), seconds(30), std::nullopt);
    if (!up.ok()) std::this_thread::sleep_for(milliseconds(100));
  }
  ASSERT_TRUE(up.ok()) << up.status();
  ASSERT_TRUE(up->has_value());
  // Nothing corrupted: the lease taken before the outage is still held, fences kept rising.
  EXPECT_FALSE(Grant("o", seconds(1)).has_value());
  auto again = Grant("o2-after", seconds(30));
  ASSERT_TRUE(again.has_value());
  EXPECT_TRUE(b_->Release(K("o"), before->lock_id).ok());
  auto o = Grant("o", seconds(30));
  ASSERT_TRUE(o.has_value());
  EXPECT_GT(o->fence, before->fence);
}

INSTANTIATE_TEST_SUITE_P(Backends, ContractTest, ::testing::ValuesIn(HarnessNames()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace tollgate::testing
