// End-to-end tests of THROTTLE and RATE.CHECK against the real server: replies, bad input,
// policies from a YAML file, reload on SIGHUP, counters in INFO, and bucket state across restart.
#include <signal.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "gtest/gtest.h"
#include "tests/support/resp_client.h"
#include "tests/support/server_process.h"

namespace tollgate::testing {
namespace {

using std::chrono::milliseconds;

// The chat policy, as shipped in examples/policies/chat.yaml.
std::string ChatYaml() {
  std::ifstream in(TOLLGATE_CHAT_YAML);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<long long> Ints(const Reply& r) {
  std::vector<long long> v;
  if (!r || r->type != REDIS_REPLY_ARRAY) return v;
  for (size_t i = 0; i < r->elements; ++i) {
    v.push_back(r->element[i]->type == REDIS_REPLY_INTEGER ? r->element[i]->integer : -999);
  }
  return v;
}

std::string Err(const Reply& r) {
  return r && r->type == REDIS_REPLY_ERROR ? std::string(r->str, r->len) : "<not an error>";
}

void WriteFile(const std::string& path, const std::string& text) {
  std::string tmp = path + ".tmp";
  std::ofstream(tmp) << text;
  std::rename(tmp.c_str(), path.c_str());
}

class LimitServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = dir_.path() + "/policies.yaml";
    WriteFile(config_, ChatYaml());
    Start();
  }
  void Start() {
    server_ = std::make_unique<ServerProcess>(dir_.path() + "/data",
                                              std::vector<std::string>{"--config", config_});
    ASSERT_TRUE(server_->ok());
  }
  TempDir dir_;
  std::string config_;
  std::unique_ptr<ServerProcess> server_;
};

TEST_F(LimitServerTest, ThrottleRepliesExactly) {
  Client c(server_->port());
  EXPECT_EQ(Ints(c.Run({"THROTTLE", "k", "2", "0.5"})), (std::vector<long long>{1, 1, 0, 2000}));
  auto second = Ints(c.Run({"THROTTLE", "k", "2", "0.5"}));
  ASSERT_EQ(second.size(), 4u);
  EXPECT_EQ(second[0], 1);
  EXPECT_EQ(second[1], 0);
  EXPECT_EQ(second[2], 0);
  EXPECT_LE(second[3], 4000);  // 4000 ms less whatever refilled between the two calls
  EXPECT_GT(second[3], 3500);
  auto denied = Ints(c.Run({"THROTTLE", "k", "2", "0.5"}));
  ASSERT_EQ(denied.size(), 4u);
  EXPECT_EQ(denied[0], 0);
  EXPECT_EQ(denied[1], 0);
  EXPECT_GT(denied[2], 1900);  // about 2000 ms until one token is back
  EXPECT_LE(denied[2], 2000);
  EXPECT_EQ(Ints(c.Run({"THROTTLE", "never", "2", "1", "COST", "3"})),
            (std::vector<long long>{0, 2, -1, 0}));
  EXPECT_EQ(Ints(c.Run({"THROTTLE", "half", "1", "1", "COST", "0.5"})),
            (std::vector<long long>{1, 0, 0, 500}));
}

TEST_F(LimitServerTest, ThrottleBadInputConsumesNothing) {
  Client c(server_->port());
  const std::string range = "positive decimal number with at most 9 decimal places";
  for (const char* bad : {"0", "-1", "nan", "inf", "abc", "1e3", "0.0000000001"}) {
    std::string e = Err(c.Run({"THROTTLE", "k", bad, "1"}));
    EXPECT_EQ(e.rfind("ERR capacity must be a " + range, 0), 0u) << bad << ": " << e;
    e = Err(c.Run({"THROTTLE", "k", "1", bad}));
    EXPECT_EQ(e.rfind("ERR rate_per_sec must be a " + range, 0), 0u) << bad << ": " << e;
    e = Err(c.Run({"THROTTLE", "k", "1", "1", "COST", bad}));
    EXPECT_EQ(e.rfind("ERR COST must be a " + range, 0), 0u) << bad << ": " << e;
  }
  EXPECT_EQ(Err(c.Run({"THROTTLE", "k", "1", "1", "WEIGHT", "2"})),
            "ERR unknown option 'WEIGHT' for 'throttle'; accepted: COST c");
  EXPECT_EQ(Err(c.Run({"THROTTLE", "k", "1"})),
            "ERR wrong number of arguments for 'throttle' command");
  EXPECT_EQ(Err(c.Run({"THROTTLE", "", "1", "1"})),
            "ERR key must be 1 to 512 bytes long, got 0 bytes");
  // Nothing was consumed by any of that.
  EXPECT_EQ(Ints(c.Run({"THROTTLE", "k", "1", "1"})), (std::vector<long long>{1, 0, 0, 1000}));
  Reply info = c.Run({"INFO", "ratelimit"});
  std::string s(info->str, info->len);
  EXPECT_NE(s.find("throttle_allowed:1\r\nthrottle_denied:0\r\n"), std::string::npos) << s;
}

TEST_F(LimitServerTest, RateCheckLayersAndCosts) {
  Client c(server_->port());
  auto check = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {"RATE.CHECK", "chat"});
    return c.Run(args);
  };
  for (int i = 0; i < 6; ++i) {
    Reply r = check({"ip", "10.0.0.1", "user", "ann", "type", "code_paste"});
    ASSERT_EQ(r->type, REDIS_REPLY_ARRAY);
    EXPECT_EQ(r->element[0]->integer, 1) << i;
    EXPECT_EQ(r->element[1]->type, REDIS_REPLY_NIL);
  }
  Reply denied = check({"ip", "10.0.0.1", "user", "ann", "type", "code_paste"});
  EXPECT_EQ(denied->element[0]->integer, 0);
  EXPECT_EQ(std::string(denied->element[1]->str), "user_type");
  EXPECT_EQ(denied->element[2]->integer, 0);
  EXPECT_LE(denied->element[3]->integer, 500);  // 5 tokens at 10/s, less what refilled since
  EXPECT_GT(denied->element[3]->integer, 300);
  // COST overrides the table: 0.5 fits nowhere either (user_type is empty).
  Reply cheap = c.Run(
      {"RATE.CHECK", "chat", "COST", "0.5", "ip", "10.0.0.1", "user", "ann", "type", "code_paste"});
  EXPECT_EQ(cheap->element[0]->integer, 0);
  // Another type has its own bucket.
  Reply text = check({"ip", "10.0.0.1", "user", "ann", "type", "text"});
  EXPECT_EQ(text->element[0]->integer, 1);
  EXPECT_EQ(text->element[2]->integer, 29);

  EXPECT_EQ(Err(check({"ip", "1", "type", "text"})),
            "ERR policy 'chat' layer 'user_type' needs field 'user'");
  EXPECT_EQ(Err(c.Run({"RATE.CHECK", "nope"})), "ERR unknown policy 'nope'");
  EXPECT_EQ(Err(check({"ip"})), "ERR fields must be given as field value pairs");
  EXPECT_EQ(Err(check({"IP", "1"})).rfind("ERR field name 'IP' must be a lowercase identifier", 0),
            0u);
  EXPECT_EQ(Err(c.Run({"RATE.CHECK", "chat", "COST", "nan", "ip", "1", "user", "u", "type", "t"}))
                .rfind("ERR COST must be a positive decimal", 0),
            0u);
  EXPECT_EQ(Err(c.Run({"RATE.CHECK", "chat", "COST"})),
            "ERR COST needs a value: a positive decimal");

  Client i(server_->port());
  Reply info = i.Run({"INFO", "ratelimit"});
  std::string s(info->str, info->len);
  EXPECT_NE(s.find("policy_chat_layer_user_type:allowed=7,denied=2,"), std::string::npos) << s;
  // The shadow layer (20 tokens per user) admitted the first four 5-token pastes and would have
  // denied the rest; it never denied anything for real.
  EXPECT_NE(s.find("policy_chat_layer_candidate:allowed=4,denied=0,shadow_denied="),
            std::string::npos)
      << s;
  EXPECT_NE(s.find("policy_chat_latency:checks=9,"), std::string::npos) << s;
}

TEST_F(LimitServerTest, SighupReloadsAndABadFileKeepsTheOldPolicies) {
  Client c(server_->port());
  EXPECT_EQ(Err(c.Run({"RATE.CHECK", "api", "k", "v"})), "ERR unknown policy 'api'");
  WriteFile(config_, ChatYaml() +
                         "  api:\n    layers:\n      - { name: all, key: \"a\", capacity: 1, "
                         "rate: 1 }\n");
  kill(server_->pid(), SIGHUP);
  Reply r;
  for (int i = 0; i < 200; ++i) {
    r = c.Run({"RATE.CHECK", "api"});
    if (r->type == REDIS_REPLY_ARRAY) break;
    std::this_thread::sleep_for(milliseconds(10));
  }
  ASSERT_EQ(r->type, REDIS_REPLY_ARRAY);
  EXPECT_EQ(r->element[0]->integer, 1);
  // A broken file: logged, old policies stay, their buckets too.
  WriteFile(config_, "policies:\n  api: [ this is not valid\n");
  kill(server_->pid(), SIGHUP);
  std::this_thread::sleep_for(milliseconds(300));
  Reply again = c.Run({"RATE.CHECK", "api"});
  ASSERT_EQ(again->type, REDIS_REPLY_ARRAY);
  EXPECT_EQ(again->element[0]->integer, 0);  // still the same bucket: state survived
  Reply info = c.Run({"INFO", "ratelimit"});
  std::string s(info->str, info->len);
  // The broken file was counted as a failed reload (by SIGHUP and/or the file watcher).
  EXPECT_NE(s.find("config_reloads_failed:"), std::string::npos) << s;
  EXPECT_EQ(s.find("config_reloads_failed:0\r\n"), std::string::npos) << s;
}

TEST_F(LimitServerTest, RestartDoesNotHandOutFullBuckets) {
  Client c(server_->port());
  for (int i = 0; i < 5; ++i) ASSERT_EQ(Ints(c.Run({"THROTTLE", "r", "5", "0.01"}))[0], 1);
  for (int i = 0; i < 30; ++i) {
    ASSERT_EQ(
        c.Run({"RATE.CHECK", "chat", "ip", "1", "user", "u", "type", "text"})->element[0]->integer,
        1);
  }
  ASSERT_EQ(server_->Terminate(), 0);
  Start();
  Client d(server_->port());
  EXPECT_EQ(Ints(d.Run({"THROTTLE", "r", "5", "0.01"}))[0], 0);
  // user_type refills 10 tokens/s, so a slow restart may have earned a few back; a fresh bucket
  // would have 29 left after this request.
  Reply r = d.Run({"RATE.CHECK", "chat", "ip", "1", "user", "u", "type", "text"});
  ASSERT_EQ(r->type, REDIS_REPLY_ARRAY);
  EXPECT_LT(r->element[2]->integer, 20);
}

TEST_F(LimitServerTest, CheckpointSurvivesKillNine) {
  Client c(server_->port());
  for (int i = 0; i < 5; ++i) ASSERT_EQ(Ints(c.Run({"THROTTLE", "k9", "5", "0.01"}))[0], 1);
  std::this_thread::sleep_for(milliseconds(2200));  // at least one checkpoint (every second)
  server_->Kill();
  Start();
  Client d(server_->port());
  EXPECT_EQ(Ints(d.Run({"THROTTLE", "k9", "5", "0.01"}))[0], 0);
}

}  // namespace
}  // namespace tollgate::testing
