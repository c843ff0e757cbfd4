// Scenario YAML: the built-ins load, and every error names file:line:col and the key path.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

#include "tollgate/simulate.h"

namespace tollgate::sim {
namespace {

using ::testing::HasSubstr;

std::string Err(std::string_view yaml) {
  auto s = ParseScenarioYaml(yaml, "s.yaml", "");
  EXPECT_FALSE(s.ok()) << yaml;
  return s.ok() ? "" : std::string(s.status().message());
}

constexpr char kMinimal[] = "users: { count: 10, traffic: chat }\n";

TEST(ScenarioTest, BuiltinsLoadAndMatchTheShippedFiles) {
  const std::vector<std::string> names = BuiltinScenarioNames();
  for (const char* want :
       {"aggregate-flood", "attack-window", "chat", "gaming", "jitter-4g", "replay", "streaming"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), want), names.end()) << want;
  }
  for (const std::string& n : names) {
    auto builtin = LoadScenario(n);
    ASSERT_TRUE(builtin.ok()) << builtin.status();
    auto file = LoadScenario(std::string(TOLLGATE_EXAMPLES_DIR) + "/scenarios/" + n + ".yaml");
    ASSERT_TRUE(file.ok()) << file.status();
    EXPECT_EQ(builtin->name, file->name);
    EXPECT_EQ(builtin->users, file->users);
    EXPECT_EQ(builtin->attackers.size(), file->attackers.size());
    EXPECT_EQ(builtin->replay.has_value(), file->replay.has_value());
    if (builtin->replay) {
      EXPECT_EQ(builtin->replay->rows.size(), file->replay->rows.size());
    }
  }
  auto missing = LoadScenario("no-such-scenario");
  EXPECT_THAT(std::string(missing.status().message()),
              HasSubstr("--scenario: 'no-such-scenario' is neither a readable file nor a built-in "
                        "scenario (built-in: aggregate-flood, attack-window"));
}

TEST(ScenarioTest, ParsesEverySection) {
  auto s = ParseScenarioYaml(R"(
name: t
description: d
policy: p
seed: 9
duration: 1h30m
backend_capacity: 1000
fields: { user: player, ip: addr, type: action }
derived_fields:
  - { name: match, prefix: m, users_per_value: 10 }
users:
  count: 100
  per_ip: 4
  start_spread_s: 2
  traffic: { chat: 1, mygame: 3 }
  network: { ethernet: 1, lossy: 1 }
traffic_models:
  mygame: { model: gaming, tick_rate: 30, types: { input: move, ability: "" } }
  chat: { message_mean_s: 2 }
network_models:
  lossy: { base: 4g, loss: 0.1 }
  ethernet: { latency_ms: 1 }
attackers:
  - { name: f, kind: flooder, rate: 10 }
  - { name: b, kind: botnet, identities: 5, ips: 2, rate: auto, start_s: 3, duration_s: 4 }
  - { name: s, kind: spread, rate: 100, identities: 9, ips: 3, type: move, network: lossy }
)",
                             "s.yaml", "");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->seed, 9u);
  EXPECT_EQ(s->duration, std::chrono::minutes(90));
  EXPECT_EQ(*s->backend_capacity, 1000);
  EXPECT_EQ(s->user_field, "player");
  EXPECT_EQ(s->derived_fields[0].users_per_value, 10u);
  EXPECT_EQ(s->traffic_models["mygame"].tick_rate, 30);
  EXPECT_EQ(s->traffic_models["mygame"].types["ability"], "");
  EXPECT_EQ(s->traffic_models["chat"].message_mean_s, 2);
  EXPECT_EQ(s->network_models["lossy"].loss, 0.1);
  EXPECT_EQ(s->network_models["lossy"].latency_ms, 40);  // from its base
  EXPECT_EQ(s->network_models["ethernet"].latency_ms, 1);
  ASSERT_EQ(s->attackers.size(), 3u);
  EXPECT_EQ(s->attackers[1].rate, 0);  // auto
  EXPECT_EQ(*s->attackers[1].duration_s, 4);
  EXPECT_EQ(s->attackers[2].network, "lossy");
}

TEST(ScenarioTest, ErrorsNameFileLineColumnAndPath) {
  EXPECT_THAT(Err(std::string(kMinimal) + "colour: red\n"),
              HasSubstr("s.yaml:2:1: colour: unknown key (expected one of: name, description"));
  EXPECT_THAT(Err("users: { count: 10, traffic: chat, speed: 1 }\n"),
              HasSubstr("s.yaml:1:36: users.speed: unknown key"));
  EXPECT_THAT(Err("users: { count: 10, traffic: tv }\n"),
              HasSubstr("s.yaml:1:30: users.traffic: unknown traffic model 'tv' (known: chat, "
                        "gaming, streaming)"));
  EXPECT_THAT(Err("users: { count: 10, traffic: chat, network: { 5g: 1 } }\n"),
              HasSubstr("s.yaml:1:47: users.network: unknown network model '5g'"));
  EXPECT_THAT(Err("users: { count: 10 }\n"), HasSubstr("s.yaml:1:1: users.traffic: required key"));
  EXPECT_THAT(
      Err(std::string(kMinimal) + "network_models:\n  4g: { loss: 0.9 }\n"),
      HasSubstr("s.yaml:3:3: network_models.4g: loss must be a number in [0, 0.5], got 0.9"));
  EXPECT_THAT(Err(std::string(kMinimal) + "network_models:\n  4g: { los: 0.1 }\n"),
              HasSubstr("s.yaml:3:9: network_models.4g.los: unknown key"));
  EXPECT_THAT(Err(std::string(kMinimal) + "traffic_models:\n  x: { tick_rate: 3 }\n"),
              HasSubstr("s.yaml:3:3: traffic_models.x: a new traffic model needs 'model:"));
  EXPECT_THAT(Err(std::string(kMinimal) + "traffic_models:\n  gaming: { combo_size: 0 }\n"),
              HasSubstr("traffic_models.gaming: combo_size must be an integer in [1, 1000]"));
  EXPECT_THAT(Err(std::string(kMinimal) + "duration: 2d\n"),
              HasSubstr("s.yaml:2:11: duration: duration must be like 90s"));
  EXPECT_THAT(Err(std::string(kMinimal) + "seed: -1\n"), HasSubstr("s.yaml:2:7: seed: expected"));
  EXPECT_THAT(Err(std::string(kMinimal) + "attackers:\n  - { name: a, kind: ddos, rate: 1 }\n"),
              HasSubstr("s.yaml:3:22: attackers[0].kind: unknown attacker kind 'ddos'"));
  EXPECT_THAT(Err(std::string(kMinimal) + "attackers:\n  - { name: a, kind: flooder }\n"),
              HasSubstr("attackers[0].rate: required for a flooder"));
  EXPECT_THAT(Err(std::string(kMinimal) + "attackers:\n  - { kind: flooder, rate: 1 }\n"),
              HasSubstr("attackers[0].name: required key is missing"));
  EXPECT_THAT(Err(std::string(kMinimal) + "fields: { user: User }\n"),
              HasSubstr("s.yaml:2:17: fields.user: 'User' is not a field name"));
  EXPECT_THAT(Err(std::string(kMinimal) + "derived_fields: [ { name: user } ]\n"),
              HasSubstr("derived_fields: 'user' is already the user, ip or type field"));
  EXPECT_THAT(Err(std::string(kMinimal) + "replay: { file: nope.jsonl }\n"),
              HasSubstr("s.yaml:2:17: replay.file: cannot read 'nope.jsonl'"));
  EXPECT_THAT(Err("seed: 1\nseed: 2\n" + std::string(kMinimal)),
              HasSubstr("s.yaml:2:1: seed: duplicate key"));
  EXPECT_THAT(Err("users: [\n"), HasSubstr("s.yaml:2:1: YAML syntax error"));
  EXPECT_THAT(Err("seed: 1\n"), HasSubstr("the scenario sends nothing"));
  EXPECT_THAT(Err(""), HasSubstr("s.yaml: the file is empty"));
}

// YAML::LoadAll never returned on these (it allocated empty documents until the process ran out
// of memory).
TEST(ScenarioTest, StrayTokenAtTopLevelIsASyntaxError) {
  EXPECT_THAT(Err(","), HasSubstr("s.yaml:1:1: YAML syntax error: unexpected ','"));
  EXPECT_THAT(Err("{users: {count: 1, traffic: chat}},"),
              HasSubstr("s.yaml:1:35: YAML syntax error: unexpected ','"));
}

TEST(ScenarioTest, ReplayRowErrorsNameTheLogFile) {
  auto s = ParseScenarioYaml("replay: { file: replay-sample.jsonl, format: csv }\n", "builtin:x",
                             "builtin:");
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.status().message()),
              HasSubstr("builtin:replay-sample.jsonl:1:1: column '{\"timestamp\": 0.049' is not a "
                        "field name"));
}

TEST(ScenarioTest, Durations) {
  EXPECT_EQ(*ParseSimDuration("90s"), std::chrono::seconds(90));
  EXPECT_EQ(*ParseSimDuration("10m"), std::chrono::minutes(10));
  EXPECT_EQ(*ParseSimDuration("1h"), std::chrono::hours(1));
  EXPECT_EQ(*ParseSimDuration("1h30m"), std::chrono::minutes(90));
  EXPECT_EQ(*ParseSimDuration("500ms"), std::chrono::milliseconds(500));
  EXPECT_EQ(*ParseSimDuration("2.5s"), std::chrono::milliseconds(2500));
  EXPECT_EQ(*ParseSimDuration("30"), std::chrono::seconds(30));
  for (const char* bad : {"", "0s", "25h", "1d", "s", "1 m", "-1s", "1.2.3s", "1m30"}) {
    EXPECT_FALSE(ParseSimDuration(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace tollgate::sim
