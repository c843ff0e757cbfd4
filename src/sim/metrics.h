// What a simulation run counts, and the result document built from it
// (docs/simulate-result-schema.md).
#ifndef TOLLGATE_SIM_METRICS_H_
#define TOLLGATE_SIM_METRICS_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "tollgate/limiter.h"
#include "tollgate/simulate.h"

namespace tollgate::sim {

struct AttackerStats {
  std::string name;
  AttackerKind kind = AttackerKind::kFlooder;
  uint64_t identities = 1;
  double start_s = 0, end_s = 0;
  uint64_t sent = 0, admitted = 0;
  uint64_t admitted_cost_nanos = 0;      // cost units x 1e9, exact
  std::optional<int64_t> first_deny_ns;  // simulation time of the first denial
};

struct Metrics {
  // Legitimate traffic, by (type, network): cells[type * networks.size() + network].
  struct Cell {
    uint64_t sent = 0, denied = 0;
  };
  std::vector<std::string> types, networks;
  std::vector<Cell> cells;
  std::vector<uint8_t> user_denied;  // per legitimate user (generated and replayed)

  std::vector<AttackerStats> attackers;

  int64_t step_ns = 1'000'000'000;
  std::vector<uint64_t> admitted_nanos;  // admitted cost per step, x 1e9

  std::vector<std::string> layer_names;  // the policy's layers, in order
  std::vector<uint64_t> first_denier;    // per layer: denials where it was denied_layer
  uint64_t decisions = 0, denied = 0;

  struct SamplePoint {
    int64_t t_ns;
    uint64_t remaining;
    bool allowed;
  };
  std::string sample_user, sample_network, sample_traffic;
  std::vector<SamplePoint> sample;

  Cell& cell(size_t type, size_t network) { return cells[type * networks.size() + network]; }
};

struct ResultHeader {
  std::string scenario, description, policy_file, policy;
  uint64_t seed = 0;
  int64_t duration_ns = 0;
  uint64_t users = 0;
  std::optional<double> backend_capacity;
  double wall_seconds = 0;
};

// The result document. `counters` are the engine's, for the simulated policy only.
nlohmann::json BuildResult(const ResultHeader& header, const Metrics& m,
                           const std::vector<LayerCounters>& counters,
                           const std::vector<LayerSpec>& layers);

}  // namespace tollgate::sim

#endif  // TOLLGATE_SIM_METRICS_H_
