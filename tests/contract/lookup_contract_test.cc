// The contract suite, part three (issue 13): acquisition times and lookup by lock_id, the same on
// every backend. acquired_at is the tollgate process's wall clock at the grant (never the database
// server's), kept with the lease, unchanged by Extend; LookupById finds exactly the unexpired
// single-key lease of a lock_id. A backend that cannot look leases up (a Redis Cluster) says so
// with Unimplemented and its tests are skipped.
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "core/lock_id.h"
#include "tests/contract/contract_fixture.h"

namespace tollgate::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kBadIdMessage[] = "lock_id must be 32 lowercase hex characters";

class LookupContractTest : public ContractTest {
 protected:
  void SetUp() override {
    ContractTest::SetUp();
    if (HasFatalFailure()) return;
    // A well-formed id nobody holds: the answer is nullopt, or Unimplemented where the backend has
    // no index.
    auto probe = b_->LookupById(core::NewLockId());
    if (probe.status().code() == absl::StatusCode::kUnimplemented) {
      EXPECT_FALSE(probe.status().message().empty());
      GTEST_SKIP() << GetParam() << ": " << probe.status();
    }
    ASSERT_TRUE(probe.ok()) << probe.status();
    EXPECT_FALSE(probe->has_value());
  }

  // The tollgate process's wall clock, through which every backend stamps acquired_at. Backends
  // may keep whole milliseconds (Redis, etcd), so the lower bound is floored to one.
  WallTime Before() const { return std::chrono::floor<milliseconds>(harness_->clock()->WallNow()); }
  WallTime After() const { return harness_->clock()->WallNow(); }

  // A short ttl and a sleep that outlasts it, on this backend's ttl granularity.
  Duration ShortTtl() const { return harness_->subsecond_ttl() ? milliseconds(200) : seconds(1); }
  Duration PastShortTtl() const {
    return harness_->subsecond_ttl() ? milliseconds(450) : milliseconds(3500);
  }
};

TEST_P(LookupContractTest, AcquireStampsAcquiredAtAndLookupFindsTheLease) {
  const WallTime before = Before();
  auto g = Grant("k", seconds(30), "worker-7");
  const WallTime after = After();
  ASSERT_TRUE(g.has_value());
  EXPECT_GE(g->acquired_at, before);
  EXPECT_LE(g->acquired_at, after);

  auto info = b_->Info(K("k"));
  ASSERT_TRUE(info.ok()) << info.status();
  ASSERT_TRUE(info->has_value());
  EXPECT_EQ((*info)->lock_id, g->lock_id);
  EXPECT_EQ((*info)->acquired_at, g->acquired_at);

  auto found = b_->LookupById(g->lock_id);
  ASSERT_TRUE(found.ok()) << found.status();
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->key, K("k"));
  EXPECT_EQ((*found)->info.fence, g->fence);
  EXPECT_EQ((*found)->info.owner, "worker-7");
  EXPECT_EQ((*found)->info.lock_id, g->lock_id);
  EXPECT_EQ((*found)->info.acquired_at, g->acquired_at);
  EXPECT_GT((*found)->info.ttl_remaining, Duration(0));
  EXPECT_LE((*found)->info.ttl_remaining, seconds(30));
  EXPECT_EQ((*found)->info.waiters, 0u);

  // Another client of the same backend finds it too.
  auto other = harness_->Connect();
  ASSERT_TRUE(other.ok()) << other.status();
  auto via_other = (*other)->LookupById(g->lock_id);
  ASSERT_TRUE(via_other.ok()) << via_other.status();
  ASSERT_TRUE(via_other->has_value());
  EXPECT_EQ((*via_other)->key, K("k"));
  EXPECT_EQ((*via_other)->info.fence, g->fence);

  // Extend keeps the acquisition time (and the lease stays findable).
  std::this_thread::sleep_for(milliseconds(20));
  auto ext = b_->Extend(K("k"), g->lock_id, seconds(60));
  ASSERT_TRUE(ext.ok()) << ext.status();
  auto extended = b_->LookupById(g->lock_id);
  ASSERT_TRUE(extended.ok() && extended->has_value()) << extended.status();
  EXPECT_EQ((*extended)->info.acquired_at, g->acquired_at);
  EXPECT_GT((*extended)->info.ttl_remaining, seconds(30));
  EXPECT_EQ((*b_->Info(K("k")))->acquired_at, g->acquired_at);

  ASSERT_TRUE(b_->Release(K("k"), g->lock_id).ok());
  auto gone = b_->LookupById(g->lock_id);
  ASSERT_TRUE(gone.ok()) << gone.status();
  EXPECT_FALSE(gone->has_value());
}

TEST_P(LookupContractTest, LookupIsReadOnly) {
  auto g = Grant("r", seconds(30));
  ASSERT_TRUE(g.has_value());
  for (int i = 0; i < 3; ++i) {
    auto found = b_->LookupById(g->lock_id);
    ASSERT_TRUE(found.ok() && found->has_value()) << found.status();
    EXPECT_LE((*found)->info.ttl_remaining, seconds(30));
  }
  auto info = b_->Info(K("r"));
  ASSERT_TRUE(info.ok() && info->has_value());
  EXPECT_EQ((*info)->fence, g->fence);
  EXPECT_EQ((*info)->lock_id, g->lock_id);
  EXPECT_FALSE(Grant("r", seconds(30)).has_value());  // still held
  EXPECT_TRUE(b_->Release(K("r"), g->lock_id).ok());
}

TEST_P(LookupContractTest, ExpiredLeaseIsNotFound) {
  auto g = Grant("e", ShortTtl());
  ASSERT_TRUE(g.has_value());
  std::this_thread::sleep_for(PastShortTtl());
  auto gone = b_->LookupById(g->lock_id);
  ASSERT_TRUE(gone.ok()) << gone.status();
  EXPECT_FALSE(gone->has_value());
  // The key granted again: only its new holder is found.
  auto next = Grant("e", seconds(30));
  ASSERT_TRUE(next.has_value());
  EXPECT_FALSE(b_->LookupById(g->lock_id)->has_value());
  auto found = b_->LookupById(next->lock_id);
  ASSERT_TRUE(found.ok() && found->has_value()) << found.status();
  EXPECT_EQ((*found)->info.fence, next->fence);
  EXPECT_TRUE(b_->Release(K("e"), next->lock_id).ok());
}

TEST_P(LookupContractTest, ReleasedKeyRegrantedFindsOnlyTheNewHolder) {
  auto a = Grant("g", seconds(30));
  ASSERT_TRUE(a.has_value());
  ASSERT_TRUE(b_->Release(K("g"), a->lock_id).ok());
  auto b = Grant("g", seconds(30));
  ASSERT_TRUE(b.has_value());
  auto old = b_->LookupById(a->lock_id);
  ASSERT_TRUE(old.ok()) << old.status();
  EXPECT_FALSE(old->has_value());
  auto found = b_->LookupById(b->lock_id);
  ASSERT_TRUE(found.ok() && found->has_value()) << found.status();
  EXPECT_EQ((*found)->key, K("g"));
  EXPECT_EQ((*found)->info.fence, b->fence);
  // A failed release by the old lock_id changes nothing.
  EXPECT_EQ(b_->Release(K("g"), a->lock_id).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(b_->LookupById(b->lock_id)->has_value());
  EXPECT_TRUE(b_->Release(K("g"), b->lock_id).ok());
}

TEST_P(LookupContractTest, UnknownIdIsNotFoundAndMalformedIdIsInvalid) {
  auto unknown = b_->LookupById(core::NewLockId());
  ASSERT_TRUE(unknown.ok()) << unknown.status();
  EXPECT_FALSE(unknown->has_value());
  const std::vector<std::string> bad = {
      "",
      "0123456789abcdef",
      "0123456789ABCDEF0123456789ABCDEF",   // uppercase
      "0123456789abcdef0123456789abcdeg",   // not hex
      "0123456789abcdef0123456789abcdef0",  // 33
      std::string("0123456789abcdef0123456789abcde\0", 32),
      "nxwqfgtdTD6KbxstPE5fYA",  // the base64url form is not a lock_id here
  };
  for (const std::string& id : bad) {
    auto r = b_->LookupById(id);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << "\"" << id << "\"";
    EXPECT_NE(r.status().message().find(kBadIdMessage), absl::string_view::npos) << r.status();
  }
}

TEST_P(LookupContractTest, MultiKeyGroupsAndPermitsAreNotIndexed) {
  // One {hash tag}, so a Redis Cluster would put the keys in one slot.
  const std::vector<std::string> keys = {"{" + prefix_ + "}a", "{" + prefix_ + "}b"};
  const WallTime before = Before();
  auto m = b_->MultiAcquire({keys, seconds(30), Duration(0), std::string("multi")});
  const WallTime after = After();
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_TRUE(m->has_value());
  EXPECT_GE((*m)->acquired_at, before);
  EXPECT_LE((*m)->acquired_at, after);
  for (const std::string& k : keys) {
    auto info = b_->Info(k);
    ASSERT_TRUE(info.ok() && info->has_value()) << info.status();
    EXPECT_EQ((*info)->lock_id, (*m)->lock_id);
    EXPECT_EQ((*info)->acquired_at, (*m)->acquired_at);
  }
  auto group = b_->LookupById((*m)->lock_id);
  ASSERT_TRUE(group.ok()) << group.status();
  EXPECT_FALSE(group->has_value());

  auto p = b_->SemAcquire({K("s"), 2, seconds(30), Duration(0), std::nullopt});
  ASSERT_TRUE(p.ok() && p->has_value()) << p.status();
  auto permit = b_->LookupById((*p)->permit_id);
  ASSERT_TRUE(permit.ok()) << permit.status();
  EXPECT_FALSE(permit->has_value());

  EXPECT_EQ(*b_->MultiRelease(keys, (*m)->lock_id), 2u);
  EXPECT_TRUE(b_->SemRelease(K("s"), (*p)->permit_id).ok());
}

INSTANTIATE_TEST_SUITE_P(Backends, LookupContractTest, ::testing::ValuesIn(HarnessNames()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace tollgate::testing
