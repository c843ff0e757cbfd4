#include "server/metrics_sources.h"

#include <chrono>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "server/command_table.h"

namespace tollgate::server {
namespace {

using metrics::Family;
using metrics::Pow2Histogram;
using metrics::Sample;
using prometheus::MetricFamily;
using prometheus::MetricType;

constexpr std::string_view kVersion = "0.1.0";

double Secs(Duration d) { return std::chrono::duration<double>(d).count(); }

void CollectServer(const Services& s, bool embedded, std::vector<MetricFamily>& out) {
  auto gauge = [&](std::string name, std::string help, double v) {
    MetricFamily f = Family(std::move(name), std::move(help), MetricType::Gauge);
    f.metric.push_back(Sample(v, {}, MetricType::Gauge));
    out.push_back(std::move(f));
  };
  gauge("tollgate_connected_clients", "Open RESP client connections (INFO connected_clients).",
        static_cast<double>(s.stats.connected_clients.load()));
  gauge("tollgate_lock_waiters",
        "Connections blocked waiting in LOCK.ACQUIRE/LOCK.MACQUIRE/SEM.ACQUIRE WAIT "
        "(INFO blocked_clients).",
        static_cast<double>(s.stats.blocked_clients.load()));
  MetricFamily thr =
      Family("tollgate_throttle_decisions_total",
             "THROTTLE decisions (INFO throttle_allowed/denied).", MetricType::Counter);
  thr.metric.push_back(Sample(static_cast<double>(s.stats.throttle_allowed.load()),
                              {{"result", "allowed"}}, MetricType::Counter));
  thr.metric.push_back(Sample(static_cast<double>(s.stats.throttle_denied.load()),
                              {{"result", "denied"}}, MetricType::Counter));
  out.push_back(std::move(thr));
  if (embedded) {
    MetricFamily exp =
        Family("tollgate_lock_expirations_total", "Leases (per key) that expired without release.",
               MetricType::Counter);
    exp.metric.push_back(
        Sample(static_cast<double>(s.leases.expirations()), {}, MetricType::Counter));
    out.push_back(std::move(exp));
  }
}

void CollectPolicies(const Services& s, bool embedded, std::vector<MetricFamily>& out) {
  MetricFamily dec =
      Family("tollgate_ratelimit_decisions_total",
             "RATE.CHECK verdicts per policy layer (INFO policy_*_layer_*).", MetricType::Counter);
  MetricFamily buckets = Family("tollgate_ratelimit_buckets",
                                "Live token buckets per policy layer.", MetricType::Gauge);
  for (const LayerCounters& c : s.policies.counters()) {
    for (auto [result, n] : {std::pair<const char*, uint64_t>{"allowed", c.allowed},
                             {"denied", c.denied},
                             {"shadow_denied", c.shadow_denied}}) {
      dec.metric.push_back(Sample(static_cast<double>(n),
                                  {{"policy", c.policy}, {"layer", c.layer}, {"result", result}},
                                  MetricType::Counter));
    }
    if (embedded) {
      buckets.metric.push_back(Sample(static_cast<double>(c.live_buckets),
                                      {{"policy", c.policy}, {"layer", c.layer}},
                                      MetricType::Gauge));
    }
  }
  out.push_back(std::move(dec));
  if (embedded) out.push_back(std::move(buckets));

  MetricFamily lat =
      Family("tollgate_ratelimit_check_duration_seconds",
             "RATE.CHECK latency per policy (INFO policy_*_latency).", MetricType::Histogram);
  for (const PolicyLatency& l : s.policies.latencies()) {
    // From 2^9 ns (~0.5 us): faster checks are folded into that bucket.
    lat.metric.push_back(
        Pow2Histogram(l.counts, 1e-9, Secs(l.sum), {{"policy", l.policy}}, /*first=*/9));
  }
  out.push_back(std::move(lat));

  MetricFamily by_type =
      Family("tollgate_ratelimit_denied_by_type_total",
             "Denied RATE.CHECK requests by cost table type (others: other).", MetricType::Counter);
  // A cost table type literally named "other" is merged into "other" (one series per label set).
  std::map<std::pair<std::string, std::string>, uint64_t> denials;
  for (const TypeDenials& d : s.policies.denied_by_type()) denials[{d.policy, d.type}] += d.denied;
  for (const auto& [k, n] : denials) {
    by_type.metric.push_back(Sample(
        static_cast<double>(n), {{"policy", k.first}, {"type", k.second}}, MetricType::Counter));
  }
  out.push_back(std::move(by_type));

  if (s.watcher == nullptr) return;
  const PolicyFileWatcher& w = *s.watcher;
  MetricFamily reloads = Family("tollgate_policy_reloads_total",
                                "Policy file loads, initial one included (INFO config_reloads_*).",
                                MetricType::Counter);
  reloads.metric.push_back(
      Sample(static_cast<double>(w.reloads_ok()), {{"result", "ok"}}, MetricType::Counter));
  reloads.metric.push_back(
      Sample(static_cast<double>(w.reloads_failed()), {{"result", "error"}}, MetricType::Counter));
  out.push_back(std::move(reloads));
  MetricFamily info =
      Family("tollgate_policy_info", "The loaded policy file; always 1.", MetricType::Gauge);
  info.metric.push_back(Sample(1, {{"path", w.path()}}, MetricType::Gauge));
  out.push_back(std::move(info));
  MetricFamily ok = Family("tollgate_policy_last_reload_success",
                           "1 if the last policy file load succeeded, else 0.", MetricType::Gauge);
  ok.metric.push_back(Sample(w.last_reload_ok() ? 1 : 0, {}, MetricType::Gauge));
  out.push_back(std::move(ok));
  MetricFamily ts = Family("tollgate_policy_last_reload_timestamp_seconds",
                           "Unix time of the last policy file load.", MetricType::Gauge);
  ts.metric.push_back(
      Sample(static_cast<double>(w.last_reload_unix_ms()) / 1000.0, {}, MetricType::Gauge));
  out.push_back(std::move(ts));
}

void CollectStore(const DurableStore& store, std::vector<MetricFamily>& out) {
  const DurableStore::Stats st = store.stats();
  MetricFamily fsync =
      Family("tollgate_store_fsync_duration_seconds",
             "Group commit write+fsync time (INFO group_commits).", MetricType::Histogram);
  fsync.metric.push_back(Pow2Histogram(st.fsync_counts, 1e-6, Secs(st.fsync_sum), {}));
  out.push_back(std::move(fsync));
  MetricFamily size =
      Family("tollgate_store_group_commit_size", "Records per group commit (INFO records_written).",
             MetricType::Histogram);
  size.metric.push_back(Pow2Histogram(st.size_counts, 1, static_cast<double>(st.records), {}));
  out.push_back(std::move(size));
}

}  // namespace

std::unique_ptr<metrics::Metrics> NewServerMetrics(Services& services, std::string backend_kind) {
  metrics::Metrics::Options o;
  o.version = std::string(kVersion);
  for (const CommandSpec& c : AllCommands().all()) o.commands.emplace_back(c.name);
  const bool embedded = backend_kind.empty();
  o.backend = std::move(backend_kind);
  auto m = std::make_unique<metrics::Metrics>(std::move(o));
  const Services* s = &services;
  m->AddCollector([s, embedded](std::vector<MetricFamily>& out) {
    CollectServer(*s, embedded, out);
    CollectPolicies(*s, embedded, out);
    if (s->store != nullptr) CollectStore(*s->store, out);
  });
  return m;
}

}  // namespace tollgate::server
