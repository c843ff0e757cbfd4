#include <atomic>
#include <thread>

#include "core/bucket_table.h"
#include "gtest/gtest.h"
#include "tollgate/limiter.h"
#include "tollgate/testing/fake_clock.h"

namespace tollgate {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

Decimal D(const char* s) { return *Decimal::ParsePositive(s, "test", kMaxCapacity); }

LayerSpec Layer(std::string name, std::string key, const char* cap, const char* rate,
                bool shadow = false) {
  return {std::move(name), std::move(key), {D(cap), D(rate)}, shadow};
}

// The example policy.
PolicySpec Chat() {
  PolicySpec p;
  p.name = "chat";
  p.layers = {Layer("global", "global", "95000", "95000"), Layer("ip", "ip:{ip}", "100", "100"),
              Layer("user_type", "user:{user}:{type}", "30", "10"),
              Layer("candidate", "user:{user}", "20", "5", /*shadow=*/true)};
  p.cost.by = "type";
  p.cost.values = {{"text", D("1")}, {"code_paste", D("5")}, {"cursor", D("0.5")}};
  p.cost.default_cost = D("1");
  return p;
}

class PolicyEngineTest : public ::testing::Test {
 protected:
  absl::StatusOr<PolicyDecision> Check(std::string_view policy, std::vector<Field> fields,
                                       std::optional<Decimal> cost = std::nullopt) {
    return e_.Check(policy, fields, cost);
  }
  const LayerCounters& Counter(const std::vector<LayerCounters>& all, std::string_view layer) {
    for (const auto& c : all) {
      if (c.layer == layer) return c;
    }
    static LayerCounters none;
    ADD_FAILURE() << "no layer " << layer;
    return none;
  }
  FakeClock clock_;
  PolicyEngine e_{{.clock = &clock_}};
};

TEST_F(PolicyEngineTest, AllOrNothingAcrossLayers) {
  PolicySpec p;
  p.name = "p";
  p.layers = {Layer("global", "global", "3", "0.001"), Layer("user", "u:{user}", "2", "0.001")};
  ASSERT_TRUE(e_.Install({p}).ok());
  EXPECT_TRUE(Check("p", {{"user", "a"}})->allowed);
  EXPECT_TRUE(Check("p", {{"user", "a"}})->allowed);
  for (int i = 0; i < 10; ++i) {
    auto d = Check("p", {{"user", "a"}});
    EXPECT_FALSE(d->allowed);
    EXPECT_EQ(d->denied_layer, "user");
  }
  // The ten denials charged nothing to the global layer: its third token is still there.
  auto b = Check("p", {{"user", "b"}});
  ASSERT_TRUE(b->allowed);
  EXPECT_EQ(b->remaining, 0u);  // least over layers: global 0, user b 1
  auto b2 = Check("p", {{"user", "b"}});
  EXPECT_FALSE(b2->allowed);
  EXPECT_EQ(b2->denied_layer, "global");
  auto counters = e_.counters();
  EXPECT_EQ(Counter(counters, "global").allowed, 13u);  // its own verdict on 13 requests
  EXPECT_EQ(Counter(counters, "global").denied, 1u);
  EXPECT_EQ(Counter(counters, "user").denied, 10u);
}

TEST_F(PolicyEngineTest, GlobalLayerDenialDoesNotChargeUserLayer) {
  PolicySpec p;
  p.name = "p";
  p.layers = {Layer("global", "global", "3", "1"), Layer("user", "u:{user}", "10", "1")};
  ASSERT_TRUE(e_.Install({p}).ok());
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(Check("p", {{"user", "a"}})->allowed);
  auto d = Check("p", {{"user", "a"}});
  EXPECT_FALSE(d->allowed);
  EXPECT_EQ(d->denied_layer, "global");
  EXPECT_EQ(d->retry_after, seconds(1));
  EXPECT_EQ(d->remaining, 0u);
  clock_.Advance(seconds(3));
  // User a spent 3, not 4: after the global refills, 7 remain for a.
  auto after = Check("p", {{"user", "a"}});
  ASSERT_TRUE(after->allowed);
}

TEST_F(PolicyEngineTest, RetryAfterIsTheLargestOverDenyingLayersAndNeverWins) {
  PolicySpec p;
  p.name = "p";
  p.layers = {Layer("fast", "f", "1", "1"), Layer("slow", "s", "1", "0.1")};
  ASSERT_TRUE(e_.Install({p}).ok());
  EXPECT_TRUE(Check("p", {})->allowed);
  auto d = Check("p", {});
  EXPECT_FALSE(d->allowed);
  EXPECT_EQ(d->denied_layer, "fast");  // first in order
  EXPECT_EQ(d->retry_after, seconds(10));
  // Retrying at exactly that time succeeds.
  clock_.Advance(seconds(10));
  EXPECT_TRUE(Check("p", {})->allowed);
  auto never = Check("p", {}, D("2"));
  EXPECT_FALSE(never->allowed);
  EXPECT_FALSE(never->retry_after.has_value());
}

TEST_F(PolicyEngineTest, ShadowLayerCountsButNeverDenies) {
  ASSERT_TRUE(e_.Install({Chat()}).ok());
  // candidate shadow layer: capacity 20; user_type layer: capacity 30 per type.
  int allowed = 0;
  for (int i = 0; i < 30; ++i) {
    allowed += Check("chat", {{"ip", "1.2.3.4"}, {"user", "u1"}, {"type", "text"}})->allowed;
  }
  EXPECT_EQ(allowed, 30);
  auto counters = e_.counters();
  EXPECT_EQ(Counter(counters, "candidate").allowed, 20u);
  EXPECT_EQ(Counter(counters, "candidate").shadow_denied, 10u);
  EXPECT_TRUE(Counter(counters, "candidate").shadow);
  auto d = Check("chat", {{"ip", "1.2.3.4"}, {"user", "u1"}, {"type", "text"}});
  EXPECT_FALSE(d->allowed);
  EXPECT_EQ(d->denied_layer, "user_type");
}

TEST_F(PolicyEngineTest, CostTableDefaultAndOverride) {
  ASSERT_TRUE(e_.Install({Chat()}).ok());
  const std::vector<Field> paste = {{"ip", "9.9.9.9"}, {"user", "u"}, {"type", "code_paste"}};
  for (int i = 0; i < 6; ++i) EXPECT_TRUE(Check("chat", paste)->allowed) << i;  // 6 x 5 = 30
  EXPECT_FALSE(Check("chat", paste)->allowed);
  const std::vector<Field> cursor = {{"ip", "9.9.9.8"}, {"user", "v"}, {"type", "cursor"}};
  for (int i = 0; i < 60; ++i) EXPECT_TRUE(Check("chat", cursor)->allowed) << i;  // 60 x 0.5
  EXPECT_FALSE(Check("chat", cursor)->allowed);
  // An unknown type costs the default (1); COST overrides the table.
  const std::vector<Field> other = {{"ip", "9.9.9.7"}, {"user", "w"}, {"type", "sticker"}};
  auto d = Check("chat", other);
  EXPECT_EQ(d->remaining, 29u);  // least over enforced layers (user_type 29, ip 99, global ...)
  auto o = Check("chat", other, D("29"));
  EXPECT_TRUE(o->allowed);
  EXPECT_EQ(o->remaining, 0u);
}

TEST_F(PolicyEngineTest, MissingFieldUnknownPolicyAndBadCostChangeNothing) {
  ASSERT_TRUE(e_.Install({Chat()}).ok());
  auto missing = Check("chat", {{"ip", "1.1.1.1"}, {"type", "text"}});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(missing.status().message(), "policy 'chat' layer 'user_type' needs field 'user'");
  EXPECT_EQ(Check("nope", {}).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Check("chat", {{"ip", "1"}, {"user", "u"}, {"type", "t"}}, Decimal{0}).status().code(),
            absl::StatusCode::kInvalidArgument);
  for (const auto& c : e_.counters()) {
    EXPECT_EQ(c.allowed + c.denied + c.shadow_denied, 0u) << c.layer;
    EXPECT_EQ(c.live_buckets, 0u);
  }
}

TEST_F(PolicyEngineTest, ValidationNamesPolicyLayerAndField) {
  PolicySpec p = Chat();
  p.layers[1].name = "global";
  EXPECT_EQ(e_.Install({p}).message(), "policy 'chat' layer 'global': duplicate layer name");
  p = Chat();
  p.layers[2].key_template = "user:{User}";
  EXPECT_EQ(e_.Install({p}).message(),
            "policy 'chat' layer 'user_type' key: field name 'User' is not a lowercase identifier "
            "([a-z_][a-z0-9_]*)");
  p = Chat();
  p.layers[0].key_template = "global{";
  EXPECT_FALSE(e_.Install({p}).ok());
  p = Chat();
  for (auto& l : p.layers) l.shadow = true;
  EXPECT_FALSE(e_.Install({p}).ok());
  p = Chat();
  p.layers[0].params.rate = Decimal{0};
  EXPECT_EQ(e_.Install({p}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(e_.policy_names().empty());  // nothing was installed by any failed attempt
}

TEST_F(PolicyEngineTest, ReloadKeepsStateOfLayersThatStillExist) {
  PolicySpec p;
  p.name = "p";
  p.layers = {Layer("a", "a:{u}", "2", "1"), Layer("b", "b:{u}", "5", "1")};
  ASSERT_TRUE(e_.Install({p}).ok());
  EXPECT_TRUE(Check("p", {{"u", "x"}})->allowed);
  EXPECT_TRUE(Check("p", {{"u", "x"}})->allowed);
  EXPECT_FALSE(Check("p", {{"u", "x"}})->allowed);
  // Reload: layer a unchanged, layer b's template changed (fresh state), new layer c.
  PolicySpec q;
  q.name = "p";
  q.layers = {Layer("a", "a:{u}", "2", "1"), Layer("b", "bb:{u}", "5", "1"),
              Layer("c", "c", "100", "1")};
  ASSERT_TRUE(e_.Install({q}).ok());
  auto d = Check("p", {{"u", "x"}});
  EXPECT_FALSE(d->allowed);
  EXPECT_EQ(d->denied_layer, "a");
  // A changed rate applies to the existing debt: 2 tokens owed at 2/s refill in 1 s.
  q.layers[0].params.rate = D("2");
  ASSERT_TRUE(e_.Install({q}).ok());
  clock_.Advance(milliseconds(500));
  EXPECT_TRUE(Check("p", {{"u", "x"}})->allowed);
}

TEST_F(PolicyEngineTest, ConcurrentChecksAdmitExactlyCapacity) {
  PolicySpec p;
  p.name = "p";
  p.layers = {Layer("global", "global", "1000", "0.001"), Layer("user", "u:{u}", "5", "0.001")};
  ASSERT_TRUE(e_.Install({p}).ok());
  for (int round = 0; round < 100; ++round) {
    std::atomic<int> admitted{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> threads;
    const std::string user = "user" + std::to_string(round);
    for (int i = 0; i < 10; ++i) {
      threads.emplace_back([&] {
        while (!go.load()) {
        }
        if (e_.Check("p", std::vector<Field>{{"u", user}})->allowed) admitted++;
      });
    }
    go = true;
    for (auto& t : threads) t.join();
    ASSERT_EQ(admitted.load(), 5) << round;
  }
}

TEST_F(PolicyEngineTest, LatencyHistogramCountsChecks) {
  ASSERT_TRUE(e_.Install({Chat()}).ok());
  for (int i = 0; i < 10; ++i) (void)Check("chat", {{"ip", "1"}, {"user", "u"}, {"type", "t"}});
  auto lat = e_.latencies();
  ASSERT_EQ(lat.size(), 1u);
  EXPECT_EQ(lat[0].policy, "chat");
  EXPECT_EQ(lat[0].count, 10u);
}

TEST_F(PolicyEngineTest, CheckpointRestoreIntoMatchingLayer) {
  ASSERT_TRUE(e_.Install({Chat()}).ok());
  for (int i = 0; i < 30; ++i) (void)Check("chat", {{"ip", "1"}, {"user", "u"}, {"type", "text"}});
  std::vector<BucketSnapshot> snaps;
  e_.CollectChanges([&](const BucketSnapshot& s) { snaps.push_back(s); },
                    [](std::string_view, std::string_view) {});
  EXPECT_EQ(snaps.size(), 4u);  // one bucket per layer
  FakeClock clock2;
  PolicyEngine fresh({.clock = &clock2});
  ASSERT_TRUE(fresh.Install({Chat()}).ok());
  for (const auto& s : snaps) EXPECT_TRUE(fresh.Restore(s)) << s.table;
  auto d = fresh.Check("chat", std::vector<Field>{{"ip", "1"}, {"user", "u"}, {"type", "text"}});
  EXPECT_FALSE(d->allowed);  // the restart did not hand out a full bucket
  EXPECT_EQ(d->denied_layer, "user_type");
  BucketSnapshot unknown;
  unknown.table = "p:gone/x/y";
  EXPECT_FALSE(fresh.Restore(unknown));
}

}  // namespace
}  // namespace tollgate

namespace tollgate {
namespace {

TEST(PolicyEngineResolveTest, RendersLayersAndCostWithoutCharging) {
  FakeClock clock;
  PolicyEngine e({.clock = &clock});
  ASSERT_TRUE(e.Install({Chat()}).ok());
  std::vector<Field> f = {{"ip", "1.2.3.4"}, {"user", "ann"}, {"type", "code_paste"}};
  auto r = e.Resolve("chat", f);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->cost, D("5"));
  ASSERT_EQ(r->layers.size(), 4u);
  EXPECT_EQ(r->layers[0].key, "global");
  EXPECT_EQ(r->layers[1].key, "ip:1.2.3.4");
  EXPECT_EQ(r->layers[2].key, "user:ann:code_paste");
  EXPECT_EQ(r->layers[2].name, "user_type");
  EXPECT_TRUE(r->layers[3].shadow);
  EXPECT_EQ(e.Resolve("chat", f, D("0.5"))->cost, D("0.5"));
  EXPECT_EQ(e.Resolve("nope", f).status().code(), absl::StatusCode::kNotFound);
  for (const auto& c : e.counters()) EXPECT_EQ(c.live_buckets, 0u);
}

// A decision made on another backend is counted exactly as the engine counts its own, from the
// per-layer verdicts; the layered answer carries one verdict per layer.
TEST(PolicyEngineRecordTest, CountsPerLayerVerdictsLikeCheck) {
  FakeClock clock;
  PolicyEngine local({.clock = &clock}), remote({.clock = &clock});
  ASSERT_TRUE(local.Install({Chat()}).ok());
  ASSERT_TRUE(remote.Install({Chat()}).ok());
  Throttler backend({.clock = &clock});  // stands in for a shared backend's CheckLayers
  std::vector<Field> f = {{"ip", "1.2.3.4"}, {"user", "ann"}, {"type", "code_paste"}};
  for (int i = 0; i < 8; ++i) {  // cost 5 each: user_type (30) denies from the 7th on
    auto mine = local.Check("chat", f);
    ASSERT_TRUE(mine.ok());
    ASSERT_EQ(mine->layer_allowed.size(), 4u);
    auto rc = remote.Resolve("chat", f);
    ASSERT_TRUE(rc.ok());
    auto theirs = backend.CheckLayers(rc->layers, rc->cost);
    ASSERT_TRUE(theirs.ok());
    EXPECT_EQ(theirs->allowed, mine->allowed);
    EXPECT_EQ(std::vector<bool>(theirs->layer_allowed.begin(), theirs->layer_allowed.end()),
              std::vector<bool>(mine->layer_allowed.begin(), mine->layer_allowed.end()));
    remote.Record("chat", rc->layers, *theirs, milliseconds(2));
  }
  auto want = local.counters(), got = remote.counters();
  ASSERT_EQ(want.size(), got.size());
  for (size_t i = 0; i < want.size(); ++i) {
    SCOPED_TRACE(want[i].layer);
    EXPECT_EQ(got[i].allowed, want[i].allowed);
    EXPECT_EQ(got[i].denied, want[i].denied);
    EXPECT_EQ(got[i].shadow_denied, want[i].shadow_denied);
  }
  // The shadow candidate (20) denies from the 5th on; user_type from the 7th.
  for (const auto& c : got) {
    if (c.layer == "candidate") {
      EXPECT_EQ(c.shadow_denied, 4u);
    }
    if (c.layer == "user_type") {
      EXPECT_EQ(c.denied, 2u);
    }
  }
  ASSERT_EQ(remote.latencies().size(), 1u);
  EXPECT_EQ(remote.latencies()[0].count, 8u);
  // An unknown policy is ignored; a decision without per-layer verdicts counts what it implies.
  remote.Record("nope", {}, PolicyDecision{}, milliseconds(1));
  PolicyDecision bare;
  bare.allowed = false;
  bare.denied_layer = "ip";
  auto rc = remote.Resolve("chat", f);
  ASSERT_TRUE(rc.ok());
  remote.Record("chat", rc->layers, bare, milliseconds(1));
  for (const auto& c : remote.counters()) {
    if (c.layer == "ip") {
      EXPECT_EQ(c.denied, 1u);
    }
  }
}

// Issue 9. Operator-configured layers have no refill horizon (a weekly quota is fine), and a full
// layer evicts a bucket that holds a whole token, closest to full, before it applies on_limit;
// each layer counts its evictions.
TEST(PolicyEngineEvictionTest, WeeklyQuotaAndEvictionPerLayer) {
  FakeClock clock;
  PolicyEngine e({.clock = &clock});
  PolicySpec p;
  p.name = "p";
  p.layers = {Layer("week", "w:{user}", "1000", "0.001653439"),  // 1000 per 7 days
              Layer("user", "u:{user}", "10", "0.001")};
  p.layers[1].max_buckets = 2;
  ASSERT_TRUE(e.Install({p}).ok());
  // Three users whose "user" buckets share a shard (eviction looks in the new key's shard).
  auto shard = [](const std::string& k) {
    return (core::BucketTable::Hash(k) >> 52) % core::BucketTable::kShards;
  };
  std::vector<std::string> users;
  for (int i = 0; users.size() < 3; ++i) {
    std::string u = "n" + std::to_string(i);
    if (users.empty() || shard("u:" + u) == shard("u:" + users[0])) users.push_back(u);
  }
  auto check = [&](const std::string& user, const char* cost) {
    std::vector<Field> f = {{"user", user}};
    auto d = e.Check("p", f, D(cost));
    EXPECT_TRUE(d.ok()) << d.status();
    return d.ok() ? *d : PolicyDecision{};
  };
  EXPECT_TRUE(check(users[0], "10").allowed);  // exhausted: never evicted
  EXPECT_TRUE(check(users[1], "3").allowed);   // 7 of 10 left
  EXPECT_TRUE(check(users[2], "1").allowed);   // evicts users[1]
  PolicyDecision again = check(users[0], "1");
  EXPECT_FALSE(again.allowed);
  EXPECT_EQ(again.denied_layer, "user");
  for (const LayerCounters& c : e.counters()) {
    EXPECT_EQ(c.evicted, c.layer == "user" ? 1u : 0u) << c.layer;
    if (c.layer == "user") {
      EXPECT_EQ(c.live_buckets, 2u);
    }
  }
}

// A reload that lowers a layer's capacity applies to eviction too: a bucket that held tokens under
// the old capacity but less than one under the new is denying now, and stays.
TEST(PolicyEngineEvictionTest, ReloadedCapacityDecidesEviction) {
  FakeClock clock;
  PolicyEngine e({.clock = &clock});
  auto spec = [](const char* capacity) {
    PolicySpec p;
    p.name = "p";
    p.layers = {Layer("user", "u:{user}", capacity, "0.001")};
    p.layers[0].max_buckets = 1;
    return p;
  };
  ASSERT_TRUE(e.Install({spec("10")}).ok());
  auto shard = [](const std::string& k) {
    return (core::BucketTable::Hash(k) >> 52) % core::BucketTable::kShards;
  };
  std::string other;
  for (int i = 0; other.empty(); ++i) {
    std::string u = "n" + std::to_string(i);
    if (shard("u:" + u) == shard("u:a")) other = u;
  }
  std::vector<Field> a = {{"user", "a"}}, b = {{"user", other}};
  ASSERT_TRUE(e.Check("p", a, D("4.5"))->allowed);  // 5.5 of 10 left
  ASSERT_TRUE(e.Install({spec("5")}).ok());         // 0.5 of 5 left: denying
  auto d = e.Check("p", b, D("1"));
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE(d->allowed);
  EXPECT_EQ(e.counters()[0].evicted, 0u);
  EXPECT_EQ(e.counters()[0].overflow, 1u);
}

}  // namespace
}  // namespace tollgate
