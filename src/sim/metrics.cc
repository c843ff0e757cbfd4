#include "sim/metrics.h"

#include <algorithm>
#include <string>

namespace tollgate::sim {
namespace {

double Rate(uint64_t part, uint64_t whole) {
  return whole == 0 ? 0.0 : static_cast<double>(part) / static_cast<double>(whole);
}
double Seconds(int64_t ns) { return static_cast<double>(ns) / 1e9; }
double Units(uint64_t nanos) { return static_cast<double>(nanos) / 1e9; }

const char* KindName(AttackerKind k) {
  switch (k) {
    case AttackerKind::kFlooder:
      return "flooder";
    case AttackerKind::kBotnet:
      return "botnet";
    case AttackerKind::kSpread:
      return "spread";
  }
  return "?";
}

}  // namespace

nlohmann::json BuildResult(const ResultHeader& h, const Metrics& m,
                           const std::vector<LayerCounters>& counters,
                           const std::vector<LayerSpec>& layers) {
  using json = nlohmann::json;
  json out = json::object();
  out["schema"] = 1;
  out["scenario"] = h.scenario;
  out["description"] = h.description;
  out["policy_file"] = h.policy_file;
  out["policy"] = h.policy;
  out["seed"] = h.seed;
  out["duration_s"] = Seconds(h.duration_ns);
  out["users"] = h.users;
  out["backend_capacity"] = h.backend_capacity ? json(*h.backend_capacity) : json(nullptr);
  out["decisions"] = m.decisions;
  out["wall_seconds"] = h.wall_seconds;
  out["decisions_per_second"] =
      h.wall_seconds > 0 ? static_cast<double>(m.decisions) / h.wall_seconds : 0.0;

  // Legitimate users.
  uint64_t sent = 0, denied = 0, affected = 0;
  json cells = json::array();
  for (size_t t = 0; t < m.types.size(); ++t) {
    for (size_t n = 0; n < m.networks.size(); ++n) {
      const Metrics::Cell& c = m.cells[t * m.networks.size() + n];
      if (c.sent == 0) continue;
      sent += c.sent;
      denied += c.denied;
      cells.push_back({{"type", m.types[t]},
                       {"network", m.networks[n]},
                       {"sent", c.sent},
                       {"denied", c.denied},
                       {"false_deny_rate", Rate(c.denied, c.sent)}});
    }
  }
  for (uint8_t u : m.user_denied) affected += u;
  out["legit"] = {{"sent", sent},
                  {"allowed", sent - denied},
                  {"denied", denied},
                  {"false_deny_rate", Rate(denied, sent)},
                  {"users_affected", affected},
                  {"by_type_network", cells}};

  json attackers = json::array();
  for (const AttackerStats& a : m.attackers) {
    attackers.push_back(
        {{"name", a.name},
         {"kind", KindName(a.kind)},
         {"identities", a.identities},
         {"start_s", a.start_s},
         {"end_s", a.end_s},
         {"sent", a.sent},
         {"admitted", a.admitted},
         {"admitted_cost", Units(a.admitted_cost_nanos)},
         {"admitted_share", Rate(a.admitted, a.sent)},
         {"time_to_throttle_s", a.first_deny_ns
                                    ? json(std::max(0.0, Seconds(*a.first_deny_ns) - a.start_s))
                                    : json(nullptr)}});
  }
  out["attackers"] = attackers;

  // Aggregate admitted load per step against the backend's capacity.
  json series = json::array();
  double peak = 0, peak_at = 0;
  uint64_t above = 0;
  const double step_s = Seconds(m.step_ns);
  for (size_t i = 0; i < m.admitted_nanos.size(); ++i) {
    const double per_s = Units(m.admitted_nanos[i]) / step_s;
    series.push_back(per_s);
    if (per_s > peak) {
      peak = per_s;
      peak_at = static_cast<double>(i) * step_s;
    }
    if (h.backend_capacity && per_s > *h.backend_capacity) ++above;
  }
  out["aggregate"] = {
      {"capacity", h.backend_capacity ? json(*h.backend_capacity) : json(nullptr)},
      {"step_s", step_s},
      {"peak", peak},
      {"peak_at_s", peak_at},
      {"seconds_above_capacity",
       h.backend_capacity ? json(static_cast<double>(above) * step_s) : json(nullptr)},
      {"series", series}};

  json layer_rows = json::array();
  json shadow = json::array();
  for (size_t i = 0; i < layers.size(); ++i) {
    LayerCounters c;
    for (const LayerCounters& x : counters) {
      if (x.layer == layers[i].name) c = x;
    }
    layer_rows.push_back({{"layer", layers[i].name},
                          {"shadow", layers[i].shadow},
                          {"allowed", c.allowed},
                          {"denied", c.denied},
                          {"shadow_denied", c.shadow_denied},
                          {"deny_share", Rate(m.first_denier[i], m.denied)}});
    if (layers[i].shadow) {
      shadow.push_back({{"layer", layers[i].name},
                        {"would_deny", c.shadow_denied},
                        {"would_deny_rate", Rate(c.shadow_denied, m.decisions)}});
    }
  }
  out["layers"] = layer_rows;
  out["shadow"] = shadow;

  if (m.sample_user.empty()) {
    out["sample_user"] = nullptr;
  } else {
    json points = json::array();
    for (const Metrics::SamplePoint& p : m.sample) {
      points.push_back(json::array({Seconds(p.t_ns), p.remaining, p.allowed ? 1 : 0}));
    }
    out["sample_user"] = {{"user", m.sample_user},
                          {"network", m.sample_network},
                          {"traffic", m.sample_traffic},
                          {"points", points}};
  }
  return out;
}

}  // namespace tollgate::sim
