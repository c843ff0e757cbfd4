// Fenced semaphores on etcd (AsyncEtcdBackend's Sem* operations). Each permit is one key,
// tollgate/sem/<hex>/<slot> (etcd_codec.h), attached to an etcd lease of its own, so etcd deletes
// it when its ttl runs out and expired permits simply are not there. Its fence is its
// create_revision: the same cluster revision sequence as lease fences.
//
// Acquire: read the permits (one range over the semaphore's prefix, at revision R); a limit
// different from the holders' → InvalidArgument; all `limit` slots held → nullopt (no write); else
// grant an etcd lease and put the lowest free slot's key in ONE txn that compares
//   - every key under the prefix created at or before R (no permit appeared meanwhile: the limit
//     check and the slot choice still hold; extends, which re-put, do not disturb it), and
//   - each held slot below the chosen one still has the create_revision read (none of them was
//     freed meanwhile, so the slot is still the lowest free one). These compares are left out when
//     the chosen slot is above kMaxSlotCompares (etcd's --max-txn-ops defaults to 128): the slot
//     is then the lowest free one as of the read.
// A lost compare reads again and retries (the lease is kept), at most kMaxTxnRetries times.
// Release and extend are the lease's optimistic loops on the permit's key (guarded by its
// mod_revision); extend re-puts the permit with a new lease, so its fence stays.
#include <algorithm>
#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "backends/etcd/async_etcd.h"
#include "backends/etcd/etcd_codec.h"
#include "core/lock_id.h"

namespace tollgate::etcd {
namespace {

using nlohmann::json;

// The most "this slot is still held" compares in one acquire txn (see above).
constexpr int64_t kMaxSlotCompares = 100;

// The permit of `kvs` that `permit_id` holds, or null.
const Kv* FindPermit(const std::vector<Kv>& kvs, std::string_view permit_id) {
  for (const Kv& kv : kvs) {
    std::optional<PermitValue> v = DecodePermit(kv.value);
    if (v && core::ConstantTimeEquals(v->id, permit_id)) return &kv;
  }
  return nullptr;
}

}  // namespace

uint64_t AsyncEtcdBackend::SemAcquire(const SemAcquireRequest& req,
                                      Completion<std::optional<PermitGrant>> done) {
  if (absl::Status st = ValidateSemAcquireRequest(req); !st.ok()) {
    done(std::move(st));
    return 0;
  }
  if (Refused(done)) return 0;
  if (req.wait <= Duration(0)) return waits_.SemAcquire(req, std::move(done));
  // A waiter: when it completes the semaphore may need its watch no more.
  const uint64_t ticket = waits_.SemAcquire(req, ThenSyncWatches(std::move(done)));
  SyncWatchesSoon();
  return ticket;
}

void AsyncEtcdBackend::SemAcquireNow(const SemAcquireRequest& req,
                                     Completion<std::optional<PermitGrant>> done) {
  if (absl::Status st = ValidateSemAcquireRequest(req); !st.ok()) return done(std::move(st));
  if (Refused(done)) return;
  Sequence<absl::StatusOr<std::optional<PermitGrant>>>(
      SemSeq(req.key), std::move(done),
      [this, req](Completion<std::optional<PermitGrant>> done) mutable {
        DoSemAcquire(std::move(req), 0, {0, 0}, std::move(done));
      });
}

void AsyncEtcdBackend::DoSemAcquire(SemAcquireRequest req, int attempt,
                                    std::pair<int64_t, int64_t> lease,
                                    Completion<std::optional<PermitGrant>> done) {
  // Completes with `r`, after giving back the lease if one was granted.
  auto give_up = [this, lease_id = lease.first](
                     Completion<std::optional<PermitGrant>> done,
                     absl::StatusOr<std::optional<PermitGrant>> r) mutable {
    if (lease_id == 0) return done(std::move(r));
    Revoke(lease_id, [done = std::move(done), r = std::move(r)]() mutable { done(std::move(r)); });
  };
  if (attempt >= kMaxTxnRetries) return give_up(std::move(done), Contention("semaphore acquire"));
  const std::string key = req.key;
  GetPermits(key, [this, req = std::move(req), attempt, lease, give_up, done = std::move(done)](
                      absl::StatusOr<std::vector<Kv>> permits, int64_t revision) mutable {
    if (!permits.ok()) return give_up(std::move(done), permits.status());
    const std::string prefix = SemPrefix(req.key);
    std::vector<bool> taken(static_cast<size_t>(req.limit), false);
    for (const Kv& kv : *permits) {
      std::optional<int64_t> slot = PermitSlot(prefix, kv.key);
      std::optional<PermitValue> v = DecodePermit(kv.value);
      if (!slot || !v) return give_up(std::move(done), Unexpected("permit"));
      if (v->limit != req.limit) {
        return give_up(std::move(done), LimitDiffers(req.key, req.limit, v->limit));
      }
      if (*slot >= req.limit) return give_up(std::move(done), Unexpected("permit"));
      taken[static_cast<size_t>(*slot)] = true;
    }
    const auto free = std::find(taken.begin(), taken.end(), false);
    if (free == taken.end()) return give_up(std::move(done), std::optional<PermitGrant>());
    const int64_t slot = free - taken.begin();

    json compare = json::array({AllCreatedBefore(prefix, SemRangeEnd(req.key), revision + 1)});
    if (slot <= kMaxSlotCompares) {
      for (const Kv& kv : *permits) {
        if (*PermitSlot(prefix, kv.key) < slot)
          compare.push_back(CreateIs(kv.key, kv.create_revision));
      }
    }
    PermitGrant grant;
    grant.permit_id = core::NewLockId();
    grant.slot = slot;
    const std::string value = EncodePermit({grant.permit_id, req.limit, req.owner});
    const int64_t seconds = TtlSeconds(req.ttl);
    // The txn, once the lease is there.
    auto put = [this, req = std::move(req), attempt, grant = std::move(grant),
                compare = std::move(compare), value,
                done = std::move(done)](absl::StatusOr<std::pair<int64_t, int64_t>> lease) mutable {
      if (!lease.ok()) return done(lease.status());
      const std::string permit_key = PermitKey(req.key, grant.slot);
      const json txn = {{"compare", std::move(compare)},
                        {"success", json::array({{{"request_put",
                                                   {{"key", B64(permit_key)},
                                                    {"value", B64(value)},
                                                    {"lease", std::to_string(lease->first)}}}}})}};
      Call("/v3/kv/txn", txn,
           [this, req = std::move(req), attempt, lease = *lease, grant = std::move(grant),
            done = std::move(done)](absl::StatusOr<json> r) mutable {
             // A failed request may have been applied: revoking the lease deletes the permit.
             if (!r.ok()) {
               return Revoke(lease.first,
                             [st = r.status(), done = std::move(done)]() mutable { done(st); });
             }
             if (!Succeeded(*r)) {
               return DoSemAcquire(std::move(req), attempt + 1, lease, std::move(done));
             }
             const int64_t rev = HeaderRevision(*r);
             if (rev <= 0) {
               return Revoke(lease.first,
                             [done = std::move(done)]() mutable { done(Unexpected("txn")); });
             }
             grant.fence = static_cast<uint64_t>(rev);  // == the permit's create_revision
             grant.ttl = std::chrono::seconds(lease.second);
             done(std::optional<PermitGrant>(std::move(grant)));
           });
    };
    if (lease.first != 0) return put(lease);
    Grant(seconds, std::move(put));
  });
}

void AsyncEtcdBackend::SemRelease(std::string_view key, std::string_view permit_id,
                                  StatusCompletion done) {
  if (absl::Status st = ValidateKey(key); !st.ok()) return done(std::move(st));
  if (Refused(done)) return;
  Sequence<absl::Status>(
      SemSeq(key), std::move(done),
      [this, key = std::string(key), id = std::string(permit_id)](StatusCompletion done) mutable {
        DoSemRelease(std::move(key), std::move(id), 0, std::move(done));
      });
}

void AsyncEtcdBackend::DoSemRelease(std::string key, std::string permit_id, int attempt,
                                    StatusCompletion done) {
  if (attempt >= kMaxTxnRetries) return done(Contention("semaphore release"));
  GetPermits(key, [this, key, permit_id = std::move(permit_id), attempt, done = std::move(done)](
                      absl::StatusOr<std::vector<Kv>> permits, int64_t) mutable {
    if (!permits.ok()) return done(permits.status());
    const Kv* kv = FindPermit(*permits, permit_id);
    if (kv == nullptr) return done(PermitNotHeld(key));
    const json txn = {
        {"compare", json::array({ModIs(kv->key, kv->mod_revision)})},
        {"success", json::array({{{"request_delete_range", {{"key", B64(kv->key)}}}}})}};
    Call("/v3/kv/txn", txn,
         [this, lease = kv->lease, key = std::move(key), permit_id = std::move(permit_id), attempt,
          done = std::move(done)](absl::StatusOr<json> r) mutable {
           if (!r.ok()) return done(r.status());
           if (Succeeded(*r)) {
             return ReleaseLeases({{lease, false}},
                                  [done = std::move(done)]() mutable { done(absl::OkStatus()); });
           }
           DoSemRelease(std::move(key), std::move(permit_id), attempt + 1, std::move(done));
         });
  });
}

void AsyncEtcdBackend::SemExtend(std::string_view key, std::string_view permit_id, Duration ttl,
                                 Completion<Duration> done) {
  if (absl::Status st = ValidateKey(key); !st.ok()) return done(std::move(st));
  if (absl::Status st = ValidateTtl(ttl); !st.ok()) return done(std::move(st));
  if (Refused(done)) return;
  Sequence<absl::StatusOr<Duration>>(SemSeq(key), std::move(done),
                                     [this, key = std::string(key), id = std::string(permit_id),
                                      ttl](Completion<Duration> done) mutable {
                                       DoSemExtend(std::move(key), std::move(id), ttl, 0,
                                                   std::move(done));
                                     });
}

// As DoExtend: a new lease, the same value re-put with it (create_revision, the fence, stays) in a
// txn guarded by the read mod_revision, then the old lease revoked. An expired permit is gone, so
// it is never revived.
void AsyncEtcdBackend::DoSemExtend(std::string key, std::string permit_id, Duration ttl,
                                   int attempt, Completion<Duration> done) {
  if (attempt >= kMaxTxnRetries) return done(Contention("semaphore extend"));
  GetPermits(key, [this, key, permit_id = std::move(permit_id), ttl, attempt,
                   done = std::move(done)](absl::StatusOr<std::vector<Kv>> permits,
                                           int64_t) mutable {
    if (!permits.ok()) return done(permits.status());
    const Kv* found = FindPermit(*permits, permit_id);
    if (found == nullptr) return done(PermitNotHeld(key));
    Grant(TtlSeconds(ttl), [this, cur = *found, key = std::move(key),
                            permit_id = std::move(permit_id), ttl, attempt, done = std::move(done)](
                               absl::StatusOr<std::pair<int64_t, int64_t>> lease) mutable {
      if (!lease.ok()) return done(lease.status());
      const json txn = {{"compare", json::array({ModIs(cur.key, cur.mod_revision)})},
                        {"success", json::array({{{"request_put",
                                                   {{"key", B64(cur.key)},
                                                    {"value", B64(cur.value)},
                                                    {"lease", std::to_string(lease->first)}}}}})}};
      Call("/v3/kv/txn", txn,
           [this, old_lease = cur.lease, lease = *lease, key = std::move(key),
            permit_id = std::move(permit_id), ttl, attempt,
            done = std::move(done)](absl::StatusOr<json> r) mutable {
             if (r.ok() && Succeeded(*r)) {
               const Duration granted = std::chrono::seconds(lease.second);
               return ReleaseLeases({{old_lease, false}},
                                    [granted, done = std::move(done)]() mutable { done(granted); });
             }
             absl::Status st = r.status();
             Revoke(lease.first, [this, st = std::move(st), key = std::move(key),
                                  permit_id = std::move(permit_id), ttl, attempt,
                                  done = std::move(done)]() mutable {
               if (!st.ok()) return done(st);
               DoSemExtend(std::move(key), std::move(permit_id), ttl, attempt + 1, std::move(done));
             });
           });
    });
  });
}

void AsyncEtcdBackend::SemInfo(std::string_view key,
                               Completion<std::optional<SemaphoreInfo>> done) {
  if (absl::Status st = ValidateKey(key); !st.ok()) return done(std::move(st));
  if (Refused(done)) return;
  Sequence<absl::StatusOr<std::optional<SemaphoreInfo>>>(
      SemSeq(key), std::move(done),
      [this, key = std::string(key)](Completion<std::optional<SemaphoreInfo>> done) mutable {
        DoSemInfo(std::move(key), std::move(done));
      });
}

void AsyncEtcdBackend::DoSemInfo(std::string key, Completion<std::optional<SemaphoreInfo>> done) {
  GetPermits(key, [this, key, done = std::move(done)](absl::StatusOr<std::vector<Kv>> permits,
                                                      int64_t) mutable {
    if (!permits.ok()) return done(permits.status());
    if (permits->empty()) return done(std::optional<SemaphoreInfo>());
    SemaphoreInfo info;
    int64_t newest = 0;
    for (const Kv& kv : *permits) {
      std::optional<PermitValue> v = DecodePermit(kv.value);
      if (!v) return done(Unexpected("permit"));
      if (kv.create_revision > newest) {
        newest = kv.create_revision;
        info.limit = v->limit;
      }
    }
    info.holders = static_cast<int64_t>(permits->size());
    info.fence = static_cast<uint64_t>(newest);
    info.waiters = waits_.SemCount(key);
    done(std::optional<SemaphoreInfo>(info));
  });
}

}  // namespace tollgate::etcd
