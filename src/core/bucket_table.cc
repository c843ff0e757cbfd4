#include "core/bucket_table.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <new>

#include "absl/hash/hash.h"
#include "core/absl_compat.h"

namespace tollgate::core {
namespace {

constexpr u128 kTokenUnit = static_cast<u128>(kNanosPerSecond) * kNanosPerSecond;  // 1 token

u128 Window(const BucketParams& p) { return static_cast<u128>(p.capacity.nanos) * kNanosPerSecond; }

// Re-bases a stored TAT onto `rate` at now_ns, keeping the debt. Never returns less than now.
u128 TatAt(const BucketEntry* e, uint64_t rate, int64_t now_ns) {
  const u128 now_old = static_cast<u128>(now_ns) * e->rate;
  const u128 tat = e->tat();
  const u128 debt = tat > now_old ? tat - now_old : 0;
  return static_cast<u128>(now_ns) * rate + debt;
}

// floor(x / d), saturated to 64 bits. Most spans fit in 64 bits, where one hardware division
// does instead of the 128-bit library routine.
uint64_t DivToU64(u128 x, u128 d) {
  const u128 q = (x >> 64) == 0 && (d >> 64) == 0
                     ? static_cast<u128>(static_cast<uint64_t>(x) / static_cast<uint64_t>(d))
                     : x / d;
  return q > UINT64_MAX ? UINT64_MAX : static_cast<uint64_t>(q);
}

}  // namespace

Duration SpanToDuration(u128 span, uint64_t rate) {
  const u128 ns = (span + rate - 1) / rate;
  if (ns > static_cast<u128>(std::numeric_limits<int64_t>::max())) return Duration::max();
  return Duration(static_cast<int64_t>(ns));
}

uint64_t BucketEntry::capacity_floor() const {
  const uint32_t code = (key_bits & kCapMask) >> kCapShift;
  return static_cast<uint64_t>(code & 0x7fff) << (code >> 15);
}

void BucketEntry::set_capacity_floor(uint64_t c) {
  // 15-bit mantissa, 6-bit shift: c >> shift keeps the top 15 bits; shifting back never exceeds c.
  const int shift = std::max(0, static_cast<int>(std::bit_width(c)) - 15);
  const uint32_t code = static_cast<uint32_t>((shift << 15) | (c >> shift));
  key_bits = (key_bits & ~kCapMask) | (code << kCapShift);
}

BucketEntry* BucketEntry::New(std::string_view key, u128 tat, uint64_t rate) {
  void* mem = ::operator new(kKeyOffset + key.size());
  auto* e = static_cast<BucketEntry*>(mem);
  e->set_tat(tat);
  e->rate = rate;
  e->key_bits = static_cast<uint32_t>(key.size());
  std::memcpy(static_cast<char*>(mem) + kKeyOffset, key.data(), key.size());
  return e;
}

void BucketEntry::Delete(BucketEntry* e) { ::operator delete(static_cast<void*>(e)); }

size_t EntryHash::operator()(std::string_view k) const {
  return absl::Hash<absl::string_view>{}(AV(k));
}

BucketTable::BucketTable(size_t max_buckets, OverflowPolicy overflow, bool track_changes)
    : max_buckets_(max_buckets), overflow_(overflow), track_changes_(track_changes) {}

BucketTable::~BucketTable() {
  for (Shard& s : shards_) {
    absl::MutexLock l(&s.mu);
    for (BucketEntry* e : s.set) BucketEntry::Delete(e);
    s.set.clear();
  }
}

int64_t BucketTable::Now(Shard& s, SteadyTime raw) {
  const int64_t r = std::chrono::duration_cast<Duration>(raw.time_since_epoch()).count();
  if (!s.started) {
    s.started = true;
    s.last_raw_ns = r;
    s.now_ns = 1;  // table time starts near zero so TAT products stay small
    return s.now_ns;
  }
  if (r > s.last_raw_ns) s.now_ns += r - s.last_raw_ns;
  s.last_raw_ns = r;  // a backward step is absorbed: no time passes, none is lost later
  return s.now_ns;
}

BucketTable::Eval BucketTable::Evaluate(Shard& s, std::string_view key, size_t hash,
                                        const BucketParams& p, Decimal cost, int64_t now_ns,
                                        Detail detail, std::span<BucketEntry* const> pinned) {
  Eval ev;
  const uint64_t rate = p.rate.nanos;
  const u128 now = static_cast<u128>(now_ns) * rate;
  const u128 window = Window(p);
  const u128 inc = static_cast<u128>(cost.nanos) * kNanosPerSecond;
  auto it = s.set.find(key, hash);
  u128 tat = now;
  if (it != s.set.end()) {
    ev.entry = *it;
    tat = TatAt(ev.entry, rate, now_ns);
  } else if (live_.load(std::memory_order_relaxed) >=
             max_buckets_.load(std::memory_order_relaxed)) {
    if (now_ns - s.last_overflow_sweep_ns >= kOverflowSweepGapNs) {
      s.last_overflow_sweep_ns = now_ns;
      SweepShard(s, now_ns, pinned);
    }
    // Evict only for a request a fresh bucket allows: one costing more than the capacity is
    // denied ("never") whatever happens, and needs no bucket.
    const bool full =
        live_.load(std::memory_order_relaxed) >= max_buckets_.load(std::memory_order_relaxed);
    if (full && (inc > window || !EvictOne(s, now_ns, pinned))) {
      ev.overflow = true;
      Decision& d = ev.decision;
      if (overflow_.load(std::memory_order_relaxed) == OverflowPolicy::kFailOpen) {
        d.allowed = inc <= window;
        d.remaining = static_cast<uint64_t>(
            std::min<u128>((window - std::min(inc, window)) / kTokenUnit, UINT64_MAX));
        d.retry_after = d.allowed ? std::optional<Duration>(Duration(0)) : std::nullopt;
      } else {
        d.allowed = false;
        d.retry_after =
            inc <= window ? std::optional<Duration>(std::chrono::seconds(1)) : std::nullopt;
      }
      return ev;
    }
  }
  const u128 debt = tat - now;
  const u128 new_tat = tat + inc;
  Decision& d = ev.decision;
  if (inc > window) {
    d.allowed = false;
    d.retry_after = std::nullopt;  // never: more than the bucket can ever hold
  } else if (new_tat - now <= window) {
    d.allowed = true;
    d.retry_after = Duration(0);
    ev.new_tat = new_tat;
  } else {
    d.allowed = false;
    d.retry_after = SpanToDuration(new_tat - now - window, rate);
  }
  if (detail == kVerdictOnly) return ev;
  const u128 used = d.allowed ? new_tat - now : debt;
  d.remaining = used >= window ? 0 : DivToU64(window - used, kTokenUnit);
  if (detail == kFull) d.reset_after = SpanToDuration(used, rate);
  return ev;
}

void BucketTable::Commit(Shard& s, std::string_view key, const Eval& e, const BucketParams& p) {
  if (e.overflow || !e.decision.allowed) return;
  if (e.entry != nullptr) {
    e.entry->set_tat(e.new_tat);
    e.entry->rate = p.rate.nanos;
    e.entry->set_capacity_floor(p.capacity.nanos);
    if (track_changes_) e.entry->key_bits |= BucketEntry::kDirty;
    return;
  }
  BucketEntry* n = BucketEntry::New(key, e.new_tat, p.rate.nanos);
  n->set_capacity_floor(p.capacity.nanos);
  if (track_changes_) n->key_bits |= BucketEntry::kDirty;
  s.set.insert(n);
  live_.fetch_add(1, std::memory_order_relaxed);
}

void BucketTable::Drop(Shard& s, BucketEntry* e) {
  if (track_changes_) s.dropped.emplace_back(e->key());
  s.set.erase(e);
  BucketEntry::Delete(e);
  live_.fetch_sub(1, std::memory_order_relaxed);
}

size_t BucketTable::SweepShard(Shard& s, int64_t now_ns, std::span<BucketEntry* const> pinned) {
  size_t n = 0;
  for (auto it = s.set.begin(); it != s.set.end();) {
    BucketEntry* e = *it;
    if (e->tat() <= static_cast<u128>(now_ns) * e->rate &&
        std::find(pinned.begin(), pinned.end(), e) == pinned.end()) {
      if (track_changes_) s.dropped.emplace_back(e->key());
      s.set.erase(it++);
      BucketEntry::Delete(e);
      live_.fetch_sub(1, std::memory_order_relaxed);
      ++n;
    } else {
      ++it;
    }
  }
  return n;
}

bool BucketTable::EvictOne(Shard& s, int64_t now_ns, std::span<BucketEntry* const> pinned) {
  const size_t n = std::min(kEvictionSample, s.set.size());
  auto it = s.evict_hand.empty() ? s.set.end() : s.set.find(s.evict_hand);
  BucketEntry* victim = nullptr;
  u128 victim_ns = 0;  // its time to full
  for (size_t i = 0; i < n; ++i) {
    if (it == s.set.end()) it = s.set.begin();
    BucketEntry* e = *it++;
    if (std::find(pinned.begin(), pinned.end(), e) != pinned.end()) continue;
    const u128 now = static_cast<u128>(now_ns) * e->rate;
    const u128 debt = e->tat() > now ? e->tat() - now : 0;
    const u128 window = static_cast<u128>(e->capacity_floor()) * kNanosPerSecond;
    if (debt + kTokenUnit > window) continue;  // less than a whole token left: being denied
    const u128 to_full = debt / e->rate;
    if (victim == nullptr || to_full < victim_ns) {
      victim = e;
      victim_ns = to_full;
    }
  }
  if (it == s.set.end()) {
    s.evict_hand.clear();
  } else {
    s.evict_hand.assign((*it)->key());
  }
  if (victim == nullptr) return false;
  Drop(s, victim);
  evicted_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

size_t BucketTable::Sweep(std::function<SteadyTime()> now) {
  size_t n = 0;
  for (Shard& s : shards_) {
    absl::MutexLock l(&s.mu);
    n += SweepShard(s, Now(s, now()));
  }
  return n;
}

void BucketTable::Rescale(const BucketParams& p, std::function<SteadyTime()> now) {
  for (Shard& s : shards_) {
    absl::MutexLock l(&s.mu);
    const int64_t t = Now(s, now());
    for (BucketEntry* e : s.set) {
      e->set_tat(TatAt(e, p.rate.nanos, t));
      e->rate = p.rate.nanos;
      e->set_capacity_floor(p.capacity.nanos);
      if (track_changes_) e->key_bits |= BucketEntry::kDirty;
    }
  }
}

void BucketTable::CollectChanges(std::function<SteadyTime()> now,
                                 const std::function<void(const BucketCheckpoint&)>& changed,
                                 const std::function<void(std::string_view)>& dropped) {
  for (Shard& s : shards_) {
    std::vector<BucketCheckpoint> out;
    std::vector<std::string> gone;
    {
      absl::MutexLock l(&s.mu);
      const int64_t t = Now(s, now());
      for (BucketEntry* e : s.set) {
        if (!(e->key_bits & BucketEntry::kDirty)) continue;
        e->key_bits &= ~BucketEntry::kDirty;
        const u128 n = static_cast<u128>(t) * e->rate;
        out.push_back({std::string(e->key()), e->tat() > n ? e->tat() - n : 0, e->rate});
      }
      gone.swap(s.dropped);
    }
    for (const auto& k : gone) dropped(k);
    for (const auto& c : out) changed(c);
  }
}

void BucketTable::Restore(std::string_view key, u128 debt, uint64_t rate, uint64_t capacity_nanos,
                          SteadyTime now) {
  Shard& s = ShardFor(key);
  absl::MutexLock l(&s.mu);
  const int64_t t = Now(s, now);
  auto it = s.set.find(key);
  if (debt == 0 || rate == 0 || key.size() > BucketEntry::kMaxKey ||
      (it == s.set.end() && live_.load() >= max_buckets_.load())) {
    if (it == s.set.end() && track_changes_) s.dropped.emplace_back(key);
    return;
  }
  const u128 tat = static_cast<u128>(t) * rate + debt;
  BucketEntry* e = it != s.set.end() ? *it : nullptr;
  if (e == nullptr) {
    e = BucketEntry::New(key, tat, rate);
    s.set.insert(e);
    live_.fetch_add(1, std::memory_order_relaxed);
  }
  e->set_tat(tat);
  e->rate = rate;
  e->set_capacity_floor(capacity_nanos);
}

void BucketTable::ForgetCheckpointed(std::string_view key) {
  if (!track_changes_) return;
  Shard& s = ShardFor(key);
  absl::MutexLock l(&s.mu);
  s.dropped.emplace_back(key);
}

}  // namespace tollgate::core
