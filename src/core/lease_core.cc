// LeaseManager::Impl: single-key leases, their FIFO waiters, timers and the timer thread. Multi-key
// locks are in lease_multi.cc, semaphores in semaphores.cc.
#include <algorithm>
#include <utility>

#include "absl/hash/hash.h"
#include "core/absl_compat.h"
#include "core/lease_manager_impl.h"
#include "core/lock_id.h"

namespace tollgate {

using lease_internal::EntryIt;
using lease_internal::kNever;
using lease_internal::kShards;
using lease_internal::Timer;
using lease_internal::Waiter;

namespace lease_internal {

ShardLocks::ShardLocks(std::vector<Shard*> shards) : shards_(std::move(shards)) {
  std::sort(shards_.begin(), shards_.end());
  shards_.erase(std::unique(shards_.begin(), shards_.end()), shards_.end());
  for (Shard* s : shards_) s->mu.Lock();
}

ShardLocks::~ShardLocks() {
  for (auto it = shards_.rbegin(); it != shards_.rend(); ++it) (*it)->mu.Unlock();
}

}  // namespace lease_internal

LeaseManager::Impl::Impl(Options o) : opt_(o) {
  if (opt_.timer_thread) timer_ = std::thread([this] { TimerLoop(); });
}

LeaseManager::Impl::~Impl() {
  if (timer_.joinable()) {
    {
      std::lock_guard<std::mutex> l(timer_mu_);
      stop_ = true;
    }
    timer_cv_.notify_all();
    timer_.join();
  }
  // Answer every queued waiter so nobody blocks forever.
  Outbox out;
  for (Shard& s : shards_) {
    absl::MutexLock l(&s.mu);
    for (auto& [key, e] : s.entries) {
      for (Waiter& w : e.waiters) {
        if (w.multi == nullptr) {
          out.grants.emplace_back(std::move(w.cb), std::nullopt);
        } else if (!w.multi->answered.exchange(true)) {
          out.grants.emplace_back(std::move(w.multi->cb), std::nullopt);
        }
      }
      e.waiters.clear();
    }
    for (auto& [key, e] : s.sems) {
      for (auto& w : e.waiters) out.permits.emplace_back(std::move(w.cb), std::nullopt);
      e.waiters.clear();
    }
  }
  Flush(out);
}

void LeaseManager::Impl::RestoreFence(uint64_t fence) {
  uint64_t cur = fence_.load();
  while (cur < fence && !fence_.compare_exchange_weak(cur, fence)) {
  }
}

void LeaseManager::Impl::RestoreLease(std::string_view key, const StoredLease& lease) {
  RestoreFence(lease.fence);
  const SteadyTime now = opt_.clock->SteadyNow();
  const Duration remaining =
      std::chrono::duration_cast<Duration>(lease.expiry - opt_.clock->WallNow());
  Shard& s = ShardFor(key);
  absl::MutexLock l(&s.mu);
  if (remaining > Duration(0)) {
    auto it = s.entries.try_emplace(AV(key)).first;
    Entry& e = it->second;
    if (e.held) DropLease(it->first, e);  // restored twice: the last record wins
    e.held = true;
    e.lock_id = lease.lock_id;
    e.fence = lease.fence;
    e.expiry = now + remaining;
    e.owner = lease.owner;
    e.acquired_at = lease.acquired_at;
    e.indexed = lease.indexed;
    if (e.indexed) IndexAdd(e.lock_id, it->first);
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

absl::StatusOr<LeaseManager::AsyncStart> LeaseManager::Impl::AcquireAsync(const AcquireRequest& req,
                                                                          GrantCallback cb) {
  if (absl::Status st = ValidateAcquireRequest(req); !st.ok()) return st;
  Outbox out;
  AsyncStart start;
  {
    Shard& s = ShardFor(req.key);
    absl::MutexLock l(&s.mu);
    const SteadyTime now = opt_.clock->SteadyNow();
    SettleKey(s, req.key, now, out);
    auto it = s.entries.find(req.key);
    if (it == s.entries.end() || Grantable(it->second, now)) {
      if (it == s.entries.end()) it = s.entries.try_emplace(req.key).first;
      start.grant = Grant(s, it->first, it->second, req.ttl, req.owner, now);
    } else if (req.wait > Duration(0) && cb) {
      Entry& e = it->second;
      start.queued = true;
      start.waiter_id = NextWaiterId();
      e.waiters.push_back({start.waiter_id, req.ttl, req.owner, now + req.wait, std::move(cb), {}});
      Schedule(s, it->first, e, NextTimerFor(e, now));
    }
  }
  Flush(out);
  MaybeWakeTimer();
  return start;
}

bool LeaseManager::Impl::CancelWaiter(std::string_view key, uint64_t waiter_id) {
  Outbox out;
  bool removed = false;
  std::shared_ptr<MultiWaiter> multi;
  {
    Shard& s = ShardFor(key);
    absl::MutexLock l(&s.mu);
    auto it = s.entries.find(AV(key));
    if (it == s.entries.end()) return false;
    auto& ws = it->second.waiters;
    auto w = std::find_if(ws.begin(), ws.end(), [&](const Waiter& x) { return x.id == waiter_id; });
    if (w == ws.end()) return false;
    if (w->multi != nullptr) {
      multi = w->multi;  // cancelled below, under the locks of all its keys
    } else {
      ws.erase(w);
      removed = true;
      Settle(s, it, opt_.clock->SteadyNow(), out);  // the next waiter may now be first
    }
  }
  if (multi != nullptr) removed = CancelMulti(multi, out);
  Flush(out);
  MaybeWakeTimer();
  return removed;
}

absl::Status LeaseManager::Impl::Release(std::string_view key, std::string_view lock_id) {
  if (absl::Status st = ValidateKey(key); !st.ok()) return st;
  Outbox out;
  bool released = false;
  {
    Shard& s = ShardFor(key);
    absl::MutexLock l(&s.mu);
    const SteadyTime now = opt_.clock->SteadyNow();
    SettleKey(s, key, now, out);
    auto it = s.entries.find(AV(key));
    if (it != s.entries.end() && it->second.held &&
        core::ConstantTimeEquals(it->second.lock_id, lock_id)) {
      DropLease(it->first, it->second);
      released = true;
      Settle(s, it, now, out);  // hands the key to the next waiter, or forgets it
    }
  }
  Flush(out);
  MaybeWakeTimer();
  if (!released) return absl::FailedPreconditionError("the key is not held by that lock_id");
  return absl::OkStatus();
}

absl::StatusOr<Duration> LeaseManager::Impl::Extend(std::string_view key, std::string_view lock_id,
                                                    Duration ttl) {
  if (absl::Status st = ValidateKey(key); !st.ok()) return st;
  if (absl::Status st = ValidateTtl(ttl); !st.ok()) return st;
  Outbox out;
  bool extended = false;
  {
    Shard& s = ShardFor(key);
    absl::MutexLock l(&s.mu);
    const SteadyTime now = opt_.clock->SteadyNow();
    SettleKey(s, key, now, out);
    auto it = s.entries.find(AV(key));
    if (it != s.entries.end() && it->second.held &&
        core::ConstantTimeEquals(it->second.lock_id, lock_id)) {
      Entry& e = it->second;
      e.expiry = now + ttl;
      JournalLease(it->first, e);
      // A shorter lease must expire (and hand the key to its waiters) at its new time: queue a
      // timer for it. A longer one needs nothing: the earlier timer fires, finds the lease live
      // and reschedules.
      Schedule(s, it->first, e, NextTimerFor(e, now));
      extended = true;
    }
  }
  Flush(out);
  MaybeWakeTimer();
  if (!extended) return absl::FailedPreconditionError("the key is not held by that lock_id");
  return ttl;
}

std::optional<LeaseInfo> LeaseManager::Impl::Info(std::string_view key) {
  Outbox out;
  std::optional<LeaseInfo> info;
  {
    Shard& s = ShardFor(key);
    absl::MutexLock l(&s.mu);
    const SteadyTime now = opt_.clock->SteadyNow();
    SettleKey(s, key, now, out);
    auto it = s.entries.find(AV(key));
    if (it != s.entries.end() && it->second.held) {
      const Entry& e = it->second;
      info =
          LeaseInfo{e.fence, e.expiry - now, e.owner, e.waiters.size(), e.lock_id, e.acquired_at};
    }
  }
  Flush(out);
  MaybeWakeTimer();
  return info;
}

std::optional<LeaseById> LeaseManager::Impl::LookupById(std::string_view lock_id) {
  std::string key;
  {
    lease_internal::IdShard& x = IdShardFor(lock_id);
    absl::MutexLock l(&x.mu);
    auto it = x.key_of.find(AV(lock_id));
    if (it == x.key_of.end()) return std::nullopt;
    key = it->second;
  }
  // The index only points: between the read above and the lock below the lease may have been
  // released (and the key granted again), so the lease found must prove it is lock_id's.
  Outbox out;
  std::optional<LeaseById> found;
  {
    Shard& s = ShardFor(key);
    absl::MutexLock l(&s.mu);
    const SteadyTime now = opt_.clock->SteadyNow();
    SettleKey(s, key, now, out);
    auto it = s.entries.find(key);
    if (it != s.entries.end() && it->second.held && it->second.indexed &&
        core::ConstantTimeEquals(it->second.lock_id, lock_id)) {
      const Entry& e = it->second;
      found = LeaseById{it->first, LeaseInfo{e.fence, e.expiry - now, e.owner, e.waiters.size(),
                                             e.lock_id, e.acquired_at}};
    }
  }
  Flush(out);
  MaybeWakeTimer();
  return found;
}

void LeaseManager::Impl::Tick() {
  Outbox out;
  // Timers queued by Tick itself are picked up by the caller's next NextDeadline().
  const SteadyTime now = opt_.clock->SteadyNow();
  for (Shard& s : shards_) {
    absl::MutexLock l(&s.mu);
    while (!s.timers.empty() && s.timers.top().at <= now) {
      Timer t = s.timers.top();
      s.timers.pop();
      if (t.semaphore) {
        auto it = s.sems.find(t.key);
        if (it == s.sems.end()) continue;
        if (it->second.timer == t.at) it->second.timer = kNever;
        SemSettle(s, it, now, out);
      } else {
        auto it = s.entries.find(t.key);
        if (it == s.entries.end()) continue;
        if (it->second.timer == t.at) it->second.timer = kNever;
        Settle(s, it, now, out);
      }
    }
  }
  Flush(out);
}

std::optional<SteadyTime> LeaseManager::Impl::NextDeadline() {
  SteadyTime best = kNever;
  for (Shard& s : shards_) {
    absl::MutexLock l(&s.mu);
    if (!s.timers.empty()) best = std::min(best, s.timers.top().at);
  }
  if (best == kNever) return std::nullopt;
  return best;
}

size_t LeaseManager::Impl::key_count() {
  size_t n = 0;
  for (Shard& s : shards_) {
    absl::MutexLock l(&s.mu);
    n += s.entries.size();
  }
  return n;
}

size_t LeaseManager::Impl::semaphore_count() {
  size_t n = 0;
  for (Shard& s : shards_) {
    absl::MutexLock l(&s.mu);
    n += s.sems.size();
  }
  return n;
}

LeaseManager::Impl::Shard& LeaseManager::Impl::ShardFor(std::string_view key) {
  return shards_[(absl::HashOf(AV(key)) >> 48) % kShards];
}

std::vector<LeaseManager::Impl::Shard*> LeaseManager::Impl::ShardsOf(
    std::span<const std::string> keys) {
  std::vector<Shard*> out;
  out.reserve(keys.size());
  for (const std::string& k : keys) out.push_back(&ShardFor(k));
  return out;
}

bool LeaseManager::Impl::FreeAt(const Entry& e, SteadyTime now) {
  return !e.held && e.blocked_until <= now;
}

bool LeaseManager::Impl::Grantable(const Entry& e, SteadyTime now) {
  return FreeAt(e, now) && e.waiters.empty();
}

void LeaseManager::Impl::Hold(Shard& s, const std::string& key, Entry& e, const LeaseGrant& grant,
                              const std::optional<std::string>& owner, bool indexed,
                              SteadyTime now) {
  e.held = true;
  e.lock_id = grant.lock_id;
  e.fence = grant.fence;
  e.expiry = now + grant.ttl;
  e.owner = owner;
  e.acquired_at = grant.acquired_at;
  e.indexed = indexed;
  if (indexed) IndexAdd(e.lock_id, key);
  JournalLease(key, e);
  Schedule(s, key, e, NextTimerFor(e, now));
}

void LeaseManager::Impl::DropLease(const std::string& key, Entry& e) {
  if (e.indexed) IndexRemove(e.lock_id, key);
  e.held = false;
  e.lock_id.clear();
  e.owner.reset();
  e.acquired_at.reset();
  e.indexed = false;
}

LeaseGrant LeaseManager::Impl::NewGrant(Duration ttl) {
  return LeaseGrant{core::NewLockId(), NextFence(), ttl, opt_.clock->WallNow()};
}

LeaseGrant LeaseManager::Impl::Grant(Shard& s, const std::string& key, Entry& e, Duration ttl,
                                     const std::optional<std::string>& owner, SteadyTime now) {
  LeaseGrant g = NewGrant(ttl);
  Hold(s, key, e, g, owner, /*indexed=*/true, now);
  return g;
}

lease_internal::IdShard& LeaseManager::Impl::IdShardFor(std::string_view lock_id) {
  return id_shards_[(absl::HashOf(AV(lock_id)) >> 48) % kShards];
}

void LeaseManager::Impl::IndexAdd(std::string_view lock_id, std::string_view key) {
  lease_internal::IdShard& x = IdShardFor(lock_id);
  absl::MutexLock l(&x.mu);
  x.key_of.insert_or_assign(std::string(lock_id), std::string(key));
}

void LeaseManager::Impl::IndexRemove(std::string_view lock_id, std::string_view key) {
  lease_internal::IdShard& x = IdShardFor(lock_id);
  absl::MutexLock l(&x.mu);
  auto it = x.key_of.find(AV(lock_id));
  // Only this key's entry: a record restored twice under one lock_id (never written by tollgate)
  // must not let one key's end remove the other's entry.
  if (it != x.key_of.end() && it->second == key) x.key_of.erase(it);
}

void LeaseManager::Impl::JournalLease(const std::string& key, Entry& e) {
  if (opt_.journal == nullptr) return;
  const SteadyTime now = opt_.clock->SteadyNow();
  StoredLease rec{
      e.lock_id,
      e.fence,
      opt_.clock->WallNow() + std::chrono::duration_cast<WallTime::duration>(e.expiry - now),
      e.owner,
      e.acquired_at,
      e.indexed};
  opt_.journal->AppendLeasePut(key, rec);
  e.stored = true;
}

void LeaseManager::Impl::SettleKey(Shard& s, std::string_view key, SteadyTime now, Outbox& out,
                                   const MultiWaiter* skip) {
  auto it = s.entries.find(AV(key));
  if (it != s.entries.end()) Settle(s, it, now, out, skip);
}

void LeaseManager::Impl::Settle(Shard& s, EntryIt it, SteadyTime now, Outbox& out,
                                const MultiWaiter* skip) {
  const std::string& key = it->first;
  Entry& e = it->second;
  if (e.held && e.expiry <= now) {
    expirations_.fetch_add(1, std::memory_order_relaxed);
    DropLease(key, e);
    e.blocked_until = e.expiry + opt_.lock_delay;
  }
  // Waiters whose wait ran out leave the queue, answered with nullopt; a multi-key waiter that
  // was answered at another key (it timed out there) just leaves.
  for (auto w = e.waiters.begin(); w != e.waiters.end();) {
    if (w->multi != nullptr) {
      MultiWaiter& mw = *w->multi;
      if (mw.answered.load()) {
        w = e.waiters.erase(w);
        continue;
      }
      if (w->deadline <= now) {
        if (!mw.answered.exchange(true)) out.grants.emplace_back(std::move(mw.cb), std::nullopt);
        w = e.waiters.erase(w);
        continue;
      }
    } else if (w->deadline <= now) {
      out.grants.emplace_back(std::move(w->cb), std::nullopt);
      w = e.waiters.erase(w);
      continue;
    }
    ++w;
  }
  if (FreeAt(e, now) && !e.waiters.empty()) {
    Waiter& front = e.waiters.front();
    if (front.multi == nullptr) {
      Waiter w = std::move(front);
      e.waiters.pop_front();
      out.grants.emplace_back(std::move(w.cb), Grant(s, key, e, w.ttl, w.owner, now));
    } else if (front.multi.get() != skip) {
      // It needs its other keys too: tried once the shard locks are released.
      out.multi_tries.push_back(front.multi);
    }
  }
  if (FreeAt(e, now) && e.waiters.empty()) {
    if (e.stored && opt_.journal != nullptr) opt_.journal->AppendLeaseDelete(key);
    s.entries.erase(it);
    return;
  }
  Schedule(s, key, e, NextTimerFor(e, now));
}

SteadyTime LeaseManager::Impl::NextTimerFor(const Entry& e, SteadyTime now) {
  SteadyTime t = kNever;
  if (e.held) {
    t = e.expiry;
  } else if (e.blocked_until > now) {
    t = e.blocked_until;
  }
  for (const Waiter& w : e.waiters) t = std::min(t, w.deadline);
  return t;
}

void LeaseManager::Impl::Schedule(Shard& s, const std::string& key, Entry& e, SteadyTime at) {
  if (at >= e.timer) return;
  e.timer = at;
  s.timers.push({at, false, key});
  NoteTimer(at);
}

void LeaseManager::Impl::ScheduleSem(Shard& s, const std::string& key, SemEntry& e, SteadyTime at) {
  if (at >= e.timer) return;
  e.timer = at;
  s.timers.push({at, true, key});
  NoteTimer(at);
}

// Notes whether the timer thread must wake up early to honour a timer at `at` (MaybeWakeTimer).
void LeaseManager::Impl::NoteTimer(SteadyTime at) {
  if (at.time_since_epoch().count() < planned_wake_.load(std::memory_order_relaxed)) {
    wake_pending_.store(true, std::memory_order_relaxed);
  }
}

void LeaseManager::Impl::Flush(Outbox& out) {
  // A try may grant, time out, or ask for tries of other (older) waiters; it never asks for
  // itself again, so this ends.
  for (size_t i = 0; i < out.multi_tries.size(); ++i) {
    std::shared_ptr<MultiWaiter> mw = out.multi_tries[i];
    TryServeMulti(mw, out);
  }
  out.multi_tries.clear();
  for (auto& [cb, grant] : out.grants) {
    if (cb) cb(std::move(grant));
  }
  out.grants.clear();
  for (auto& [cb, grant] : out.permits) {
    if (cb) cb(std::move(grant));
  }
  out.permits.clear();
}

void LeaseManager::Impl::MaybeWakeTimer() {
  if (!opt_.timer_thread || !wake_pending_.exchange(false, std::memory_order_relaxed)) return;
  {
    std::lock_guard<std::mutex> l(timer_mu_);
    kick_ = true;
  }
  timer_cv_.notify_one();
}

void LeaseManager::Impl::TimerLoop() {
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
    if (opt_.clock != RealClock()) sleep = std::min<Duration>(sleep, std::chrono::milliseconds(2));
    planned_wake_.store((now + sleep).time_since_epoch().count(), std::memory_order_relaxed);
    if (sleep > Duration(0)) {
      timer_cv_.wait_for(l, sleep, [this] { return stop_ || kick_; });
    }
    kick_ = false;
  }
}

}  // namespace tollgate
