// The rules of `tollgate policy check` (include/tollgate/policy_check.h, docs/policy-check.md).
#include <algorithm>
#include <cmath>
#include <set>

#include "absl/strings/str_cat.h"
#include "core/absl_compat.h"
#include "lint/sizing.h"
#include "tollgate/policy_check.h"

namespace tollgate {

using lint::Num;
using lint::Secs;
using lint::ToDouble;

const char* SeverityName(Severity s) {
  switch (s) {
    case Severity::kNote:
      return "note";
    case Severity::kWarning:
      return "warning";
    case Severity::kError:
      return "error";
  }
  return "error";
}

absl::Status ValidateCheckOptions(const CheckOptions& o) {
  if (o.max_recovery <= Duration(0) || o.max_recovery > std::chrono::hours(24)) {
    return absl::InvalidArgumentError("max recovery must be in (0 s, 86400 s]");
  }
  if (o.jitter_window &&
      (*o.jitter_window <= Duration(0) || *o.jitter_window > std::chrono::minutes(10))) {
    return absl::InvalidArgumentError("jitter window must be in (0 ms, 600000 ms]");
  }
  return absl::OkStatus();
}

size_t CheckReport::errors() const {
  return static_cast<size_t>(std::count_if(findings.begin(), findings.end(), [](const Finding& f) {
    return f.severity == Severity::kError;
  }));
}
size_t CheckReport::warnings() const {
  return static_cast<size_t>(std::count_if(findings.begin(), findings.end(), [](const Finding& f) {
    return f.severity == Severity::kWarning;
  }));
}
int CheckReport::exit_code() const {
  if (errors() > 0) return 2;
  return warnings() > 0 ? 1 : 0;
}

namespace {

double Seconds(Duration d) { return std::chrono::duration<double>(d).count(); }

// Rounds a suggested token count up to something a person would write: 3 significant digits.
// The epsilon keeps float noise (20 x 1.2 = 24.000000000000004) from rounding a step up.
double RoundUpNice(double v) {
  if (v <= 0) return 0;
  const double mag = v < 10 ? 0.1 : std::pow(10, std::floor(std::log10(v)) - 2);
  return std::ceil(v / mag - 1e-9) * mag;
}
double RoundDownNice(double v) {
  if (v < 10) return std::max(1.0, std::floor(v));
  const double mag = std::pow(10, std::floor(std::log10(v)) - 2);
  return std::floor(v / mag + 1e-9) * mag;
}

class PolicyLinter {
 public:
  PolicyLinter(const PolicyEntry& entry, const CheckOptions& options, std::vector<Finding>* out)
      : e_(entry),
        spec_(entry.spec),
        x_(entry.expect ? &*entry.expect : nullptr),
        dep_(entry.spec, x_),
        opt_(options),
        out_(out) {
    jitter_ = options.jitter_window.value_or(x_ != nullptr ? x_->jitter_window
                                                           : PolicyExpectations{}.jitter_window);
    horizon_ = x_ != nullptr ? x_->attack_horizon : PolicyExpectations{}.attack_horizon;
    attackers_ = x_ != nullptr ? x_->attackers : PolicyExpectations{}.attackers;
    for (const LayerSpec& l : spec_.layers) fields_.push_back(lint::TemplateFields(l.key_template));
  }

  void Run() {
    if (!e_.validation.ok()) {
      const bool shadow_only = std::all_of(spec_.layers.begin(), spec_.layers.end(),
                                           [](const LayerSpec& l) { return l.shadow; }) &&
                               !spec_.layers.empty();
      if (shadow_only) {
        Finding& f = Add(Severity::kError, "shadow-only", -1,
                         absl::StrCat("every one of its ", spec_.layers.size(),
                                      " layers is shadow: the policy counts but never limits "
                                      "anything, and the server refuses to load it"));
        f.fix = absl::StrCat("enforce at least one layer: remove `shadow: true` from '",
                             spec_.layers[0].name, "' once its shadow_denied count is acceptable");
      } else {
        Finding& f =
            Add(Severity::kError, "invalid-policy", -1, std::string(SV(e_.validation.message())));
        f.fix = "fix the field named in the message; the server will not load this policy";
      }
      return;
    }
    if (x_ == nullptr) {
      Finding& f = Add(Severity::kNote, "no-expectations", -1,
                       "no `expect:` section: aggregate load, tick-rate and bucket-count checks "
                       "are skipped");
      f.fix =
          "declare expect: { users, ips, backend_ops_per_sec, messages } "
          "(docs/policy-check.md)";
    }
    MissingFields();
    for (size_t i = 0; i < spec_.layers.size(); ++i) {
      ImpossibleCost(i);
      if (spec_.layers[i].shadow) {
        UselessShadow(i);
        continue;
      }
      AttackWindow(i);
      JitterHeadroom(i);
      MaxBuckets(i);
    }
    AggregateFlood();
  }

 private:
  // i < 0: a policy-level finding.
  Finding& Add(Severity s, std::string rule, int i, std::string message) {
    Finding f;
    f.severity = s;
    f.rule = std::move(rule);
    f.policy = spec_.name;
    if (i >= 0) {
      f.layer = spec_.layers[static_cast<size_t>(i)].name;
      f.pos = static_cast<size_t>(i) < e_.layer_pos.size() ? e_.layer_pos[static_cast<size_t>(i)]
                                                           : e_.pos;
    } else {
      f.pos = e_.pos;
    }
    f.message = std::move(message);
    out_->push_back(std::move(f));
    return out_->back();
  }

  bool PerIdentity(size_t i) const { return !fields_[i].empty(); }

  // Every cost a request can have: the table's entries and the default.
  std::vector<std::pair<std::string, Decimal>> Costs() const {
    std::vector<std::pair<std::string, Decimal>> c = spec_.cost.values;
    c.emplace_back(spec_.cost.by.empty() ? "every request" : "default", spec_.cost.default_cost);
    return c;
  }

  Decimal MaxCost() const {
    Decimal m = spec_.cost.default_cost;
    for (const auto& [k, v] : spec_.cost.values) m = std::max(m, v);
    return m;
  }

  void ImpossibleCost(size_t i) {
    const LayerSpec& l = spec_.layers[i];
    for (const auto& [type, cost] : Costs()) {
      if (cost <= l.params.capacity) continue;
      const std::string who =
          type == "every request" ? "every request" : absl::StrCat(type, " requests");
      Finding& f = Add(
          l.shadow ? Severity::kWarning : Severity::kError, "impossible-cost", static_cast<int>(i),
          l.shadow ? absl::StrCat(who, " cost ", cost.ToString(), " but this shadow layer holds ",
                                  l.params.capacity.ToString(),
                                  ": it reports every one of them as denied")
                   : absl::StrCat(who, " cost ", cost.ToString(), " but the layer holds only ",
                                  l.params.capacity.ToString(), ": they can never pass"));
      f.pos = i < e_.layer_pos.size() ? e_.layer_pos[i] : e_.pos;
      f.numbers = {{"cost", cost.ToString()}, {"capacity", l.params.capacity.ToString()}};
      f.fix = absl::StrCat("raise capacity to at least ", cost.ToString(), " or lower the cost of ",
                           type, " to at most ", l.params.capacity.ToString());
    }
  }

  void AttackWindow(size_t i) {
    const LayerSpec& l = spec_.layers[i];
    const double cap = ToDouble(l.params.capacity), rate = ToDouble(l.params.rate);
    const double recovery = cap / rate;
    if (recovery <= Seconds(opt_.max_recovery)) return;
    const double t = Seconds(horizon_);
    const double one = cap + rate * t;
    const double target = std::max(Seconds(jitter_), std::min(3.0, Seconds(opt_.max_recovery)));
    const double new_cap = std::max(RoundUpNice(rate * target), ToDouble(MaxCost()));
    const double new_one = new_cap + rate * t;
    std::string msg = absl::StrCat("capacity ", Num(cap), " takes ", Secs(recovery),
                                   " to refill at ", Num(rate), "/s: an attacker gets ", Num(one),
                                   " in the first ", Secs(t), " before the limiter reacts");
    Finding& f = Add(Severity::kWarning, "attack-window", static_cast<int>(i), "");
    f.numbers = {{"capacity", Num(cap)},
                 {"rate", Num(rate) + "/s"},
                 {"recovery", Secs(recovery)},
                 {"limit", Secs(Seconds(opt_.max_recovery))},
                 {absl::StrCat("burst_in_", Num(t), "s"), Num(one)}};
    if (PerIdentity(i)) {
      const double n = static_cast<double>(attackers_);
      absl::StrAppend(&msg, " (", Num(one * n), " for ", Num(n), " identities together)");
      f.numbers.emplace_back(absl::StrCat("burst_in_", Num(t), "s_", Num(n), "_identities"),
                             Num(one * n));
    }
    f.message = std::move(msg);
    f.fix = absl::StrCat("capacity: ", Num(new_cap), " (", Secs(new_cap / rate), " of rate): the ",
                         Secs(t), " burst drops from ", Num(one), " to ", Num(new_one),
                         "; raise rate instead if ", Num(rate), "/s is too low for real users");
  }

  // Per-user demand (tokens/s) reaching one bucket of layer i from the declared message types,
  // and whether a tick rate is part of it. Types are split by bucket when the layer's key has the
  // type field. Returns {type label, demand, tick} per bucket kind.
  struct Demand {
    std::string types;
    double per_user = 0;
    bool tick = false;
  };
  std::vector<Demand> Demands(size_t i) const {
    std::vector<Demand> out;
    if (x_ == nullptr) return out;
    const bool split =
        std::find(fields_[i].begin(), fields_[i].end(), dep_.type_field()) != fields_[i].end();
    Demand total;
    for (const MessageExpectation& m : x_->messages) {
      const std::optional<Decimal> r = m.tick_rate ? m.tick_rate : m.rate;
      if (!r) continue;
      const double d = ToDouble(*r) * ToDouble(dep_.CostOf(m.type));
      if (split) {
        out.push_back({m.type, d, m.tick_rate.has_value()});
      } else {
        absl::StrAppend(&total.types, total.types.empty() ? "" : "+", m.type);
        total.per_user += d;
        total.tick |= m.tick_rate.has_value();
      }
    }
    if (!split && total.per_user > 0) out.push_back(total);
    return out;
  }

  // Users sharing one bucket of layer i (ignoring the type dimension): users / buckets, at least
  // 1; 1 when unknown and the layer is keyed by user.
  std::optional<double> UsersPerBucket(size_t i) const {
    std::vector<std::string> f;
    for (const std::string& s : fields_[i]) {
      if (s != dep_.type_field()) f.push_back(s);
    }
    const std::optional<double> users = dep_.users();
    const std::optional<double> buckets = dep_.Buckets(f);
    if (users && buckets && *buckets > 0) return std::max(1.0, *users / *buckets);
    if (std::find(f.begin(), f.end(), "user") != f.end()) return 1.0;
    return std::nullopt;
  }

  void JitterHeadroom(size_t i) {
    const LayerSpec& l = spec_.layers[i];
    const double cap = ToDouble(l.params.capacity), rate = ToDouble(l.params.rate);
    const double j = Seconds(jitter_);
    if (PerIdentity(i) && cap < rate * j) {
      const double need = RoundUpNice(rate * j);
      Finding& f =
          Add(Severity::kWarning, "jitter-headroom", static_cast<int>(i),
              absl::StrCat("capacity ", Num(cap), " is below ", Secs(j), " of rate (",
                           Num(rate * j), "): a mobile network that stalls ", Secs(j),
                           " and then delivers the queued messages at once gets them denied"));
      f.numbers = {{"capacity", Num(cap)},
                   {"rate", Num(rate) + "/s"},
                   {"jitter_window", Secs(j)},
                   {"needed", Num(rate * j)}};
      f.fix = absl::StrCat("capacity: ", Num(need), " (", Secs(j), " of rate)");
    }
    const std::optional<double> upb = UsersPerBucket(i);
    if (!upb) return;
    for (const Demand& d : Demands(i)) {
      const double demand = d.per_user * *upb;
      if (rate >= demand * 1.2) continue;
      const bool starved = rate < demand;
      const std::string what = d.tick ? "tick rate" : "typical rate";
      const std::string who =
          *upb > 1 ? absl::StrCat(Num(*upb), " users x ", Num(d.per_user), "/s") : "one user";
      Finding& f = Add(
          starved ? Severity::kError : Severity::kWarning, "jitter-headroom", static_cast<int>(i),
          starved ? absl::StrCat("refill rate ", Num(rate), "/s is below the declared ", what,
                                 " of ", d.types, " (", who, " = ", Num(demand),
                                 "/s): legitimate traffic is denied at steady state")
                  : absl::StrCat("refill rate ", Num(rate), "/s leaves less than 20% above the ",
                                 "declared ", what, " of ", d.types, " (", who, " = ", Num(demand),
                                 "/s): any jitter or retransmission is denied"));
      f.numbers = {{"rate", Num(rate) + "/s"},
                   {"declared", Num(demand) + "/s"},
                   {"needed", Num(demand * 1.2) + "/s"}};
      const double new_rate = RoundUpNice(demand * 1.2);
      const std::optional<Decimal> backend = x_ != nullptr ? x_->backend_ops_per_sec : std::nullopt;
      if (!PerIdentity(i) && backend && new_rate > ToDouble(*backend)) {
        // Raising a global cap past the backend only moves the failure to the backend.
        f.fix = absl::StrCat("the backend (", Num(ToDouble(*backend)),
                             "/s) cannot carry the declared traffic + 20% (", Num(new_rate),
                             "/s): scale it, or lower the costs or the declared rates");
      } else {
        f.fix = absl::StrCat("rate: ", Num(new_rate),
                             " and capacity: ", Num(std::max(cap, RoundUpNice(new_rate * j))),
                             " (declared ", what, " + 20%, ", Secs(j), " of burst)");
      }
    }
  }

  void MaxBuckets(size_t i) {
    const LayerSpec& l = spec_.layers[i];
    if (x_ == nullptr || !PerIdentity(i)) return;
    const std::optional<double> buckets = dep_.Buckets(fields_[i]);
    if (!buckets || *buckets <= static_cast<double>(l.max_buckets)) return;
    Finding& f = Add(
        Severity::kWarning, "max-buckets", static_cast<int>(i),
        absl::StrCat("expects ", Num(*buckets), " live buckets but tracks at most ", l.max_buckets,
                     l.overflow == OverflowPolicy::kDeny
                         ? ": identities beyond that are denied outright (on_limit: deny)"
                         : ": identities beyond that are not limited by this layer (on_limit: "
                           "fail_open)"));
    f.numbers = {{"expected_buckets", Num(*buckets)}, {"max_buckets", absl::StrCat(l.max_buckets)}};
    f.fix = absl::StrCat("max_buckets: ", Num(RoundUpNice(*buckets * 2)),
                         " (2x expected; 48 bytes + key per live bucket)");
  }

  void UselessShadow(size_t i) {
    const LayerSpec& s = spec_.layers[i];
    std::set<std::string> sf(fields_[i].begin(), fields_[i].end());
    for (size_t k = 0; k < spec_.layers.size(); ++k) {
      const LayerSpec& e = spec_.layers[k];
      if (e.shadow || std::set<std::string>(fields_[k].begin(), fields_[k].end()) != sf) continue;
      if (s.params.capacity < e.params.capacity || s.params.rate < e.params.rate) continue;
      Finding& f = Add(Severity::kNote, "useless-shadow", static_cast<int>(i),
                       absl::StrCat("shadow layer is at least as loose as enforced layer '", e.name,
                                    "' on the same key fields: it can never report a "
                                    "denial that layer does not already make"));
      f.numbers = {{"shadow", absl::StrCat(s.params.capacity.ToString(), " @ ",
                                           s.params.rate.ToString(), "/s")},
                   {e.name, absl::StrCat(e.params.capacity.ToString(), " @ ",
                                         e.params.rate.ToString(), "/s")}};
      f.fix = "tighten the candidate below the enforced layer, or remove it";
      return;
    }
  }

  void MissingFields() {
    if (x_ == nullptr || !x_->request_fields) return;
    const std::vector<std::string>& have = *x_->request_fields;
    auto supplied = [&](const std::string& f) {
      return std::find(have.begin(), have.end(), f) != have.end();
    };
    for (size_t i = 0; i < spec_.layers.size(); ++i) {
      for (const std::string& f : fields_[i]) {
        if (supplied(f)) continue;
        Finding& fd = Add(Severity::kError, "missing-field", static_cast<int>(i),
                          absl::StrCat("key '", spec_.layers[i].key_template, "' needs field '", f,
                                       "', which the declared request fields never supply: ",
                                       "every request fails with an error"));
        fd.fix = absl::StrCat("send '", f, "' with every request, or change the key template");
      }
    }
    if (!spec_.cost.by.empty() && !supplied(spec_.cost.by)) {
      Finding& f = Add(Severity::kWarning, "missing-field", -1,
                       absl::StrCat("cost.by '", spec_.cost.by,
                                    "' is never supplied: every request costs the default ",
                                    spec_.cost.default_cost.ToString()));
      f.pos = e_.cost_pos;
      f.fix = absl::StrCat("send '", spec_.cost.by, "' with every request, or drop the table");
    }
  }

  void AggregateFlood() {
    std::optional<size_t> global;
    std::optional<double> sustained, burst;
    std::string sustained_by, burst_by;
    for (size_t i = 0; i < spec_.layers.size(); ++i) {
      const LayerSpec& l = spec_.layers[i];
      if (l.shadow) continue;
      if (!PerIdentity(i) && !global) global = i;
      const std::optional<double> n = dep_.Buckets(fields_[i]);
      if (!n) continue;
      const double rate = ToDouble(l.params.rate), cap = ToDouble(l.params.capacity);
      const double s = *n * rate, b = *n * (cap + rate);
      if (!sustained || s < *sustained) {
        sustained = s;
        sustained_by = *n == 1 ? absl::StrCat(l.name, " ", Num(rate), "/s")
                               : absl::StrCat(Num(*n), " x ", Num(rate), "/s (", l.name, ")");
      }
      if (!burst || b < *burst) {
        burst = b;
        burst_by = l.name;
      }
    }
    const std::optional<Decimal> backend_d = x_ != nullptr ? x_->backend_ops_per_sec : std::nullopt;
    if (!backend_d) {
      if (global) return;
      Finding& f = Add(Severity::kWarning, "aggregate-flood", -1,
                       "no global layer: every identity can be within its own limit while "
                       "together they exceed what the backend takes");
      f.fix =
          "declare expect.backend_ops_per_sec and add a first layer "
          "{ name: global, key: \"global\", capacity: G, rate: G } with G = 90% of it";
      return;
    }
    const double backend = ToDouble(*backend_d);
    const double g = RoundDownNice(backend * 0.9);
    // Sustained 90% of the backend and a burst of 10%: no single second admits more than the
    // backend takes (capacity + rate x 1 s = 100%), which is what the simulator measures.
    const double gc = RoundDownNice(backend * 0.1);
    const std::string add_global =
        absl::StrCat("add a first layer { name: global, key: \"global\", capacity: ", Num(gc),
                     ", rate: ", Num(g), " } (90% of the backend sustained, 10% burst: no second ",
                     "admits more than it takes)");
    if (sustained && *sustained > backend) {
      Finding& f =
          Add(Severity::kError, "aggregate-flood", -1,
              absl::StrCat("within their own limits the expected identities can push ",
                           Num(*sustained), "/s (", sustained_by, "), ", Num(*sustained / backend),
                           "x the ", Num(backend), "/s the backend sustains"));
      f.numbers = {{"sustained", Num(*sustained) + "/s"},
                   {"backend", Num(backend) + "/s"},
                   {"ratio", Num(*sustained / backend)}};
      if (burst) f.numbers.emplace_back("burst_1s", Num(*burst));
      f.fix = global ? absl::StrCat("global layer '", spec_.layers[*global].name,
                                    "': rate: ", Num(g), " and capacity: ", Num(gc),
                                    " (90% of the backend sustained, 10% burst)")
                     : add_global;
      return;
    }
    if (burst && *burst > backend * 2) {
      // Sustained fits, but the first second can deliver more than two seconds of backend work.
      Finding& f = Add(Severity::kWarning, "aggregate-flood", -1,
                       absl::StrCat("sustained load fits (", Num(sustained.value_or(0)),
                                    "/s) but within one second the expected identities can push ",
                                    Num(*burst), " (", burst_by, "), over 2 s of backend work"));
      f.numbers = {{"burst_1s", Num(*burst)}, {"backend", Num(backend) + "/s"}};
      f.fix = global ? absl::StrCat("global layer '", spec_.layers[*global].name,
                                    "': capacity at most ", Num(gc))
                     : add_global;
      return;
    }
    if (!global) {
      Finding& f =
          Add(Severity::kWarning, "aggregate-flood", -1,
              sustained ? absl::StrCat("no global layer: the expected identities fit (",
                                       Num(*sustained), "/s of ", Num(backend),
                                       "/s) but nothing caps the total when the user count grows")
                        : "no global layer, and the expected identities are not declared: nothing "
                          "caps the total load");
      f.numbers = {{"backend", Num(backend) + "/s"}};
      if (sustained) f.numbers.emplace_back("sustained", Num(*sustained) + "/s");
      f.fix = add_global;
      return;
    }
    const double grate = ToDouble(spec_.layers[*global].params.rate);
    if (grate > backend) {
      Finding& f = Add(Severity::kWarning, "aggregate-flood", static_cast<int>(*global),
                       absl::StrCat("global rate ", Num(grate), "/s is above the ", Num(backend),
                                    "/s the backend sustains; only the per-identity layers keep "
                                    "the expected load below it"));
      f.numbers = {{"global_rate", Num(grate) + "/s"}, {"backend", Num(backend) + "/s"}};
      f.fix = absl::StrCat("rate: ", Num(g), " (90% of the backend)");
    }
  }

  const PolicyEntry& e_;
  const PolicySpec& spec_;
  const PolicyExpectations* x_;
  lint::Deployment dep_;
  const CheckOptions& opt_;
  std::vector<Finding>* out_;
  std::vector<std::vector<std::string>> fields_;
  Duration jitter_{}, horizon_{};
  uint64_t attackers_ = 0;
};

}  // namespace

CheckReport CheckPolicies(const PolicyDocument& doc, const CheckOptions& options) {
  CheckReport r;
  r.source = doc.source;
  r.policies = doc.policies.size();
  for (const PolicyEntry& p : doc.policies) PolicyLinter(p, options, &r.findings).Run();
  return r;
}

}  // namespace tollgate
