// LeaseManager's public calls and the request validators. The state and its rules are in
// LeaseManager::Impl (lease_manager_impl.h).
#include "tollgate/lease_manager.h"

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/absl_compat.h"
#include "core/lease_manager_impl.h"
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
    return absl::InvalidArgumentError(
        absl::StrCat("limit must be an integer in [1, ", kMaxSemaphoreLimit, "], got ", req.limit));
  }
  if (absl::Status st = ValidateTtl(req.ttl); !st.ok()) return st;
  return ValidateWait(req.wait);
}

absl::Status ValidateKeyList(std::span<const std::string> keys) {
  if (keys.empty() || keys.size() > kMaxMultiKeys) {
    return absl::InvalidArgumentError(
        absl::StrCat("numkeys must be an integer in [1, ", kMaxMultiKeys, "], got ", keys.size()));
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

absl::StatusOr<std::optional<LeaseById>> LeaseManager::LookupById(std::string_view lock_id) {
  if (!core::IsLockIdFormat(lock_id)) {
    return absl::InvalidArgumentError("lock_id must be 32 lowercase hex characters");
  }
  return impl_->LookupById(lock_id);
}

absl::StatusOr<std::optional<LeaseGrant>> LeaseManager::TryMultiAcquire(
    const MultiAcquireRequest& req) {
  MultiAcquireRequest r = req;
  r.wait = Duration(0);
  absl::StatusOr<AsyncStart> s = impl_->MultiAcquireAsync(r, nullptr);
  if (!s.ok()) return s.status();
  if (absl::Status st = WaitDurable(impl_->options()); !st.ok()) return st;
  return std::move(s->grant);
}

absl::StatusOr<LeaseManager::AsyncStart> LeaseManager::MultiAcquireAsync(
    const MultiAcquireRequest& req, GrantCallback cb) {
  return impl_->MultiAcquireAsync(req, std::move(cb));
}

absl::StatusOr<size_t> LeaseManager::MultiRelease(std::span<const std::string> keys,
                                                  std::string_view lock_id) {
  absl::StatusOr<size_t> r = impl_->MultiRelease(keys, lock_id);
  if (!r.ok()) return r;
  if (absl::Status st = WaitDurable(impl_->options()); !st.ok()) return st;
  return r;
}

absl::StatusOr<Duration> LeaseManager::MultiExtend(std::span<const std::string> keys,
                                                   std::string_view lock_id, Duration ttl) {
  absl::StatusOr<Duration> r = impl_->MultiExtend(keys, lock_id, ttl);
  if (!r.ok()) return r;
  if (absl::Status st = WaitDurable(impl_->options()); !st.ok()) return st;
  return r;
}

void LeaseManager::RestorePermit(std::string_view key, std::string_view permit_id,
                                 const StoredPermit& permit) {
  impl_->RestorePermit(key, permit_id, permit);
}

absl::StatusOr<LeaseManager::SemAsyncStart> LeaseManager::SemAcquireAsync(
    const SemAcquireRequest& req, PermitCallback cb) {
  return impl_->SemAcquireAsync(req, std::move(cb));
}

absl::StatusOr<std::optional<PermitGrant>> LeaseManager::TrySemAcquire(
    const SemAcquireRequest& req) {
  SemAcquireRequest r = req;
  r.wait = Duration(0);
  absl::StatusOr<SemAsyncStart> s = impl_->SemAcquireAsync(r, nullptr);
  if (!s.ok()) return s.status();
  if (absl::Status st = WaitDurable(impl_->options()); !st.ok()) return st;
  return std::move(s->grant);
}

bool LeaseManager::CancelSemWaiter(std::string_view key, uint64_t waiter_id) {
  return impl_->CancelSemWaiter(key, waiter_id);
}

absl::Status LeaseManager::SemRelease(std::string_view key, std::string_view permit_id) {
  absl::Status st = impl_->SemRelease(key, permit_id);
  if (!st.ok()) return st;
  return WaitDurable(impl_->options());
}

absl::StatusOr<Duration> LeaseManager::SemExtend(std::string_view key, std::string_view permit_id,
                                                 Duration ttl) {
  absl::StatusOr<Duration> r = impl_->SemExtend(key, permit_id, ttl);
  if (!r.ok()) return r;
  if (absl::Status st = WaitDurable(impl_->options()); !st.ok()) return st;
  return r;
}

absl::StatusOr<std::optional<SemaphoreInfo>> LeaseManager::SemInfo(std::string_view key) {
  if (absl::Status st = ValidateKey(key); !st.ok()) return st;
  return impl_->SemInfo(key);
}

void LeaseManager::Tick() { impl_->Tick(); }
std::optional<SteadyTime> LeaseManager::NextDeadline() { return impl_->NextDeadline(); }
uint64_t LeaseManager::last_fence() const { return impl_->last_fence(); }
uint64_t LeaseManager::expirations() const { return impl_->expirations(); }
size_t LeaseManager::key_count() { return impl_->key_count(); }
size_t LeaseManager::semaphore_count() { return impl_->semaphore_count(); }

}  // namespace tollgate
