// Multi-key locks on etcd (AsyncEtcdBackend's Multi* operations). A multi-key grant is ordinary
// lock keys (tollgate/lock/<hex>, etcd_codec.h) written together:
//
// Acquire: grant one etcd lease, then ONE txn comparing create_revision == 0 (absent) for every
// key and putting all of them with that lease, one lock_id and "shared": true in the value. The
// fence is the txn's revision, which is every key's create_revision (so Info and the fenced
// registers see the same fence on each key) and greater than any fence issued before on etcd. A
// key taken → the txn fails, the lease is revoked, nullopt; nothing was written.
//
// The keys share the etcd lease, so releasing or extending one of them must not revoke it outright
// (that would delete its siblings): for a "shared" key the old lease is revoked only once no key is
// attached to it (AsyncEtcdBackend::RevokeIfUnused), otherwise it runs out on its own. LOCK.RELEASE
// and LOCK.EXTEND on one key of the group act on that key only (an extended key moves to a lease of
// its own).
//
// Release: read every key (one read-only txn), then one txn deleting those `lock_id` holds, guarded
// by their read mod_revisions; the count is how many it deleted. Extend, all or none: read every
// key; any not held by `lock_id` → FailedPrecondition and nothing changes; else a new lease and one
// txn re-putting every key with it, guarded by every read mod_revision. Lost races read again (at
// most kMaxTxnRetries times).
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

std::vector<std::string> LockKeys(std::span<const std::string> keys) {
  std::vector<std::string> out;
  out.reserve(keys.size());
  for (const std::string& key : keys) out.push_back(LockKey(key));
  return out;
}

}  // namespace

uint64_t AsyncEtcdBackend::MultiAcquire(const MultiAcquireRequest& req,
                                        Completion<std::optional<LeaseGrant>> done) {
  if (absl::Status st = ValidateMultiAcquireRequest(req); !st.ok()) {
    done(std::move(st));
    return 0;
  }
  if (Refused(done)) return 0;
  if (req.wait <= Duration(0)) return waits_.MultiAcquire(req, std::move(done));
  // A waiter (counted among each key's waiters): its keys get watches while it waits.
  const uint64_t ticket = waits_.MultiAcquire(req, ThenSyncWatches(std::move(done)));
  SyncWatchesSoon();
  return ticket;
}

void AsyncEtcdBackend::MultiAcquireNow(const MultiAcquireRequest& req,
                                       Completion<std::optional<LeaseGrant>> done) {
  if (absl::Status st = ValidateMultiAcquireRequest(req); !st.ok()) return done(std::move(st));
  if (Refused(done)) return;
  std::vector<std::string> seqs;
  for (const std::string& key : req.keys) seqs.push_back(LockSeq(key));
  SequenceAll<absl::StatusOr<std::optional<LeaseGrant>>>(
      std::move(seqs), std::move(done),
      [this, req](Completion<std::optional<LeaseGrant>> done) mutable {
        DoMultiAcquire(std::move(req), std::move(done));
      });
}

void AsyncEtcdBackend::MultiAcquireIfFree(const MultiAcquireRequest& req,
                                          Completion<std::optional<LeaseGrant>> done) {
  if (absl::Status st = ValidateMultiAcquireRequest(req); !st.ok()) return done(std::move(st));
  if (Refused(done)) return;
  std::vector<std::string> seqs;
  for (const std::string& key : req.keys) seqs.push_back(LockSeq(key));
  SequenceAll<absl::StatusOr<std::optional<LeaseGrant>>>(
      std::move(seqs), std::move(done),
      [this, req](Completion<std::optional<LeaseGrant>> done) mutable {
        GetAll(LockKeys(req.keys), [this, req = std::move(req), done = std::move(done)](
                                       absl::StatusOr<std::vector<std::optional<Kv>>> kvs) mutable {
          if (!kvs.ok()) return done(kvs.status());
          for (const std::optional<Kv>& kv : *kvs) {
            if (kv.has_value()) return done(std::optional<LeaseGrant>());  // still held
          }
          DoMultiAcquire(std::move(req), std::move(done));
        });
      });
}

void AsyncEtcdBackend::DoMultiAcquire(MultiAcquireRequest req,
                                      Completion<std::optional<LeaseGrant>> done) {
  Grant(TtlSeconds(req.ttl), [this, req = std::move(req), done = std::move(done)](
                                 absl::StatusOr<std::pair<int64_t, int64_t>> lease) mutable {
    if (!lease.ok()) return done(lease.status());
    LeaseGrant grant{core::NewLockId(), 0, std::chrono::seconds(lease->second),
                     RealClock()->WallNow()};
    // One key alone has the lease to itself. No index key: a group is not found by its lock_id.
    const std::string value = EncodeLock({grant.lock_id, std::move(req.owner),
                                          /*shared=*/req.keys.size() > 1, grant.acquired_at,
                                          /*indexed=*/false});
    json compare = json::array(), puts = json::array();
    for (const std::string& lock : LockKeys(req.keys)) {
      compare.push_back(CreateIs(lock, 0));
      puts.push_back(
          {{"request_put",
            {{"key", B64(lock)}, {"value", B64(value)}, {"lease", std::to_string(lease->first)}}}});
    }
    const json txn = {{"compare", std::move(compare)}, {"success", std::move(puts)}};
    Call("/v3/kv/txn", txn,
         [this, lease_id = lease->first, grant = std::move(grant),
          done = std::move(done)](absl::StatusOr<json> r) mutable {
           // Not granted, or not known: revoking the lease deletes whatever the txn may have put.
           if (!r.ok() || !Succeeded(*r)) {
             absl::Status st = r.status();
             return Revoke(lease_id, [st = std::move(st), done = std::move(done)]() mutable {
               if (!st.ok()) return done(st);
               done(std::optional<LeaseGrant>());
             });
           }
           const int64_t rev = HeaderRevision(*r);
           if (rev <= 0) {
             return Revoke(lease_id,
                           [done = std::move(done)]() mutable { done(Unexpected("txn")); });
           }
           grant.fence = static_cast<uint64_t>(rev);  // == every key's create_revision
           done(std::optional<LeaseGrant>(std::move(grant)));
         });
  });
}

void AsyncEtcdBackend::MultiRelease(std::span<const std::string> keys, std::string_view lock_id,
                                    Completion<size_t> done) {
  if (absl::Status st = ValidateKeyList(keys); !st.ok()) return done(std::move(st));
  if (Refused(done)) return;
  std::vector<std::string> seqs;
  for (const std::string& key : keys) seqs.push_back(LockSeq(key));
  SequenceAll<absl::StatusOr<size_t>>(
      std::move(seqs), std::move(done),
      [this, keys = std::vector<std::string>(keys.begin(), keys.end()),
       id = std::string(lock_id)](Completion<size_t> done) mutable {
        DoMultiRelease(std::move(keys), std::move(id), 0, std::move(done));
      });
}

void AsyncEtcdBackend::DoMultiRelease(std::vector<std::string> keys, std::string lock_id,
                                      int attempt, Completion<size_t> done) {
  if (attempt >= kMaxTxnRetries) return done(Contention("multi-key release"));
  std::vector<std::string> locks = LockKeys(keys);
  GetAll(locks, [this, locks, keys = std::move(keys), lock_id = std::move(lock_id), attempt,
                 done =
                     std::move(done)](absl::StatusOr<std::vector<std::optional<Kv>>> kvs) mutable {
    if (!kvs.ok()) return done(kvs.status());
    json compare = json::array(), deletes = json::array();
    std::vector<std::pair<int64_t, bool>> leases;
    for (size_t i = 0; i < locks.size(); ++i) {
      const std::optional<Kv>& kv = (*kvs)[i];
      if (!Holds(kv.has_value() ? &kv->value : nullptr, lock_id)) continue;
      const LockValue value = *DecodeLock(kv->value);  // Holds decoded it
      compare.push_back(ModIs(locks[i], kv->mod_revision));
      deletes.push_back({{"request_delete_range", {{"key", B64(locks[i])}}}});
      // A single-key lease released here: its index key goes with it.
      if (value.indexed) deletes.push_back(IndexDelete(value.id));
      leases.emplace_back(kv->lease, value.shared);
    }
    if (leases.empty()) return done(size_t{0});
    const json txn = {{"compare", std::move(compare)}, {"success", std::move(deletes)}};
    Call("/v3/kv/txn", txn,
         [this, leases = std::move(leases), keys = std::move(keys), lock_id = std::move(lock_id),
          attempt, done = std::move(done)](absl::StatusOr<json> r) mutable {
           if (!r.ok()) return done(r.status());
           if (Succeeded(*r)) {
             const size_t released = leases.size();
             return ReleaseLeases(std::move(leases),
                                  [released, done = std::move(done)]() mutable { done(released); });
           }
           DoMultiRelease(std::move(keys), std::move(lock_id), attempt + 1, std::move(done));
         });
  });
}

void AsyncEtcdBackend::MultiExtend(std::span<const std::string> keys, std::string_view lock_id,
                                   Duration ttl, Completion<Duration> done) {
  if (absl::Status st = ValidateKeyList(keys); !st.ok()) return done(std::move(st));
  if (absl::Status st = ValidateTtl(ttl); !st.ok()) return done(std::move(st));
  if (Refused(done)) return;
  std::vector<std::string> seqs;
  for (const std::string& key : keys) seqs.push_back(LockSeq(key));
  SequenceAll<absl::StatusOr<Duration>>(
      std::move(seqs), std::move(done),
      [this, keys = std::vector<std::string>(keys.begin(), keys.end()), id = std::string(lock_id),
       ttl](Completion<Duration> done) mutable {
        DoMultiExtend(std::move(keys), std::move(id), ttl, 0, std::move(done));
      });
}

void AsyncEtcdBackend::DoMultiExtend(std::vector<std::string> keys, std::string lock_id,
                                     Duration ttl, int attempt, Completion<Duration> done) {
  if (attempt >= kMaxTxnRetries) return done(Contention("multi-key extend"));
  std::vector<std::string> locks = LockKeys(keys);
  GetAll(locks, [this, locks, keys = std::move(keys), lock_id = std::move(lock_id), ttl, attempt,
                 done =
                     std::move(done)](absl::StatusOr<std::vector<std::optional<Kv>>> kvs) mutable {
    if (!kvs.ok()) return done(kvs.status());
    for (size_t i = 0; i < keys.size(); ++i) {
      const std::optional<Kv>& kv = (*kvs)[i];
      if (!Holds(kv.has_value() ? &kv->value : nullptr, lock_id)) return done(NotHeld(keys[i]));
    }
    Grant(TtlSeconds(ttl), [this, locks = std::move(locks), cur = std::move(*kvs),
                            keys = std::move(keys), lock_id = std::move(lock_id), ttl, attempt,
                            done = std::move(done)](
                               absl::StatusOr<std::pair<int64_t, int64_t>> lease) mutable {
      if (!lease.ok()) return done(lease.status());
      json compare = json::array(), puts = json::array();
      std::vector<std::pair<int64_t, bool>> old_leases;
      for (size_t i = 0; i < locks.size(); ++i) {
        LockValue value = *DecodeLock(cur[i]->value);  // Holds decoded it
        old_leases.emplace_back(cur[i]->lease, value.shared);
        value.shared = locks.size() > 1;  // the new lease is theirs together
        compare.push_back(ModIs(locks[i], cur[i]->mod_revision));
        puts.push_back({{"request_put",
                         {{"key", B64(locks[i])},
                          {"value", B64(EncodeLock(value))},
                          {"lease", std::to_string(lease->first)}}}});
        // A single-key lease extended here: its index key moves to the new lease with it.
        if (value.indexed) puts.push_back(IndexPut(value.id, keys[i], lease->first));
      }
      const json txn = {{"compare", std::move(compare)}, {"success", std::move(puts)}};
      Call("/v3/kv/txn", txn,
           [this, old_leases = std::move(old_leases), lease = *lease, keys = std::move(keys),
            lock_id = std::move(lock_id), ttl, attempt,
            done = std::move(done)](absl::StatusOr<json> r) mutable {
             if (r.ok() && Succeeded(*r)) {
               const Duration granted = std::chrono::seconds(lease.second);
               return ReleaseLeases(std::move(old_leases),
                                    [granted, done = std::move(done)]() mutable { done(granted); });
             }
             absl::Status st = r.status();
             Revoke(lease.first,
                    [this, st = std::move(st), keys = std::move(keys), lock_id = std::move(lock_id),
                     ttl, attempt, done = std::move(done)]() mutable {
                      if (!st.ok()) return done(st);
                      DoMultiExtend(std::move(keys), std::move(lock_id), ttl, attempt + 1,
                                    std::move(done));
                    });
           });
    });
  });
}

}  // namespace tollgate::etcd
