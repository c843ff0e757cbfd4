// One table of token buckets: the exact GCRA arithmetic, sharded storage, memory bounds. Shared by
// Throttler (one table for all THROTTLE keys) and PolicyEngine (one table per layer).
#ifndef TOLLGATE_CORE_BUCKET_TABLE_H_
#define TOLLGATE_CORE_BUCKET_TABLE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "tollgate/clock.h"
#include "tollgate/limiter.h"

namespace tollgate::core {

__extension__ typedef unsigned __int128 u128;  // GCC/Clang extension; exact 128-bit math

// Multiplier between nano-tokens and the TAT unit: a cost of c nano-tokens moves the TAT
// (nanoseconds x rate-in-nano-tokens-per-second) by c x 1e9.
inline constexpr uint64_t kNanosPerSecond = 1'000'000'000;

// A live bucket: allocated as one block holding the fields and then the key bytes, so a bucket
// costs one allocation of 28 + key bytes.
struct BucketEntry {
  uint64_t tat_lo;
  uint64_t tat_hi;
  uint64_t rate;  // rate (nano-tokens/s) the TAT is scaled by
  // Bits 0-9: key length. Bits 10-30: a lower bound of the bucket's capacity (see
  // set_capacity_floor). Bit 31: changed since the last checkpoint.
  uint32_t key_bits;

  static constexpr uint32_t kDirty = 1u << 31;
  static constexpr size_t kKeyOffset = 28;
  static constexpr size_t kMaxKey = (1u << 10) - 1;  // longest key an entry can hold
  static constexpr uint32_t kKeyMask = kMaxKey;
  static constexpr int kCapShift = 10;
  static constexpr uint32_t kCapMask = ((1u << 21) - 1) << kCapShift;

  u128 tat() const { return (static_cast<u128>(tat_hi) << 64) | tat_lo; }
  void set_tat(u128 t) {
    tat_lo = static_cast<uint64_t>(t);
    tat_hi = static_cast<uint64_t>(t >> 64);
  }
  std::string_view key() const {
    return {reinterpret_cast<const char*>(this) + kKeyOffset, key_bits & kKeyMask};
  }
  // The capacity (in nano-tokens) eviction judges this bucket by: never above the capacity it was
  // last charged with, and within 2^-14 of it (kept in the 21 spare bits of key_bits as a 15-bit
  // mantissa and a 6-bit shift, truncated). 0 when unknown. Eviction needs the capacity to tell
  // whether a bucket holds a whole token; a lower bound errs on the side of keeping the bucket.
  uint64_t capacity_floor() const;
  void set_capacity_floor(uint64_t capacity_nanos);

  // REQUIRES: key.size() <= kMaxKey.
  static BucketEntry* New(std::string_view key, u128 tat, uint64_t rate);
  static void Delete(BucketEntry* e);
};

struct EntryHash {
  using is_transparent = void;
  size_t operator()(std::string_view k) const;
  size_t operator()(const BucketEntry* e) const { return (*this)(e->key()); }
};
struct EntryEq {
  using is_transparent = void;
  static std::string_view K(std::string_view k) { return k; }
  static std::string_view K(const BucketEntry* e) { return e->key(); }
  template <class A, class B>
  bool operator()(const A& a, const B& b) const {
    return K(a) == K(b);
  }
};

// A bucket's state restored from or written to a checkpoint: its debt (tokens consumed and not yet
// refilled, in 1e-18 tokens) at a wall-clock instant.
struct BucketCheckpoint {
  std::string key;
  u128 debt = 0;
  uint64_t rate = 0;  // nano-tokens per second the bucket refills at
};

class BucketTable {
 public:
  static constexpr size_t kShards = 16;
  // At max_buckets, a new key sweeps its shard for refilled buckets at most this often, so a flood
  // of new keys cannot turn every request into a full scan. All shards are swept by Sweep(), which
  // the server runs every second.
  static constexpr int64_t kOverflowSweepGapNs = 10'000'000;
  // At max_buckets, when the sweep freed nothing, eviction looks at this many buckets of the new
  // key's shard (as Redis's approximated eviction samples a few keys).
  static constexpr size_t kEvictionSample = 16;

  struct Shard {
    absl::Mutex mu;
    absl::flat_hash_set<BucketEntry*, EntryHash, EntryEq> set ABSL_GUARDED_BY(mu);
    // Monotonic view of the clock: a backward step counts as zero elapsed time.
    int64_t last_raw_ns ABSL_GUARDED_BY(mu) = 0;
    int64_t now_ns ABSL_GUARDED_BY(mu) = 0;
    bool started ABSL_GUARDED_BY(mu) = false;
    int64_t last_overflow_sweep_ns ABSL_GUARDED_BY(mu) = -kOverflowSweepGapNs;
    std::vector<std::string> dropped ABSL_GUARDED_BY(mu);  // since the last checkpoint
    // Where the next eviction starts looking: the key of the entry after the last one looked at
    // (empty = from the start). Successive evictions look at successive entries, like a clock
    // hand, so every bucket of the shard is considered in turn.
    std::string evict_hand ABSL_GUARDED_BY(mu);
  };

  // The outcome of evaluating one request against one bucket, before anything is stored.
  struct Eval {
    Decision decision;
    bool overflow = false;  // a new bucket was needed and the table is at max_buckets
    u128 new_tat = 0;
    BucketEntry* entry = nullptr;  // existing bucket, or null
  };

  BucketTable(size_t max_buckets, OverflowPolicy overflow, bool track_changes);
  ~BucketTable();
  BucketTable(const BucketTable&) = delete;
  BucketTable& operator=(const BucketTable&) = delete;

  // The key's hash (the one the shard's hash set uses) and its shard.
  static size_t Hash(std::string_view key) { return EntryHash{}(key); }
  Shard& ShardFor(size_t hash) { return shards_[(hash >> 52) % kShards]; }
  Shard& ShardFor(std::string_view key) { return ShardFor(Hash(key)); }

  // Advances the shard's monotonic clock from `raw` and returns its current time (ns).
  // REQUIRES: s.mu held.
  static int64_t Now(Shard& s, SteadyTime raw) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);

  // How much of a Decision to compute: each of remaining and reset_after costs a 128-bit division.
  enum Detail {
    kFull,         // every field
    kNoResetTime,  // reset_after left 0
    kVerdictOnly,  // allowed and retry_after only; remaining and reset_after left 0
  };
  // Evaluates taking `cost` from key's bucket at time now_ns. Stores nothing, but when the key has
  // no bucket and the table is at max_buckets it makes room first:
  //  1. it sweeps the shard for buckets that have refilled to full (at most every
  //     kOverflowSweepGapNs); they carry no information, so dropping them loses nothing;
  //  2. if that freed nothing and a fresh bucket would allow the request, it evicts one bucket:
  //     of kEvictionSample entries of the shard, among those that hold at least one whole token
  //     now, the one closest to full (the shortest time to full). A bucket with less than a whole
  //     token left, which denies every request of cost 1 or more, is never evicted: eviction
  //     never lets a key that is being denied burst. What an evicted key gains is its debt (what
  //     it consumed and has not yet refilled, at most capacity - 1 token), once; the bucket
  //     closest to full is the one whose debt would have been gone soonest anyway. Evicting
  //     replaces one bucket with one, so a table above a lowered max_buckets (SetLimits) does not
  //     grow. (A key denied only because its request costs more than the whole tokens it holds
  //     may be evicted; it too gains at most its debt.) Only when no sampled bucket qualifies
  //     does the request fall to the overflow policy (Eval::overflow).
  //  Eviction judges a bucket by BucketEntry::capacity_floor, and looks at the shard's entries
  //  in turn from Shard::evict_hand: O(kEvictionSample) per new key.
  // Neither step frees an entry in `pinned`: the entries earlier evaluations of the same check
  // hold (EvaluateAllOrNothing), which its commit will write. Anything else in the shard may be
  // freed; a later evaluation of the same check then finds that key without a bucket, as if
  // another request had dropped it first. (Entries are allocations of their own, so no insert or
  // rehash of the set moves one.)
  // REQUIRES: s.mu held; params and cost valid. `hash` is Hash(key).
  Eval Evaluate(Shard& s, std::string_view key, size_t hash, const BucketParams& params,
                Decimal cost, int64_t now_ns, Detail detail = kFull,
                std::span<BucketEntry* const> pinned = {}) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);
  // Stores an allowed evaluation (creating the bucket if needed). Does nothing for an overflow
  // evaluation. REQUIRES: s.mu held and nothing changed in the shard since Evaluate.
  void Commit(Shard& s, std::string_view key, const Eval& e, const BucketParams& params)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);

  // Drops every bucket that has refilled to full. Returns how many were dropped.
  size_t Sweep(std::function<SteadyTime()> now);
  size_t size() const { return live_.load(std::memory_order_relaxed); }
  // Buckets evicted so far to make room for a new key (see Evaluate).
  uint64_t evicted() const { return evicted_.load(std::memory_order_relaxed); }

  // Rewrites every bucket to new parameters, keeping its debt (reload with changed rate or
  // capacity; eviction judges the buckets by the new capacity).
  void Rescale(const BucketParams& params, std::function<SteadyTime()> now);

  // Checkpoint support: calls `changed` for every bucket changed since the last call (with its
  // debt at the shard's current time) and `dropped` for every key dropped since; clears the marks.
  void CollectChanges(std::function<SteadyTime()> now,
                      const std::function<void(const BucketCheckpoint&)>& changed,
                      const std::function<void(std::string_view)>& dropped);
  // Reinstates a bucket with the given debt, refilling at `rate` (before serving).
  // `capacity_nanos` is the bucket's capacity if known, else a lower bound of it (0 = unknown), for
  // eviction (see BucketEntry::capacity_floor). Ignored if it is already full or the table is at
  // max_buckets; an ignored bucket is reported as dropped at the next CollectChanges, so the
  // checkpoint forgets it too.
  void Restore(std::string_view key, u128 debt, uint64_t rate, uint64_t capacity_nanos,
               SteadyTime now);
  // Reports `key` as dropped at the next CollectChanges without touching the table: for a
  // checkpointed bucket the caller chose not to restore.
  void ForgetCheckpointed(std::string_view key);

  // Changes the bound and overflow behaviour (reload). Buckets above a lowered bound stay until
  // they refill or are evicted; meanwhile a new bucket is created only in place of an evicted one.
  void SetLimits(size_t max_buckets, OverflowPolicy overflow) {
    max_buckets_.store(max_buckets);
    overflow_.store(overflow);
  }
  OverflowPolicy overflow() const { return overflow_.load(); }

 private:
  // REQUIRES: s.mu held. Drops full buckets of one shard, except `pinned` ones; returns how many.
  size_t SweepShard(Shard& s, int64_t now_ns, std::span<BucketEntry* const> pinned = {})
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);
  // REQUIRES: s.mu held. Evicts one bucket of the shard by the rule in Evaluate; false if no
  // sampled bucket qualifies.
  bool EvictOne(Shard& s, int64_t now_ns, std::span<BucketEntry* const> pinned)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);
  // REQUIRES: s.mu held. Unlinks and frees `e`, recording the drop for the checkpoint.
  void Drop(Shard& s, BucketEntry* e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);

  std::atomic<size_t> max_buckets_;
  std::atomic<OverflowPolicy> overflow_;
  const bool track_changes_;
  std::atomic<size_t> live_{0};
  std::atomic<uint64_t> evicted_{0};
  Shard shards_[kShards];
};

// Converts a TAT-unit span (ns x rate) to a duration, rounding up; saturates.
Duration SpanToDuration(u128 span, uint64_t rate);

}  // namespace tollgate::core

#endif  // TOLLGATE_CORE_BUCKET_TABLE_H_
