// Network models between one client connection and the limiter: latency, jitter, loss with
// retransmission, in-order delivery (TCP head-of-line blocking) and radio stalls.
#ifndef TOLLGATE_SIM_NETWORK_H_
#define TOLLGATE_SIM_NETWORK_H_

#include <cstdint>
#include <span>

#include "absl/status/status.h"
#include "sim/params.h"
#include "sim/rng.h"
#include "tollgate/simulate.h"

namespace tollgate::sim {

// The parameters, their names in scenario YAML and their accepted ranges.
std::span<const ParamDesc<NetworkParams>> NetworkParamTable();
// InvalidArgument naming the first parameter out of its documented range.
[[nodiscard]] absl::Status ValidateNetwork(const NetworkParams& p);

// A model's parameters in nanoseconds, shared by every connection that uses it.
struct NetworkModel {
  explicit NetworkModel(const NetworkParams& p);
  double latency_ns, jitter_mean_ns, loss, rto_ns, rto_max_ns, stall_gap_mean_ns, stall_mean_ns;
};

// One connection's state. Deliver() must be called in send order; it returns when the message
// reaches the limiter:
//   arrival = send + latency + Exp(jitter) + retransmission delays,
// where each transmission is lost with probability `loss` and resent after the RTO, which doubles
// for each consecutive loss of that message (capped at rto_max). An arrival that falls inside a
// radio stall (stalls start as a Poisson process, durations exponential) is moved to the stall's
// end. Finally delivery is in order: a message never arrives before one sent earlier on the same
// connection, so a delayed message holds back the ones behind it and they arrive together with it
// (TCP coalescing).
class NetworkLink {
 public:
  NetworkLink(const NetworkModel* model, uint64_t seed) : model_(model), rng_(seed) {}
  int64_t Deliver(int64_t send_ns);

 private:
  const NetworkModel* model_;
  Rng rng_;
  int64_t last_arrival_ = 0;
  int64_t stall_start_ = 0, stall_end_ = 0;  // the current or next stall; [start, end)
  bool stall_init_ = false;
};

}  // namespace tollgate::sim

#endif  // TOLLGATE_SIM_NETWORK_H_
