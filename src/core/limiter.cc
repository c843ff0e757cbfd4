#include "tollgate/limiter.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <mutex>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "core/absl_compat.h"
#include "core/bucket_table.h"
#include "tollgate/lease_manager.h"

namespace tollgate {

using core::BucketTable;
using core::u128;

absl::Status ValidateBucketParams(const BucketParams& p) {
  if (p.capacity.nanos == 0 || kMaxCapacity < p.capacity) {
    return absl::InvalidArgumentError(
        absl::StrCat("capacity must be a positive decimal number, at most ",
                     kMaxCapacity.ToString(), ", got ", p.capacity.ToString()));
  }
  if (p.rate.nanos == 0 || kMaxRate < p.rate) {
    return absl::InvalidArgumentError(
        absl::StrCat("rate must be a positive decimal number, at most ", kMaxRate.ToString(),
                     ", got ", p.rate.ToString()));
  }
  return absl::OkStatus();
}

absl::Status ValidateRefillHorizon(const BucketParams& p, Duration max_horizon) {
  if (max_horizon == Duration::max()) return absl::OkStatus();  // no horizon
  // capacity / rate <= horizon, in integers: capacity (nano-tokens) x 1e9 <= rate (nano-tokens/s)
  // x horizon (ns). Both sides stay below 2^127.
  const u128 lhs = static_cast<u128>(p.capacity.nanos) * Decimal::kScale;
  const u128 horizon_ns = static_cast<u128>(std::max<int64_t>(max_horizon.count(), 0));
  if (lhs <= static_cast<u128>(p.rate.nanos) * horizon_ns) return absl::OkStatus();
  // capacity / rate in seconds, rounded up to the nanosecond, as a decimal.
  const u128 ns = (lhs + p.rate.nanos - 1) / p.rate.nanos;
  const uint64_t frac = static_cast<uint64_t>(ns % Decimal::kScale);
  const std::string frac_text = frac == 0 ? "" : Decimal{frac}.ToString().substr(1);  // ".5"
  return absl::InvalidArgumentError(
      absl::StrCat("capacity/rate = ", static_cast<uint64_t>(ns / Decimal::kScale), frac_text,
                   " s to refill exceeds the maximum refill horizon of ",
                   Decimal{static_cast<uint64_t>(horizon_ns)}.ToString(),
                   " s; raise rate_per_sec or lower capacity"));
}

namespace {

absl::Status ValidateCost(Decimal cost) {
  if (cost.nanos == 0 || kMaxCost < cost) {
    return absl::InvalidArgumentError(
        absl::StrCat("cost must be a positive decimal number, at most ", kMaxCost.ToString(),
                     ", got ", cost.ToString()));
  }
  return absl::OkStatus();
}

std::function<SteadyTime()> NowFn(Clock* c) {
  return [c] { return c->SteadyNow(); };
}

void ToSnapshot(const core::BucketCheckpoint& c, std::string_view table, BucketSnapshot* s) {
  s->table = std::string(table);
  s->key = c.key;
  s->debt_hi = static_cast<uint64_t>(c.debt >> 64);
  s->debt_lo = static_cast<uint64_t>(c.debt);
  s->rate = c.rate;
}

u128 Debt(const BucketSnapshot& s) { return (static_cast<u128>(s.debt_hi) << 64) | s.debt_lo; }

}  // namespace

// ---- Throttler ----

class Throttler::Impl {
 public:
  explicit Impl(Options o) : opt_(o), table_(o.max_buckets, o.overflow, /*track_changes=*/true) {}

  absl::StatusOr<Decision> Check(std::string_view key, const BucketParams& p, Decimal cost) {
    if (absl::Status st = ValidateKey(key); !st.ok()) return st;
    if (absl::Status st = ValidateBucketParams(p); !st.ok()) return st;
    if (absl::Status st = ValidateRefillHorizon(p, opt_.max_refill_horizon); !st.ok()) return st;
    if (absl::Status st = ValidateCost(cost); !st.ok()) return st;
    const size_t hash = BucketTable::Hash(key);
    BucketTable::Shard& s = table_.ShardFor(hash);
    absl::MutexLock l(&s.mu);
    const int64_t now = BucketTable::Now(s, opt_.clock->SteadyNow());
    BucketTable::Eval ev = table_.Evaluate(s, key, hash, p, cost, now);
    table_.Commit(s, key, ev, p);
    (ev.decision.allowed ? allowed_ : denied_).fetch_add(1, std::memory_order_relaxed);
    if (ev.overflow) overflow_.fetch_add(1, std::memory_order_relaxed);
    return ev.decision;
  }

  Options opt_;
  BucketTable table_;
  // CheckLayers' buckets. Not checkpointed (CollectChanges reports table_ only), so no changes are
  // tracked: tracked drops would pile up uncollected.
  BucketTable layers_{opt_.max_buckets, opt_.overflow, /*track_changes=*/false};
  std::atomic<uint64_t> allowed_{0}, denied_{0}, overflow_{0};
};

Throttler::Throttler(Options options) : impl_(std::make_unique<Impl>(options)) {}
Throttler::~Throttler() = default;
absl::StatusOr<Decision> Throttler::Check(std::string_view key, const BucketParams& params,
                                          Decimal cost) {
  return impl_->Check(key, params, cost);
}
size_t Throttler::Sweep() {
  return impl_->table_.Sweep(NowFn(impl_->opt_.clock)) +
         impl_->layers_.Sweep(NowFn(impl_->opt_.clock));
}
size_t Throttler::bucket_count() const { return impl_->table_.size() + impl_->layers_.size(); }
uint64_t Throttler::allowed_count() const { return impl_->allowed_.load(); }
uint64_t Throttler::denied_count() const { return impl_->denied_.load(); }
uint64_t Throttler::overflow_count() const { return impl_->overflow_.load(); }
uint64_t Throttler::evicted_count() const {
  return impl_->table_.evicted() + impl_->layers_.evicted();
}
void Throttler::CollectChanges(const SnapshotSink& changed, const DropSink& dropped) {
  BucketSnapshot snap;
  impl_->table_.CollectChanges(
      NowFn(impl_->opt_.clock),
      [&](const core::BucketCheckpoint& c) {
        ToSnapshot(c, "t", &snap);
        changed(snap);
      },
      [&](std::string_view key) { dropped("t", key); });
}
bool Throttler::Restore(const BucketSnapshot& s) {
  if (s.table != "t") return false;
  const u128 debt = Debt(s);
  // debt / rate > horizon, in the units of Debt (1e-18 tokens) and rate (nano-tokens/s): the debt
  // takes longer than the horizon to refill. A bucket Check charged since the horizon existed
  // never owes that much (an allowed request leaves debt <= capacity <= rate x horizon).
  const Duration horizon = impl_->opt_.max_refill_horizon;
  const u128 horizon_ns = static_cast<u128>(std::max<int64_t>(horizon.count(), 0));
  if (s.rate == 0 || (horizon != Duration::max() && debt / s.rate > horizon_ns)) {
    impl_->table_.ForgetCheckpointed(s.key);
    return true;
  }
  // The checkpoint has no capacity; the debt is a lower bound of it (see above), in nano-tokens.
  const u128 capacity_floor = debt / core::kNanosPerSecond;
  impl_->table_.Restore(s.key, debt, s.rate,
                        static_cast<uint64_t>(std::min<u128>(capacity_floor, kMaxCapacity.nanos)),
                        impl_->opt_.clock->SteadyNow());
  return true;
}

// ---- Policies ----

bool IsFieldName(std::string_view f) {
  if (f.empty() || f.size() > 64) return false;
  for (size_t i = 0; i < f.size(); ++i) {
    const char c = f[i];
    const bool ok = (c >= 'a' && c <= 'z') || c == '_' || (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

namespace {

bool IsName(std::string_view n) {
  if (n.empty() || n.size() > 64) return false;
  for (char c : n) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-' || c == '.';
    if (!ok) return false;
  }
  return true;
}

// A key template split into literal text and field references.
struct Segment {
  bool field;
  std::string text;  // literal text, or the field name
};

absl::StatusOr<std::vector<Segment>> ParseTemplate(std::string_view t) {
  std::vector<Segment> out;
  std::string lit;
  for (size_t i = 0; i < t.size(); ++i) {
    if (t[i] == '}') return absl::InvalidArgumentError("unbalanced '}'");
    if (t[i] != '{') {
      lit.push_back(t[i]);
      continue;
    }
    size_t close = t.find('}', i);
    if (close == std::string_view::npos) return absl::InvalidArgumentError("unbalanced '{'");
    std::string_view name = t.substr(i + 1, close - i - 1);
    if (!IsFieldName(name)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "field name '", AV(name), "' is not a lowercase identifier ([a-z_][a-z0-9_]*)"));
    }
    if (!lit.empty()) out.push_back({false, std::move(lit)});
    lit.clear();
    out.push_back({true, std::string(name)});
    i = close;
  }
  if (!lit.empty()) out.push_back({false, std::move(lit)});
  if (out.empty()) return absl::InvalidArgumentError("is empty");
  return out;
}

absl::Status Where(const absl::Status& st, std::string_view where) {
  return absl::InvalidArgumentError(absl::StrCat(AV(where), ": ", st.message()));
}

constexpr size_t kLatencyBuckets = 40;  // 2^39 ns ~ 9 minutes

struct LayerState {
  LayerState(const LayerSpec& s) : table(s.max_buckets, s.overflow, /*track_changes=*/true) {}
  // Counts one layer's verdict in a check (PolicyEngine::Check and PolicyEngine::Record).
  void Count(bool shadow, bool layer_allowed) {
    std::atomic<uint64_t>& n = layer_allowed ? allowed : (shadow ? shadow_denied : denied);
    n.fetch_add(1, std::memory_order_relaxed);
  }
  BucketTable table;
  std::atomic<uint64_t> allowed{0}, denied{0}, shadow_denied{0}, overflow{0};
};

struct Layer {
  LayerSpec spec;
  std::vector<Segment> tmpl;
  std::string table_id;
  std::shared_ptr<LayerState> state;
};

struct Latency {
  std::atomic<uint64_t> counts[kLatencyBuckets] = {};
  std::atomic<uint64_t> sum_ns{0};
};

using DenialCounter = std::shared_ptr<std::atomic<uint64_t>>;

struct Policy {
  PolicySpec spec;
  std::vector<Layer> layers;
  absl::flat_hash_map<std::string, Decimal> costs;
  std::shared_ptr<Latency> latency;
  // Denials by cost table type, and of every other request; kept across reloads per type.
  absl::flat_hash_map<std::string, DenialCounter> denied_by_type;
  DenialCounter denied_other;
};

struct PolicySet {
  absl::flat_hash_map<std::string, Policy> policies;
};

std::string TableId(const PolicySpec& p, const LayerSpec& l) {
  return absl::StrCat("p:", p.name, "/", l.name, "/", l.key_template);
}

}  // namespace

absl::Status ValidatePolicy(const PolicySpec& p) {
  const std::string where = absl::StrCat("policy '", p.name, "'");
  if (!IsName(p.name)) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": name must be 1 to 64 characters of [A-Za-z0-9_.-]"));
  }
  if (p.layers.empty()) return absl::InvalidArgumentError(where + ": needs at least one layer");
  absl::flat_hash_set<std::string> names;
  bool enforced = false;
  for (const LayerSpec& l : p.layers) {
    const std::string lw = absl::StrCat(where, " layer '", l.name, "'");
    if (!IsName(l.name)) {
      return absl::InvalidArgumentError(
          absl::StrCat(lw, ": name must be 1 to 64 characters of [A-Za-z0-9_.-]"));
    }
    if (!names.insert(l.name).second) {
      return absl::InvalidArgumentError(lw + ": duplicate layer name");
    }
    auto t = ParseTemplate(l.key_template);
    if (!t.ok()) return Where(t.status(), lw + " key");
    if (absl::Status st = ValidateBucketParams(l.params); !st.ok()) return Where(st, lw);
    if (l.max_buckets == 0) return absl::InvalidArgumentError(lw + ": max_buckets must be >= 1");
    enforced |= !l.shadow;
  }
  if (!enforced) {
    return absl::InvalidArgumentError(where + ": every layer is shadow; at least one must enforce");
  }
  if (!p.cost.by.empty() && !IsFieldName(p.cost.by)) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, " cost.by: '", p.cost.by, "' is not a lowercase identifier"));
  }
  if (absl::Status st = ValidateCost(p.cost.default_cost); !st.ok()) {
    return Where(st, where + " cost.default");
  }
  for (const auto& [k, v] : p.cost.values) {
    if (absl::Status st = ValidateCost(v); !st.ok()) {
      return Where(st, absl::StrCat(where, " cost.values.", k));
    }
  }
  return absl::OkStatus();
}

namespace {

// One bucket taking part in an all-or-nothing check.
struct BucketRef {
  BucketTable* table;
  std::string_view key;
  const BucketParams* params;
  bool shadow;
  std::string_view name;  // layer name, for denied_layer
};

// Locks the shards of every bucket (in address order, so concurrent checks cannot deadlock),
// evaluates all of them at one instant, and commits every enforced bucket and every shadow bucket
// with room only if no enforced bucket denies. *allowed tells which happened.
// Per-check scratch space held inline: a check touches one bucket per layer and policies rarely
// have more than a handful of layers, so the hot path allocates nothing.
template <typename T>
using LayerVector = absl::InlinedVector<T, 8>;

LayerVector<BucketTable::Eval> EvaluateAllOrNothing(std::span<const BucketRef> refs, Decimal cost,
                                                    SteadyTime raw, bool* allowed) {
  const size_t n = refs.size();
  // Raw pointers into the inline storage: InlinedVector's operator[] tests "inline or heap?" on
  // every access, which showed up in profiles of this loop.
  LayerVector<BucketTable::Shard*> shard_store(n), order_store(n);
  LayerVector<size_t> hash_store(n);
  BucketTable::Shard** shards = shard_store.data();
  BucketTable::Shard** order = order_store.data();
  size_t* hashes = hash_store.data();
  const BucketRef* r = refs.data();
  size_t locks = 0;
  for (size_t i = 0; i < n; ++i) {
    hashes[i] = BucketTable::Hash(r[i].key);
    shards[i] = &r[i].table->ShardFor(hashes[i]);
    // Insertion into the sorted, duplicate-free lock order (n is a handful of layers).
    size_t j = locks;
    while (j > 0 && order[j - 1] > shards[i]) --j;
    if (j > 0 && order[j - 1] == shards[i]) continue;
    for (size_t k = locks; k > j; --k) order[k] = order[k - 1];
    order[j] = shards[i];
    ++locks;
  }
  for (size_t k = 0; k < locks; ++k) order[k]->mu.Lock();
  LayerVector<BucketTable::Eval> eval_store(n);
  BucketTable::Eval* evals = eval_store.data();
  // held[j]: the bucket evaluation j found, which the commit below writes. Evaluating a later
  // bucket may make room in a full table (sweep, eviction) in a shard this check holds, and must
  // not free any of these: each evaluation gets the ones before it as `pinned`. (Buckets it
  // frees that later evaluations will look up are simply not found then, as if another request
  // had dropped them first; nothing is freed after the last evaluation, and the commit frees
  // nothing.) This matters when buckets share a table: Throttler::CheckLayers keeps every layer
  // in one; PolicyEngine gives each layer its own table, where pinning never finds a match.
  LayerVector<core::BucketEntry*> held_store(n);
  core::BucketEntry** held = held_store.data();
  *allowed = true;
  for (size_t i = 0; i < n; ++i) {
    // Each shard keeps its own monotonic time; a shard shared by two buckets of this check
    // advances once and returns the same time to both. A layered answer reports no reset time,
    // and a shadow layer's remaining tokens are never reported: skip those divisions.
    const int64_t now = BucketTable::Now(*shards[i], raw);
    evals[i] = r[i].table->Evaluate(
        *shards[i], r[i].key, hashes[i], *r[i].params, cost, now,
        r[i].shadow ? BucketTable::kVerdictOnly : BucketTable::kNoResetTime, {held, i});
    held[i] = evals[i].entry;
    if (!r[i].shadow && !evals[i].decision.allowed) *allowed = false;
  }
  if (*allowed) {
    for (size_t i = 0; i < n; ++i) r[i].table->Commit(*shards[i], r[i].key, evals[i], *r[i].params);
  }
  for (size_t k = locks; k > 0; --k) order[k - 1]->mu.Unlock();
  return eval_store;
}

// The combined answer over n layers, whatever holds them: layer(i) gives {name, shadow,
// decision}. remaining is the least over enforced layers, denied_layer the first enforced one that
// denied, retry_after the largest over those that denied (never wins); allowed iff none denied.
template <typename LayerAt>
PolicyDecision Combine(size_t n, const LayerAt& layer) {
  PolicyDecision out;
  out.allowed = true;
  out.retry_after = Duration(0);
  out.layer_allowed.resize(n);
  bool first_enforced = true;
  for (size_t i = 0; i < n; ++i) {
    const auto [name, shadow, d] = layer(i);
    out.layer_allowed[i] = d.allowed;
    if (shadow) continue;
    out.remaining = first_enforced ? d.remaining : std::min(out.remaining, d.remaining);
    first_enforced = false;
    if (d.allowed) continue;
    out.allowed = false;
    if (!out.denied_layer) out.denied_layer = std::string(name);
    if (!d.retry_after || !out.retry_after) {
      out.retry_after = std::nullopt;
    } else {
      out.retry_after = std::max(*out.retry_after, *d.retry_after);
    }
  }
  return out;
}

struct LayerView {
  std::string_view name;
  bool shadow;
  const Decision& decision;
};

PolicyDecision Summarize(std::span<const BucketRef> refs, std::span<const BucketTable::Eval> evals,
                         bool allowed) {
  PolicyDecision out = Combine(refs.size(), [&](size_t i) {
    return LayerView{refs[i].name, refs[i].shadow, evals[i].decision};
  });
  out.allowed = allowed;  // an overflowed fail-open layer allows without a bucket
  return out;
}

}  // namespace

class PolicyEngine::Impl {
 public:
  explicit Impl(Options o) : opt_(o), set_(std::make_shared<const PolicySet>()) {}

  absl::Status Install(std::vector<PolicySpec> specs) {
    absl::flat_hash_set<std::string> seen;
    for (const PolicySpec& p : specs) {
      if (absl::Status st = ValidatePolicy(p); !st.ok()) return st;
      if (!seen.insert(p.name).second) {
        return absl::InvalidArgumentError(absl::StrCat("policy '", p.name, "': defined twice"));
      }
    }
    std::lock_guard<std::mutex> install_lock(install_mu_);
    std::shared_ptr<const PolicySet> old = Load();
    auto next = std::make_shared<PolicySet>();
    for (PolicySpec& spec : specs) {
      Policy pol;
      const Policy* prev = nullptr;
      if (auto it = old->policies.find(spec.name); it != old->policies.end()) prev = &it->second;
      pol.latency = prev != nullptr ? prev->latency : std::make_shared<Latency>();
      for (const LayerSpec& ls : spec.layers) {
        Layer layer;
        layer.spec = ls;
        layer.tmpl = *ParseTemplate(ls.key_template);
        layer.table_id = TableId(spec, ls);
        if (prev != nullptr) {
          for (const Layer& pl : prev->layers) {
            if (pl.table_id == layer.table_id) layer.state = pl.state;
          }
        }
        if (layer.state) {
          layer.state->table.SetLimits(ls.max_buckets, ls.overflow);
          layer.state->table.Rescale(ls.params, NowFn(opt_.clock));
        } else {
          layer.state = std::make_shared<LayerState>(ls);
        }
        pol.layers.push_back(std::move(layer));
      }
      for (const auto& [k, v] : spec.cost.values) pol.costs[k] = v;
      pol.denied_other = prev != nullptr ? prev->denied_other
                                         : std::make_shared<std::atomic<uint64_t>>(0);
      for (const auto& [k, v] : spec.cost.values) {
        DenialCounter c;
        if (prev != nullptr) {
          if (auto it = prev->denied_by_type.find(k); it != prev->denied_by_type.end()) {
            c = it->second;
          }
        }
        pol.denied_by_type[k] = c ? c : std::make_shared<std::atomic<uint64_t>>(0);
      }
      pol.spec = std::move(spec);
      std::string name = pol.spec.name;
      next->policies.emplace(std::move(name), std::move(pol));
    }
    std::atomic_store(&set_, std::shared_ptr<const PolicySet>(std::move(next)));
    generation_.fetch_add(1, std::memory_order_release);
    return absl::OkStatus();
  }

  // Finds the policy (unless `known`, the policy `name` names in `set`, is given) and renders the
  // request's cost and every layer's key: a missing field fails before anything is locked. *pol
  // points into `set`.
  absl::Status Render(const PolicySet& set, std::string_view name, std::span<const Field> fields,
                      std::optional<Decimal> cost_override, const Policy** pol_out, Decimal* cost,
                      std::vector<std::string>* keys, const Policy* known = nullptr) {
    if (known == nullptr) {
      auto pit = set.policies.find(AV(name));
      if (pit == set.policies.end()) {
        return absl::NotFoundError(absl::StrCat("unknown policy '", AV(name.substr(0, 64)), "'"));
      }
      known = &pit->second;
    }
    const Policy& pol = *known;
    *pol_out = &pol;
    auto field = [&](std::string_view f) -> const std::string_view* {
      for (const Field& x : fields) {
        if (x.first == f) return &x.second;
      }
      return nullptr;
    };
    // Cost: the override, else the table entry for the request's `by` field, else the default.
    *cost = pol.spec.cost.default_cost;
    if (cost_override) {
      if (absl::Status st = ValidateCost(*cost_override); !st.ok()) return st;
      *cost = *cost_override;
    } else if (!pol.spec.cost.by.empty()) {
      if (const std::string_view* v = field(pol.spec.cost.by)) {
        if (auto c = pol.costs.find(AV(*v)); c != pol.costs.end()) *cost = c->second;
      }
    }
    const size_t n = pol.layers.size();
    keys->resize(n);
    for (size_t i = 0; i < n; ++i) {
      std::string& key = (*keys)[i];
      key.clear();
      for (const Segment& seg : pol.layers[i].tmpl) {
        if (!seg.field) {
          key += seg.text;
          continue;
        }
        const std::string_view* v = field(seg.text);
        if (v == nullptr) {
          return absl::InvalidArgumentError(absl::StrCat("policy '", pol.spec.name, "' layer '",
                                                         pol.layers[i].spec.name, "' needs field '",
                                                         seg.text, "'"));
        }
        key.append(*v);
      }
      if (absl::Status st = ValidateKey(key, "rendered key"); !st.ok()) {
        return Where(
            st, absl::StrCat("policy '", pol.spec.name, "' layer '", pol.layers[i].spec.name, "'"));
      }
    }
    return absl::OkStatus();
  }

  absl::StatusOr<ResolvedCheck> Resolve(std::string_view name, std::span<const Field> fields,
                                        std::optional<Decimal> cost_override) {
    std::shared_ptr<const PolicySet> set = Load();
    const Policy* pol = nullptr;
    ResolvedCheck out;
    std::vector<std::string> keys;
    if (absl::Status st = Render(*set, name, fields, cost_override, &pol, &out.cost, &keys);
        !st.ok()) {
      return st;
    }
    for (size_t i = 0; i < keys.size(); ++i) {
      const LayerSpec& l = pol->layers[i].spec;
      out.layers.push_back({l.name, std::move(keys[i]), l.params, l.shadow});
    }
    if (!pol->spec.cost.by.empty()) {
      for (const Field& f : fields) {
        if (f.first == pol->spec.cost.by && pol->costs.contains(AV(f.second))) {
          out.cost_type.assign(f.second);
        }
      }
    }
    return out;
  }

  absl::StatusOr<PolicyDecision> Check(std::string_view name, std::span<const Field> fields,
                                       std::optional<Decimal> cost_override) {
    const SteadyTime started = opt_.clock->SteadyNow();
    const Policy* known = nullptr;
    const PolicySet& set = CurrentSet(name, &known);
    const Policy* polp = nullptr;
    Decimal cost;
    // Rendered keys, reused across checks on this thread (their capacity stays allocated).
    thread_local std::vector<std::string> keys;
    if (absl::Status st = Render(set, name, fields, cost_override, &polp, &cost, &keys, known);
        !st.ok()) {
      return st;
    }
    const Policy& pol = *polp;
    const size_t n = pol.layers.size();
    LayerVector<BucketRef> refs(n);
    for (size_t i = 0; i < n; ++i) {
      const Layer& l = pol.layers[i];
      refs[i] = {&l.state->table, keys[i], &l.spec.params, l.spec.shadow, l.spec.name};
    }
    bool allowed = false;
    LayerVector<BucketTable::Eval> evals =
        EvaluateAllOrNothing(refs, cost, opt_.clock->SteadyNow(), &allowed);
    for (size_t i = 0; i < n; ++i) {
      const Decision& d = evals[i].decision;
      LayerState& st = *pol.layers[i].state;
      if (evals[i].overflow) st.overflow.fetch_add(1, std::memory_order_relaxed);
      st.Count(refs[i].shadow, d.allowed);
    }
    PolicyDecision out = Summarize(refs, evals, allowed);
    if (!allowed) {
      std::string_view type;
      for (const Field& f : fields) {
        if (f.first == pol.spec.cost.by) type = f.second;
      }
      CountDenial(pol, pol.spec.cost.by.empty() ? std::string_view() : type);
    }
    RecordLatency(*pol.latency, opt_.clock->SteadyNow() - started);
    return out;
  }

  // Counts a denied request of `pol` under its cost table type `type` ("other" if not in it).
  static void CountDenial(const Policy& pol, std::string_view type) {
    auto it = type.empty() ? pol.denied_by_type.end() : pol.denied_by_type.find(AV(type));
    (it == pol.denied_by_type.end() ? *pol.denied_other : *it->second)
        .fetch_add(1, std::memory_order_relaxed);
  }

  void Record(std::string_view name, std::span<const LayerCheck> layers, const PolicyDecision& d,
              Duration latency, std::string_view cost_type) {
    std::shared_ptr<const PolicySet> set = Load();
    auto pit = set->policies.find(AV(name));
    if (pit == set->policies.end()) return;
    const Policy& pol = pit->second;
    auto installed = [&](std::string_view layer) -> LayerState* {
      for (const Layer& l : pol.layers) {
        if (l.spec.name == layer) return l.state.get();
      }
      return nullptr;
    };
    const bool per_layer = d.layer_allowed.size() == layers.size();
    for (size_t i = 0; i < layers.size(); ++i) {
      LayerState* st = installed(layers[i].name);
      if (per_layer) {
        if (st != nullptr) st->Count(layers[i].shadow, d.layer_allowed[i]);
        continue;
      }
      // Only the combined answer: allowed means every enforced layer allowed; denied means the
      // enforced layers before denied_layer allowed and it denied (the rest are unknown).
      if (layers[i].shadow) continue;
      if (!d.allowed && !d.denied_layer) break;
      const bool denier = !d.allowed && *d.denied_layer == layers[i].name;
      if (st != nullptr) st->Count(false, !denier);
      if (denier) break;
    }
    if (!d.allowed) CountDenial(pol, cost_type);
    RecordLatency(*pol.latency, latency);
  }

  std::shared_ptr<const PolicySet> Load() const { return std::atomic_load(&set_); }

  // The installed set as this thread last saw it, refreshed when Install has published a newer
  // one: the hot path costs one atomic load instead of std::atomic_load's lock and two reference
  // count updates. The reference stays valid until this thread's next call (the thread-local
  // cache owns it); a check racing an Install sees the old set or the new one, as before.
  //
  // The cache also remembers the policy this thread looked up last in that set (requests name the
  // same policy over and over), so a repeat skips the name's hash lookup; *policy is that policy
  // if `name` matches it, else null.
  const PolicySet& CurrentSet(std::string_view name, const Policy** policy) {
    struct Cache {
      uint64_t engine = 0;
      uint64_t generation = 0;
      std::shared_ptr<const PolicySet> set;
      std::string last_name;
      const Policy* last_policy = nullptr;  // points into *set
    };
    thread_local Cache cache;
    const uint64_t gen = generation_.load(std::memory_order_acquire);
    if (cache.engine != id_ || cache.generation != gen || cache.set == nullptr) {
      cache.set = Load();
      cache.engine = id_;
      cache.generation = gen;
      cache.last_policy = nullptr;
    }
    if (cache.last_policy == nullptr || cache.last_name != name) {
      auto it = cache.set->policies.find(AV(name));
      cache.last_policy = it == cache.set->policies.end() ? nullptr : &it->second;
      cache.last_name.assign(name);
    }
    *policy = cache.last_policy;
    return *cache.set;
  }

  static void RecordLatency(Latency& lat, Duration d) {
    const uint64_t ns = d.count() < 0 ? 0 : static_cast<uint64_t>(d.count());
    // Bucket b counts latencies in [2^(b-1), 2^b) ns: b = bit_width(ns), capped.
    const size_t b = std::min<size_t>(std::bit_width(ns), kLatencyBuckets - 1);
    lat.counts[b].fetch_add(1, std::memory_order_relaxed);
    lat.sum_ns.fetch_add(ns, std::memory_order_relaxed);
  }

  static uint64_t NextEngineId() {
    static std::atomic<uint64_t> next{1};
    return next.fetch_add(1, std::memory_order_relaxed);
  }

  Options opt_;
  const uint64_t id_ = NextEngineId();  // tells engines apart in the thread-local cache
  std::mutex install_mu_;
  std::shared_ptr<const PolicySet> set_;  // accessed with std::atomic_load/atomic_store
  std::atomic<uint64_t> generation_{0};   // bumped after every store to set_
};

PolicyEngine::PolicyEngine(Options options) : impl_(std::make_unique<Impl>(options)) {}
PolicyEngine::~PolicyEngine() = default;

absl::Status PolicyEngine::Install(std::vector<PolicySpec> specs) {
  return impl_->Install(std::move(specs));
}

absl::StatusOr<PolicyDecision> PolicyEngine::Check(std::string_view policy,
                                                   std::span<const Field> fields,
                                                   std::optional<Decimal> cost) {
  return impl_->Check(policy, fields, cost);
}

absl::StatusOr<ResolvedCheck> PolicyEngine::Resolve(std::string_view policy,
                                                    std::span<const Field> fields,
                                                    std::optional<Decimal> cost) {
  return impl_->Resolve(policy, fields, cost);
}

void PolicyEngine::Record(std::string_view policy, std::span<const LayerCheck> layers,
                          const PolicyDecision& decision, Duration latency,
                          std::string_view cost_type) {
  impl_->Record(policy, layers, decision, latency, cost_type);
}

std::vector<TypeDenials> PolicyEngine::denied_by_type() const {
  std::vector<TypeDenials> out;
  auto set = impl_->Load();
  for (const std::string& name : policy_names()) {
    const Policy& p = set->policies.at(name);
    for (const auto& [type, cost] : p.spec.cost.values) {
      out.push_back({name, type, p.denied_by_type.at(type)->load()});
    }
    out.push_back({name, "other", p.denied_other->load()});
  }
  return out;
}

std::vector<std::string> PolicyEngine::policy_names() const {
  std::vector<std::string> out;
  for (const auto& [name, p] : impl_->Load()->policies) out.push_back(name);
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<LayerCounters> PolicyEngine::counters() const {
  std::vector<LayerCounters> out;
  auto set = impl_->Load();
  for (const std::string& name : policy_names()) {
    const Policy& p = set->policies.at(name);
    for (const Layer& l : p.layers) {
      out.push_back({name, l.spec.name, l.spec.shadow, l.state->allowed.load(),
                     l.state->denied.load(), l.state->shadow_denied.load(),
                     l.state->overflow.load(), l.state->table.size(), l.state->table.evicted()});
    }
  }
  return out;
}

std::vector<PolicyLatency> PolicyEngine::latencies() const {
  std::vector<PolicyLatency> out;
  auto set = impl_->Load();
  for (const std::string& name : policy_names()) {
    const Latency& lat = *set->policies.at(name).latency;
    PolicyLatency pl;
    pl.policy = name;
    pl.sum = Duration(static_cast<int64_t>(lat.sum_ns.load()));
    for (size_t b = 0; b < kLatencyBuckets; ++b) {
      pl.counts.push_back(lat.counts[b].load());
      pl.count += pl.counts.back();
    }
    auto quantile = [&](double q) {
      if (pl.count == 0) return Duration(0);
      const uint64_t rank = static_cast<uint64_t>(q * static_cast<double>(pl.count - 1)) + 1;
      uint64_t seen = 0;
      for (size_t b = 0; b < kLatencyBuckets; ++b) {
        seen += pl.counts[b];
        if (seen >= rank) return Duration(int64_t{1} << b);
      }
      return Duration(int64_t{1} << (kLatencyBuckets - 1));
    };
    pl.p50 = quantile(0.5);
    pl.p99 = quantile(0.99);
    pl.max = quantile(1.0);
    out.push_back(std::move(pl));
  }
  return out;
}

size_t PolicyEngine::Sweep() {
  size_t n = 0;
  auto set = impl_->Load();
  for (const auto& [name, p] : set->policies) {
    for (const Layer& l : p.layers) n += l.state->table.Sweep(NowFn(impl_->opt_.clock));
  }
  return n;
}

void PolicyEngine::CollectChanges(const SnapshotSink& changed, const DropSink& dropped) {
  auto set = impl_->Load();
  BucketSnapshot snap;
  for (const auto& [name, p] : set->policies) {
    for (const Layer& l : p.layers) {
      l.state->table.CollectChanges(
          NowFn(impl_->opt_.clock),
          [&](const core::BucketCheckpoint& c) {
            ToSnapshot(c, l.table_id, &snap);
            changed(snap);
          },
          [&](std::string_view key) { dropped(l.table_id, key); });
    }
  }
}

bool PolicyEngine::Restore(const BucketSnapshot& s) {
  auto set = impl_->Load();
  for (const auto& [name, p] : set->policies) {
    for (const Layer& l : p.layers) {
      if (l.table_id == s.table) {
        // The layer's capacity applies to every bucket of it.
        l.state->table.Restore(s.key, Debt(s), s.rate, l.spec.params.capacity.nanos,
                               impl_->opt_.clock->SteadyNow());
        return true;
      }
    }
  }
  return false;
}

absl::Status ValidateLayerChecks(std::span<const LayerCheck> layers, Decimal cost) {
  if (absl::Status st = ValidateCost(cost); !st.ok()) return st;
  bool enforced = false;
  for (size_t i = 0; i < layers.size(); ++i) {
    const LayerCheck& l = layers[i];
    if (l.name.empty() || l.name.size() > 64) {
      return absl::InvalidArgumentError(
          absl::StrCat("layer name must be 1 to 64 bytes long, got ", l.name.size(), " bytes"));
    }
    if (absl::Status st = ValidateKey(l.key); !st.ok()) return st;
    if (absl::Status st = ValidateBucketParams(l.params); !st.ok()) return st;
    // A check has a handful of layers: pairwise comparison beats building a set.
    for (size_t j = 0; j < i; ++j) {
      if (layers[j].name == l.name && layers[j].key == l.key) {
        return absl::InvalidArgumentError(
            absl::StrCat("layer '", l.name, "' is given twice with the same key (layers ", j,
                         " and ", i, "); each (layer, key) pair may appear once"));
      }
    }
    enforced |= !l.shadow;
  }
  if (!enforced) return absl::InvalidArgumentError("at least one layer must be enforced");
  return absl::OkStatus();
}

PolicyDecision CombineLayerDecisions(std::span<const LayerCheck> layers,
                                     std::span<const Decision> decisions) {
  return Combine(layers.size(), [&](size_t i) {
    return LayerView{layers[i].name, layers[i].shadow, decisions[i]};
  });
}

absl::StatusOr<PolicyDecision> Throttler::CheckLayers(std::span<const LayerCheck> layers,
                                                      Decimal cost) {
  if (absl::Status st = ValidateLayerChecks(layers, cost); !st.ok()) return st;
  static_assert(1 + 64 + kMaxKeyBytes <= core::BucketEntry::kMaxKey, "layered key too long");
  std::vector<std::string> keys;
  keys.reserve(layers.size());
  for (const LayerCheck& l : layers) {
    // Length-prefixed layer name: no two (layer, key) pairs share a bucket.
    std::string k(1, static_cast<char>(l.name.size()));
    k.append(l.name).append(l.key);
    keys.push_back(std::move(k));
  }
  std::vector<BucketRef> refs(layers.size());
  for (size_t i = 0; i < layers.size(); ++i) {
    refs[i] = {&impl_->layers_, keys[i], &layers[i].params, layers[i].shadow, layers[i].name};
  }
  bool allowed = false;
  LayerVector<BucketTable::Eval> evals =
      EvaluateAllOrNothing(refs, cost, impl_->opt_.clock->SteadyNow(), &allowed);
  (allowed ? impl_->allowed_ : impl_->denied_).fetch_add(1, std::memory_order_relaxed);
  return Summarize(refs, evals, allowed);
}

}  // namespace tollgate
