// Prometheus metrics of one tollgate server (prometheus-cpp core, no HTTP of its own).
//
// Every number is counted in exactly one place. The hot-path counters (per command, lock
// acquisitions, fence writes, backend requests, lock hold time) live here, with their label
// children created once at construction; everything INFO already counts (clients, rate-limit
// decisions and latencies, store commits, policy reloads, lease expirations) is read from its own
// counter at render time through collectors (AddCollector), never counted twice.
#ifndef TOLLGATE_METRICS_METRICS_H_
#define TOLLGATE_METRICS_METRICS_H_

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/metric_family.h"
#include "prometheus/registry.h"
#include "tollgate/clock.h"

namespace tollgate::metrics {

enum class LockResult { kGranted = 0, kContended = 1, kTimeout = 2 };

class Metrics {  // thread-safe; one per server
 public:
  struct Options {
    std::string version;                // tollgate_build_info{version}
    std::vector<std::string> commands;  // known command names (label values), lowercase
    std::string backend;  // shared backend kind for tollgate_backend_*; empty: none (embedded)
  };
  // A render-time source: appends its families (names unique across all sources) to `out`.
  using Collector = std::function<void(std::vector<prometheus::MetricFamily>& out)>;

  explicit Metrics(Options options);
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // The Prometheus text exposition format 0.0.4 of every metric.
  std::string RenderText() const;

  // Adds a render-time source. Call before serving (collectors are not removed).
  void AddCollector(Collector c);

  // Per-command handles: index i of Options::commands; any index >= commands.size() is the
  // command "unknown". The pointers stay valid for the object's life.
  struct CommandHandles {
    prometheus::Counter* calls;
    prometheus::Histogram* duration;  // seconds
  };
  const CommandHandles& command(size_t index) const {
    return commands_[index < commands_.size() - 1 ? index : commands_.size() - 1];
  }
  size_t command_count() const { return commands_.size() - 1; }
  // Sum of tollgate_commands_total over every command (INFO total_commands_processed).
  uint64_t TotalCommands() const;

  void CountLockAcquisition(LockResult r) { lock_results_[static_cast<int>(r)]->Increment(); }
  void CountFenceWrite(bool accepted) { (accepted ? fence_accepted_ : fence_stale_)->Increment(); }
  // One request to the shared backend (no-op without Options::backend).
  void ObserveBackendRequest(bool ok, Duration d);

  // Lock hold time: a grant this server made (lock_id unique per grant), its extension, its
  // release (observes tollgate_lock_hold_seconds). Grants never released (expired) are dropped
  // once their expiry is well past.
  void NoteGrant(std::string_view lock_id, SteadyTime now, Duration ttl);
  void NoteExtend(std::string_view lock_id, SteadyTime now, Duration ttl);
  void NoteRelease(std::string_view lock_id, SteadyTime now);

 private:
  struct Held {
    SteadyTime granted;
    SteadyTime expiry;
  };
  void SweepHeldLocked(SteadyTime now);

  std::shared_ptr<prometheus::Registry> registry_;
  std::vector<CommandHandles> commands_;  // last entry: "unknown"
  std::array<prometheus::Counter*, 3> lock_results_{};
  prometheus::Counter* fence_accepted_ = nullptr;
  prometheus::Counter* fence_stale_ = nullptr;
  prometheus::Histogram* lock_hold_ = nullptr;
  prometheus::Counter* backend_ok_ = nullptr;
  prometheus::Counter* backend_error_ = nullptr;
  prometheus::Histogram* backend_duration_ = nullptr;

  mutable std::mutex collectors_mu_;
  std::vector<Collector> collectors_;

  std::mutex held_mu_;
  absl::flat_hash_map<std::string, Held> held_;
  size_t sweep_at_ = 1024;  // sweep when held_ grows past this
};

// Helpers for collectors.
prometheus::MetricFamily Family(std::string name, std::string help, prometheus::MetricType type);
prometheus::ClientMetric Sample(double value, std::vector<prometheus::ClientMetric::Label> labels,
                                prometheus::MetricType type);
// A histogram from power-of-two buckets: counts[i] counts values v with bit_width(v) == i (the last
// entry also every larger value); bucket i's upper bound is (2^i - 1) * unit, the last is +Inf.
// Buckets below `first` are folded into it.
prometheus::ClientMetric Pow2Histogram(std::span<const uint64_t> counts, double unit, double sum,
                                       std::vector<prometheus::ClientMetric::Label> labels,
                                       size_t first = 0);

}  // namespace tollgate::metrics

#endif  // TOLLGATE_METRICS_METRICS_H_
