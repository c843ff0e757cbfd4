// LeaseManager::Impl: fenced semaphores. A semaphore key holds up to `limit` permits, each in the
// lowest free slot of [0, limit) with a fence from the lease counter; FIFO waiters are served when
// a permit is released or expires. Permits ignore lock-delay.
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/absl_compat.h"
#include "core/lease_manager_impl.h"
#include "core/lock_id.h"

namespace tollgate {

using lease_internal::kNever;
using lease_internal::Permit;
using lease_internal::SemIt;
using lease_internal::SemWaiter;

namespace {

absl::Status LimitMismatch(const SemAcquireRequest& req, int64_t holders_limit) {
  return absl::InvalidArgumentError(
      absl::StrCat("limit ", req.limit, " differs from the limit ", holders_limit,
                   " of the current holders of semaphore \"",
                   AV(std::string_view(req.key).substr(0, 64)), "\""));
}

absl::Status NotHeld() {
  return absl::FailedPreconditionError("the semaphore holds no permit with that permit_id");
}

}  // namespace

void LeaseManager::Impl::RestorePermit(std::string_view key, std::string_view permit_id,
                                       const StoredPermit& p) {
  RestoreFence(p.fence);
  const SteadyTime now = opt_.clock->SteadyNow();
  const Duration remaining = std::chrono::duration_cast<Duration>(p.expiry - opt_.clock->WallNow());
  Shard& s = ShardFor(key);
  absl::MutexLock l(&s.mu);
  bool fits = remaining > Duration(0) && !permit_id.empty() && p.limit >= 1 &&
              p.limit <= kMaxSemaphoreLimit && p.slot >= 0 && p.slot < p.limit;
  auto it = s.sems.find(AV(key));
  if (fits && it != s.sems.end() && !it->second.permits.empty()) {
    const SemEntry& e = it->second;
    fits = e.limit == p.limit &&
           std::none_of(e.permits.begin(), e.permits.end(),
                        [&](const Permit& q) { return q.slot == p.slot || q.id == permit_id; });
  }
  if (!fits) {
    if (opt_.journal != nullptr) opt_.journal->AppendPermitDelete(key, permit_id);
    return;
  }
  if (it == s.sems.end()) it = s.sems.try_emplace(AV(key)).first;
  SemEntry& e = it->second;
  e.limit = p.limit;
  e.permits.push_back(Permit{std::string(permit_id), p.slot, p.fence, now + remaining, p.owner});
  ScheduleSem(s, it->first, e, now + remaining);
}

absl::StatusOr<LeaseManager::SemAsyncStart> LeaseManager::Impl::SemAcquireAsync(
    const SemAcquireRequest& req, PermitCallback cb) {
  if (absl::Status st = ValidateSemAcquireRequest(req); !st.ok()) return st;
  Outbox out;
  SemAsyncStart start;
  absl::Status error;
  {
    Shard& s = ShardFor(req.key);
    absl::MutexLock l(&s.mu);
    const SteadyTime now = opt_.clock->SteadyNow();
    auto it = s.sems.find(req.key);
    if (it != s.sems.end()) {
      SemSettle(s, it, now, out);
      it = s.sems.find(req.key);
    }
    // After SemSettle an entry without permits has no waiters either (they would have been served).
    if (it != s.sems.end() && !it->second.permits.empty() && it->second.limit != req.limit) {
      error = LimitMismatch(req, it->second.limit);
    } else if (it == s.sems.end() ||
               (it->second.waiters.empty() &&
                static_cast<int64_t>(it->second.permits.size()) < req.limit)) {
      if (it == s.sems.end()) it = s.sems.try_emplace(req.key).first;
      start.grant = GrantPermit(s, it->first, it->second, req.limit, req.ttl, req.owner, now);
    } else if (req.wait > Duration(0) && cb) {
      SemEntry& e = it->second;
      start.queued = true;
      start.waiter_id = NextWaiterId();
      e.waiters.push_back(
          SemWaiter{start.waiter_id, req.limit, req.ttl, req.owner, now + req.wait, std::move(cb)});
      ScheduleSem(s, it->first, e, now + req.wait);
    }
  }
  Flush(out);
  MaybeWakeTimer();
  if (!error.ok()) return error;
  return start;
}

bool LeaseManager::Impl::CancelSemWaiter(std::string_view key, uint64_t waiter_id) {
  Outbox out;
  {
    Shard& s = ShardFor(key);
    absl::MutexLock l(&s.mu);
    auto it = s.sems.find(AV(key));
    if (it == s.sems.end()) return false;
    auto& ws = it->second.waiters;
    auto w =
        std::find_if(ws.begin(), ws.end(), [&](const SemWaiter& x) { return x.id == waiter_id; });
    if (w == ws.end()) return false;
    ws.erase(w);
    SemSettle(s, it, opt_.clock->SteadyNow(), out);
  }
  Flush(out);
  MaybeWakeTimer();
  return true;
}

absl::Status LeaseManager::Impl::SemRelease(std::string_view key, std::string_view permit_id) {
  if (absl::Status st = ValidateKey(key); !st.ok()) return st;
  Outbox out;
  bool released = false;
  {
    Shard& s = ShardFor(key);
    absl::MutexLock l(&s.mu);
    const SteadyTime now = opt_.clock->SteadyNow();
    auto it = s.sems.find(AV(key));
    if (it != s.sems.end()) {
      SemSettle(s, it, now, out);
      it = s.sems.find(AV(key));
    }
    if (it != s.sems.end()) {
      auto& ps = it->second.permits;
      auto p = std::find_if(ps.begin(), ps.end(), [&](const Permit& q) {
        return core::ConstantTimeEquals(q.id, permit_id);
      });
      if (p != ps.end()) {
        if (opt_.journal != nullptr) opt_.journal->AppendPermitDelete(key, p->id);
        ps.erase(p);
        released = true;
        SemSettle(s, it, now, out);  // serves the next waiter, or forgets the semaphore
      }
    }
  }
  Flush(out);
  MaybeWakeTimer();
  if (!released) return NotHeld();
  return absl::OkStatus();
}

absl::StatusOr<Duration> LeaseManager::Impl::SemExtend(std::string_view key,
                                                       std::string_view permit_id, Duration ttl) {
  if (absl::Status st = ValidateKey(key); !st.ok()) return st;
  if (absl::Status st = ValidateTtl(ttl); !st.ok()) return st;
  Outbox out;
  bool extended = false;
  {
    Shard& s = ShardFor(key);
    absl::MutexLock l(&s.mu);
    const SteadyTime now = opt_.clock->SteadyNow();
    auto it = s.sems.find(AV(key));
    if (it != s.sems.end()) {
      SemSettle(s, it, now, out);
      it = s.sems.find(AV(key));
    }
    if (it != s.sems.end()) {
      SemEntry& e = it->second;
      auto p = std::find_if(e.permits.begin(), e.permits.end(), [&](const Permit& q) {
        return core::ConstantTimeEquals(q.id, permit_id);
      });
      if (p != e.permits.end()) {
        p->expiry = now + ttl;
        JournalPermit(it->first, e, *p);
        ScheduleSem(s, it->first, e, p->expiry);  // a shorter permit frees its slot on time
        extended = true;
      }
    }
  }
  Flush(out);
  MaybeWakeTimer();
  if (!extended) return NotHeld();
  return ttl;
}

std::optional<SemaphoreInfo> LeaseManager::Impl::SemInfo(std::string_view key) {
  Outbox out;
  std::optional<SemaphoreInfo> info;
  {
    Shard& s = ShardFor(key);
    absl::MutexLock l(&s.mu);
    const SteadyTime now = opt_.clock->SteadyNow();
    auto it = s.sems.find(AV(key));
    if (it != s.sems.end()) {
      SemSettle(s, it, now, out);
      it = s.sems.find(AV(key));
    }
    if (it != s.sems.end() && !it->second.permits.empty()) {
      const SemEntry& e = it->second;
      SemaphoreInfo i{e.limit, static_cast<int64_t>(e.permits.size()), e.waiters.size(), 0};
      for (const Permit& p : e.permits) i.fence = std::max(i.fence, p.fence);
      info = i;
    }
  }
  Flush(out);
  MaybeWakeTimer();
  return info;
}

void LeaseManager::Impl::SemSettle(Shard& s, SemIt it, SteadyTime now, Outbox& out) {
  const std::string& key = it->first;
  SemEntry& e = it->second;
  for (auto p = e.permits.begin(); p != e.permits.end();) {
    if (p->expiry <= now) {
      if (opt_.journal != nullptr) opt_.journal->AppendPermitDelete(key, p->id);
      p = e.permits.erase(p);
    } else {
      ++p;
    }
  }
  for (auto w = e.waiters.begin(); w != e.waiters.end();) {
    if (w->deadline <= now) {
      out.permits.emplace_back(std::move(w->cb), std::nullopt);
      w = e.waiters.erase(w);
    } else {
      ++w;
    }
  }
  // Serve waiters in order while slots are free. Every waiter asked with the holders' limit, and
  // the holders never all leave while someone waits (a freed slot goes to the next waiter), so a
  // different limit cannot be met here; should it be, that waiter gets nothing.
  while (!e.waiters.empty()) {
    SemWaiter& front = e.waiters.front();
    if (!e.permits.empty() && front.limit != e.limit) {
      out.permits.emplace_back(std::move(front.cb), std::nullopt);
      e.waiters.pop_front();
      continue;
    }
    if (static_cast<int64_t>(e.permits.size()) >= front.limit) break;
    SemWaiter w = std::move(front);
    e.waiters.pop_front();
    out.permits.emplace_back(std::move(w.cb), GrantPermit(s, key, e, w.limit, w.ttl, w.owner, now));
  }
  if (e.permits.empty() && e.waiters.empty()) {
    s.sems.erase(it);
    return;
  }
  SteadyTime next = kNever;
  for (const Permit& p : e.permits) next = std::min(next, p.expiry);
  for (const SemWaiter& w : e.waiters) next = std::min(next, w.deadline);
  ScheduleSem(s, key, e, next);
}

PermitGrant LeaseManager::Impl::GrantPermit(Shard& s, const std::string& key, SemEntry& e,
                                            int64_t limit, Duration ttl,
                                            const std::optional<std::string>& owner,
                                            SteadyTime now) {
  e.limit = limit;
  std::vector<bool> used(static_cast<size_t>(limit), false);
  for (const Permit& p : e.permits) {
    if (p.slot >= 0 && p.slot < limit) used[static_cast<size_t>(p.slot)] = true;
  }
  int64_t slot = 0;
  while (slot < limit && used[static_cast<size_t>(slot)]) ++slot;  // callers leave one free
  Permit p{core::NewLockId(), slot, NextFence(), now + ttl, owner};
  JournalPermit(key, e, p);
  e.permits.push_back(p);
  ScheduleSem(s, key, e, p.expiry);
  return PermitGrant{p.id, p.slot, p.fence, ttl};
}

void LeaseManager::Impl::JournalPermit(const std::string& key, const SemEntry& e, const Permit& p) {
  if (opt_.journal == nullptr) return;
  const SteadyTime now = opt_.clock->SteadyNow();
  StoredPermit rec{
      p.slot, e.limit, p.fence,
      opt_.clock->WallNow() + std::chrono::duration_cast<WallTime::duration>(p.expiry - now),
      p.owner};
  opt_.journal->AppendPermitPut(key, p.id, rec);
}

}  // namespace tollgate
