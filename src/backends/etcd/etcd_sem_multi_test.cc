// Semaphores and multi-key locks on etcd, through the synchronous backend against a private etcd:
// slot choice, the limit check, real expiry (etcd leases: whole seconds, about 2 s at least, so
// ttls here are 1 s), extend, release, info, fences shared with leases, and the all-or-nothing
// multi-key operations (including that the keys of one grant share an etcd lease without a release
// or extend of one of them dropping the others).
#include <curl/curl.h>

#include <algorithm>
#include <chrono>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/support/etcd_server.h"
#include "tollgate/etcd_backend.h"

namespace tollgate {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::EtcdServer;
using Clock = std::chrono::steady_clock;

SemAcquireRequest Sem(const std::string& key, int64_t limit, Duration ttl,
                      std::optional<std::string> owner = std::nullopt) {
  SemAcquireRequest req;
  req.key = key;
  req.limit = limit;
  req.ttl = ttl;
  req.owner = std::move(owner);
  return req;
}

MultiAcquireRequest Multi(std::vector<std::string> keys, Duration ttl,
                          std::optional<std::string> owner = std::nullopt) {
  MultiAcquireRequest req;
  req.keys = std::move(keys);
  req.ttl = ttl;
  req.owner = std::move(owner);
  return req;
}

size_t AppendReply(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

// The ids of etcd's leases now (POST /v3/lease/leases), sorted; empty on any error.
std::vector<std::string> LeaseIds(int port) {
  std::vector<std::string> ids;
  CURL* c = curl_easy_init();
  if (c == nullptr) return ids;
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/v3/lease/leases";
  std::string reply;
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, "{}");
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &AppendReply);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &reply);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
  const CURLcode rc = curl_easy_perform(c);
  curl_easy_cleanup(c);
  if (rc != CURLE_OK) return ids;
  nlohmann::json j = nlohmann::json::parse(reply, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("leases") || !j["leases"].is_array()) return ids;
  for (const auto& l : j["leases"]) {
    if (l.is_object() && l.contains("ID") && l["ID"].is_string()) {
      ids.push_back(l["ID"].get<std::string>());
    }
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

// Leases in `now` that were not in `before`.
std::vector<std::string> NewLeases(const std::vector<std::string>& before,
                                   const std::vector<std::string>& now) {
  std::vector<std::string> out;
  std::set_difference(now.begin(), now.end(), before.begin(), before.end(),
                      std::back_inserter(out));
  return out;
}

class EtcdSemMultiTest : public ::testing::Test {
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
    auto b = NewEtcdBackend(server_->url(), seconds(5));
    ASSERT_TRUE(b.ok()) << b.status();
    b_ = std::move(*b);
  }

  // A key no other test uses.
  static std::string Key(const std::string& name) {
    return name + "-" + std::to_string(Clock::now().time_since_epoch().count());
  }
  PermitGrant MustSem(const SemAcquireRequest& req) {
    auto g = b_->SemAcquire(req);
    EXPECT_TRUE(g.ok() && g->has_value()) << g.status();
    return g.ok() && g->has_value() ? **g : PermitGrant{};
  }

  static EtcdServer* server_;
  std::unique_ptr<Backend> b_;
};

EtcdServer* EtcdSemMultiTest::server_ = nullptr;

TEST_F(EtcdSemMultiTest, SlotsAreTheLowestFree) {
  const std::string key = Key("slots");
  const PermitGrant a = MustSem(Sem(key, 3, seconds(30))), b = MustSem(Sem(key, 3, seconds(30))),
                    c = MustSem(Sem(key, 3, seconds(30)));
  EXPECT_EQ(a.slot, 0);
  EXPECT_EQ(b.slot, 1);
  EXPECT_EQ(c.slot, 2);
  EXPECT_EQ(a.permit_id.size(), 32u);
  EXPECT_NE(a.permit_id, b.permit_id);
  auto full = b_->SemAcquire(Sem(key, 3, seconds(30)));
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_FALSE(full->has_value());

  ASSERT_TRUE(b_->SemRelease(key, b.permit_id).ok());
  const PermitGrant d = MustSem(Sem(key, 3, seconds(30)));
  EXPECT_EQ(d.slot, 1);
  EXPECT_GT(d.fence, c.fence);
  ASSERT_TRUE(b_->SemRelease(key, a.permit_id).ok());
  ASSERT_TRUE(b_->SemRelease(key, c.permit_id).ok());
  EXPECT_EQ(MustSem(Sem(key, 3, seconds(30))).slot, 0);
}

// Beyond the txn's budget of per-slot compares (etcd allows 128 operations per txn): the slot is
// still the lowest free one, and a full semaphore still says so.
TEST_F(EtcdSemMultiTest, ManyHolders) {
  const std::string key = Key("many");
  constexpr int64_t kLimit = 140;
  for (int64_t i = 0; i < kLimit; ++i) ASSERT_EQ(MustSem(Sem(key, kLimit, seconds(60))).slot, i);
  auto full = b_->SemAcquire(Sem(key, kLimit, seconds(60)));
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_FALSE(full->has_value());
  auto info = b_->SemInfo(key);
  ASSERT_TRUE(info.ok() && info->has_value()) << info.status();
  EXPECT_EQ((*info)->holders, kLimit);
}

TEST_F(EtcdSemMultiTest, ALimitDifferentFromTheHoldersIsInvalidArgument) {
  const std::string key = Key(std::string(70, 'k'));
  const PermitGrant a = MustSem(Sem(key, 2, seconds(30)));
  auto bad = b_->SemAcquire(Sem(key, 3, seconds(30)));
  ASSERT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument) << bad.status();
  EXPECT_EQ(bad.status().message(),
            "limit 3 differs from the limit 2 of the current holders of "
            "semaphore \"" +
                key.substr(0, 64) + "\"");
  auto info = b_->SemInfo(key);  // nothing changed
  ASSERT_TRUE(info.ok() && info->has_value()) << info.status();
  EXPECT_EQ((*info)->holders, 1);
  EXPECT_EQ((*info)->limit, 2);
  // Once no permit is held, any limit goes.
  ASSERT_TRUE(b_->SemRelease(key, a.permit_id).ok());
  EXPECT_EQ(MustSem(Sem(key, 3, seconds(30))).slot, 0);
  // Bad requests change nothing either.
  EXPECT_EQ(b_->SemAcquire(Sem(key, 0, seconds(30))).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b_->SemAcquire(Sem(key, kMaxSemaphoreLimit + 1, seconds(30))).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b_->SemAcquire(Sem("", 1, seconds(30))).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(EtcdSemMultiTest, ExpiryFreesTheSlotAndExtendNeverRevives) {
  const std::string key = Key("expire");
  const auto start = Clock::now();
  const PermitGrant a = MustSem(Sem(key, 1, seconds(1)));
  EXPECT_EQ(a.ttl % seconds(1), Duration(0));
  EXPECT_GE(a.ttl, seconds(1));
  std::optional<PermitGrant> next;
  while (Clock::now() - start < a.ttl + seconds(15)) {
    auto n = b_->SemAcquire(Sem(key, 1, seconds(30)));
    ASSERT_TRUE(n.ok()) << n.status();
    if (n->has_value()) {
      next = **n;
      break;
    }
    std::this_thread::sleep_for(milliseconds(100));
  }
  ASSERT_TRUE(next.has_value()) << "the permit never expired";
  EXPECT_GE(Clock::now() - start, a.ttl - milliseconds(250));
  EXPECT_EQ(next->slot, 0);
  EXPECT_GT(next->fence, a.fence);
  // The expired permit is gone for good.
  EXPECT_EQ(b_->SemExtend(key, a.permit_id, seconds(30)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(b_->SemRelease(key, a.permit_id).code(), absl::StatusCode::kFailedPrecondition);
  auto info = b_->SemInfo(key);
  ASSERT_TRUE(info.ok() && info->has_value());
  EXPECT_EQ((*info)->holders, 1);
  EXPECT_EQ((*info)->fence, next->fence);
}

TEST_F(EtcdSemMultiTest, ExtendKeepsThePermitAndItsFence) {
  const std::string key = Key("extend");
  const PermitGrant a = MustSem(Sem(key, 2, seconds(1)));
  auto ttl = b_->SemExtend(key, a.permit_id, seconds(30));
  ASSERT_TRUE(ttl.ok()) << ttl.status();
  EXPECT_GE(*ttl, seconds(30));
  std::this_thread::sleep_for(a.ttl + seconds(1));  // past the first ttl
  auto info = b_->SemInfo(key);
  ASSERT_TRUE(info.ok() && info->has_value()) << info.status();
  EXPECT_EQ((*info)->holders, 1);
  EXPECT_EQ((*info)->fence, a.fence);
  EXPECT_EQ(b_->SemExtend(key, std::string(32, '0'), seconds(30)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(b_->SemExtend(key, a.permit_id, Duration(0)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(b_->SemRelease(key, a.permit_id).ok());
}

TEST_F(EtcdSemMultiTest, ReleaseAndInfo) {
  const std::string key = Key("info");
  auto none = b_->SemInfo(key);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->has_value());
  const PermitGrant a = MustSem(Sem(key, 4, seconds(30), "w1"));
  const PermitGrant b = MustSem(Sem(key, 4, seconds(30)));
  auto info = b_->SemInfo(key);
  ASSERT_TRUE(info.ok() && info->has_value()) << info.status();
  EXPECT_EQ((*info)->limit, 4);
  EXPECT_EQ((*info)->holders, 2);
  EXPECT_EQ((*info)->waiters, 0u);
  EXPECT_EQ((*info)->fence, b.fence);  // the newest permit's

  EXPECT_EQ(b_->SemRelease(key, std::string(32, 'f')).code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(b_->SemRelease(key, b.permit_id).ok());
  EXPECT_EQ(b_->SemRelease(key, b.permit_id).code(), absl::StatusCode::kFailedPrecondition);
  info = b_->SemInfo(key);
  ASSERT_TRUE(info.ok() && info->has_value()) << info.status();
  EXPECT_EQ((*info)->holders, 1);
  EXPECT_EQ((*info)->fence, a.fence);
  ASSERT_TRUE(b_->SemRelease(key, a.permit_id).ok());
  info = b_->SemInfo(key);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_FALSE(info->has_value());
}

// A semaphore and a lease of the same name are unrelated.
TEST_F(EtcdSemMultiTest, SemaphoreKeysAreTheirOwnNamespace) {
  const std::string key = Key("jobs");
  auto lease = b_->Acquire(key, seconds(30), std::nullopt);
  ASSERT_TRUE(lease.ok() && lease->has_value()) << lease.status();
  const PermitGrant p = MustSem(Sem(key, 1, seconds(30)));
  EXPECT_EQ(p.slot, 0);
  auto info = b_->Info(key);
  ASSERT_TRUE(info.ok() && info->has_value());
  EXPECT_EQ((*info)->fence, (*lease)->fence);
  ASSERT_TRUE(b_->Release(key, (*lease)->lock_id).ok());
  auto sem = b_->SemInfo(key);
  ASSERT_TRUE(sem.ok() && sem->has_value());
  EXPECT_EQ((*sem)->holders, 1);
}

TEST_F(EtcdSemMultiTest, FencesStrictlyIncreaseAcrossLeasesPermitsAndMultiKeyGrants) {
  const std::string base = Key("fences");
  uint64_t last = 0;
  for (int i = 0; i < 4; ++i) {
    const std::string n = std::to_string(i);
    auto lease = b_->Acquire(base + "l" + n, seconds(30), std::nullopt);
    ASSERT_TRUE(lease.ok() && lease->has_value()) << lease.status();
    EXPECT_GT((*lease)->fence, last);
    last = (*lease)->fence;
    const PermitGrant p = MustSem(Sem(base + "s", 8, seconds(30)));
    EXPECT_GT(p.fence, last);
    last = p.fence;
    auto multi = b_->MultiAcquire(Multi({base + "a" + n, base + "b" + n}, seconds(30)));
    ASSERT_TRUE(multi.ok() && multi->has_value()) << multi.status();
    EXPECT_GT((*multi)->fence, last);
    last = (*multi)->fence;
  }
}

TEST_F(EtcdSemMultiTest, MultiAcquireIsAllOrNothing) {
  const std::string a = Key("ma"), b = Key("mb"), c = Key("mc");
  auto single = b_->Acquire(b, seconds(30), std::nullopt);
  ASSERT_TRUE(single.ok() && single->has_value()) << single.status();
  auto m = b_->MultiAcquire(Multi({a, b, c}, seconds(30), "group"));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_FALSE(m->has_value());
  for (const std::string& k : {a, c}) {  // nothing taken
    auto info = b_->Info(k);
    ASSERT_TRUE(info.ok()) << info.status();
    EXPECT_FALSE(info->has_value()) << k;
  }
  ASSERT_TRUE(b_->Release(b, (*single)->lock_id).ok());
  m = b_->MultiAcquire(Multi({a, b, c}, seconds(30), "group"));
  ASSERT_TRUE(m.ok() && m->has_value()) << m.status();
  EXPECT_GT((*m)->fence, (*single)->fence);
  EXPECT_GE((*m)->ttl, seconds(30));
  for (const std::string& k : {a, b, c}) {  // each an ordinary lease, one fence
    auto info = b_->Info(k);
    ASSERT_TRUE(info.ok() && info->has_value()) << info.status();
    EXPECT_EQ((*info)->fence, (*m)->fence);
    EXPECT_EQ((*info)->owner, "group");
  }
  // Taken now: a single acquire and an overlapping multi acquire get nothing.
  auto again = b_->Acquire(c, seconds(30), std::nullopt);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->has_value());
  auto overlap = b_->MultiAcquire(Multi({Key("free"), a}, seconds(30)));
  ASSERT_TRUE(overlap.ok());
  EXPECT_FALSE(overlap->has_value());
  // Bad requests.
  EXPECT_EQ(b_->MultiAcquire(Multi({}, seconds(30))).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b_->MultiAcquire(Multi({a, a}, seconds(30))).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<std::string> too_many;
  for (size_t i = 0; i <= kMaxMultiKeys; ++i) too_many.push_back(Key("k") + std::to_string(i));
  EXPECT_EQ(b_->MultiAcquire(Multi(too_many, seconds(30))).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// The most keys at once: one txn of kMaxMultiKeys compares and puts.
TEST_F(EtcdSemMultiTest, MultiAcquireOfTheMostKeys) {
  std::vector<std::string> keys;
  for (size_t i = 0; i < kMaxMultiKeys; ++i) keys.push_back(Key("max") + "-" + std::to_string(i));
  auto m = b_->MultiAcquire(Multi(keys, seconds(30)));
  ASSERT_TRUE(m.ok() && m->has_value()) << m.status();
  auto ttl = b_->MultiExtend(keys, (*m)->lock_id, seconds(40));
  ASSERT_TRUE(ttl.ok()) << ttl.status();
  auto n = b_->MultiRelease(keys, (*m)->lock_id);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, kMaxMultiKeys);
}

// Releasing or extending one key of a group acts on that key only (the group's keys share an etcd
// lease, which must not be revoked under the others); MultiRelease counts what it released.
TEST_F(EtcdSemMultiTest, MultiReleaseCountsAndSingleKeyOperationsLeaveTheOthers) {
  const std::string a = Key("ra"), b = Key("rb"), c = Key("rc"), d = Key("rd");
  auto m = b_->MultiAcquire(Multi({a, b, c}, seconds(30)));
  ASSERT_TRUE(m.ok() && m->has_value()) << m.status();
  const std::string id = (*m)->lock_id;
  ASSERT_TRUE(b_->Release(b, id).ok());
  auto ttl = b_->Extend(c, id, seconds(60));
  ASSERT_TRUE(ttl.ok()) << ttl.status();
  for (const std::string& k : {a, c}) {
    auto info = b_->Info(k);
    ASSERT_TRUE(info.ok() && info->has_value()) << k << " " << info.status();
    EXPECT_EQ((*info)->fence, (*m)->fence);
  }
  auto info_b = b_->Info(b);
  ASSERT_TRUE(info_b.ok());
  EXPECT_FALSE(info_b->has_value());

  const std::vector<std::string> keys = {a, b, c, d};
  auto wrong = b_->MultiRelease(keys, std::string(32, '0'));
  ASSERT_TRUE(wrong.ok()) << wrong.status();
  EXPECT_EQ(*wrong, 0u);
  auto n = b_->MultiRelease(keys, id);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 2u);  // a and c
  n = b_->MultiRelease(keys, id);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 0u);
  for (const std::string& k : keys) {
    auto info = b_->Info(k);
    ASSERT_TRUE(info.ok());
    EXPECT_FALSE(info->has_value()) << k;
  }
  EXPECT_EQ(b_->MultiRelease(std::vector<std::string>{}, id).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// The etcd lease a group's keys share is revoked once its last key is released or moved to a lease
// of its own, not left to run out; a permit's lease goes with its release.
TEST_F(EtcdSemMultiTest, NoLeaseOutlivesItsKeys) {
  const std::vector<std::string> before = LeaseIds(server_->port());
  const std::string a = Key("la"), b = Key("lb"), c = Key("lc");
  auto m = b_->MultiAcquire(Multi({a, b, c}, seconds(60)));
  ASSERT_TRUE(m.ok() && m->has_value()) << m.status();
  EXPECT_EQ(NewLeases(before, LeaseIds(server_->port())).size(), 1u);
  ASSERT_TRUE(b_->Release(a, (*m)->lock_id).ok());
  auto ttl = b_->Extend(b, (*m)->lock_id, seconds(60));  // b moves to a lease of its own
  ASSERT_TRUE(ttl.ok()) << ttl.status();
  EXPECT_EQ(NewLeases(before, LeaseIds(server_->port())).size(), 2u);
  auto n = b_->MultiRelease(std::vector<std::string>{b, c}, (*m)->lock_id);
  ASSERT_TRUE(n.ok() && *n == 2u) << n.status();
  EXPECT_TRUE(NewLeases(before, LeaseIds(server_->port())).empty());

  const std::string s = Key("ls");
  const PermitGrant p = MustSem(Sem(s, 2, seconds(60)));
  ASSERT_TRUE(b_->SemExtend(s, p.permit_id, seconds(60)).ok());
  EXPECT_EQ(NewLeases(before, LeaseIds(server_->port())).size(), 1u);
  ASSERT_TRUE(b_->SemRelease(s, p.permit_id).ok());
  EXPECT_TRUE(NewLeases(before, LeaseIds(server_->port())).empty());
}

TEST_F(EtcdSemMultiTest, MultiExtendIsAllOrNone) {
  const std::string a = Key("ea"), b = Key("eb");
  auto m = b_->MultiAcquire(Multi({a, b}, seconds(1)));
  ASSERT_TRUE(m.ok() && m->has_value()) << m.status();
  const std::string id = (*m)->lock_id;
  const std::vector<std::string> keys = {a, b};

  // Not held by this id: nothing changes.
  EXPECT_EQ(b_->MultiExtend(keys, std::string(32, '0'), seconds(30)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  // All held: both extended.
  auto ttl = b_->MultiExtend(keys, id, seconds(30));
  ASSERT_TRUE(ttl.ok()) << ttl.status();
  EXPECT_GE(*ttl, seconds(30));
  std::this_thread::sleep_for((*m)->ttl + seconds(1));  // past the first ttl
  for (const std::string& k : keys) {
    auto info = b_->Info(k);
    ASSERT_TRUE(info.ok() && info->has_value()) << k << " " << info.status();
    EXPECT_GT((*info)->ttl_remaining, seconds(20));
    EXPECT_EQ((*info)->fence, (*m)->fence);
  }

  // One key gone: FailedPrecondition naming it, and the other keeps its expiry.
  ASSERT_TRUE(b_->Release(b, id).ok());
  auto st = b_->MultiExtend(keys, id, seconds(300));
  ASSERT_EQ(st.status().code(), absl::StatusCode::kFailedPrecondition) << st.status();
  EXPECT_NE(st.status().message().find(b), std::string::npos) << st.status();
  auto info = b_->Info(a);
  ASSERT_TRUE(info.ok() && info->has_value());
  EXPECT_LE((*info)->ttl_remaining, seconds(30));
  EXPECT_EQ(b_->MultiRelease(keys, id).value_or(99), 1u);
}

}  // namespace
}  // namespace tollgate
