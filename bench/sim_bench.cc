// Simulator throughput: simulated limiter decisions per second of wall time, single-threaded, for
// built-in scenarios run for a fixed virtual duration. Every decision is a real PolicyEngine::Check
// on the virtual clock, so this is the engine's cost plus the simulator's (traffic and network
// models, the event queue, metrics).
//
//   build/bench/sim_bench                # items_per_second = decisions/s
// Mutex deadlock detection is off, as in the tollgate binary.
#include <benchmark/benchmark.h>

#include <string>

#include "absl/synchronization/mutex.h"
#include "tollgate/policy_config.h"
#include "tollgate/simulate.h"

namespace {

void RunScenario(benchmark::State& state, const std::string& policy_file,
                 const std::string& scenario, int users, int seconds) {
  auto doc = tollgate::LoadPolicyDocument(std::string(TOLLGATE_EXAMPLES_DIR) + "/" + policy_file);
  auto sc = tollgate::sim::LoadScenario(scenario);
  if (!doc.ok() || !sc.ok()) {
    state.SkipWithError(!doc.ok() ? doc.status().ToString().c_str()
                                  : sc.status().ToString().c_str());
    return;
  }
  tollgate::sim::RunOptions opt;
  opt.users = users;
  opt.duration = std::chrono::seconds(seconds);
  uint64_t decisions = 0;
  for (auto _ : state) {
    auto r = tollgate::sim::RunSimulation(*sc, *doc, opt);
    if (!r.ok()) {
      state.SkipWithError(r.status().ToString().c_str());
      return;
    }
    decisions += (*r)["decisions"].get<uint64_t>();
  }
  state.SetItemsProcessed(static_cast<int64_t>(decisions));
  state.counters["decisions_per_run"] =
      static_cast<double>(decisions) / static_cast<double>(state.iterations());
}

// 10,000 players x 10 inputs/s over ethernet and 4G for 60 s: ~6.2M decisions per run.
void BM_SimJitter4g(benchmark::State& state) {
  RunScenario(state, "policies/repaired/no-headroom.yaml", "jitter-4g", 10000, 60);
}
BENCHMARK(BM_SimJitter4g)->Unit(benchmark::kMillisecond)->UseRealTime();

// 10,000 chat users plus a 2000-identity botnet at its limit for 15 s: ~3M decisions per run.
void BM_SimAggregateFlood(benchmark::State& state) {
  RunScenario(state, "policies/repaired/aggregate-flood.yaml", "aggregate-flood", 10000, 60);
}
BENCHMARK(BM_SimAggregateFlood)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  // As the tollgate binary does (src/main.cc): Debian's abseil records every lock acquisition for
  // deadlock detection, about a third of a layered check's cost.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
