#include "tollgate/policy_config.h"

#include <stdlib.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <ostream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tollgate/limiter.h"

namespace tollgate {

void PrintTo(Decimal d, std::ostream* os) { *os << d.ToString(); }

namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

namespace fs = std::filesystem;

constexpr char kChatExample[] = R"(policies:
  chat:
    layers:
      - { name: global,    key: "global",             capacity: 95000, rate: 95000 }
      - { name: ip,        key: "ip:{ip}",            capacity: 100,   rate: 100 }
      - { name: user_type, key: "user:{user}:{type}", capacity: 30,    rate: 10 }
      - { name: candidate, key: "user:{user}",        capacity: 20,    rate: 5, shadow: true }
    cost:
      by: type
      values: { text: 1, code_paste: 5, cursor: 0.5 }
      default: 1
)";

Decimal Nanos(uint64_t n) { return Decimal{n}; }
Decimal Units(uint64_t n) { return Decimal::Units(n); }

LayerSpec Layer(std::string name, std::string key, Decimal capacity, Decimal rate,
                bool shadow = false) {
  LayerSpec l;
  l.name = std::move(name);
  l.key_template = std::move(key);
  l.params = {capacity, rate};
  l.shadow = shadow;
  return l;
}

PolicySpec ExpectedChat() {
  PolicySpec p;
  p.name = "chat";
  p.layers = {Layer("global", "global", Units(95000), Units(95000)),
              Layer("ip", "ip:{ip}", Units(100), Units(100)),
              Layer("user_type", "user:{user}:{type}", Units(30), Units(10)),
              Layer("candidate", "user:{user}", Units(20), Units(5), /*shadow=*/true)};
  p.cost.by = "type";
  p.cost.values = {{"text", Units(1)}, {"code_paste", Units(5)}, {"cursor", Nanos(500000000)}};
  p.cost.default_cost = Units(1);
  return p;
}

void ExpectSameSpec(const PolicySpec& got, const PolicySpec& want) {
  SCOPED_TRACE("policy " + want.name);
  EXPECT_EQ(got.name, want.name);
  ASSERT_EQ(got.layers.size(), want.layers.size());
  for (size_t i = 0; i < want.layers.size(); ++i) {
    SCOPED_TRACE("layer " + want.layers[i].name);
    const LayerSpec& g = got.layers[i];
    const LayerSpec& w = want.layers[i];
    EXPECT_EQ(g.name, w.name);
    EXPECT_EQ(g.key_template, w.key_template);
    EXPECT_EQ(g.params.capacity, w.params.capacity);
    EXPECT_EQ(g.params.rate, w.params.rate);
    EXPECT_EQ(g.shadow, w.shadow);
    EXPECT_EQ(g.max_buckets, w.max_buckets);
    EXPECT_EQ(g.overflow, w.overflow);
  }
  EXPECT_EQ(got.cost.by, want.cost.by);
  EXPECT_EQ(got.cost.values, want.cost.values);
  EXPECT_EQ(got.cost.default_cost, want.cost.default_cost);
}

// "f.yaml:LINE:COL" (1-based) of the first occurrence of `needle` in `text`.
std::string At(std::string_view text, std::string_view needle) {
  const size_t pos = text.find(needle);
  EXPECT_NE(pos, std::string_view::npos) << needle;
  if (pos == std::string_view::npos) return "?";
  size_t line = 1, col = 1;
  for (size_t i = 0; i < pos; ++i) {
    if (text[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return "f.yaml:" + std::to_string(line) + ":" + std::to_string(col);
}

// ---- Parsing ----

TEST(ParsePolicyYaml, ParsesTheReferenceExampleExactly) {
  auto specs = ParsePolicyYaml(kChatExample, "chat.yaml");
  ASSERT_TRUE(specs.ok()) << specs.status();
  ASSERT_EQ(specs->size(), 1u);
  ExpectSameSpec((*specs)[0], ExpectedChat());
  EXPECT_EQ((*specs)[0].cost.values[2].second.nanos, 500000000u);
}

TEST(ParsePolicyYaml, OptionalKeysHaveDefaults) {
  auto specs = ParsePolicyYaml(R"(
policies:
  api:
    layers:
      - name: user
        key: "u:{user}"
        capacity: 3
        rate: 1
)",
                               "f.yaml");
  ASSERT_TRUE(specs.ok()) << specs.status();
  ASSERT_EQ(specs->size(), 1u);
  const PolicySpec& p = (*specs)[0];
  ASSERT_EQ(p.layers.size(), 1u);
  EXPECT_FALSE(p.layers[0].shadow);
  EXPECT_EQ(p.layers[0].max_buckets, 1'000'000u);
  EXPECT_EQ(p.layers[0].overflow, OverflowPolicy::kDeny);
  EXPECT_EQ(p.cost.by, "");
  EXPECT_TRUE(p.cost.values.empty());
  EXPECT_EQ(p.cost.default_cost, Units(1));
}

TEST(ParsePolicyYaml, ExtensionsAndExactDecimals) {
  auto specs = ParsePolicyYaml(R"(policies:
  b:
    layers:
      - { name: a, key: "x:{x}", capacity: 0.1, rate: "1.000000001", max_buckets: 42,
          on_limit: fail_open, shadow: false }
      - { name: c, key: "y", capacity: .5, rate: 7., on_limit: deny, shadow: true }
    cost: { default: 2.5 }
  a:
    layers: [ { name: z, key: "z", capacity: 1, rate: 1 } ]
    cost: { by: kind }
)",
                               "f.yaml");
  ASSERT_TRUE(specs.ok()) << specs.status();
  ASSERT_EQ(specs->size(), 2u);
  const PolicySpec& b = (*specs)[0];  // file order is kept
  EXPECT_EQ(b.name, "b");
  EXPECT_EQ(b.layers[0].params.capacity, Nanos(100000000));
  EXPECT_EQ(b.layers[0].params.rate, Nanos(1000000001));
  EXPECT_EQ(b.layers[0].max_buckets, 42u);
  EXPECT_EQ(b.layers[0].overflow, OverflowPolicy::kFailOpen);
  EXPECT_FALSE(b.layers[0].shadow);
  EXPECT_EQ(b.layers[1].params.capacity, Nanos(500000000));
  EXPECT_EQ(b.layers[1].params.rate, Units(7));
  EXPECT_EQ(b.layers[1].overflow, OverflowPolicy::kDeny);
  EXPECT_TRUE(b.layers[1].shadow);
  EXPECT_EQ(b.cost.by, "");
  EXPECT_EQ(b.cost.default_cost, Nanos(2500000000));
  EXPECT_EQ((*specs)[1].name, "a");
  EXPECT_EQ((*specs)[1].cost.by, "kind");
  EXPECT_TRUE((*specs)[1].cost.values.empty());
}

struct ErrorCase {
  const char* name;
  std::string yaml;
  const char* needle;  // where the error must point (first occurrence)
  const char* path;    // the field it must name
  const char* what;    // part of the explanation
};

std::string OneLayer(std::string_view layer_body) {
  return "policies:\n  chat:\n    layers:\n      - { " + std::string(layer_body) + " }\n";
}
std::string WithCost(std::string_view cost_body) {
  return "policies:\n  chat:\n    layers:\n      - { name: l, key: \"k\", capacity: 1, rate: 1 }\n"
         "    cost:\n" +
         std::string(cost_body);
}

void PrintTo(const ErrorCase& c, std::ostream* os) { *os << c.name; }

class ParseErrorTest : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(ParseErrorTest, NamesFileLineAndField) {
  const ErrorCase& c = GetParam();
  auto specs = ParsePolicyYaml(c.yaml, "f.yaml");
  ASSERT_FALSE(specs.ok()) << c.yaml;
  EXPECT_EQ(specs.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string msg(specs.status().message());
  const std::string prefix = At(c.yaml, c.needle) + ": " + c.path + ": ";
  EXPECT_THAT(msg, StartsWith(prefix)) << c.yaml;
  EXPECT_THAT(msg, HasSubstr(c.what));
}

INSTANTIATE_TEST_SUITE_P(
    Errors, ParseErrorTest,
    ::testing::Values(
        // Unknown keys (typos).
        ErrorCase{"UnknownLayerKey", OneLayer("name: l, key: \"k\", capacity: 1, rte: 1"), "rte",
                  "policies.chat.layers[0].rte", "unknown key"},
        ErrorCase{"UnknownPolicyKey", "policies:\n  chat:\n    layer: []\n", "layer",
                  "policies.chat.layer", "unknown key"},
        ErrorCase{"UnknownTopLevelKey", "policy:\n  chat: {}\n", "policy", "policy", "unknown key"},
        ErrorCase{"UnknownCostKey", WithCost("      defualt: 1\n"), "defualt",
                  "policies.chat.cost.defualt", "unknown key"},
        // Numbers.
        ErrorCase{"NaN", OneLayer("name: l, key: \"k\", capacity: 1, rate: .nan"), ".nan",
                  "policies.chat.layers[0].rate", "got '.nan'"},
        ErrorCase{"Infinity", OneLayer("name: l, key: \"k\", capacity: .inf, rate: 1"), ".inf",
                  "policies.chat.layers[0].capacity", "positive decimal"},
        ErrorCase{"Negative", OneLayer("name: l, key: \"k\", capacity: 1, rate: -1"), "-1",
                  "policies.chat.layers[0].rate", "got '-1'"},
        ErrorCase{"Zero", OneLayer("name: l, key: \"k\", capacity: 0, rate: 1"), "0,",
                  "policies.chat.layers[0].capacity", "got '0'"},
        ErrorCase{"NotANumber", OneLayer("name: l, key: \"k\", capacity: 1, rate: fast"), "fast",
                  "policies.chat.layers[0].rate", "got 'fast'"},
        ErrorCase{"Exponent", OneLayer("name: l, key: \"k\", capacity: 1, rate: 1e5"), "1e5",
                  "policies.chat.layers[0].rate", "got '1e5'"},
        ErrorCase{"TooManyDecimals",
                  OneLayer("name: l, key: \"k\", capacity: 1, rate: 0.0000000001"), "0.0000000001",
                  "policies.chat.layers[0].rate", "at most 9 decimal places"},
        ErrorCase{"AboveMaxRate", OneLayer("name: l, key: \"k\", capacity: 1, rate: 1000000001"),
                  "1000000001", "policies.chat.layers[0].rate", "at most 1000000000"},
        ErrorCase{"NullNumber", OneLayer("name: l, key: \"k\", capacity: 1, rate: ~"), "rate: ~",
                  "policies.chat.layers[0].rate", "expected a number, got nothing"},
        ErrorCase{"NegativeCost", WithCost("      by: type\n      values: { text: -1 }\n"), "-1",
                  "policies.chat.cost.values.text", "got '-1'"},
        ErrorCase{"BadDefaultCost", WithCost("      default: 0\n"), "0\n",
                  "policies.chat.cost.default", "got '0'"},
        ErrorCase{"MaxBucketsZero",
                  OneLayer("name: l, key: \"k\", capacity: 1, rate: 1, max_buckets: 0"), "0 }",
                  "policies.chat.layers[0].max_buckets", "whole number"},
        ErrorCase{"MaxBucketsFraction",
                  OneLayer("name: l, key: \"k\", capacity: 1, rate: 1, max_buckets: 1.5"), "1.5",
                  "policies.chat.layers[0].max_buckets", "got '1.5'"},
        ErrorCase{"MaxBucketsHuge",
                  OneLayer("name: l, key: \"k\", capacity: 1, rate: 1, max_buckets: 99999999999"),
                  "99999999999", "policies.chat.layers[0].max_buckets", "from 1 to 1000000000"},
        // Enumerations.
        ErrorCase{"ShadowYes", OneLayer("name: l, key: \"k\", capacity: 1, rate: 1, shadow: yes"),
                  "yes", "policies.chat.layers[0].shadow", "expected true or false, got 'yes'"},
        ErrorCase{"OnLimitUnknown",
                  OneLayer("name: l, key: \"k\", capacity: 1, rate: 1, on_limit: drop"), "drop",
                  "policies.chat.layers[0].on_limit", "expected deny or fail_open"},
        // Wrong node types.
        ErrorCase{"PoliciesIsAList", "policies:\n  - chat\n", "- chat", "policies",
                  "expected a map, got a list"},
        ErrorCase{"PoliciesIsNull", "policies:\n", "policies", "policies",
                  "expected a map, got nothing"},
        ErrorCase{"CostIsNull", WithCost(""), "cost", "policies.chat.cost",
                  "expected a map, got nothing"},
        ErrorCase{"CostIsAScalar", WithCost("      free\n"), "free", "policies.chat.cost",
                  "expected a map, got a single value"},
        ErrorCase{"PolicyIsNull", "policies:\n  chat:\n", "chat", "policies.chat",
                  "expected a map, got nothing"},
        ErrorCase{"LayersIsAMap", "policies:\n  chat:\n    layers: { a: 1 }\n", "{ a",
                  "policies.chat.layers", "expected a list of layers, got a map"},
        ErrorCase{"LayerIsAList", "policies:\n  chat:\n    layers:\n      - [l, k, 1, 1]\n", "[l",
                  "policies.chat.layers[0]", "expected a map, got a list"},
        ErrorCase{"NameIsAMap", OneLayer("name: {a: 1}, key: \"k\", capacity: 1, rate: 1"), "{a",
                  "policies.chat.layers[0].name", "expected a name, got a map"},
        ErrorCase{"CostValuesIsAList", WithCost("      by: type\n      values: [1, 2]\n"), "[1",
                  "policies.chat.cost.values", "expected a map, got a list"},
        ErrorCase{"NumberIsAList", OneLayer("name: l, key: \"k\", capacity: [1], rate: 1"), "[1]",
                  "policies.chat.layers[0].capacity", "expected a number, got a list"},
        ErrorCase{"KeyIsAList", "policies:\n  [a, b]: {}\n", "[a", "policies",
                  "a key must be a single value"},
        // Missing and duplicate keys.
        ErrorCase{"MissingRate", OneLayer("name: l, key: \"k\", capacity: 1"), "{ name",
                  "policies.chat.layers[0].rate", "required key is missing"},
        ErrorCase{"MissingLayers", "policies:\n  chat:\n    cost: {}\n", "cost",
                  "policies.chat.layers", "required key is missing"},
        ErrorCase{"MissingPolicies", "{}\n", "{}", "policies", "required key is missing"},
        ErrorCase{"DuplicateLayerKey",
                  OneLayer("name: l, key: \"k\", capacity: 1, rate: 1, rate:  2"), "rate:  2",
                  "policies.chat.layers[0].rate", "duplicate key"},
        ErrorCase{"DuplicatePolicy",
                  "policies:\n  chat:\n    layers: [{ name: l, key: k, capacity: 1, rate: 1 }]\n"
                  "  chat: # again\n    layers: [{ name: l, key: k, capacity: 1, rate: 1 }]\n",
                  "chat: # again", "policies.chat", "duplicate key"},
        ErrorCase{"DuplicateCostValue",
                  WithCost("      by: type\n      values: { text: 1, text:  2 }\n"), "text:  2",
                  "policies.chat.cost.values.text", "duplicate key"},
        // Structure.
        ErrorCase{"NoPolicies", "policies: {}\n", "{}", "policies", "defines no policies"},
        ErrorCase{"NoLayers", "policies:\n  chat:\n    layers: []\n", "[]", "policies.chat.layers",
                  "needs at least one layer"},
        ErrorCase{"ValuesWithoutBy", WithCost("      values: { text: 1 }\n"), "values",
                  "policies.chat.cost.values", "needs cost.by"},
        // ValidatePolicy, reported at the policy's line.
        ErrorCase{"BadTemplate", OneLayer("name: l, key: \"ip:{IP}\", capacity: 1, rate: 1"),
                  "chat", "policies.chat", "layer 'l' key: field name 'IP'"},
        ErrorCase{"AllShadow", OneLayer("name: l, key: \"k\", capacity: 1, rate: 1, shadow: true"),
                  "chat", "policies.chat", "every layer is shadow"},
        ErrorCase{"DuplicateLayerName",
                  "policies:\n  chat:\n    layers:\n      - { name: l, key: a, capacity: 1, rate: "
                  "1 }\n      - { name: l, key: b, capacity: 1, rate: 1 }\n",
                  "chat", "policies.chat", "duplicate layer name"},
        ErrorCase{"BadPolicyName",
                  "policies:\n  \"no spaces\":\n    layers: [{ name: l, key: k, capacity: 1, "
                  "rate: 1 }]\n",
                  "\"no spaces\"", "policies.no spaces", "name must be"},
        ErrorCase{"BadCostBy", WithCost("      by: Type\n"), "chat", "policies.chat",
                  "cost.by: 'Type' is not a lowercase identifier"}),
    [](const ::testing::TestParamInfo<ErrorCase>& info) { return std::string(info.param.name); });

TEST(ParsePolicyYaml, SyntaxErrorNamesFileAndLine) {
  auto specs = ParsePolicyYaml("policies:\n  chat:\n    layers: [ { name: a\n", "f.yaml");
  ASSERT_FALSE(specs.ok());
  EXPECT_EQ(specs.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(specs.status().message()),
              testing::MatchesRegex("f\\.yaml:[34]:[0-9]+: YAML syntax error: .*"));
}

TEST(ParsePolicyYaml, UnknownAliasIsAnErrorNotAnException) {
  auto specs = ParsePolicyYaml("policies: *nowhere\n", "f.yaml");
  ASSERT_FALSE(specs.ok());
  EXPECT_THAT(std::string(specs.status().message()), StartsWith("f.yaml:1:"));
}

// YAML::LoadAll never returned on these (it allocated empty documents until the process ran out
// of memory): a policy file with a stray comma took the server down on reload.
TEST(ParsePolicyYaml, StrayTokenAtTopLevelIsASyntaxError) {
  for (const std::string text : {",", "{policies: {}},", "policies: {}\n,\n"}) {
    auto specs = ParsePolicyYaml(text, "f.yaml");
    ASSERT_FALSE(specs.ok()) << text;
    EXPECT_EQ(specs.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(specs.status().message()),
                testing::MatchesRegex("f\\.yaml:[12]:[0-9]+: YAML syntax error: .*"))
        << text;
  }
}

TEST(ParsePolicyYaml, EmptyFileAndMultipleDocuments) {
  for (const char* empty : {"", "# nothing here\n", "---\n"}) {
    auto specs = ParsePolicyYaml(empty, "f.yaml");
    ASSERT_FALSE(specs.ok()) << empty;
    EXPECT_THAT(std::string(specs.status().message()), StartsWith("f.yaml: the file is empty"));
  }
  const std::string two = std::string(kChatExample) + "---\npolicies: {}\n";
  auto specs = ParsePolicyYaml(two, "f.yaml");
  ASSERT_FALSE(specs.ok());
  EXPECT_THAT(std::string(specs.status().message()), StartsWith("f.yaml:13:"));
  EXPECT_THAT(std::string(specs.status().message()), HasSubstr("only one YAML document"));
}

TEST(LoadPolicyFile, UnreadableFilesNameThePath) {
  auto missing = LoadPolicyFile("/nonexistent/dir/policies.yaml");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("/nonexistent/dir/policies.yaml"));
  auto dir = LoadPolicyFile("/tmp");
  EXPECT_EQ(dir.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(dir.status().message()), HasSubstr("/tmp"));
}

// ---- Example files ----

TEST(ExamplePolicies, EveryExampleParsesAndInstalls) {
  std::set<std::string> seen;
  for (const auto& entry : fs::directory_iterator(TOLLGATE_EXAMPLES_DIR)) {
    if (entry.path().extension() != ".yaml") continue;
    SCOPED_TRACE(entry.path().string());
    seen.insert(entry.path().filename().string());
    auto specs = LoadPolicyFile(entry.path().string());
    ASSERT_TRUE(specs.ok()) << specs.status();
    EXPECT_FALSE(specs->empty());
    PolicyEngine engine({});
    EXPECT_TRUE(engine.Install(*specs).ok());
  }
  EXPECT_TRUE(seen.count("chat.yaml"));
  EXPECT_TRUE(seen.count("gaming.yaml"));
  EXPECT_TRUE(seen.count("streaming.yaml"));
}

TEST(ExamplePolicies, ChatExampleMatchesTheReferenceFormat) {
  auto specs = LoadPolicyFile(std::string(TOLLGATE_EXAMPLES_DIR) + "/chat.yaml");
  ASSERT_TRUE(specs.ok()) << specs.status();
  ASSERT_EQ(specs->size(), 1u);
  ExpectSameSpec((*specs)[0], ExpectedChat());
}

// ---- Watcher ----

std::string PolicyWithRate(int rate) {
  return "policies:\n  p:\n    layers:\n      - { name: l, key: \"k:{id}\", capacity: 10, rate: " +
         std::to_string(rate) + " }\n";
}

// Records installer calls; returns `result` from each.
class Recorder {
 public:
  PolicyFileWatcher::Installer Fn() {
    return [this](std::vector<PolicySpec> specs) {
      std::lock_guard<std::mutex> l(mu_);
      calls_.push_back(std::move(specs));
      cv_.notify_all();
      return result_;
    };
  }
  void set_result(absl::Status st) {
    std::lock_guard<std::mutex> l(mu_);
    result_ = std::move(st);
  }
  size_t count() {
    std::lock_guard<std::mutex> l(mu_);
    return calls_.size();
  }
  // The rate of the last installed policy set's first layer (-1 if none was installed).
  int64_t last_rate() {
    std::lock_guard<std::mutex> l(mu_);
    if (calls_.empty()) return -1;
    return static_cast<int64_t>(calls_.back().at(0).layers.at(0).params.rate.nanos /
                                Decimal::kScale);
  }
  // Waits (up to a generous bound; this waits for a background event, it does not time it) until
  // at least n calls were made. Returns the rate of the last call's first layer, or -1.
  int64_t WaitForCall(size_t n) {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait_for(l, std::chrono::seconds(5), [&] { return calls_.size() >= n; });
    if (calls_.size() < n) return -1;
    return static_cast<int64_t>(calls_.back().at(0).layers.at(0).params.rate.nanos /
                                Decimal::kScale);
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::vector<PolicySpec>> calls_;
  absl::Status result_;
};

class WatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::path(::testing::TempDir()) / "policy_config_test.XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    path_ = (fs::path(dir_) / "policies.yaml").string();
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  void WriteInPlace(const std::string& text) {
    std::ofstream f(path_, std::ios::trunc);
    f << text;
  }
  // The way editors and deploy tools replace a file: write a sibling, rename it over.
  void WriteAndRename(const std::string& text) {
    const std::string tmp = path_ + ".tmp";
    {
      std::ofstream f(tmp, std::ios::trunc);
      f << text;
    }
    fs::rename(tmp, path_);
  }
  template <class Pred>
  static bool PollUntil(Pred pred) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!pred()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return true;
  }

  std::string dir_, path_;
  Recorder rec_;
};

TEST_F(WatcherTest, StartLoadsAndReloadRereads) {
  WriteInPlace(PolicyWithRate(1));
  PolicyFileWatcher w(path_, rec_.Fn());
  ASSERT_TRUE(w.Start().ok());
  EXPECT_EQ(rec_.WaitForCall(1), 1);
  EXPECT_EQ(w.reloads_ok(), 1u);

  // Reload() re-reads now (what SIGHUP does), even when nothing changed.
  ASSERT_TRUE(w.Reload().ok());
  EXPECT_EQ(rec_.WaitForCall(2), 1);
  EXPECT_EQ(w.reloads_ok(), 2u);
  EXPECT_EQ(w.reloads_failed(), 0u);
  EXPECT_EQ(w.Start().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(WatcherTest, ReloadWithoutStart) {
  WriteInPlace(PolicyWithRate(3));
  PolicyFileWatcher w(path_, rec_.Fn());
  ASSERT_TRUE(w.Reload().ok());
  EXPECT_EQ(rec_.WaitForCall(1), 3);
}

TEST_F(WatcherTest, FileChangesAreInstalled) {
  WriteInPlace(PolicyWithRate(1));
  PolicyFileWatcher w(path_, rec_.Fn());
  ASSERT_TRUE(w.Start().ok());
  ASSERT_EQ(rec_.WaitForCall(1), 1);

  WriteInPlace(PolicyWithRate(2));
  EXPECT_EQ(rec_.WaitForCall(2), 2);

  WriteAndRename(PolicyWithRate(3));
  EXPECT_EQ(rec_.WaitForCall(3), 3);

  // Deleted and recreated, as some deploy tools do.
  fs::remove(path_);
  WriteInPlace(PolicyWithRate(4));
  EXPECT_EQ(rec_.WaitForCall(4), 4);
  // The watcher counts a reload once the installer has returned, just after the recorder saw it.
  for (int i = 0; i < 1000 && w.reloads_ok() < rec_.count(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(w.reloads_ok(), rec_.count());
}

TEST_F(WatcherTest, BadFileKeepsOldPoliciesOnReload) {
  // Not started, so no background reload races with the explicit ones.
  WriteInPlace(PolicyWithRate(1));
  PolicyFileWatcher w(path_, rec_.Fn());
  ASSERT_TRUE(w.Reload().ok());
  ASSERT_EQ(rec_.WaitForCall(1), 1);

  WriteInPlace(PolicyWithRate(1) + "      - { name: typo, key: k, capacity: 1, rat: 1 }\n");
  absl::Status st = w.Reload();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), StartsWith(path_ + ":5:"));
  EXPECT_THAT(std::string(st.message()), HasSubstr("policies.p.layers[1].rat: unknown key"));
  EXPECT_EQ(w.reloads_failed(), 1u);
  EXPECT_EQ(w.reloads_ok(), 1u);
  EXPECT_EQ(rec_.count(), 1u);

  // An unreadable file is a failed reload too.
  fs::remove(path_);
  EXPECT_EQ(w.Reload().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(w.reloads_failed(), 2u);
  EXPECT_EQ(rec_.count(), 1u);
}

TEST_F(WatcherTest, BadFileKeepsOldPoliciesOnFileChange) {
  WriteInPlace(PolicyWithRate(1));
  PolicyFileWatcher w(path_, rec_.Fn());
  ASSERT_TRUE(w.Start().ok());
  ASSERT_EQ(rec_.WaitForCall(1), 1);

  WriteAndRename("policies:\n  p:\n    layers: [ { name: l, key: k, capacity: 1, rate: -5 } ]\n");
  EXPECT_TRUE(PollUntil([&] { return w.reloads_failed() >= 1; }));
  // Under load several directory events may each re-read a file, so the counts are lower bounds;
  // what must hold exactly: the bad file was never installed, the old policies stay.
  EXPECT_EQ(rec_.last_rate(), 1);

  // A good file afterwards is installed.
  WriteAndRename(PolicyWithRate(7));
  EXPECT_TRUE(PollUntil([&] { return rec_.last_rate() == 7; }));
  EXPECT_GE(w.reloads_ok(), 2u);
  EXPECT_GE(w.reloads_failed(), 1u);
}

TEST_F(WatcherTest, InstallerErrorCountsAsFailed) {
  WriteInPlace(PolicyWithRate(1));
  rec_.set_result(absl::FailedPreconditionError("engine says no"));
  PolicyFileWatcher w(path_, rec_.Fn());
  // The initial load's error is returned by Start.
  absl::Status st = w.Start();
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(w.reloads_failed(), 1u);
  EXPECT_EQ(w.reloads_ok(), 0u);

  EXPECT_EQ(w.Reload().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(w.reloads_failed(), 2u);
  EXPECT_EQ(rec_.count(), 2u);

  // After a failed Start the watcher can be started again.
  rec_.set_result(absl::OkStatus());
  EXPECT_TRUE(w.Start().ok());
  EXPECT_EQ(w.reloads_ok(), 1u);
}

TEST_F(WatcherTest, StartFailsOnMissingFile) {
  PolicyFileWatcher w(path_, rec_.Fn());
  absl::Status st = w.Start();
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(st.message()), HasSubstr(path_));
  EXPECT_EQ(rec_.count(), 0u);
  EXPECT_EQ(w.reloads_failed(), 1u);
}

TEST_F(WatcherTest, DrivesAPolicyEngine) {
  WriteInPlace(kChatExample);
  PolicyEngine engine({});
  PolicyFileWatcher w(
      path_, [&](std::vector<PolicySpec> specs) { return engine.Install(std::move(specs)); });
  ASSERT_TRUE(w.Start().ok());
  const Field fields[] = {{"ip", "10.0.0.1"}, {"user", "u1"}, {"type", "code_paste"}};
  // user_type: capacity 30, a code paste costs 5: six pass, the seventh is denied.
  for (int i = 0; i < 6; ++i) {
    auto d = engine.Check("chat", fields);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_TRUE(d->allowed) << i;
  }
  auto denied = engine.Check("chat", fields);
  ASSERT_TRUE(denied.ok());
  EXPECT_FALSE(denied->allowed);
  EXPECT_EQ(denied->denied_layer, "user_type");

  // A reload that renames the policy: the old one is gone.
  std::string renamed = kChatExample;
  renamed.replace(renamed.find("chat:"), 5, "talk:");
  WriteAndRename(renamed);
  EXPECT_TRUE(PollUntil([&] { return engine.Check("talk", fields).ok(); }));
  EXPECT_EQ(engine.Check("chat", fields).status().code(), absl::StatusCode::kNotFound);
}

// ---- expect: sections and source positions ----

constexpr char kWithExpect[] = R"(policies:
  game:
    layers:
      - { name: global, key: "global", capacity: 1000, rate: 1000 }
      - { name: user, key: "u:{user}:{type}", capacity: 20, rate: 20 }
    cost: { by: type, values: { input: 1, chat: 2 } }
    expect:
      users: 10000
      ips: 4000
      fields: { region: 12 }
      backend_ops_per_sec: 150000
      jitter_window_ms: 1500
      attackers: 50
      attack_horizon_s: 30
      type_field: type
      request_fields: [user, ip, type]
      messages:
        input: { rate: 20, tick_rate: 20 }
        chat: { rate: 0.2 }
)";

TEST(ParsePolicyDocument, ReadsExpectationsAndPositions) {
  auto doc = ParsePolicyDocument(kWithExpect, "g.yaml");
  ASSERT_TRUE(doc.ok()) << doc.status();
  ASSERT_EQ(doc->policies.size(), 1u);
  const PolicyEntry& p = doc->policies[0];
  EXPECT_EQ(p.pos.line, 2);
  EXPECT_EQ(p.pos.column, 3);
  ASSERT_EQ(p.layer_pos.size(), 2u);
  EXPECT_EQ(p.layer_pos[0].line, 4);
  EXPECT_EQ(p.layer_pos[1].line, 5);
  EXPECT_EQ(p.cost_pos.line, 6);
  ASSERT_TRUE(p.expect.has_value());
  const PolicyExpectations& x = *p.expect;
  EXPECT_EQ(x.users, 10000u);
  EXPECT_EQ(x.ips, 4000u);
  ASSERT_EQ(x.fields.size(), 1u);
  EXPECT_EQ(x.fields[0].first, "region");
  EXPECT_EQ(x.fields[0].second, 12u);
  EXPECT_EQ(x.backend_ops_per_sec, Decimal::Units(150000));
  EXPECT_EQ(x.jitter_window, std::chrono::milliseconds(1500));
  EXPECT_EQ(x.attackers, 50u);
  EXPECT_EQ(x.attack_horizon, std::chrono::seconds(30));
  EXPECT_EQ(x.type_field, "type");
  ASSERT_TRUE(x.request_fields.has_value());
  EXPECT_EQ(*x.request_fields, (std::vector<std::string>{"user", "ip", "type"}));
  ASSERT_EQ(x.messages.size(), 2u);
  EXPECT_EQ(x.messages[0].type, "input");
  EXPECT_EQ(x.messages[0].tick_rate, Decimal::Units(20));
  EXPECT_EQ(x.messages[1].rate, *Decimal::ParsePositive("0.2", "r", Decimal::Units(1)));
  EXPECT_FALSE(x.messages[1].tick_rate.has_value());
  // The server's parser accepts the same file and drops the section.
  auto specs = ParsePolicyYaml(kWithExpect, "g.yaml");
  ASSERT_TRUE(specs.ok()) << specs.status();
  EXPECT_EQ((*specs)[0].layers.size(), 2u);
}

TEST(ParsePolicyDocument, ExpectDefaults) {
  auto doc = ParsePolicyDocument(OneLayer("name: l, key: \"k\", capacity: 1, rate: 1"), "f.yaml");
  ASSERT_TRUE(doc.ok()) << doc.status();
  EXPECT_FALSE(doc->policies[0].expect.has_value());
  PolicyExpectations x;
  EXPECT_EQ(x.jitter_window, std::chrono::seconds(1));
  EXPECT_EQ(x.attackers, 100u);
  EXPECT_EQ(x.attack_horizon, std::chrono::seconds(10));
}

TEST(ParsePolicyDocument, BadExpectationsNameThePath) {
  const std::string base = OneLayer("name: l, key: \"k\", capacity: 1, rate: 1") + "    expect:\n";
  struct Case {
    std::string body, path, what;
  };
  const Case cases[] = {
      {"      user: 5\n", "policies.chat.expect.user", "unknown key"},
      {"      users: -5\n", "policies.chat.expect.users", "whole number from 1"},
      {"      jitter_window_ms: 700000\n", "policies.chat.expect.jitter_window_ms",
       "from 1 to 600000"},
      {"      backend_ops_per_sec: nan\n", "policies.chat.expect.backend_ops_per_sec", "nan"},
      {"      type_field: Type\n", "policies.chat.expect.type_field", "not a field name"},
      {"      request_fields: ip\n", "policies.chat.expect.request_fields", "expected a list"},
      {"      request_fields: [ip, 9x]\n", "policies.chat.expect.request_fields[1]", "field name"},
      {"      fields: { Bad: 3 }\n", "policies.chat.expect.fields.Bad", "field name"},
      {"      messages: { text: { rate: 0 } }\n", "policies.chat.expect.messages.text.rate",
       "positive"},
      {"      messages: { text: { burst: 3 } }\n", "policies.chat.expect.messages.text.burst",
       "unknown key"},
  };
  for (const Case& c : cases) {
    auto doc = ParsePolicyDocument(base + c.body, "f.yaml");
    ASSERT_FALSE(doc.ok()) << c.body;
    const std::string msg(doc.status().message());
    EXPECT_THAT(msg, StartsWith("f.yaml:")) << msg;
    EXPECT_THAT(msg, HasSubstr(c.path)) << msg;
    EXPECT_THAT(msg, HasSubstr(c.what)) << msg;
    // The server's parser rejects it the same way.
    EXPECT_FALSE(ParsePolicyYaml(base + c.body, "f.yaml").ok());
  }
}

TEST(ParsePolicyDocument, LenientParseReturnsInvalidPolicies) {
  const std::string text = R"(policies:
  ok:
    layers: [{ name: a, key: "k", capacity: 1, rate: 1 }]
  all_shadow:
    layers: [{ name: a, key: "k", capacity: 1, rate: 1, shadow: true }]
)";
  EXPECT_FALSE(ParsePolicyDocument(text, "f.yaml").ok());
  auto doc = ParsePolicyDocument(text, "f.yaml", /*validate=*/false);
  ASSERT_TRUE(doc.ok()) << doc.status();
  ASSERT_EQ(doc->policies.size(), 2u);
  EXPECT_TRUE(doc->policies[0].validation.ok());
  EXPECT_FALSE(doc->policies[1].validation.ok());
  EXPECT_THAT(std::string(doc->policies[1].validation.message()),
              HasSubstr("every layer is shadow"));
  EXPECT_THAT(std::string(doc->policies[1].validation.message()), StartsWith("f.yaml:4:3:"));
  // Malformed input still fails a lenient parse.
  EXPECT_FALSE(ParsePolicyDocument("policies: [", "f.yaml", false).ok());
}

}  // namespace
}  // namespace tollgate
