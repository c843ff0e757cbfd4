// Invariant checks for the simulator's scenario parser (ParseScenarioYaml and ParseSimDuration,
// include/tollgate/simulate.h), shared by the libFuzzer target (fuzz/scenario_fuzz.cc) and the
// corpus regression test (src/sim/scenario_corpus_test.cc). Header-only.

#ifndef TOLLGATE_FUZZ_SCENARIO_CHECK_H_
#define TOLLGATE_FUZZ_SCENARIO_CHECK_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "core/absl_compat.h"
#include "sim/network.h"
#include "sim/traffic.h"
#include "tollgate/limiter.h"
#include "tollgate/simulate.h"

namespace tollgate::fuzz {
namespace scenario_internal {

inline constexpr std::string_view kSource = "fuzz.yaml";

// A model mix as the scenario documents it: known names, non-negative weights, positive total.
template <class Models>
bool GoodMix(const std::vector<std::pair<std::string, double>>& mix, const Models& models) {
  double total = 0;
  for (const auto& [name, weight] : mix) {
    if (!models.contains(name) || !(weight >= 0)) return false;
    total += weight;
  }
  return !mix.empty() && total > 0;
}

// A parsed scenario satisfies everything the parser promises to the runner.
inline std::string CheckScenarioValues(const sim::Scenario& sc) {
  if (sc.source != kSource) return "source not kept";
  if (sc.duration <= Duration(0) || sc.duration > std::chrono::hours(24)) return "bad duration";
  if (sc.users == 0 && sc.attackers.empty() && !sc.replay) return "a scenario that sends nothing";
  if (sc.users > 10'000'000 || sc.users_per_ip == 0) return "bad user counts";
  if (!(sc.start_spread_s >= 0 && sc.start_spread_s <= 86400)) return "bad start spread";
  if (sc.backend_capacity && !(*sc.backend_capacity > 0)) return "bad backend capacity";
  for (const std::string* f : {&sc.user_field, &sc.ip_field, &sc.type_field}) {
    if (!IsFieldName(*f)) return "bad field name " + *f;
  }
  for (const sim::DerivedField& d : sc.derived_fields) {
    if (!IsFieldName(d.name) || d.users_per_value == 0 || d.name == sc.user_field ||
        d.name == sc.ip_field || d.name == sc.type_field) {
      return "bad derived field " + d.name;
    }
  }
  for (const auto& [name, p] : sc.traffic_models) {
    if (!sim::ValidateTraffic(p).ok()) return "invalid traffic model " + name;
  }
  for (const auto& [name, p] : sc.network_models) {
    if (!sim::ValidateNetwork(p).ok()) return "invalid network model " + name;
  }
  if (sc.users > 0 && !GoodMix(sc.traffic_mix, sc.traffic_models)) return "bad traffic mix";
  if (sc.users > 0 && !GoodMix(sc.network_mix, sc.network_models)) return "bad network mix";
  std::set<std::string> names;
  for (const sim::AttackerSpec& a : sc.attackers) {
    if (a.name.empty() || a.name.size() > 64 || !names.insert(a.name).second) {
      return "bad attacker name " + a.name;
    }
    if (!sc.network_models.contains(a.network)) return "attacker on an unknown network";
    if (a.identities == 0 || a.ips == 0 || !(a.rate >= 0) || !(a.start_s >= 0)) {
      return "bad attacker numbers";
    }
    if (a.rate == 0 && a.kind != sim::AttackerKind::kBotnet) return "attacker without a rate";
    if (a.kind == sim::AttackerKind::kFlooder && (a.identities != 1 || a.ips != 1)) {
      return "a flooder with several identities";
    }
  }
  if (sc.replay && !sc.network_models.contains(sc.replay->network)) return "replay network unknown";
  return "";
}

}  // namespace scenario_internal

// Parses one fuzzer input (the whole input is the scenario YAML; replay files resolve among the
// built-in scenario files, never the file system) and returns a description of the first violated
// invariant, or "" when all hold. Checked:
//   * the result is a scenario or InvalidArgument naming the file ("fuzz.yaml:...", or for a bad
//     replay log the log's "builtin:<file>:...") — never another code, which would mean an
//     unexpected exception was caught;
//   * a parsed scenario satisfies CheckScenarioValues;
//   * ParseSimDuration of the first line accepts only durations in [1 ms, 24 h].
inline std::string CheckScenario(const uint8_t* data, size_t size) {
  using scenario_internal::kSource;
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  const absl::StatusOr<Duration> d = sim::ParseSimDuration(text.substr(0, text.find('\n')));
  if (d.ok() && (*d < std::chrono::milliseconds(1) || *d > std::chrono::hours(24))) {
    return "ParseSimDuration accepted a duration out of range";
  }
  if (!d.ok() && d.status().code() != absl::StatusCode::kInvalidArgument) {
    return "ParseSimDuration: unexpected error " + d.status().ToString();
  }

  const absl::StatusOr<sim::Scenario> sc = sim::ParseScenarioYaml(text, kSource, "builtin:");
  if (!sc.ok()) {
    const std::string msg(sc.status().message());
    if (sc.status().code() != absl::StatusCode::kInvalidArgument) {
      return "error is not InvalidArgument: " + sc.status().ToString();
    }
    if (msg.rfind(std::string(kSource) + ":", 0) != 0 && msg.rfind("builtin:", 0) != 0) {
      return "error does not name the file: " + msg;
    }
    return "";
  }
  return scenario_internal::CheckScenarioValues(*sc);
}

}  // namespace tollgate::fuzz

#endif  // TOLLGATE_FUZZ_SCENARIO_CHECK_H_
