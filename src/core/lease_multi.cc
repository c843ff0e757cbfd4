// LeaseManager::Impl: multi-key locks. A grant makes every key an ordinary lease (same lock_id and
// fence). A waiter stands in the queue of each of its keys and is granted only when it is first
// in all of them and all are free, under the locks of all its keys' shards.
//
// Why no deadlock: a waiter joins all its queues in one critical section over all its shards, and
// any two waiters sharing a key share that key's shard, so every queue lists waiters in one global
// order. The oldest waiter is then first in all of its queues, and whenever one of its keys frees
// (release, expiry, end of lock-delay, a waiter ahead leaving) Settle asks for a try.
#include <utility>

#include "core/absl_compat.h"
#include "core/lease_manager_impl.h"
#include "core/lock_id.h"

namespace tollgate {

using lease_internal::ShardLocks;
using lease_internal::Waiter;

absl::StatusOr<LeaseManager::AsyncStart> LeaseManager::Impl::MultiAcquireAsync(
    const MultiAcquireRequest& req, GrantCallback cb) {
  if (absl::Status st = ValidateMultiAcquireRequest(req); !st.ok()) return st;
  Outbox out;
  AsyncStart start;
  {
    ShardLocks locks(ShardsOf(req.keys));
    const SteadyTime now = opt_.clock->SteadyNow();
    bool all_free = true;
    for (const std::string& key : req.keys) {
      Shard& s = ShardFor(key);
      SettleKey(s, key, now, out);
      auto it = s.entries.find(key);
      if (it != s.entries.end() && !Grantable(it->second, now)) all_free = false;
    }
    if (all_free) {
      LeaseGrant g = NewGrant(req.ttl);
      for (const std::string& key : req.keys) {
        Shard& s = ShardFor(key);
        auto it = s.entries.try_emplace(key).first;
        Hold(s, it->first, it->second, g, req.owner, /*indexed=*/false, now);  // groups: no index
      }
      start.grant = std::move(g);
    } else if (req.wait > Duration(0) && cb) {
      auto mw = std::make_shared<MultiWaiter>();
      mw->id = NextWaiterId();
      mw->keys = req.keys;
      mw->ttl = req.ttl;
      mw->owner = req.owner;
      mw->deadline = now + req.wait;
      mw->cb = std::move(cb);
      start.queued = true;
      start.waiter_id = mw->id;
      for (const std::string& key : req.keys) {
        Shard& s = ShardFor(key);
        auto it = s.entries.try_emplace(key).first;
        Entry& e = it->second;
        e.waiters.push_back(Waiter{mw->id, mw->ttl, mw->owner, mw->deadline, nullptr, mw});
        Schedule(s, it->first, e, NextTimerFor(e, now));
      }
    }
  }
  Flush(out);
  MaybeWakeTimer();
  return start;
}

void LeaseManager::Impl::TryServeMulti(const std::shared_ptr<MultiWaiter>& mw, Outbox& out) {
  if (mw->answered.load()) return;
  ShardLocks locks(ShardsOf(mw->keys));
  const SteadyTime now = opt_.clock->SteadyNow();
  // Bring every key up to date first: leases expire, waiters ahead of it may time out (or be
  // granted: a single-key waiter ahead of it on a free key goes first).
  for (const std::string& key : mw->keys) SettleKey(ShardFor(key), key, now, out, mw.get());
  if (mw->answered.load()) return;  // timed out just now
  for (const std::string& key : mw->keys) {
    Shard& s = ShardFor(key);
    auto it = s.entries.find(key);
    if (it == s.entries.end()) return;
    const Entry& e = it->second;
    if (!FreeAt(e, now) || e.waiters.empty() || e.waiters.front().multi != mw) return;
  }
  // Every shard of its keys is locked, so nobody else can be answering it now.
  mw->answered.store(true);
  LeaseGrant g = NewGrant(mw->ttl);
  for (const std::string& key : mw->keys) {
    Shard& s = ShardFor(key);
    auto it = s.entries.find(key);
    Entry& e = it->second;
    e.waiters.pop_front();
    Hold(s, it->first, e, g, mw->owner, /*indexed=*/false, now);
  }
  out.grants.emplace_back(std::move(mw->cb), std::move(g));
}

bool LeaseManager::Impl::CancelMulti(const std::shared_ptr<MultiWaiter>& mw, Outbox& out) {
  ShardLocks locks(ShardsOf(mw->keys));
  if (mw->answered.exchange(true)) return false;
  const SteadyTime now = opt_.clock->SteadyNow();
  for (const std::string& key : mw->keys) {
    Shard& s = ShardFor(key);
    auto it = s.entries.find(key);
    if (it == s.entries.end()) continue;
    auto& ws = it->second.waiters;
    for (auto w = ws.begin(); w != ws.end(); ++w) {
      if (w->multi == mw) {
        ws.erase(w);
        break;
      }
    }
    Settle(s, it, now, out);  // the next waiter may now be first
  }
  return true;
}

absl::StatusOr<size_t> LeaseManager::Impl::MultiRelease(std::span<const std::string> keys,
                                                        std::string_view lock_id) {
  if (absl::Status st = ValidateKeyList(keys); !st.ok()) return st;
  Outbox out;
  size_t released = 0;
  {
    ShardLocks locks(ShardsOf(keys));
    const SteadyTime now = opt_.clock->SteadyNow();
    for (const std::string& key : keys) {
      Shard& s = ShardFor(key);
      SettleKey(s, key, now, out);
      auto it = s.entries.find(key);
      if (it == s.entries.end() || !it->second.held ||
          !core::ConstantTimeEquals(it->second.lock_id, lock_id)) {
        continue;
      }
      DropLease(it->first, it->second);
      ++released;
      Settle(s, it, now, out);  // hands the key to the next waiter, or forgets it
    }
  }
  Flush(out);
  MaybeWakeTimer();
  return released;
}

absl::StatusOr<Duration> LeaseManager::Impl::MultiExtend(std::span<const std::string> keys,
                                                         std::string_view lock_id, Duration ttl) {
  if (absl::Status st = ValidateKeyList(keys); !st.ok()) return st;
  if (absl::Status st = ValidateTtl(ttl); !st.ok()) return st;
  Outbox out;
  bool all_held = true;
  {
    ShardLocks locks(ShardsOf(keys));
    const SteadyTime now = opt_.clock->SteadyNow();
    for (const std::string& key : keys) {
      Shard& s = ShardFor(key);
      SettleKey(s, key, now, out);
      auto it = s.entries.find(key);
      if (it == s.entries.end() || !it->second.held ||
          !core::ConstantTimeEquals(it->second.lock_id, lock_id)) {
        all_held = false;
      }
    }
    if (all_held) {
      for (const std::string& key : keys) {
        Shard& s = ShardFor(key);
        auto it = s.entries.find(key);
        Entry& e = it->second;
        e.expiry = now + ttl;
        JournalLease(it->first, e);
        Schedule(s, it->first, e, NextTimerFor(e, now));
      }
    }
  }
  Flush(out);
  MaybeWakeTimer();
  if (!all_held) {
    return absl::FailedPreconditionError("the keys are not all held by that lock_id");
  }
  return ttl;
}

}  // namespace tollgate
