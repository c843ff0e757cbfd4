// Token buckets with exact integer arithmetic (GCRA), and layered policies checked all-or-nothing.
//
// Arithmetic: a bucket with rate r tokens/s and capacity b is kept as one number, its theoretical
// arrival time (TAT), in units of nanoseconds x rate-in-nano-tokens. In those units a cost of c
// tokens moves the TAT by exactly c x 1e18 and the burst window is exactly b x 1e18, so no rounding
// happens anywhere: no float drift, no fraction lost to fast polling, no credit accrued while full
// (TAT never falls behind "now"). Every time is taken from a per-shard monotonic view of the
// injected clock: a clock step backwards counts as zero elapsed time, so it neither starves a key
// nor grants extra tokens.
#ifndef TOLLGATE_LIMITER_H_
#define TOLLGATE_LIMITER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tollgate/clock.h"
#include "tollgate/decimal.h"

namespace tollgate {

inline constexpr Decimal kMaxCapacity = Decimal::Units(10'000'000'000);  // tokens
inline constexpr Decimal kMaxRate = Decimal::Units(1'000'000'000);       // tokens per second
inline constexpr Decimal kMaxCost = kMaxCapacity;

struct BucketParams {
  Decimal capacity;  // burst: (0, kMaxCapacity]
  Decimal rate;      // tokens per second: (0, kMaxRate]
};
// InvalidArgument naming the field if a value is out of range.
[[nodiscard]] absl::Status ValidateBucketParams(const BucketParams& p);

// The longest an empty bucket may take to refill (capacity / rate) when its parameters come from
// a client (THROTTLE). A bucket that refills over years is one a client can leave exhausted for
// years: it is never swept (only full buckets are) and never evicted (a key being denied is not),
// so a few thousand of them hold a table at max_buckets and every new key is denied. Limits set by
// an operator (policy layers: weekly quotas and the like) are not held to it.
inline constexpr Duration kMaxRefillHorizon = std::chrono::hours(24);
// OK iff capacity / rate <= max_horizon (exactly: capacity x 1 s <= rate x max_horizon), else
// InvalidArgument such as "capacity/rate = 10000000000 s to refill exceeds the maximum refill
// horizon of 86400 s; raise rate_per_sec or lower capacity". Duration::max() means no horizon.
// REQUIRES: p valid (ValidateBucketParams), max_horizon > 0.
[[nodiscard]] absl::Status ValidateRefillHorizon(const BucketParams& p,
                                                 Duration max_horizon = kMaxRefillHorizon);

struct Decision {
  bool allowed = false;
  // Whole tokens left after this decision (floor).
  uint64_t remaining = 0;
  // Zero when allowed. When denied: the exact wait after which the same request succeeds if
  // nothing else consumes from the bucket; nullopt ("never") when cost > capacity.
  std::optional<Duration> retry_after;
  // Time until the bucket is full again.
  Duration reset_after{0};
};

// What a layer does when a request needs a new bucket and the layer already holds max_buckets
// live buckets. Before it applies, room is made (BucketTable::Evaluate in src/core/bucket_table.h
// has the details): buckets that have refilled to full are dropped, since they carry no
// information; if none is, one bucket is evicted: of 16 sampled from the new key's shard, among
// those holding at least one whole token, the one closest to full. A bucket with less than a
// whole token left (denying every request of cost 1 or more) is never evicted, so a key being
// denied cannot burst by being evicted; an evicted key gains at most its debt (what it consumed
// and has not refilled), once. Only when no sampled bucket qualifies does the policy apply.
enum class OverflowPolicy {
  kDeny,      // the request is denied by that layer, retry_after = 1 s (memory stays bounded;
              // keys already tracked are unaffected)
  kFailOpen,  // the layer allows the request without tracking it (counted as overflow)
};

// The answer of a check over several layers (PolicyEngine::Check, Throttler::CheckLayers).
struct PolicyDecision {
  bool allowed = false;
  std::optional<std::string> denied_layer;  // first enforced layer, in order, that denied
  uint64_t remaining = 0;                   // least over the enforced layers
  // Zero when allowed; the largest over the denying layers; nullopt = never.
  std::optional<Duration> retry_after;
  // Each layer's own verdict, in the check's layer order: whether that layer alone had room (for a
  // shadow layer, false is a shadow denial). Filled by every layered check (PolicyEngine::Check,
  // Throttler::CheckLayers, CombineLayerDecisions and so every backend); used for counting. Held
  // inline up to 8 layers, so a check still allocates nothing.
  absl::InlinedVector<bool, 8> layer_allowed;
};

// Checkpointing: what a bucket owes, independent of time and rate, so it can be written out and
// reinstated after a restart.
struct BucketSnapshot {
  std::string table;  // "t" for THROTTLE; "p:<policy>/<layer>/<key template>" for a policy layer
  std::string key;
  uint64_t debt_hi = 0, debt_lo = 0;  // tokens consumed and not yet refilled, in 1e-18 tokens
  uint64_t rate = 0;                  // refill rate in nano-tokens per second
};
using SnapshotSink = std::function<void(const BucketSnapshot&)>;
using DropSink = std::function<void(std::string_view table, std::string_view key)>;

// One layer of an all-or-nothing check: the bucket `key` in the namespace of layer `name`.
struct LayerCheck {
  std::string name;  // reported as denied_layer; buckets of different layers never mix
  std::string key;   // 1..512 bytes
  BucketParams params;
  bool shadow = false;
};

// Validates an ad hoc layered check for any backend: the cost, every layer's name (1..64 bytes),
// key and parameters, that no two layers have the same name and key (they would be one bucket,
// charged twice), and that at least one layer is enforced. InvalidArgument naming what is wrong.
// The refill horizon is not checked: layered checks carry operator-configured policies.
[[nodiscard]] absl::Status ValidateLayerChecks(std::span<const LayerCheck> layers, Decimal cost);

struct PolicyDecision;
// Combines per-layer decisions (decisions[i] for layers[i]) into the check's answer, by the rules
// of PolicyEngine::Check: allowed iff no enforced layer denied; remaining the least over enforced
// layers; denied_layer the first enforced one that denied; retry_after the largest over those
// (nullopt, "never", wins).
PolicyDecision CombineLayerDecisions(std::span<const LayerCheck> layers,
                                     std::span<const Decision> decisions);

// A policy check resolved for one request: every layer's bucket and the cost to take.
struct ResolvedCheck {
  std::vector<LayerCheck> layers;
  Decimal cost;
  std::string cost_type;  // the request's cost table type (empty: none or not in the table)
};

// Ad hoc buckets, one per key, parameters given with every call (THROTTLE). Thread-safe.
class Throttler {
 public:
  struct Options {
    Clock* clock = RealClock();
    size_t max_buckets = 1'000'000;
    OverflowPolicy overflow = OverflowPolicy::kDeny;
    // Check refuses parameters whose capacity / rate exceeds this (ValidateRefillHorizon); > 0.
    // Duration::max() accepts any.
    Duration max_refill_horizon = kMaxRefillHorizon;
  };
  explicit Throttler(Options options);
  ~Throttler();

  // Takes `cost` tokens from key's bucket if it holds that many; a denied request takes nothing.
  // If a key is used with a new rate or capacity, its debt (tokens consumed and not yet refilled)
  // carries over to the new parameters. InvalidArgument for bad parameters, cost or key (1 to 512
  // bytes), or parameters that take longer than options.max_refill_horizon to refill
  // (ValidateRefillHorizon); nothing changes then.
  [[nodiscard]] absl::StatusOr<Decision> Check(std::string_view key, const BucketParams& params,
                                               Decimal cost);
  // All-or-nothing over several buckets, with the rules of PolicyEngine::Check (which see).
  // Layered buckets live apart from Check's (a layer "a" key "b" never meets THROTTLE key "a...").
  // InvalidArgument for any bad key, layer name (1..64 bytes), parameter or cost, two layers with
  // the same name and key, or no enforced bucket (ValidateLayerChecks); nothing is consumed then.
  // The refill horizon does not apply (the layers come from operator-configured policies).
  [[nodiscard]] absl::StatusOr<PolicyDecision> CheckLayers(std::span<const LayerCheck> layers,
                                                           Decimal cost);

  // Drops buckets that have refilled to full. Returns how many were dropped.
  size_t Sweep();
  size_t bucket_count() const;
  // Decisions so far (bad input is not counted).
  uint64_t allowed_count() const;
  uint64_t denied_count() const;
  uint64_t overflow_count() const;  // decisions made without a bucket (table at max_buckets)
  // Buckets evicted to make room for a new key (see OverflowPolicy), by Check and CheckLayers.
  uint64_t evicted_count() const;

  // Reports every bucket changed since the last call, and every bucket dropped since.
  void CollectChanges(const SnapshotSink& changed, const DropSink& dropped);
  // Reinstates a checkpointed bucket (table "t"); returns false for another table. A bucket whose
  // debt would take longer than options.max_refill_horizon to refill (written before the horizon
  // existed, or under a longer one) is not reinstated, and is reported as dropped by the next
  // CollectChanges so the checkpoint forgets it. A reinstated bucket's capacity is not in the
  // checkpoint: until it is used again, eviction takes its restored debt as its capacity (a lower
  // bound), so it qualifies once it has refilled a whole token.
  bool Restore(const BucketSnapshot& snapshot);

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// ---- Layered policies ----

struct LayerSpec {
  std::string name;          // unique within the policy
  std::string key_template;  // e.g. "user:{user}:{type}"; {field} = a request field
  BucketParams params;
  bool shadow = false;  // evaluated and counted, never denies
  size_t max_buckets = 1'000'000;
  OverflowPolicy overflow = OverflowPolicy::kDeny;
};

struct CostSpec {
  std::string by;  // request field that selects the cost; empty = every request costs default_cost
  std::vector<std::pair<std::string, Decimal>> values;
  Decimal default_cost = Decimal::Units(1);
};

struct PolicySpec {
  std::string name;
  std::vector<LayerSpec> layers;  // checked in this order
  CostSpec cost;
};

// InvalidArgument naming the policy, layer and field for anything malformed: empty names,
// duplicate layer names, bad templates (unbalanced braces, field names that are not lowercase
// identifiers), bad parameters, no enforced layer.
[[nodiscard]] absl::Status ValidatePolicy(const PolicySpec& spec);

struct LayerCounters {
  std::string policy, layer;
  bool shadow = false;
  uint64_t allowed = 0, denied = 0, shadow_denied = 0, overflow = 0;
  size_t live_buckets = 0;
  uint64_t evicted = 0;  // buckets evicted to make room for a new key (see OverflowPolicy)
};

struct PolicyLatency {
  std::string policy;
  uint64_t count = 0;
  // counts[i] = checks that took < 2^i ns (and >= 2^(i-1) ns); the last bucket holds the rest.
  std::vector<uint64_t> counts;
  Duration p50{0}, p99{0}, max{0};  // upper bounds from the histogram
  Duration sum{0};                   // of every check's latency
};

// Requests of a policy denied (by an enforced layer), by the value of the policy's cost.by field:
// one entry per cost table type plus "other" (no cost.by field, or a value not in the table), so
// the set of types is bounded by the policy file.
struct TypeDenials {
  std::string policy, type;
  uint64_t denied = 0;
};

using Field = std::pair<std::string_view, std::string_view>;

// Request field names (and the names inside key templates) are lowercase identifiers:
// [a-z_][a-z0-9_]*, at most 64 characters.
bool IsFieldName(std::string_view name);

// A set of named policies. Checks are thread-safe and may run while Install replaces the set.
class PolicyEngine {
 public:
  struct Options {
    Clock* clock = RealClock();
  };
  explicit PolicyEngine(Options options);
  ~PolicyEngine();

  // Validates every spec, then atomically replaces the installed policies. A layer whose policy
  // name, layer name and key template are unchanged keeps its buckets (with the new capacity and
  // rate applied to their debt). On error nothing changes.
  [[nodiscard]] absl::Status Install(std::vector<PolicySpec> specs);

  // Checks a request against every layer of `policy`: takes the cost from every enforced layer or
  // from none. Shadow layers are charged only when the request is allowed and they have room.
  // `cost` overrides the policy's cost table. NotFound for an unknown policy; InvalidArgument for
  // a missing field a key template needs, or a bad cost.
  [[nodiscard]] absl::StatusOr<PolicyDecision> Check(std::string_view policy,
                                                     std::span<const Field> fields,
                                                     std::optional<Decimal> cost = std::nullopt);

  // Renders the request's layers and cost without touching any bucket, for running the check on
  // another backend (Backend::CheckLayers). Same errors as Check.
  [[nodiscard]] absl::StatusOr<ResolvedCheck> Resolve(std::string_view policy,
                                                      std::span<const Field> fields,
                                                      std::optional<Decimal> cost = std::nullopt);

  // Counts a check of `policy` decided elsewhere (Backend::CheckLayers on the layers Resolve
  // rendered) in counters() and latencies(), as Check counts its own: per layer allowed, denied or
  // shadow_denied from decision.layer_allowed (entry i for layers[i]), and `latency` in the
  // policy's histogram. Layers are matched to the installed policy by name, so after a reload
  // between Resolve and Record only layers that still exist are counted; an unknown policy is
  // ignored. Without one layer_allowed entry per layer, only what decision.allowed and
  // denied_layer imply is counted (enforced layers up to the denying one). Never counts overflow.
  // A denial is counted in denied_by_type() under `cost_type` (ResolvedCheck::cost_type).
  void Record(std::string_view policy, std::span<const LayerCheck> layers,
              const PolicyDecision& decision, Duration latency, std::string_view cost_type = {});

  std::vector<std::string> policy_names() const;
  std::vector<LayerCounters> counters() const;
  std::vector<PolicyLatency> latencies() const;
  std::vector<TypeDenials> denied_by_type() const;
  size_t Sweep();

  // Reports every bucket changed since the last call, and every bucket dropped since.
  void CollectChanges(const SnapshotSink& changed, const DropSink& dropped);
  // Reinstates a checkpointed bucket into the installed layer it belongs to; returns false if no
  // installed layer has that table name.
  bool Restore(const BucketSnapshot& snapshot);

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace tollgate

#endif  // TOLLGATE_LIMITER_H_
