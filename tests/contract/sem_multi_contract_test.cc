// The contract suite, part two: fenced semaphores and multi-key locks, the same on every backend.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "tests/contract/contract_fixture.h"

namespace tollgate::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

class SemMultiContractTest : public ContractTest {
 protected:
  // Keys of one multi-key group: one {hash tag}, so a Redis Cluster puts them in one slot.
  std::string MK(std::string_view s) const { return "{" + prefix_ + "}" + std::string(s); }
  std::vector<std::string> MKs(std::initializer_list<const char*> names) const {
    std::vector<std::string> out;
    for (const char* n : names) out.push_back(MK(n));
    return out;
  }
  std::optional<PermitGrant> Permit(std::string_view key, int64_t limit, Duration ttl) {
    auto g = b_->SemAcquire({K(key), limit, ttl, Duration(0), std::nullopt});
    EXPECT_TRUE(g.ok()) << g.status();
    return g.ok() ? *g : std::nullopt;
  }
  std::optional<LeaseGrant> Multi(const std::vector<std::string>& keys, Duration ttl) {
    auto g = b_->MultiAcquire({keys, ttl, Duration(0), std::string("multi")});
    EXPECT_TRUE(g.ok()) << g.status();
    return g.ok() ? *g : std::nullopt;
  }
  // A short ttl and a sleep that outlasts it, on this backend's ttl granularity.
  Duration ShortTtl() const { return harness_->subsecond_ttl() ? milliseconds(200) : seconds(1); }
  Duration PastShortTtl() const {
    return harness_->subsecond_ttl() ? milliseconds(450) : milliseconds(3500);
  }
};

TEST_P(SemMultiContractTest, SemaphoreGivesLowestFreeSlotsWithRisingFencesUpToTheLimit) {
  std::vector<PermitGrant> held;
  for (int i = 0; i < 3; ++i) {
    auto p = Permit("s", 3, seconds(30));
    ASSERT_TRUE(p.has_value()) << i;
    EXPECT_EQ(p->slot, i);
    EXPECT_EQ(p->permit_id.size(), 32u);
    EXPECT_EQ(p->ttl, seconds(30));
    if (!held.empty()) {
      EXPECT_GT(p->fence, held.back().fence);
    }
    held.push_back(*p);
  }
  EXPECT_FALSE(Permit("s", 3, seconds(30)).has_value());  // full
  auto info = b_->SemInfo(K("s"));
  ASSERT_TRUE(info.ok()) << info.status();
  ASSERT_TRUE(info->has_value());
  EXPECT_EQ((*info)->limit, 3);
  EXPECT_EQ((*info)->holders, 3);
  EXPECT_EQ((*info)->fence, held.back().fence);

  // The middle slot frees and is the one granted next, with a new, higher fence.
  ASSERT_TRUE(b_->SemRelease(K("s"), held[1].permit_id).ok());
  EXPECT_EQ(b_->SemRelease(K("s"), held[1].permit_id).code(),
            absl::StatusCode::kFailedPrecondition);
  auto again = Permit("s", 3, seconds(30));
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->slot, 1);
  EXPECT_GT(again->fence, held[2].fence);
  held[1] = *again;

  auto ext = b_->SemExtend(K("s"), held[0].permit_id, seconds(60));
  ASSERT_TRUE(ext.ok()) << ext.status();
  EXPECT_EQ(*ext, seconds(60));
  EXPECT_EQ(b_->SemExtend(K("s"), "0123456789abcdef0123456789abcdef", seconds(5)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  for (const PermitGrant& p : held) EXPECT_TRUE(b_->SemRelease(K("s"), p.permit_id).ok());
  auto none = b_->SemInfo(K("s"));
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
}

TEST_P(SemMultiContractTest, ALimitDifferentFromTheHoldersIsRefusedNamingBothAndChangesNothing) {
  auto p = Permit("l", 2, seconds(30));
  ASSERT_TRUE(p.has_value());
  auto wrong = b_->SemAcquire({K("l"), 5, seconds(30), Duration(0), std::nullopt});
  ASSERT_EQ(wrong.status().code(), absl::StatusCode::kInvalidArgument) << wrong.status();
  EXPECT_NE(wrong.status().message().find("limit 5"), absl::string_view::npos) << wrong.status();
  EXPECT_NE(wrong.status().message().find("limit 2"), absl::string_view::npos) << wrong.status();
  auto info = b_->SemInfo(K("l"));
  ASSERT_TRUE(info.ok() && info->has_value());
  EXPECT_EQ((*info)->holders, 1);
  EXPECT_EQ((*info)->limit, 2);
  // Once nobody holds it, a new limit is accepted.
  ASSERT_TRUE(b_->SemRelease(K("l"), p->permit_id).ok());
  auto five = Permit("l", 5, seconds(30));
  ASSERT_TRUE(five.has_value());
  EXPECT_TRUE(b_->SemRelease(K("l"), five->permit_id).ok());
}

TEST_P(SemMultiContractTest, AnExpiredPermitFreesItsSlotAndIsNeverRevived) {
  auto p = Permit("e", 1, ShortTtl());
  ASSERT_TRUE(p.has_value());
  EXPECT_FALSE(Permit("e", 1, seconds(30)).has_value());
  std::this_thread::sleep_for(PastShortTtl());
  EXPECT_EQ(b_->SemExtend(K("e"), p->permit_id, seconds(30)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  auto next = Permit("e", 1, seconds(30));
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->slot, 0);
  EXPECT_GT(next->fence, p->fence);
  EXPECT_EQ(b_->SemRelease(K("e"), p->permit_id).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(b_->SemRelease(K("e"), next->permit_id).ok());
}

TEST_P(SemMultiContractTest, SemaphoresAndLeasesAreSeparateNamespacesOnOneFenceSequence) {
  auto lease = Grant("n", seconds(30));
  ASSERT_TRUE(lease.has_value());
  auto permit = Permit("n", 1, seconds(30));
  ASSERT_TRUE(permit.has_value()) << "a lease on \"n\" does not hold semaphore \"n\"";
  auto info = b_->Info(K("n"));
  ASSERT_TRUE(info.ok() && info->has_value());
  EXPECT_EQ((*info)->fence, lease->fence);
  if (harness_->global_fences()) {
    EXPECT_GT(permit->fence, lease->fence);
    auto later = Grant("n2", seconds(30));
    ASSERT_TRUE(later.has_value());
    EXPECT_GT(later->fence, permit->fence);
    EXPECT_TRUE(b_->Release(K("n2"), later->lock_id).ok());
  }
  EXPECT_TRUE(b_->Release(K("n"), lease->lock_id).ok());
  EXPECT_TRUE(b_->SemRelease(K("n"), permit->permit_id).ok());
}

TEST_P(SemMultiContractTest, ConcurrentHoldersNeverExceedTheLimit) {
  constexpr int kLimit = 3, kThreads = 6, kRounds = 15;
  std::atomic<int> inside{0}, most{0}, grants{0};
  std::atomic<bool> error{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      auto b = harness_->Connect();
      if (!b.ok()) return (void)error.store(true);
      for (int i = 0; i < kRounds; ++i) {
        auto p = (*b)->SemAcquire({K("c"), kLimit, seconds(30), Duration(0), std::nullopt});
        if (!p.ok()) return (void)error.store(true);
        if (!p->has_value()) continue;
        const int now = ++inside;
        int prev = most.load();
        while (now > prev && !most.compare_exchange_weak(prev, now)) {
        }
        ++grants;
        std::this_thread::sleep_for(milliseconds(2));
        --inside;
        if (!(*b)->SemRelease(K("c"), (**p).permit_id).ok()) error = true;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_FALSE(error.load());
  EXPECT_LE(most.load(), kLimit);
  EXPECT_GT(grants.load(), 0);
}

TEST_P(SemMultiContractTest, BadSemaphoreInputIsInvalidArgument) {
  for (int64_t limit : {int64_t{0}, int64_t{-1}, kMaxSemaphoreLimit + 1}) {
    EXPECT_EQ(b_->SemAcquire({K("b"), limit, seconds(1), Duration(0), std::nullopt}).status().code(),
              absl::StatusCode::kInvalidArgument)
        << limit;
  }
  EXPECT_EQ(b_->SemAcquire({K("b"), 2, Duration(0), Duration(0), std::nullopt}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b_->SemAcquire({"", 2, seconds(1), Duration(0), std::nullopt}).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto info = b_->SemInfo(K("b"));
  ASSERT_TRUE(info.ok());
  EXPECT_FALSE(info->has_value());
}

TEST_P(SemMultiContractTest, MultiKeyLockIsAllOrNothing) {
  auto b = b_->Acquire(MK("b"), seconds(30), std::nullopt);
  ASSERT_TRUE(b.ok() && b->has_value());
  EXPECT_FALSE(Multi(MKs({"a", "b", "c"}), seconds(30)).has_value());
  for (const char* k : {"a", "c"}) {
    auto info = b_->Info(MK(k));
    ASSERT_TRUE(info.ok());
    EXPECT_FALSE(info->has_value()) << k << " must not be held after a refused group";
  }
  ASSERT_TRUE(b_->Release(MK("b"), (*b)->lock_id).ok());
  auto g = Multi(MKs({"a", "b", "c"}), seconds(30));
  ASSERT_TRUE(g.has_value());
  EXPECT_GT(g->fence, (*b)->fence);
  for (const char* k : {"a", "b", "c"}) {
    auto info = b_->Info(MK(k));
    ASSERT_TRUE(info.ok() && info->has_value()) << k;
    EXPECT_EQ((*info)->fence, g->fence) << k;
    EXPECT_EQ((*info)->owner, "multi") << k;
    auto single = b_->Acquire(MK(k), seconds(1), std::nullopt);
    ASSERT_TRUE(single.ok());
    EXPECT_FALSE(single->has_value()) << k;
  }
  // Each key is an ordinary lease: released alone, the others stay held.
  ASSERT_TRUE(b_->Release(MK("a"), g->lock_id).ok());
  auto c = b_->Info(MK("c"));
  ASSERT_TRUE(c.ok() && c->has_value());
  auto n = b_->MultiRelease(MKs({"a", "b", "c"}), g->lock_id);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 2u);
  auto zero = b_->MultiRelease(MKs({"a", "b", "c"}), g->lock_id);
  ASSERT_TRUE(zero.ok());
  EXPECT_EQ(*zero, 0u);
}

TEST_P(SemMultiContractTest, MultiKeyFenceIsAboveEveryFenceIssuedForAnyOfItsKeys) {
  uint64_t highest = 0;
  for (int i = 0; i < 5; ++i) {
    auto g = b_->Acquire(MK("p"), seconds(30), std::nullopt);
    ASSERT_TRUE(g.ok() && g->has_value());
    highest = std::max(highest, (*g)->fence);
    ASSERT_TRUE(b_->Release(MK("p"), (*g)->lock_id).ok());
  }
  auto m = Multi(MKs({"q", "p"}), seconds(30));
  ASSERT_TRUE(m.has_value());
  EXPECT_GT(m->fence, highest);
  auto after = Multi(MKs({"q", "r"}), seconds(30));
  EXPECT_FALSE(after.has_value());  // q is held
  auto n = b_->MultiRelease(MKs({"p", "q"}), m->lock_id);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 2u);
  auto next = b_->Acquire(MK("q"), seconds(30), std::nullopt);
  ASSERT_TRUE(next.ok() && next->has_value());
  EXPECT_GT((*next)->fence, m->fence);
  EXPECT_TRUE(b_->Release(MK("q"), (*next)->lock_id).ok());
}

TEST_P(SemMultiContractTest, MultiExtendIsAllOrNone) {
  auto g = Multi(MKs({"x", "y"}), seconds(10));
  ASSERT_TRUE(g.has_value());
  auto ext = b_->MultiExtend(MKs({"x", "y"}), g->lock_id, seconds(60));
  ASSERT_TRUE(ext.ok()) << ext.status();
  EXPECT_EQ(*ext, seconds(60));
  auto y = b_->Info(MK("y"));
  ASSERT_TRUE(y.ok() && y->has_value());
  EXPECT_GT((*y)->ttl_remaining, seconds(50));
  // y released alone: extending the group now fails and leaves x as it was.
  ASSERT_TRUE(b_->Release(MK("y"), g->lock_id).ok());
  auto refused = b_->MultiExtend(MKs({"x", "y"}), g->lock_id, seconds(600));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition) << refused.status();
  auto x = b_->Info(MK("x"));
  ASSERT_TRUE(x.ok() && x->has_value());
  EXPECT_LE((*x)->ttl_remaining, seconds(60));
  EXPECT_EQ(b_->MultiExtend(MKs({"x"}), "not-the-holder", seconds(5)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(b_->Release(MK("x"), g->lock_id).ok());
}

TEST_P(SemMultiContractTest, AnExpiredMultiKeyGroupIsNeverExtended) {
  auto g = b_->MultiAcquire({MKs({"u", "v"}), ShortTtl(), Duration(0), std::nullopt});
  ASSERT_TRUE(g.ok() && g->has_value()) << g.status();
  std::this_thread::sleep_for(PastShortTtl());
  EXPECT_EQ(b_->MultiExtend(MKs({"u", "v"}), (*g)->lock_id, seconds(30)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  auto again = Multi(MKs({"u", "v"}), seconds(30));
  ASSERT_TRUE(again.has_value());
  EXPECT_GT(again->fence, (*g)->fence);
  auto n = b_->MultiRelease(MKs({"u", "v"}), again->lock_id);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 2u);
}

TEST_P(SemMultiContractTest, BadMultiKeyInputIsInvalidArgumentAndChangesNothing) {
  auto dup = b_->MultiAcquire({MKs({"d", "d"}), seconds(30), Duration(0), std::nullopt});
  EXPECT_EQ(dup.status().code(), absl::StatusCode::kInvalidArgument);
  auto none = b_->MultiAcquire({{}, seconds(30), Duration(0), std::nullopt});
  EXPECT_EQ(none.status().code(), absl::StatusCode::kInvalidArgument);
  std::vector<std::string> many;
  for (size_t i = 0; i <= kMaxMultiKeys; ++i) many.push_back(MK(std::to_string(i)));
  auto too_many = b_->MultiAcquire({many, seconds(30), Duration(0), std::nullopt});
  EXPECT_EQ(too_many.status().code(), absl::StatusCode::kInvalidArgument);
  auto zero_ttl = b_->MultiAcquire({MKs({"d", "e"}), Duration(0), Duration(0), std::nullopt});
  EXPECT_EQ(zero_ttl.status().code(), absl::StatusCode::kInvalidArgument);
  auto info = b_->Info(MK("d"));
  ASSERT_TRUE(info.ok());
  EXPECT_FALSE(info->has_value());
  if (GetParam() == "redis_cluster") {
    // Keys in two slots cannot be taken atomically there: a clear error, nothing taken.
    auto cross = b_->MultiAcquire({{K("x{1}"), K("x{2}")}, seconds(30), Duration(0), std::nullopt});
    ASSERT_EQ(cross.status().code(), absl::StatusCode::kInvalidArgument) << cross.status();
    EXPECT_NE(cross.status().message().find("slot"), absl::string_view::npos);
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, SemMultiContractTest, ::testing::ValuesIn(HarnessNames()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace tollgate::testing
