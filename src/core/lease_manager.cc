#include "tollgate/lease_manager.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <limits>
#include <mutex>
#include <queue>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "core/absl_compat.h"
#include "core/lock_id.h"

namespace tollgate {

absl::Status ValidateKey(std::string_view key, std::string_view what) {
  if (key.empty() || key.size() > kMaxKeyBytes) {
    return absl::InvalidArgumentError(absl::StrCat(AV(what), " must be 1 to ", kMaxKeyBytes,
                                                   " bytes long, got ", key.size(), " bytes"));
  }
  return absl::OkStatus();
}

namespace {

int64_t Ms(Duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); }

absl::Status ValidateRange(Duration d, Duration lo, Duration hi, std::string_view what) {
  if (d < lo || d > hi) {
    return absl::InvalidArgumentError(absl::StrCat(AV(what), " must be an integer in [", Ms(lo),
                                                   ", ", Ms(hi), "] milliseconds, got ", Ms(d)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateTtl(Duration ttl) { return ValidateRange(ttl, kMinTtl, kMaxTtl, "ttl_ms"); }
absl::Status ValidateAcquireRequest(const AcquireRequest& req) {
  if (absl::Status st = ValidateKey(req.key); !st.ok()) return st;
  if (absl::Status st = ValidateTtl(req.ttl); !st.ok()) return st;
  return ValidateWait(req.wait);
}

absl::Status ValidateSemAcquireRequest(const SemAcquireRequest& req) {
  if (absl::Status st = ValidateKey(req.key); !st.ok()) return st;
  if (req.limit < 1 || req.limit > kMaxSemaphoreLimit) {
    return absl::InvalidArgumentError(absl::StrCat("limit must be an integer in [1, ",
                                                   kMaxSemaphoreLimit, "], got ", req.limit));
  }
  if (absl::Status st = ValidateTtl(req.ttl); !st.ok()) return st;
  return ValidateWait(req.wait);
}

absl::Status ValidateKeyList(std::span<const std::string> keys) {
  if (keys.empty() || keys.size() > kMaxMultiKeys) {
    return absl::InvalidArgumentError(absl::StrCat("numkeys must be an integer in [1, ",
                                                   kMaxMultiKeys, "], got ", keys.size()));
  }
  for (const std::string& key : keys) {
    if (absl::Status st = ValidateKey(key); !st.ok()) return st;
  }
  // At most 64 keys: sorting copies is cheaper than hashing them.
  std::vector<std::string_view> sorted(keys.begin(), keys.end());
  std::sort(sorted.begin(), sorted.end());
  auto dup = std::adjacent_find(sorted.begin(), sorted.end());
  if (dup != sorted.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("key \"", AV(dup->substr(0, 64)), "\" given twice; keys must be distinct"));
  }
  return absl::OkStatus();
}

absl::Status ValidateMultiAcquireRequest(const MultiAcquireRequest& req) {
  if (absl::Status st = ValidateKeyList(req.keys); !st.ok()) return st;
  if (absl::Status st = ValidateTtl(req.ttl); !st.ok()) return st;
  return ValidateWait(req.wait);
}

absl::Status ValidateWait(Duration wait) {
  return ValidateRange(wait, Duration(0), kMaxWait, "WAIT");
}

namespace {

constexpr size_t kShards = 32;
constexpr SteadyTime kNever = SteadyTime::max();

struct Waiter {
  uint64_t id;
  Duration ttl;
  std::optional<std::string> owner;
  SteadyTime deadline;
  GrantCallback cb;
};

// Everything the manager knows about one key. An entry exists while the key is held, blocked by
// lock-delay, has waiters, or still has a record in the journal.
struct Entry {
  bool held = false;
  std::string lock_id;
  uint64_t fence = 0;
  SteadyTime expiry{};
  std::optional<std::string> owner;
  SteadyTime blocked_until{};  // lock-delay after an unreleased expiry
  bool stored = false;         // a lease record for this key exists in the journal
  SteadyTime timer = kNever;   // earliest timer currently queued for this key
  std::deque<Waiter> waiters;
};

struct Timer {
  SteadyTime at;
  std::string key;
  bool operator>(const Timer& o) const { return at > o.at; }
};

// A callback to run once the shard lock is released.
struct Delivery {
  GrantCallback cb;
  std::optional<LeaseGrant> grant;
};

struct Shard {
  absl::Mutex mu;
  absl::flat_hash_map<std::string, Entry> entries ABSL_GUARDED_BY(mu);
  std::priority_queue<Timer, std::vector<Timer>, std::greater<Timer>> timers ABSL_GUARDED_BY(mu);
};

}  // namespace

class LeaseManager::Impl {
 public:
  explicit Impl(Options o) : opt_(o) {
    if (opt_.timer_thread) timer_ = std::thread([this] { TimerLoop(); });
  }

  ~Impl() {
    if (timer_.joinable()) {
      {
        std::lock_guard<std::mutex> l(timer_mu_);
        stop_ = true;
      }
      timer_cv_.notify_all();
      timer_.join();
    }
    // Answer every queued waiter so nobody blocks forever.
    std::vector<Delivery> out;
    for (Shard& s : shards_) {
      absl::MutexLock l(&s.mu);
      for (auto& [key, e] : s.entries) {
        for (Waiter& w : e.waiters) out.push_back({std::move(w.cb), std::nullopt});
        e.waiters.clear();
      }
    }
    Deliver(out);
  }

  void RestoreFence(uint64_t fence) {
    uint64_t cur = fence_.load();
    while (cur < fence && !fence_.compare_exchange_weak(cur, fence)) {
    }
  }

  void RestoreLease(std::string_view key, const StoredLease& lease) {
    RestoreFence(lease.fence);
    const SteadyTime now = opt_.clock->SteadyNow();
    const Duration remaining =
        std::chrono::duration_cast<Duration>(lease.expiry - opt_.clock->WallNow());
    Shard& s = ShardFor(key);
    absl::MutexLock l(&s.mu);
    if (remaining > Duration(0)) {
      auto it = s.entries.try_emplace(AV(key)).first;
      Entry& e = it->second;
      e.held = true;
      e.lock_id = lease.lock_id;
      e.fence = lease.fence;
      e.expiry = now + remaining;
      e.owner = lease.owner;
      e.stored = true;
      Schedule(s, it->first, e, e.expiry);
    } else if (remaining + opt_.lock_delay > Duration(0)) {
      auto it = s.entries.try_emplace(AV(key)).first;
      Entry& e = it->second;
      e.fence = lease.fence;
      e.blocked_until = now + remaining + opt_.lock_delay;
      e.stored = true;
      Schedule(s, it->first, e, e.blocked_until);
    } else if (opt_.journal != nullptr) {
      opt_.journal->AppendLeaseDelete(key);
    }
  }

  absl::StatusOr<AsyncStart> AcquireAsync(const AcquireRequest& req, GrantCallback cb) {
    if (absl::Status st = ValidateAcquireRequest(req); !st.ok()) return st;
    std::vector<Delivery> out;
    AsyncStart start;
    {
      Shard& s = ShardFor(req.key);
      absl::MutexLock l(&s.mu);
      const SteadyTime now = opt_.clock->SteadyNow();
      auto it = s.entries.find(req.key);
      if (it != s.entries.end()) Settle(s, it, now, out);
      it = s.entries.find(req.key);
      if (it == s.entries.end() || Grantable(it->second, now)) {
        if (it == s.entries.end()) it = s.entries.try_emplace(req.key).first;
        start.grant = Grant(s, it->first, it->second, req.ttl, req.owner, now);
      } else if (req.wait > Duration(0) && cb) {
        Entry& e = it->second;
        start.queued = true;
        start.waiter_id = next_waiter_.fetch_add(1) + 1;
        const SteadyTime deadline = now + req.wait;
        e.waiters.push_back({start.waiter_id, req.ttl, req.owner, deadline, std::move(cb)});
        Schedule(s, it->first, e, NextTimerFor(e));
      }
    }
    Deliver(out);
    MaybeWakeTimer();
    return start;
  }

  bool CancelWaiter(std::string_view key, uint64_t waiter_id) {
    Shard& s = ShardFor(key);
    absl::MutexLock l(&s.mu);
    auto it = s.entries.find(AV(key));
    if (it == s.entries.end()) return false;
    auto& ws = it->second.waiters;
    auto w = std::find_if(ws.begin(), ws.end(), [&](const Waiter& x) { return x.id == waiter_id; });
    if (w == ws.end()) return false;
    ws.erase(w);
    return true;
  }

  absl::Status Release(std::string_view key, std::string_view lock_id) {
    if (absl::Status st = ValidateKey(key); !st.ok()) return st;
    std::vector<Delivery> out;
    bool released = false;
    {
      Shard& s = ShardFor(key);
      absl::MutexLock l(&s.mu);
      const SteadyTime now = opt_.clock->SteadyNow();
      auto it = s.entries.find(AV(key));
      if (it != s.entries.end()) {
        Settle(s, it, now, out);
        it = s.entries.find(AV(key));
      }
      if (it != s.entries.end() && it->second.held &&
          core::ConstantTimeEquals(it->second.lock_id, lock_id)) {
        Entry& e = it->second;
        e.held = false;
        e.lock_id.clear();
        e.owner.reset();
        released = true;
        Settle(s, it, now, out);  // hands the key to the next waiter, or forgets it
      }
    }
    Deliver(out);
    MaybeWakeTimer();
    if (!released) return absl::FailedPreconditionError("the key is not held by that lock_id");
    return absl::OkStatus();
  }

  absl::StatusOr<Duration> Extend(std::string_view key, std::string_view lock_id, Duration ttl) {
    if (absl::Status st = ValidateKey(key); !st.ok()) return st;
    if (absl::Status st = ValidateTtl(ttl); !st.ok()) return st;
    std::vector<Delivery> out;
    bool extended = false;
    {
      Shard& s = ShardFor(key);
      absl::MutexLock l(&s.mu);
      const SteadyTime now = opt_.clock->SteadyNow();
      auto it = s.entries.find(AV(key));
      if (it != s.entries.end()) {
        Settle(s, it, now, out);
        it = s.entries.find(AV(key));
      }
      if (it != s.entries.end() && it->second.held &&
          core::ConstantTimeEquals(it->second.lock_id, lock_id)) {
        Entry& e = it->second;
        e.expiry = now + ttl;
        JournalLease(it->first, e);
        // A shorter lease must expire (and hand the key to its waiters) at its new time: queue a
        // timer for it. A longer one needs nothing: the earlier timer fires, finds the lease live
        // and reschedules.
        Schedule(s, it->first, e, NextTimerFor(e));
        extended = true;
      }
    }
    Deliver(out);
    MaybeWakeTimer();
    if (!extended) return absl::FailedPreconditionError("the key is not held by that lock_id");
    return ttl;
  }

  std::optional<LeaseInfo> Info(std::string_view key) {
    std::vector<Delivery> out;
    std::optional<LeaseInfo> info;
    {
      Shard& s = ShardFor(key);
      absl::MutexLock l(&s.mu);
      const SteadyTime now = opt_.clock->SteadyNow();
      auto it = s.entries.find(AV(key));
      if (it != s.entries.end()) {
        Settle(s, it, now, out);
        it = s.entries.find(AV(key));
      }
      if (it != s.entries.end() && it->second.held) {
        const Entry& e = it->second;
        info = LeaseInfo{e.fence, e.expiry - now, e.owner, e.waiters.size()};
      }
    }
    Deliver(out);
    MaybeWakeTimer();
    return info;
  }

  void Tick() {
    std::vector<Delivery> out;
    // Timers queued by Tick itself are picked up by the caller's next NextDeadline().
    const SteadyTime now = opt_.clock->SteadyNow();
    for (Shard& s : shards_) {
      absl::MutexLock l(&s.mu);
      while (!s.timers.empty() && s.timers.top().at <= now) {
        Timer t = s.timers.top();
        s.timers.pop();
        auto it = s.entries.find(t.key);
        if (it == s.entries.end()) continue;
        if (it->second.timer == t.at) it->second.timer = kNever;
        Settle(s, it, now, out);
      }
    }
    Deliver(out);
  }

  std::optional<SteadyTime> NextDeadline() {
    SteadyTime best = kNever;
    for (Shard& s : shards_) {
      absl::MutexLock l(&s.mu);
      if (!s.timers.empty()) best = std::min(best, s.timers.top().at);
    }
    if (best == kNever) return std::nullopt;
    return best;
  }

  uint64_t last_fence() const { return fence_.load(); }

  size_t key_count() {
    size_t n = 0;
    for (Shard& s : shards_) {
      absl::MutexLock l(&s.mu);
      n += s.entries.size();
    }
    return n;
  }

  const Options& options() const { return opt_; }

 private:
  // High bits pick the shard: the hash map inside uses the low ones.
  Shard& ShardFor(std::string_view key) { return shards_[(absl::HashOf(AV(key)) >> 48) % kShards]; }

  bool Grantable(const Entry& e, SteadyTime now) const {
    return !e.held && e.blocked_until <= now && e.waiters.empty();
  }

  // Issues a lease on the entry (which must be free) and journals it.
  LeaseGrant Grant(Shard& s, const std::string& key, Entry& e, Duration ttl,
                   const std::optional<std::string>& owner, SteadyTime now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
    e.held = true;
    e.lock_id = core::NewLockId();
    e.fence = fence_.fetch_add(1) + 1;
    e.expiry = now + ttl;
    e.owner = owner;
    JournalLease(key, e);
    Schedule(s, key, e, e.expiry);
    return LeaseGrant{e.lock_id, e.fence, ttl};
  }

  // Appends the entry's current lease to the journal (if any) and marks it stored.
  void JournalLease(const std::string& key, Entry& e) {
    if (opt_.journal == nullptr) return;
    const SteadyTime now = opt_.clock->SteadyNow();
    StoredLease rec{
        e.lock_id, e.fence,
        opt_.clock->WallNow() + std::chrono::duration_cast<WallTime::duration>(e.expiry - now),
        e.owner};
    opt_.journal->AppendLeasePut(key, rec);
    e.stored = true;
  }

  // Brings one key up to date at `now`: expires its lease, times out and grants waiters, schedules
  // its next timer, and erases the entry when it carries no information. May invalidate `it`.
  void Settle(Shard& s, absl::flat_hash_map<std::string, Entry>::iterator it, SteadyTime now,
              std::vector<Delivery>& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
    const std::string& key = it->first;
    Entry& e = it->second;
    if (e.held && e.expiry <= now) {
      e.held = false;
      e.lock_id.clear();
      e.owner.reset();
      e.blocked_until = e.expiry + opt_.lock_delay;
    }
    // Waiters whose wait ran out leave the queue, answered with nullopt.
    for (auto w = e.waiters.begin(); w != e.waiters.end();) {
      if (w->deadline <= now) {
        out.push_back({std::move(w->cb), std::nullopt});
        w = e.waiters.erase(w);
      } else {
        ++w;
      }
    }
    if (!e.held && e.blocked_until <= now && !e.waiters.empty()) {
      Waiter w = std::move(e.waiters.front());
      e.waiters.pop_front();
      out.push_back({std::move(w.cb), Grant(s, key, e, w.ttl, w.owner, now)});
    }
    if (!e.held && e.blocked_until <= now && e.waiters.empty()) {
      if (e.stored && opt_.journal != nullptr) opt_.journal->AppendLeaseDelete(key);
      s.entries.erase(it);
      return;
    }
    Schedule(s, key, e, NextTimerFor(e));
  }

  // When this entry next needs attention.
  static SteadyTime NextTimerFor(const Entry& e) {
    SteadyTime t = e.held ? e.expiry : e.blocked_until;
    for (const Waiter& w : e.waiters) t = std::min(t, w.deadline);
    return t;
  }

  // Queues a timer unless an earlier one is already queued for the key. Notes whether the timer
  // thread must wake up early to honour it (see MaybeWakeTimer).
  void Schedule(Shard& s, const std::string& key, Entry& e, SteadyTime at)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
    if (at >= e.timer) return;
    e.timer = at;
    s.timers.push({at, key});
    if (at.time_since_epoch().count() < planned_wake_.load(std::memory_order_relaxed)) {
      wake_pending_.store(true, std::memory_order_relaxed);
    }
  }

  static void Deliver(std::vector<Delivery>& out) {
    for (Delivery& d : out) {
      if (d.cb) d.cb(std::move(d.grant));
    }
  }

  // Called after a public operation released its locks: wakes the timer thread if the operation
  // queued a timer earlier than the thread planned to wake.
  void MaybeWakeTimer() {
    if (!opt_.timer_thread || !wake_pending_.exchange(false, std::memory_order_relaxed)) return;
    {
      std::lock_guard<std::mutex> l(timer_mu_);
      kick_ = true;
    }
    timer_cv_.notify_one();
  }

  void TimerLoop() {
    std::unique_lock<std::mutex> l(timer_mu_);
    while (!stop_) {
      l.unlock();
      // Until the new plan is published, any new timer counts as early and kicks the thread.
      planned_wake_.store(std::numeric_limits<int64_t>::max(), std::memory_order_relaxed);
      Tick();
      std::optional<SteadyTime> next = NextDeadline();
      l.lock();
      if (stop_) break;
      // Sleep on the steady clock of the injected Clock's kind; a fake clock is also polled so
      // tests that advance it see timers fire within a few milliseconds.
      const SteadyTime now = opt_.clock->SteadyNow();
      Duration sleep = std::chrono::milliseconds(100);
      if (next) sleep = std::clamp<Duration>(*next - now, Duration(0), sleep);
      if (opt_.clock != RealClock())
        sleep = std::min<Duration>(sleep, std::chrono::milliseconds(2));
      planned_wake_.store((now + sleep).time_since_epoch().count(), std::memory_order_relaxed);
      if (sleep > Duration(0)) {
        timer_cv_.wait_for(l, sleep, [this] { return stop_ || kick_; });
      }
      kick_ = false;
    }
  }

  Options opt_;
  Shard shards_[kShards];
  std::atomic<uint64_t> fence_{0};
  std::atomic<uint64_t> next_waiter_{0};
  std::atomic<int64_t> planned_wake_{std::numeric_limits<int64_t>::max()};
  std::atomic<bool> wake_pending_{false};
  std::mutex timer_mu_;
  std::condition_variable timer_cv_;
  bool stop_ = false;  // guarded by timer_mu_
  bool kick_ = false;  // guarded by timer_mu_
  std::thread timer_;
};

LeaseManager::LeaseManager(Options options) : impl_(std::make_unique<Impl>(options)) {}
LeaseManager::~LeaseManager() = default;

void LeaseManager::RestoreFence(uint64_t fence) { impl_->RestoreFence(fence); }
void LeaseManager::RestoreLease(std::string_view key, const StoredLease& lease) {
  impl_->RestoreLease(key, lease);
}

namespace {
absl::Status WaitDurable(const LeaseManager::Options& o) {
  if (o.journal == nullptr || !o.wait_durable) return absl::OkStatus();
  return o.journal->WaitDurable(o.journal->LastAppended());
}
}  // namespace

absl::StatusOr<std::optional<LeaseGrant>> LeaseManager::TryAcquire(const AcquireRequest& req) {
  AcquireRequest r = req;
  r.wait = Duration(0);
  absl::StatusOr<AsyncStart> s = impl_->AcquireAsync(r, nullptr);
  if (!s.ok()) return s.status();
  if (absl::Status st = WaitDurable(impl_->options()); !st.ok()) return st;
  return std::move(s->grant);
}

absl::StatusOr<std::optional<LeaseGrant>> LeaseManager::Acquire(const AcquireRequest& req) {
  struct Slot {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    std::optional<LeaseGrant> grant;
  };
  auto slot = std::make_shared<Slot>();
  absl::StatusOr<AsyncStart> s = impl_->AcquireAsync(req, [slot](std::optional<LeaseGrant> g) {
    std::lock_guard<std::mutex> l(slot->mu);
    slot->grant = std::move(g);
    slot->done = true;
    slot->cv.notify_all();
  });
  if (!s.ok()) return s.status();
  std::optional<LeaseGrant> grant = std::move(s->grant);
  if (s->queued) {
    std::unique_lock<std::mutex> l(slot->mu);
    slot->cv.wait(l, [&] { return slot->done; });
    grant = std::move(slot->grant);
  }
  if (absl::Status st = WaitDurable(impl_->options()); !st.ok()) return st;
  return grant;
}

absl::StatusOr<LeaseManager::AsyncStart> LeaseManager::AcquireAsync(const AcquireRequest& req,
                                                                    GrantCallback cb) {
  return impl_->AcquireAsync(req, std::move(cb));
}

bool LeaseManager::CancelWaiter(std::string_view key, uint64_t waiter_id) {
  return impl_->CancelWaiter(key, waiter_id);
}

absl::Status LeaseManager::Release(std::string_view key, std::string_view lock_id) {
  absl::Status st = impl_->Release(key, lock_id);
  if (!st.ok()) return st;
  return WaitDurable(impl_->options());
}

absl::StatusOr<Duration> LeaseManager::Extend(std::string_view key, std::string_view lock_id,
                                              Duration ttl) {
  absl::StatusOr<Duration> r = impl_->Extend(key, lock_id, ttl);
  if (!r.ok()) return r;
  if (absl::Status st = WaitDurable(impl_->options()); !st.ok()) return st;
  return r;
}

absl::StatusOr<std::optional<LeaseInfo>> LeaseManager::Info(std::string_view key) {
  if (absl::Status st = ValidateKey(key); !st.ok()) return st;
  return impl_->Info(key);
}

void LeaseManager::Tick() { impl_->Tick(); }
std::optional<SteadyTime> LeaseManager::NextDeadline() { return impl_->NextDeadline(); }
uint64_t LeaseManager::last_fence() const { return impl_->last_fence(); }
size_t LeaseManager::key_count() { return impl_->key_count(); }

}  // namespace tollgate
