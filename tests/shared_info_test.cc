// INFO ratelimit on a shared backend (Redis, PostgreSQL): the backend decides, each server counts
// the decisions it answered, with exactly the fields and counts the embedded store reports for the
// same requests; live bucket counts read "n/a".
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/support/resp_client.h"
#include "tests/support/server_process.h"
#ifdef TOLLGATE_HAVE_REDIS_BACKEND
#include "tests/support/redis_server.h"
#endif
#ifdef TOLLGATE_HAVE_POSTGRES_BACKEND
#include "tests/support/postgres_server.h"
#endif

namespace tollgate::testing {
namespace {

// Buckets refill one token per 1000 s, so nothing refills during the test and every verdict is
// known in advance.
constexpr char kPolicies[] = R"(policies:
  api:
    layers:
      - { name: global,    key: "g",        capacity: 100, rate: 0.001 }
      - { name: user,      key: "u:{user}", capacity: 3,   rate: 0.001 }
      - { name: candidate, key: "c:{user}", capacity: 2,   rate: 0.001, shadow: true }
)";

// INFO ratelimit as field -> value.
std::map<std::string, std::string> RateLimitInfo(int port) {
  Client c(port);
  Reply r = c.Run({"INFO", "ratelimit"});
  std::map<std::string, std::string> out;
  if (!r || r->type != REDIS_REPLY_STRING) return out;
  const std::string text(r->str, r->len);
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find("\r\n", pos);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(pos, end - pos);
    pos = end + 2;
    const size_t colon = line.find(':');
    if (line.empty() || line[0] == '#' || colon == std::string::npos) continue;
    out[line.substr(0, colon)] = line.substr(colon + 1);
  }
  return out;
}

// Replaces the value of `buckets=` in a layer line by "*", so lines from different stores compare.
std::string WithoutBuckets(std::string v) {
  const size_t at = v.find("buckets=");
  if (at == std::string::npos) return v;
  const size_t end = v.find(',', at);
  return v.replace(at + 8, (end == std::string::npos ? v.size() : end) - (at + 8), "*");
}

// The latency line up to its first comma: "checks=N".
std::string Checks(const std::string& v) { return v.substr(0, v.find(',')); }

// Sends a fixed mix of requests whose verdicts are known: 3 THROTTLE (2 allowed, 1 denied), 6
// RATE.CHECK (3 allowed, 3 denied by `user`; the shadow layer allows 2 and would deny 4), and bad
// input that must not be counted.
void SendKnownMix(int port) {
  Client c(port);
  ASSERT_TRUE(c.ok());
  for (int i = 0; i < 3; ++i) {
    Reply r = c.Run({"THROTTLE", "t", "2", "0.001"});
    ASSERT_EQ(r->type, REDIS_REPLY_ARRAY) << (r->str != nullptr ? r->str : "");
    EXPECT_EQ(r->element[0]->integer, i < 2 ? 1 : 0) << i;
  }
  for (int i = 0; i < 5; ++i) {
    Reply r = c.Run({"RATE.CHECK", "api", "user", "ann"});
    ASSERT_EQ(r->type, REDIS_REPLY_ARRAY) << (r->str != nullptr ? r->str : "");
    EXPECT_EQ(r->element[0]->integer, i < 3 ? 1 : 0) << i;
  }
  // More than any bucket holds: denied ("never") by `user`, and by the shadow layer.
  Reply never = c.Run({"RATE.CHECK", "api", "COST", "5", "user", "bob"});
  ASSERT_EQ(never->type, REDIS_REPLY_ARRAY);
  EXPECT_EQ(never->element[0]->integer, 0);
  EXPECT_EQ(std::string(never->element[1]->str, never->element[1]->len), "user");
  EXPECT_EQ(never->element[3]->integer, -1);
  // Not decisions: nothing is counted for these.
  EXPECT_EQ(c.Run({"RATE.CHECK", "api"})->type, REDIS_REPLY_ERROR);
  EXPECT_EQ(c.Run({"RATE.CHECK", "nope", "user", "x"})->type, REDIS_REPLY_ERROR);
  EXPECT_EQ(c.Run({"THROTTLE", "t", "0", "1"})->type, REDIS_REPLY_ERROR);
}

std::string Get(const std::map<std::string, std::string>& info, const std::string& field) {
  auto it = info.find(field);
  return it == info.end() ? "<missing>" : it->second;
}

// The counts SendKnownMix leads to. `buckets` is the expected buckets= value, or "*" for any.
void ExpectKnownCounts(const std::map<std::string, std::string>& info, const std::string& buckets) {
  auto layer = [&](const std::string& field) {
    return buckets == "*" ? WithoutBuckets(Get(info, field)) : Get(info, field);
  };
  EXPECT_EQ(Get(info, "throttle_allowed"), "2");
  EXPECT_EQ(Get(info, "throttle_denied"), "1");
  EXPECT_EQ(Get(info, "throttle_overflow"), "0");
  EXPECT_EQ(
      layer("policy_api_layer_global"),
      "allowed=6,denied=0,shadow_denied=0,overflow=0,evicted=0,buckets=" + buckets + ",shadow=0");
  EXPECT_EQ(
      layer("policy_api_layer_user"),
      "allowed=3,denied=3,shadow_denied=0,overflow=0,evicted=0,buckets=" + buckets + ",shadow=0");
  EXPECT_EQ(
      layer("policy_api_layer_candidate"),
      "allowed=2,denied=0,shadow_denied=4,overflow=0,evicted=0,buckets=" + buckets + ",shadow=1");
  EXPECT_EQ(Checks(Get(info, "policy_api_latency")), "checks=6");
}

class SharedInfoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = dir_.path() + "/policies.yaml";
    std::ofstream(config_) << kPolicies;
  }

  // The same mix through the embedded store: the reference the shared backends must match.
  std::map<std::string, std::string> Embedded() {
    ServerProcess s(dir_.path() + "/embedded", {"--config", config_});
    EXPECT_TRUE(s.ok());
    SendKnownMix(s.port());
    std::map<std::string, std::string> info = RateLimitInfo(s.port());
    EXPECT_EQ(s.Terminate(), 0);
    return info;
  }

  // Two servers on one backend: the mix through the first; each reports only its own decisions,
  // with the embedded store's fields and counts.
  void Check(const std::string& backend_url) {
    const std::map<std::string, std::string> embedded = Embedded();
    ASSERT_FALSE(embedded.empty());
    ServerProcess a(dir_.path() + "/a", {"--backend", backend_url, "--config", config_});
    ServerProcess b(dir_.path() + "/b", {"--backend", backend_url, "--config", config_});
    ASSERT_TRUE(a.ok() && b.ok()) << "servers did not start on " << backend_url;
    SendKnownMix(a.port());
    const std::map<std::string, std::string> shared = RateLimitInfo(a.port());
    ExpectKnownCounts(shared, "n/a");
    EXPECT_EQ(Get(shared, "throttle_buckets"), "n/a");

    // Same fields as the embedded store, same values but for bucket counts and timings.
    ASSERT_EQ(shared.size(), embedded.size());
    for (const auto& [k, v] : embedded) {
      ASSERT_EQ(shared.count(k), 1u) << k;
      if (k == "throttle_buckets") continue;
      if (k.ends_with("_latency")) {
        EXPECT_EQ(Checks(Get(shared, k)), Checks(v)) << k;
      } else {
        EXPECT_EQ(WithoutBuckets(Get(shared, k)), WithoutBuckets(v)) << k;
      }
    }

    // The other server answered nothing yet, and says so; what it answers next is its own.
    std::map<std::string, std::string> other = RateLimitInfo(b.port());
    EXPECT_EQ(Get(other, "throttle_allowed"), "0");
    EXPECT_EQ(Get(other, "policy_api_layer_user"),
              "allowed=0,denied=0,shadow_denied=0,overflow=0,evicted=0,buckets=n/a,shadow=0");
    EXPECT_EQ(Checks(Get(other, "policy_api_latency")), "checks=0");
    Client cb(b.port());
    Reply r = cb.Run({"RATE.CHECK", "api", "user", "ann"});  // ann's bucket is empty: denied
    ASSERT_EQ(r->type, REDIS_REPLY_ARRAY);
    EXPECT_EQ(r->element[0]->integer, 0);
    other = RateLimitInfo(b.port());
    EXPECT_EQ(Get(other, "policy_api_layer_global"),
              "allowed=1,denied=0,shadow_denied=0,overflow=0,evicted=0,buckets=n/a,shadow=0");
    EXPECT_EQ(Get(other, "policy_api_layer_user"),
              "allowed=0,denied=1,shadow_denied=0,overflow=0,evicted=0,buckets=n/a,shadow=0");
    EXPECT_EQ(Get(other, "policy_api_layer_candidate"),
              "allowed=0,denied=0,shadow_denied=1,overflow=0,evicted=0,buckets=n/a,shadow=1");
    EXPECT_EQ(Checks(Get(other, "policy_api_latency")), "checks=1");
    ExpectKnownCounts(RateLimitInfo(a.port()), "n/a");  // unchanged by b's decision

    EXPECT_EQ(a.Terminate(), 0);
    EXPECT_EQ(b.Terminate(), 0);
  }

  TempDir dir_;
  std::string config_;
};

TEST_F(SharedInfoTest, EmbeddedStoreCountsTheKnownMix) {
  const std::map<std::string, std::string> info = Embedded();
  ExpectKnownCounts(info, "*");  // bucket counts checked elsewhere (limit_server_test)
}

#ifdef TOLLGATE_HAVE_REDIS_BACKEND
TEST_F(SharedInfoTest, Redis) {
  RedisServer redis;
  ASSERT_TRUE(redis.Start());
  Check(redis.url());
}
#endif

#ifdef TOLLGATE_HAVE_POSTGRES_BACKEND
TEST_F(SharedInfoTest, Postgres) {
  PostgresServer pg;
  ASSERT_TRUE(pg.Start()) << pg.error();
  ASSERT_TRUE(RunMigrate(pg.conninfo()));
  Check(pg.conninfo());
}
#endif

}  // namespace
}  // namespace tollgate::testing
