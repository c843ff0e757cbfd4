#include "metrics/metrics.h"

#include <chrono>
#include <cmath>
#include <limits>
#include <utility>

#include "core/absl_compat.h"
#include "prometheus/text_serializer.h"

namespace tollgate::metrics {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

double Seconds(Duration d) { return std::chrono::duration<double>(d).count(); }

// Command handling (the synchronous part: parsing to reply queued or deferred): 5 us .. 1 s.
const prometheus::Histogram::BucketBoundaries& CommandBuckets() {
  static const auto* b = new prometheus::Histogram::BucketBoundaries{
      5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 5e-3, 2.5e-2, 0.1, 1};
  return *b;
}

}  // namespace

Metrics::Metrics(Options options) : registry_(std::make_shared<prometheus::Registry>()) {
  prometheus::BuildGauge()
      .Name("tollgate_build_info")
      .Help("Build information; always 1.")
      .Register(*registry_)
      .Add({{"version", options.version}})
      .Set(1);

  auto& calls = prometheus::BuildCounter()
                    .Name("tollgate_commands_total")
                    .Help("Commands received, by command (unknown commands as \"unknown\").")
                    .Register(*registry_);
  auto& durations = prometheus::BuildHistogram()
                        .Name("tollgate_command_duration_seconds")
                        .Help("Time to handle a command on its I/O thread, by command.")
                        .Register(*registry_);
  options.commands.push_back("unknown");
  for (const std::string& c : options.commands) {
    commands_.push_back(
        {&calls.Add({{"command", c}}), &durations.Add({{"command", c}}, CommandBuckets())});
  }

  auto& locks = prometheus::BuildCounter()
                    .Name("tollgate_lock_acquisitions_total")
                    .Help(
                        "LOCK.ACQUIRE/LOCK.MACQUIRE outcomes: granted, contended (refused "
                        "without waiting), timeout (waited, not granted).")
                    .Register(*registry_);
  lock_results_ = {&locks.Add({{"result", "granted"}}), &locks.Add({{"result", "contended"}}),
                   &locks.Add({{"result", "timeout"}})};
  auto& fences = prometheus::BuildCounter()
                     .Name("tollgate_fence_writes_total")
                     .Help("FENCE.SET outcomes: accepted or stale (rejected fence).")
                     .Register(*registry_);
  fence_accepted_ = &fences.Add({{"result", "accepted"}});
  fence_stale_ = &fences.Add({{"result", "stale"}});
  lock_hold_ = &prometheus::BuildHistogram()
                    .Name("tollgate_lock_hold_seconds")
                    .Help("Time from a grant by this server to its release.")
                    .Register(*registry_)
                    .Add({}, prometheus::Histogram::BucketBoundaries{0.001, 0.005, 0.01, 0.05, 0.1,
                                                                     0.5, 1, 5, 10, 30, 60, 300});
  if (!options.backend.empty()) {
    auto& reqs = prometheus::BuildCounter()
                     .Name("tollgate_backend_requests_total")
                     .Help(
                         "Requests to the shared backend, by result (error: unavailable or "
                         "failed, not a refusal such as a held lock).")
                     .Register(*registry_);
    backend_ok_ = &reqs.Add({{"backend", options.backend}, {"result", "ok"}});
    backend_error_ = &reqs.Add({{"backend", options.backend}, {"result", "error"}});
    backend_duration_ =
        &prometheus::BuildHistogram()
             .Name("tollgate_backend_request_duration_seconds")
             .Help("Round trip of a request to the shared backend.")
             .Register(*registry_)
             .Add({{"backend", options.backend}},
                  prometheus::Histogram::BucketBoundaries{1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3,
                                                          1e-2, 2.5e-2, 0.1, 0.5, 1, 5});
  }
}

Metrics::~Metrics() = default;

void Metrics::AddCollector(Collector c) {
  std::lock_guard<std::mutex> l(collectors_mu_);
  collectors_.push_back(std::move(c));
}

std::string Metrics::RenderText() const {
  std::vector<MetricFamily> families = registry_->Collect();
  {
    std::lock_guard<std::mutex> l(collectors_mu_);
    for (const Collector& c : collectors_) c(families);
  }
  return prometheus::TextSerializer().Serialize(families);
}

uint64_t Metrics::TotalCommands() const {
  double total = 0;
  for (const CommandHandles& h : commands_) total += h.calls->Value();
  return static_cast<uint64_t>(total);
}

void Metrics::ObserveBackendRequest(bool ok, Duration d) {
  if (backend_duration_ == nullptr) return;
  (ok ? backend_ok_ : backend_error_)->Increment();
  backend_duration_->Observe(Seconds(d));
}

void Metrics::NoteGrant(std::string_view lock_id, SteadyTime now, Duration ttl) {
  std::lock_guard<std::mutex> l(held_mu_);
  held_[AV(lock_id)] = {now, now + ttl};
  if (held_.size() > sweep_at_) SweepHeldLocked(now);
}

void Metrics::NoteExtend(std::string_view lock_id, SteadyTime now, Duration ttl) {
  std::lock_guard<std::mutex> l(held_mu_);
  auto it = held_.find(AV(lock_id));
  if (it != held_.end()) it->second.expiry = now + ttl;
}

void Metrics::NoteRelease(std::string_view lock_id, SteadyTime now) {
  SteadyTime granted;
  {
    std::lock_guard<std::mutex> l(held_mu_);
    auto it = held_.find(AV(lock_id));
    if (it == held_.end()) return;
    granted = it->second.granted;
    held_.erase(it);
  }
  lock_hold_->Observe(Seconds(now - granted));
}

void Metrics::SweepHeldLocked(SteadyTime now) {
  // A grant more than a second past its expiry was not released in time: it expired.
  absl::erase_if(held_,
                 [&](const auto& kv) { return kv.second.expiry + std::chrono::seconds(1) < now; });
  sweep_at_ = std::max<size_t>(1024, 2 * held_.size());
}

MetricFamily Family(std::string name, std::string help, MetricType type) {
  MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  return f;
}

ClientMetric Sample(double value, std::vector<ClientMetric::Label> labels, MetricType type) {
  ClientMetric m;
  m.label = std::move(labels);
  if (type == MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  return m;
}

ClientMetric Pow2Histogram(std::span<const uint64_t> counts, double unit, double sum,
                           std::vector<ClientMetric::Label> labels, size_t first) {
  ClientMetric m;
  m.label = std::move(labels);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    cumulative += counts[i];
    if (i < first) continue;
    const bool last = i + 1 == counts.size();
    const double bound = last ? std::numeric_limits<double>::infinity()
                              : (std::ldexp(1.0, static_cast<int>(i)) - 1) * unit;
    m.histogram.bucket.push_back({cumulative, bound});
  }
  m.histogram.sample_count = cumulative;
  m.histogram.sample_sum = sum;
  return m;
}

}  // namespace tollgate::metrics
