#include "sim/network.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace tollgate::sim {

absl::StatusOr<NetworkParams> BuiltinNetwork(std::string_view name) {
  NetworkParams p;
  if (name == "direct") return p;
  if (name == "ethernet") {
    // A wired client in the same region: sub-millisecond jitter, no loss worth modelling.
    p.latency_ms = 2;
    p.jitter_ms = 0.2;
    return p;
  }
  if (name == "4g") {
    // A phone on LTE: ~40 ms one way with tens of ms of jitter; 1.5% of packets lost and
    // recovered by TCP after a 200 ms RTO (Linux's minimum), doubling on repeated loss; radio
    // stalls (handovers, RRC state changes, fading) three times a minute lasting 0.8 s on average,
    // after which everything queued arrives at once.
    p.latency_ms = 40;
    p.jitter_ms = 20;
    p.loss = 0.015;
    p.rto_ms = 200;
    p.rto_max_ms = 3000;
    p.stalls_per_min = 3;
    p.stall_mean_ms = 800;
    return p;
  }
  if (name == "congested") {
    // An overloaded path (busy Wi-Fi, bufferbloat): high, variable queueing delay and 3% loss.
    p.latency_ms = 80;
    p.jitter_ms = 60;
    p.loss = 0.03;
    p.rto_ms = 300;
    p.rto_max_ms = 6000;
    return p;
  }
  return absl::NotFoundError(absl::StrCat("unknown network model '", std::string(name),
                                          "' (built-in: direct, ethernet, 4g, congested)"));
}

std::vector<std::string> BuiltinNetworkNames() { return {"direct", "ethernet", "4g", "congested"}; }

std::span<const ParamDesc<NetworkParams>> NetworkParamTable() {
  static const ParamDesc<NetworkParams> kTable[] = {
      {"latency_ms", &NetworkParams::latency_ms, 0, 60000},
      {"jitter_ms", &NetworkParams::jitter_ms, 0, 60000},
      {"loss", &NetworkParams::loss, 0, 0.5},
      {"rto_ms", &NetworkParams::rto_ms, 1, 60000},
      {"rto_max_ms", &NetworkParams::rto_max_ms, 1, 600000},
      {"stalls_per_min", &NetworkParams::stalls_per_min, 0, 600},
      {"stall_mean_ms", &NetworkParams::stall_mean_ms, 0, 600000},
  };
  return kTable;
}

absl::Status ValidateNetwork(const NetworkParams& p) {
  if (absl::Status st = CheckParams(NetworkParamTable(), p); !st.ok()) return st;
  if (p.rto_max_ms < p.rto_ms) {
    return absl::InvalidArgumentError(
        absl::StrCat("rto_max_ms must be >= rto_ms (", p.rto_ms, "), got ", p.rto_max_ms));
  }
  return absl::OkStatus();
}

NetworkModel::NetworkModel(const NetworkParams& p)
    : latency_ns(p.latency_ms * 1e6),
      jitter_mean_ns(p.jitter_ms * 1e6),
      loss(p.loss),
      rto_ns(p.rto_ms * 1e6),
      rto_max_ns(p.rto_max_ms * 1e6),
      stall_gap_mean_ns(p.stalls_per_min > 0 && p.stall_mean_ms > 0 ? 60e9 / p.stalls_per_min : 0),
      stall_mean_ns(p.stall_mean_ms * 1e6) {}

int64_t NetworkLink::Deliver(int64_t send_ns) {
  const NetworkModel& m = *model_;
  double delay = m.latency_ns;
  if (m.jitter_mean_ns > 0) delay += rng_.Exponential(m.jitter_mean_ns);
  if (m.loss > 0) {
    double rto = m.rto_ns;
    // At most 30 retransmissions (loss <= 0.5 makes more vanishingly rare).
    for (int i = 0; i < 30 && rng_.Bernoulli(m.loss); ++i) {
      delay += rto;
      rto = std::min(rto * 2, m.rto_max_ns);
    }
  }
  int64_t t = send_ns + static_cast<int64_t>(delay);
  if (m.stall_gap_mean_ns > 0) {
    if (!stall_init_) {
      stall_init_ = true;
      stall_start_ = static_cast<int64_t>(rng_.Exponential(m.stall_gap_mean_ns));
      stall_end_ = stall_start_ + static_cast<int64_t>(rng_.Exponential(m.stall_mean_ns));
    }
    while (t >= stall_end_) {
      stall_start_ = stall_end_ + static_cast<int64_t>(rng_.Exponential(m.stall_gap_mean_ns));
      stall_end_ = stall_start_ + static_cast<int64_t>(rng_.Exponential(m.stall_mean_ns));
    }
    if (t >= stall_start_) t = stall_end_;
  }
  t = std::max(t, last_arrival_);
  last_arrival_ = t;
  return t;
}

}  // namespace tollgate::sim
