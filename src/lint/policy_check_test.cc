#include "tollgate/policy_check.h"

#include <filesystem>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace tollgate {
namespace {

using ::testing::HasSubstr;

CheckReport Lint(const std::string& yaml, CheckOptions options = {}) {
  auto doc = ParsePolicyDocument(yaml, "p.yaml", /*validate=*/false);
  EXPECT_TRUE(doc.ok()) << doc.status();
  if (!doc.ok()) return {};
  return CheckPolicies(*doc, options);
}

std::vector<const Finding*> Rule(const CheckReport& r, std::string_view rule) {
  std::vector<const Finding*> out;
  for (const Finding& f : r.findings) {
    if (f.rule == rule) out.push_back(&f);
  }
  return out;
}

std::string Number(const Finding& f, std::string_view name) {
  for (const auto& [k, v] : f.numbers) {
    if (k == name) return v;
  }
  return "<absent>";
}

// A sound policy: global cap under the backend, per-user capacity between 1 s and 10 s of rate,
// declared traffic 20% below every rate.
constexpr char kClean[] = R"(policies:
  api:
    layers:
      - { name: global, key: "global", capacity: 90000, rate: 90000 }
      - { name: ip, key: "ip:{ip}", capacity: 100, rate: 50 }
      - { name: user, key: "u:{user}", capacity: 30, rate: 10 }
    expect:
      users: 1000
      ips: 500
      backend_ops_per_sec: 100000
      request_fields: [ip, user]
      messages: { call: { rate: 2 } }
)";

TEST(PolicyCheck, CleanPolicyHasNoFindings) {
  CheckReport r = Lint(kClean);
  EXPECT_TRUE(r.findings.empty()) << FormatCheckText(r);
  EXPECT_EQ(r.exit_code(), 0);
  EXPECT_THAT(FormatCheckText(r), HasSubstr("1 policy, 0 errors, 0 warnings (clean)"));
}

TEST(PolicyCheck, AttackWindowGivesBurstPerIdentityAndForN) {
  CheckReport r = Lint(R"(policies:
  api:
    layers:
      - { name: global, key: "global", capacity: 1000, rate: 1000 }
      - { name: user, key: "u:{user}", capacity: 600, rate: 1 }
    expect: { attackers: 50, attack_horizon_s: 10 }
)");
  auto f = Rule(r, "attack-window");
  ASSERT_EQ(f.size(), 1u) << FormatCheckText(r);
  EXPECT_EQ(f[0]->severity, Severity::kWarning);
  EXPECT_EQ(f[0]->layer, "user");
  EXPECT_EQ(f[0]->pos.line, 5);
  EXPECT_EQ(Number(*f[0], "recovery"), "10 min");
  EXPECT_EQ(Number(*f[0], "burst_in_10s"), "610");  // 600 + 1 x 10
  EXPECT_EQ(Number(*f[0], "burst_in_10s_50_identities"), "30500");
  EXPECT_THAT(f[0]->fix, HasSubstr("capacity: 3 "));  // 3 s of rate
  EXPECT_EQ(r.exit_code(), 1);
}

TEST(PolicyCheck, AttackWindowThresholdIsConfigurable) {
  const std::string yaml = R"(policies:
  api:
    layers: [{ name: global, key: "global", capacity: 50, rate: 10 }]
)";
  EXPECT_TRUE(Rule(Lint(yaml), "attack-window").empty());  // 5 s <= 10 s
  CheckOptions o;
  o.max_recovery = std::chrono::seconds(2);
  EXPECT_EQ(Rule(Lint(yaml, o), "attack-window").size(), 1u);
}

TEST(PolicyCheck, AggregateFloodWithoutGlobalLayerIsAnErrorWithTheCapThatHolds) {
  CheckReport r = Lint(R"(policies:
  api:
    layers:
      - { name: user, key: "u:{user}", capacity: 100, rate: 100 }
    expect: { users: 10000, backend_ops_per_sec: 150000 }
)");
  auto f = Rule(r, "aggregate-flood");
  ASSERT_EQ(f.size(), 1u) << FormatCheckText(r);
  EXPECT_EQ(f[0]->severity, Severity::kError);
  EXPECT_THAT(f[0]->message, HasSubstr("1000000/s"));
  EXPECT_EQ(Number(*f[0], "ratio"), "6.667");
  EXPECT_THAT(f[0]->fix, HasSubstr("capacity: 15000, rate: 135000"));
  EXPECT_EQ(r.exit_code(), 2);
}

TEST(PolicyCheck, AggregateFloodGlobalAboveBackend) {
  CheckReport r = Lint(R"(policies:
  api:
    layers:
      - { name: global, key: "global", capacity: 500000, rate: 500000 }
      - { name: user, key: "u:{user}", capacity: 100, rate: 100 }
    expect: { users: 10000, backend_ops_per_sec: 150000 }
)");
  auto f = Rule(r, "aggregate-flood");
  ASSERT_EQ(f.size(), 1u) << FormatCheckText(r);
  EXPECT_EQ(f[0]->severity, Severity::kError);
  EXPECT_THAT(f[0]->fix, HasSubstr("global layer 'global': rate: 135000 and capacity: 15000"));
}

TEST(PolicyCheck, NoGlobalLayerIsAWarningEvenWhenTheNumbersFit) {
  CheckReport r = Lint(R"(policies:
  api:
    layers: [{ name: user, key: "u:{user}", capacity: 10, rate: 5 }]
    expect: { users: 100, backend_ops_per_sec: 150000 }
)");
  auto f = Rule(r, "aggregate-flood");
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0]->severity, Severity::kWarning);
  EXPECT_THAT(f[0]->message, HasSubstr("no global layer"));
  // Without any expectations it still says so.
  CheckReport bare = Lint(R"(policies:
  api:
    layers: [{ name: user, key: "u:{user}", capacity: 10, rate: 5 }]
)");
  auto g = Rule(bare, "aggregate-flood");
  ASSERT_EQ(g.size(), 1u);
  EXPECT_THAT(g[0]->fix, HasSubstr("backend_ops_per_sec"));
}

TEST(PolicyCheck, JitterHeadroomCapacityBelowOneWindowOfRate) {
  CheckReport r = Lint(R"(policies:
  game:
    layers:
      - { name: global, key: "global", capacity: 100000, rate: 100000 }
      - { name: player, key: "p:{user}", capacity: 1, rate: 30 }
    expect: { users: 1000, backend_ops_per_sec: 200000, jitter_window_ms: 500 }
)");
  auto f = Rule(r, "jitter-headroom");
  ASSERT_EQ(f.size(), 1u) << FormatCheckText(r);
  EXPECT_EQ(Number(*f[0], "needed"), "15");  // 30/s x 0.5 s
  EXPECT_THAT(f[0]->fix, HasSubstr("capacity: 15"));
  // The command line overrides the file's window.
  CheckOptions o;
  o.jitter_window = std::chrono::seconds(2);
  CheckReport wide = Lint(R"(policies:
  game:
    layers:
      - { name: global, key: "global", capacity: 100000, rate: 100000 }
      - { name: player, key: "p:{user}", capacity: 40, rate: 30 }
)",
                          o);
  auto g = Rule(wide, "jitter-headroom");
  ASSERT_EQ(g.size(), 1u);
  EXPECT_EQ(Number(*g[0], "needed"), "60");
}

TEST(PolicyCheck, TickRateNeedsTwentyPercentHeadroom) {
  const std::string base = R"(policies:
  game:
    layers:
      - { name: global, key: "global", capacity: 100000, rate: 100000 }
      - { name: input, key: "p:{user}:{type}", capacity: RATE, rate: RATE }
    cost: { by: type, values: { input: 1, combo: 2 } }
    expect:
      users: 1000
      backend_ops_per_sec: 200000
      messages: { input: { tick_rate: 20 }, combo: { rate: 1 } }
)";
  std::vector<CheckReport> reports;
  reports.reserve(3);  // Rule() points into these
  auto with = [&](const std::string& rate) {
    std::string y = base;
    for (size_t p; (p = y.find("RATE")) != std::string::npos;) y.replace(p, 4, rate);
    reports.push_back(Lint(y));
    return Rule(reports.back(), "jitter-headroom");
  };
  auto starved = with("19");
  ASSERT_EQ(starved.size(), 1u);
  EXPECT_EQ(starved[0]->severity, Severity::kError);
  EXPECT_THAT(starved[0]->message, HasSubstr("tick rate of input"));
  auto tight = with("22");
  ASSERT_EQ(tight.size(), 1u);
  EXPECT_EQ(tight[0]->severity, Severity::kWarning);
  EXPECT_EQ(Number(*tight[0], "needed"), "24/s");
  EXPECT_TRUE(with("24").empty());
}

TEST(PolicyCheck, SharedBucketSumsTheTypesAndUsersPerIp) {
  CheckReport r = Lint(R"(policies:
  chat:
    layers:
      - { name: global, key: "global", capacity: 100000, rate: 100000 }
      - { name: ip, key: "ip:{ip}", capacity: 20, rate: 9 }
    cost: { by: type, values: { text: 1, paste: 5 } }
    expect:
      users: 4000
      ips: 1000
      backend_ops_per_sec: 200000
      messages: { text: { rate: 1 }, paste: { rate: 0.2 } }
)");
  auto f = Rule(r, "jitter-headroom");
  ASSERT_EQ(f.size(), 1u) << FormatCheckText(r);
  // 4 users per address x (1 x 1 + 0.2 x 5) = 8/s; 9/s covers it but not 8 x 1.2 = 9.6/s.
  EXPECT_EQ(Number(*f[0], "declared"), "8/s");
  EXPECT_EQ(f[0]->severity, Severity::kWarning);
}

TEST(PolicyCheck, ImpossibleCost) {
  CheckReport r = Lint(R"(policies:
  chat:
    layers:
      - { name: global, key: "global", capacity: 1000, rate: 1000 }
      - { name: user, key: "u:{user}", capacity: 3, rate: 1 }
      - { name: cand, key: "c:{user}", capacity: 2, rate: 1, shadow: true }
    cost: { by: type, values: { text: 1, paste: 5 } }
)");
  auto f = Rule(r, "impossible-cost");
  ASSERT_EQ(f.size(), 2u) << FormatCheckText(r);
  EXPECT_EQ(f[0]->severity, Severity::kError);
  EXPECT_EQ(f[0]->layer, "user");
  EXPECT_THAT(f[0]->message, HasSubstr("paste requests cost 5"));
  EXPECT_EQ(f[1]->severity, Severity::kWarning);  // a shadow layer only miscounts
  EXPECT_EQ(f[1]->layer, "cand");
}

TEST(PolicyCheck, ShadowOnlyAndInvalidPoliciesAreErrors) {
  CheckReport r = Lint(R"(policies:
  watch:
    layers: [{ name: a, key: "k:{user}", capacity: 1, rate: 1, shadow: true }]
  broken:
    layers: [{ name: a, key: "k:{User}", capacity: 1, rate: 1 }]
)");
  auto s = Rule(r, "shadow-only");
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0]->policy, "watch");
  EXPECT_EQ(s[0]->pos.line, 2);
  auto i = Rule(r, "invalid-policy");
  ASSERT_EQ(i.size(), 1u);
  EXPECT_EQ(i[0]->policy, "broken");
  EXPECT_EQ(r.exit_code(), 2);
}

TEST(PolicyCheck, MissingFields) {
  CheckReport r = Lint(R"(policies:
  api:
    layers:
      - { name: global, key: "global", capacity: 100, rate: 100 }
      - { name: tenant, key: "t:{tenant}", capacity: 10, rate: 10 }
    cost: { by: kind, values: { big: 2 } }
    expect: { request_fields: [user], backend_ops_per_sec: 200 }
)");
  auto f = Rule(r, "missing-field");
  ASSERT_EQ(f.size(), 2u) << FormatCheckText(r);
  EXPECT_EQ(f[0]->severity, Severity::kError);
  EXPECT_THAT(f[0]->message, HasSubstr("needs field 'tenant'"));
  EXPECT_EQ(f[1]->severity, Severity::kWarning);
  EXPECT_THAT(f[1]->message, HasSubstr("cost.by 'kind'"));
  EXPECT_EQ(f[1]->pos.line, 6);
}

TEST(PolicyCheck, MaxBucketsBelowExpectedIdentities) {
  CheckReport r = Lint(R"(policies:
  api:
    layers:
      - { name: global, key: "global", capacity: 100000, rate: 100000 }
      - { name: user, key: "u:{user}", capacity: 10, rate: 5, max_buckets: 1000 }
    expect: { users: 5000, backend_ops_per_sec: 200000 }
)");
  auto f = Rule(r, "max-buckets");
  ASSERT_EQ(f.size(), 1u);
  EXPECT_THAT(f[0]->message, HasSubstr("denied outright"));
  EXPECT_THAT(f[0]->fix, HasSubstr("max_buckets: 10000"));
}

TEST(PolicyCheck, UselessShadowAndMissingExpectationsAreNotes) {
  CheckReport r = Lint(R"(policies:
  api:
    layers:
      - { name: global, key: "global", capacity: 100, rate: 100 }
      - { name: user, key: "u:{user}", capacity: 10, rate: 5 }
      - { name: cand, key: "c:{user}", capacity: 20, rate: 5, shadow: true }
)");
  ASSERT_EQ(Rule(r, "useless-shadow").size(), 1u);
  ASSERT_EQ(Rule(r, "no-expectations").size(), 1u);
  EXPECT_EQ(r.exit_code(), 0) << FormatCheckText(r);  // notes do not fail a build
}

TEST(PolicyCheck, JsonOutputIsMachineReadable) {
  CheckReport r = Lint(R"(policies:
  api:
    layers: [{ name: user, key: "u:{user}", capacity: 100, rate: 100 }]
    expect: { users: 10000, backend_ops_per_sec: 150000 }
)");
  nlohmann::json j = nlohmann::json::parse(FormatCheckJson(r));
  EXPECT_EQ(j["file"], "p.yaml");
  EXPECT_EQ(j["exit_code"], 2);
  EXPECT_EQ(j["errors"], 1);
  ASSERT_FALSE(j["findings"].empty());
  const auto& f = j["findings"][0];
  EXPECT_EQ(f["rule"], "aggregate-flood");
  EXPECT_EQ(f["severity"], "error");
  EXPECT_EQ(f["policy"], "api");
  EXPECT_EQ(f["line"], 2);
  EXPECT_EQ(f["numbers"]["backend"], "150000/s");
  EXPECT_FALSE(f["fix"].get<std::string>().empty());
}

TEST(PolicyCheck, CommandReportsUnreadableFilesAndBadOptions) {
  std::ostringstream out, err;
  EXPECT_EQ(RunPolicyCheck("/nonexistent/p.yaml", CheckFormat::kText, {}, out, err), 2);
  EXPECT_THAT(err.str(), HasSubstr("/nonexistent/p.yaml"));
  std::ostringstream jout, jerr;
  EXPECT_EQ(RunPolicyCheck("/nonexistent/p.yaml", CheckFormat::kJson, {}, jout, jerr), 2);
  nlohmann::json j = nlohmann::json::parse(jout.str());
  EXPECT_EQ(j["findings"][0]["rule"], "unreadable");
  CheckOptions bad;
  bad.max_recovery = Duration(0);
  std::ostringstream bout, berr;
  EXPECT_EQ(RunPolicyCheck("/nonexistent/p.yaml", CheckFormat::kText, bad, bout, berr), 2);
  EXPECT_THAT(berr.str(), HasSubstr("max recovery must be in (0 s, 86400 s]"));
}

// ---- The shipped examples ----

namespace fs = std::filesystem;

int CheckFile(const fs::path& p, std::string* text) {
  std::ostringstream out, err;
  const int code = RunPolicyCheck(p.string(), CheckFormat::kText, {}, out, err);
  *text = out.str() + err.str();
  return code;
}

TEST(PolicyCheckExamples, WorkedExamplesAreClean) {
  for (const char* name : {"chat.yaml", "gaming.yaml", "streaming.yaml"}) {
    std::string text;
    EXPECT_EQ(CheckFile(fs::path(TOLLGATE_EXAMPLES_DIR) / name, &text), 0) << text;
  }
}

// Each classic failure is flagged by its rule; each repaired version passes clean.
TEST(PolicyCheckExamples, FailuresAreFlaggedAndRepairsAreClean) {
  const struct {
    const char* name;
    const char* rule;
    int exit_code;
  } cases[] = {{"attack-window.yaml", "attack-window", 1},
               {"aggregate-flood.yaml", "aggregate-flood", 2},
               {"no-headroom.yaml", "jitter-headroom", 1}};
  for (const auto& c : cases) {
    const fs::path broken = fs::path(TOLLGATE_EXAMPLES_DIR) / "failures" / c.name;
    auto doc = LoadPolicyDocument(broken.string(), /*validate=*/false);
    ASSERT_TRUE(doc.ok()) << doc.status();
    CheckReport r = CheckPolicies(*doc);
    EXPECT_EQ(r.exit_code(), c.exit_code) << FormatCheckText(r);
    EXPECT_FALSE(Rule(r, c.rule).empty()) << FormatCheckText(r);
    std::string text;
    EXPECT_EQ(CheckFile(fs::path(TOLLGATE_EXAMPLES_DIR) / "repaired" / c.name, &text), 0) << text;
  }
}

}  // namespace
}  // namespace tollgate
