// Traffic models: what one legitimate user sends, as a stream of (send time, message kind).
// Open loop: a user does not react to denials (a client that backs off would hide the problem the
// simulation is looking for).
#ifndef TOLLGATE_SIM_TRAFFIC_H_
#define TOLLGATE_SIM_TRAFFIC_H_

#include <array>
#include <cstdint>
#include <limits>
#include <span>

#include "absl/status/status.h"
#include "sim/params.h"
#include "sim/rng.h"
#include "tollgate/simulate.h"

namespace tollgate::sim {

inline constexpr int64_t kNever = std::numeric_limits<int64_t>::max();

// The parameters, their YAML names and ranges (all models share one table; docs/simulate.md says
// which model reads which).
std::span<const ParamDesc<TrafficParams>> TrafficParamTable();
[[nodiscard]] absl::Status ValidateTraffic(const TrafficParams& p);
// "chat" | "gaming" | "streaming"; InvalidArgument otherwise.
[[nodiscard]] absl::StatusOr<TrafficKind> ParseTrafficKind(std::string_view name);
const char* TrafficKindName(TrafficKind kind);

// One user's message stream. Emissions come out in non-decreasing time order.
class TrafficSource {
 public:
  // `p` must outlive the source and have passed ValidateTraffic.
  TrafficSource(const TrafficParams* p, uint64_t seed, int64_t start_ns);

  // Send time of the next message, or kNever.
  int64_t next() const { return next_; }
  // Consumes the next message: its kind, an index into TrafficKinds(p->kind).
  int Pop();

 private:
  struct Stream {
    int64_t next = kNever;
    int64_t gap = 0;
    uint32_t remaining = 0;  // kForever = endless
    uint8_t kind = 0;
    uint8_t phase = 0;   // chat: 1 cursors, 2 the message; streaming: 0 filling, 1 steady
    bool paste = false;  // chat: the current block's message is a code paste
    int64_t anchor = 0;  // chat: the planned message time of the current block
  };
  static constexpr uint32_t kForever = std::numeric_limits<uint32_t>::max();

  void Replan(int i, int64_t t);
  void PlanChatBlock(int64_t from);
  void StartChatMessage();
  void UpdateNext();
  int64_t Ns(double seconds) const { return static_cast<int64_t>(seconds * 1e9); }

  const TrafficParams* p_;
  Rng rng_;
  std::array<Stream, 3> s_;
  int64_t next_ = kNever;
};

}  // namespace tollgate::sim

#endif  // TOLLGATE_SIM_TRAFFIC_H_
