// `tollgate simulate`: runs the real layered limiter (PolicyEngine) on a virtual clock against
// modelled traffic (legitimate users behind modelled networks, attackers, or a replayed log) and
// measures what the policy does: false denies of legitimate users by message type and network,
// attacker volume admitted and time until throttled, aggregate admitted load against the backend's
// capacity, deny share by layer and shadow-layer differences. The scenario format and every model
// parameter are documented in docs/simulate.md; the result JSON in docs/simulate-result-schema.md.
//
// Determinism: a run is a pure function of (policy, scenario, seed, duration, users). All
// randomness comes from a hand-written PRNG seeded per connection from (seed, id) (src/sim/rng.h),
// times are integer nanoseconds, and events with equal times are processed in the order they were
// scheduled. The same inputs give byte-identical JSON except wall_seconds and decisions_per_second.
#ifndef TOLLGATE_SIMULATE_H_
#define TOLLGATE_SIMULATE_H_

#include <cstdint>
#include <iosfwd>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "tollgate/clock.h"
#include "tollgate/decimal.h"
#include "tollgate/policy_config.h"

namespace tollgate::sim {

// ---- Network models (per connection between one client and the limiter) ----

// Every time is in milliseconds; defaults are those of the "direct" model (no network at all).
struct NetworkParams {
  double latency_ms = 0;      // base one-way latency, [0, 60000]
  double jitter_ms = 0;       // mean of an exponentially distributed extra delay, [0, 60000]
  double loss = 0;            // probability that one transmission is lost, [0, 0.5]
  double rto_ms = 200;        // first retransmission timeout; doubles per consecutive loss
  double rto_max_ms = 60000;  // cap of the doubling RTO, >= rto_ms
  double stalls_per_min = 0;  // radio stalls, a Poisson process, [0, 600]
  double stall_mean_ms = 0;   // mean stall duration (exponential), [0, 600000]
};

// The built-in models: "direct" (zero delay), "ethernet", "4g", "congested" (defaults documented
// in docs/simulate.md). NotFound for another name.
[[nodiscard]] absl::StatusOr<NetworkParams> BuiltinNetwork(std::string_view name);
std::vector<std::string> BuiltinNetworkNames();

// ---- Traffic models (one legitimate user each) ----

enum class TrafficKind { kChat, kGaming, kStreaming };

// One flat set of parameters; each model reads its own (docs/simulate.md lists which). Counts are
// whole numbers stored as doubles. Defaults below.
struct TrafficParams {
  TrafficKind kind = TrafficKind::kChat;
  // chat
  double message_mean_s = 6;           // mean time between messages (lognormal)
  double message_sigma = 0.8;          // lognormal shape of that gap
  double paste_share = 0.05;           // share of messages that are code pastes
  double paste_burst = 3;              // a paste is sent as this many messages...
  double paste_gap_ms = 20;            // ...this far apart
  double typing_s = 3;                 // cursor/typing updates during the last typing_s...
  double cursor_rate = 1;              // ...at this rate (per second) before each message
  double channel_switch_mean_s = 300;  // mean time between channel entries (exponential)
  double history_messages = 5;         // history requests sent at once on channel entry
  // gaming
  double tick_rate = 10;      // input messages per second, at a fixed client tick
  double combos_per_min = 6;  // action combos (Poisson)
  double combo_size = 3;      // ability messages per combo...
  double combo_gap_ms = 100;  // ...this far apart
  // streaming
  double fill_segments = 10;   // segments fetched at fill_rate on start and after a seek
  double fill_rate = 10;       // segments per second while filling the buffer
  double segment_s = 2;        // then one segment every segment_s (steady bitrate)
  double heartbeat_s = 10;     // control plane: a heartbeat every heartbeat_s
  double seeks_per_min = 0.5;  // seeks (Poisson): a seek event, then a buffer refill
  double quality_per_min = 1;  // quality switches (Poisson)
  // Message kind -> request type value sent in the type field. Kinds: chat text, code_paste,
  // cursor, history; gaming input, ability; streaming segment, heartbeat, seek, quality. By default
  // the type is the kind's name; "" means the kind is not sent (it is still drawn, so the other
  // kinds' timing does not change).
  std::map<std::string, std::string> types;
};

// The built-in models "chat", "gaming", "streaming" (the defaults above). NotFound otherwise.
[[nodiscard]] absl::StatusOr<TrafficParams> BuiltinTraffic(std::string_view name);
// The message kinds of a model, in a fixed order.
std::vector<std::string> TrafficKinds(TrafficKind kind);

// ---- Attackers ----

enum class AttackerKind {
  kFlooder,  // one identity, one IP, at `rate`
  kBotnet,   // `identities` identities, each at `rate` (default: its own limit), behind `ips` IPs
  kSpread,   // one attacker at total `rate`, rotating requests over `ips` IPs and `identities`
             // accounts
};

struct AttackerSpec {
  std::string name;  // also the identity prefix: user "<name>" or "<name>-<k>", ip "<name>-ip<k>"
  AttackerKind kind = AttackerKind::kFlooder;
  // Requests per second: flooder its rate, botnet per identity, spread in total. For a botnet 0
  // means "exactly its own limit": the tightest non-global enforced layer's rate / the request's
  // cost.
  double rate = 0;
  uint64_t identities = 1;
  uint64_t ips = 1;
  double start_s = 0;
  std::optional<double> duration_s;  // nullopt = until the end of the run
  std::string type = "text";         // request type value
  std::string network = "ethernet";
};

// ---- Replayed production logs ----

struct ReplayRow {
  double t = 0;                 // seconds, relative to the first row
  std::optional<Decimal> cost;  // overrides the policy's cost table when present
  std::vector<std::pair<std::string, std::string>> fields;
  int line = 0;  // 1-based line in the log
};

enum class ReplayFormat { kAuto, kJsonLines, kCsv };

// Parses a request log. JSON lines: one object per line with "timestamp" (seconds, a number),
// optional "cost" (positive number or decimal string) and any other keys as fields (string or
// integer values). CSV: a header row naming the columns, one of them "timestamp", optionally
// "cost"; every other column is a field. Blank lines are skipped. Timestamps must be
// non-decreasing; the first row is time 0. kAuto picks JSON lines if the first non-blank character
// is '{'. InvalidArgument "SOURCE:LINE:COL: what" for any bad row (COL is the 1-based column, for
// JSON lines the 1-based character position of the value or of a syntax error). Never throws.
[[nodiscard]] absl::StatusOr<std::vector<ReplayRow>> ParseReplayLog(std::string_view text,
                                                                    std::string_view source,
                                                                    ReplayFormat format);

struct ReplaySpec {
  std::string file;  // as written in the scenario
  std::vector<ReplayRow> rows;
  std::string network = "direct";  // network model between each user (user field) and the limiter
};

// ---- Scenarios ----

struct DerivedField {
  std::string name;    // request field name
  std::string prefix;  // value = prefix + (user index / users_per_value)
  uint64_t users_per_value = 1;
};

struct Scenario {
  std::string name, description;
  std::string source;  // file path, or "builtin:<name>"
  std::string policy;  // policy name in the policy file; empty = the file's first policy
  uint64_t seed = 1;
  Duration duration = std::chrono::minutes(10);
  std::optional<double> backend_capacity;  // cost units per second
  // Request field names for the user, the client address and the message type.
  std::string user_field = "user", ip_field = "ip", type_field = "type";
  std::vector<DerivedField> derived_fields;
  uint64_t users = 0;         // legitimate users: "u0".."u<N-1>"
  uint64_t users_per_ip = 1;  // user i is behind IP "ip<i / users_per_ip>" (NAT)
  double start_spread_s = 1;  // users start at a uniformly random time in [0, start_spread_s)
  std::vector<std::pair<std::string, double>> traffic_mix;  // model name -> weight
  std::vector<std::pair<std::string, double>> network_mix;  // model name -> weight
  std::map<std::string, TrafficParams> traffic_models;      // built-ins plus the scenario's own
  std::map<std::string, NetworkParams> network_models;      // built-ins plus the scenario's own
  std::vector<AttackerSpec> attackers;
  std::optional<ReplaySpec> replay;
};

// Parses scenario YAML (format in docs/simulate.md). `source` names the file in errors; a replay
// `file:` is resolved relative to `base_dir` (for a built-in scenario, among the built-in files).
// InvalidArgument "SOURCE:LINE:COL: path.to.key: what is wrong" for syntax errors, unknown or
// duplicate keys, wrong types, values out of range, unknown model names. Never throws.
[[nodiscard]] absl::StatusOr<Scenario> ParseScenarioYaml(std::string_view text,
                                                         std::string_view source,
                                                         std::string_view base_dir);

// A built-in scenario name (BuiltinScenarioNames) or a path to a scenario file. NotFound naming
// the argument and the built-in names when it is neither.
[[nodiscard]] absl::StatusOr<Scenario> LoadScenario(const std::string& path_or_name);
// The scenarios embedded from examples/scenarios/ at build time, sorted.
std::vector<std::string> BuiltinScenarioNames();

// "90s", "10m", "1h", "500ms", "1h30m" ... : a positive duration of at most 24 h.
// InvalidArgument otherwise.
[[nodiscard]] absl::StatusOr<Duration> ParseSimDuration(std::string_view text);

// ---- Running ----

struct RunOptions {
  std::string policy;            // overrides the scenario's policy name
  std::optional<uint64_t> seed;  // override the scenario's
  std::optional<Duration> duration;
  std::optional<uint64_t> users;
  std::string policy_file_label;  // reported as "policy_file"
  size_t sample_points = 2000;    // decisions of the sample user recorded
};

// Runs `scenario` against the policy document on a fresh PolicyEngine driven by a virtual clock,
// and returns the result document (docs/simulate-result-schema.md). InvalidArgument when the
// scenario does not fit the policy (unknown policy, a field a layer needs that the scenario does
// not send, a botnet rate that cannot be derived). Never throws.
[[nodiscard]] absl::StatusOr<nlohmann::json> RunSimulation(const Scenario& scenario,
                                                           const PolicyDocument& policies,
                                                           const RunOptions& options);

// The human-readable summary of a result document (what `tollgate simulate` prints).
std::string FormatSummary(const nlohmann::json& result);

// ---- The CLI subcommand ----

struct SimulateArgs {
  std::string policy_file;
  std::string scenario;  // path or built-in name
  std::string policy;
  std::optional<uint64_t> seed;
  std::optional<std::string> duration;
  std::optional<int64_t> users;
  bool json = false;
  std::string report;  // HTML output path; empty = none
};

// `tollgate simulate`: loads, runs, prints the summary (or the JSON with args.json) to `out`,
// writes the report. Returns the exit code: 0 on success, 2 for bad input (with a message naming
// the argument on `err`), 1 if writing the report fails.
int RunSimulateCommand(const SimulateArgs& args, std::ostream& out, std::ostream& err);

}  // namespace tollgate::sim

#endif  // TOLLGATE_SIMULATE_H_
