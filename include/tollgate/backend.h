// One interface for every place tollgate can keep its state: in process (memory), the embedded
// durable store, Redis, PostgreSQL, etcd. The same contract suite (tests/contract/) runs against
// each. Acquire never waits for a lease (no WAIT): waiting is a server feature, built on
// WaitForRelease below.
//
// Errors: InvalidArgument for bad input (same rules and messages as the cores), FailedPrecondition
// when the caller does not hold the lease, Aborted for a stale fence ("fence X is older than Y"),
// Unavailable when the backend cannot be reached or timed out (an operation never hangs: every
// network backend has a timeout), Unimplemented for what a backend does not offer (rate limiting on
// etcd).
#ifndef TOLLGATE_BACKEND_H_
#define TOLLGATE_BACKEND_H_

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "tollgate/clock.h"
#include "tollgate/fenced_register.h"
#include "tollgate/lease_manager.h"
#include "tollgate/limiter.h"

namespace tollgate {

class Backend {
 public:
  virtual ~Backend() = default;
  // "memory", "embedded", "redis", "postgres", "etcd".
  virtual std::string_view kind() const = 0;
  // What the backend found at connect that weakens a guarantee without making it unusable (e.g.
  // a Redis without AOF: a restart may reissue fences), one sentence each. `tollgate serve` logs
  // them at startup.
  virtual std::vector<std::string> Warnings() const { return {}; }

  // Leases, as LeaseManager::TryAcquire / Release / Extend / Info. Fences strictly increase per key
  // (and never go back after a restart of the backend's server).
  [[nodiscard]] virtual absl::StatusOr<std::optional<LeaseGrant>> Acquire(
      std::string_view key, Duration ttl, std::optional<std::string> owner) = 0;
  [[nodiscard]] virtual absl::Status Release(std::string_view key, std::string_view lock_id) = 0;
  [[nodiscard]] virtual absl::StatusOr<Duration> Extend(std::string_view key,
                                                        std::string_view lock_id, Duration ttl) = 0;
  [[nodiscard]] virtual absl::StatusOr<std::optional<LeaseInfo>> Info(std::string_view key) = 0;

  // The unexpired lease that `lock_id` holds, found by lock_id alone (a reverse index kept
  // atomically with the lease: written at the grant, dropped at release and expiry). Only leases
  // granted by Acquire are indexed: a lock_id of a multi-key group or a permit id finds nothing.
  // nullopt when no unexpired lease has this lock_id (released, expired, never issued). Read-only.
  // InvalidArgument for a lock_id that is not 32 lowercase hex chars. Backends that cannot offer it
  // (a Redis Cluster: the index and the lease live in different slots) return Unimplemented.
  [[nodiscard]] virtual absl::StatusOr<std::optional<LeaseById>> LookupById(
      std::string_view lock_id) {
    (void)lock_id;
    return NotOffered("lookup by lock_id");
  }

  // Semaphores and multi-key locks: every backend of tollgate offers them; the defaults, for a
  // Backend of your own that does not, return Unimplemented.
  //
  // Fenced semaphores (see SemAcquireRequest in lease_manager.h). SemAcquire never waits
  // (req.wait is ignored): a free slot → the lowest one, with a new fence; all `limit` slots held by
  // unexpired permits → nullopt. InvalidArgument for a bad request, or for a limit different from
  // that of the current holders (the message names both limits); nothing changes then.
  [[nodiscard]] virtual absl::StatusOr<std::optional<PermitGrant>> SemAcquire(
      const SemAcquireRequest& req) {
    (void)req;
    return NotOffered("semaphores");
  }
  // OK; FailedPrecondition if `permit_id` holds no unexpired permit of `key`.
  [[nodiscard]] virtual absl::Status SemRelease(std::string_view key,
                                                std::string_view permit_id) {
    (void)key, (void)permit_id;
    return NotOffered("semaphores");
  }
  // Sets the permit's expiry to now + ttl and returns ttl; never revives (FailedPrecondition).
  [[nodiscard]] virtual absl::StatusOr<Duration> SemExtend(std::string_view key,
                                                           std::string_view permit_id,
                                                           Duration ttl) {
    (void)key, (void)permit_id, (void)ttl;
    return NotOffered("semaphores");
  }
  // nullopt when the semaphore has no unexpired permit. `waiters` is 0 here (a server counts its
  // own). Never reveals permit ids.
  [[nodiscard]] virtual absl::StatusOr<std::optional<SemaphoreInfo>> SemInfo(
      std::string_view key) {
    (void)key;
    return NotOffered("semaphores");
  }

  // Multi-key locks (see MultiAcquireRequest). MultiAcquire never waits (req.wait is ignored):
  // every key free → all granted under one lock_id and one fence, atomically; any key taken (or in
  // lock-delay) → nullopt and nothing changes. On a Redis Cluster the keys must hash to one slot
  // (InvalidArgument saying so; use a {hash tag}).
  [[nodiscard]] virtual absl::StatusOr<std::optional<LeaseGrant>> MultiAcquire(
      const MultiAcquireRequest& req) {
    (void)req;
    return NotOffered("multi-key locks");
  }
  // Releases each of `keys` that `lock_id` holds; returns how many it released (others untouched).
  [[nodiscard]] virtual absl::StatusOr<size_t> MultiRelease(std::span<const std::string> keys,
                                                            std::string_view lock_id) {
    (void)keys, (void)lock_id;
    return NotOffered("multi-key locks");
  }
  // All or none: when `lock_id` holds every one of `keys` (unexpired), sets each expiry to now + ttl
  // and returns ttl; otherwise FailedPrecondition and nothing changes.
  [[nodiscard]] virtual absl::StatusOr<Duration> MultiExtend(std::span<const std::string> keys,
                                                             std::string_view lock_id,
                                                             Duration ttl) {
    (void)keys, (void)lock_id, (void)ttl;
    return NotOffered("multi-key locks");
  }

  // Whether Acquire-style calls can wait in a FIFO queue kept by the backend itself (a tollgate
  // server reached through tollgate::Client): then AcquireQueued, SemAcquire and MultiAcquire
  // honour req.wait, and the holder API (lease_holder.h) uses that instead of retrying.
  virtual bool queues_waiters() const { return false; }
  // Acquire honouring req.wait where queues_waiters(); the default ignores req.wait.
  [[nodiscard]] virtual absl::StatusOr<std::optional<LeaseGrant>> AcquireQueued(
      const AcquireRequest& req) {
    return Acquire(req.key, req.ttl, req.owner);
  }

  // Blocks the calling thread until the lease on `key` may have become free (released or expired)
  // or `max_wait` has passed, whichever comes first; the caller then tries Acquire again. A hint,
  // not a reservation: it may return early (spuriously, or because the key is already free), and
  // another client may take the key before the caller's Acquire. It never returns later than
  // max_wait plus the backend's own timeout. OK in all those cases; Unavailable when the backend
  // cannot be reached (the caller backs off and retries); InvalidArgument for a bad key.
  //
  // The default polls: if Info() says the key is free, it returns at once; otherwise it sleeps for
  // min(max_wait, the holder's ttl_remaining, kReleasePollInterval) and returns. Redis and
  // PostgreSQL use it. etcd overrides it with a watch on the lock key, which returns as soon as
  // etcd deletes the lock.
  //
  // Thread-safety: as the backend's other calls. A backend serializes calls on one connection, so a
  // server waits on its own connection (see src/server/backend_waiters.h), not on one that serves
  // requests.
  [[nodiscard]] virtual absl::Status WaitForRelease(std::string_view key, Duration max_wait);
  // The default WaitForRelease's polling period: short next to lease ttls (ms to s), long enough
  // that one waiting key costs at most ~40 Info + ~40 Acquire round trips a second.
  static constexpr Duration kReleasePollInterval = std::chrono::milliseconds(25);

  // Fenced registers, as FencedRegisters::Set / Get.
  [[nodiscard]] virtual absl::Status FencedSet(std::string_view resource, uint64_t fence,
                                               std::string_view value) = 0;
  [[nodiscard]] virtual absl::StatusOr<std::optional<FencedValue>> FencedGet(
      std::string_view resource) = 0;

  // Rate limiting, as Throttler::Check, and an all-or-nothing check over several layers with the
  // same rules as PolicyEngine::Check (first enforced denying layer named; retry_after the largest;
  // shadow layers never deny and are charged only when the request is allowed).
  [[nodiscard]] virtual absl::StatusOr<Decision> Throttle(std::string_view key,
                                                          const BucketParams& params,
                                                          Decimal cost) = 0;
  [[nodiscard]] virtual absl::StatusOr<PolicyDecision> CheckLayers(
      std::span<const LayerCheck> layers, Decimal cost) = 0;

 protected:
  // Unimplemented: "<kind> backend offers no <what>".
  absl::Status NotOffered(std::string_view what) const {
    return absl::UnimplementedError(absl::StrCat(std::string(kind()), " backend offers no ", std::string(what)));
  }
};

inline absl::Status Backend::WaitForRelease(std::string_view key, Duration max_wait) {
  if (max_wait <= Duration(0)) return absl::OkStatus();
  absl::StatusOr<std::optional<LeaseInfo>> info = Info(key);
  if (!info.ok()) return info.status();
  if (!info->has_value()) return absl::OkStatus();  // free now
  Duration nap = std::min(max_wait, kReleasePollInterval);
  if ((*info)->ttl_remaining > Duration(0)) nap = std::min(nap, (*info)->ttl_remaining);
  std::this_thread::sleep_for(nap);
  return absl::OkStatus();
}

// In process, nothing persisted. `clock` is not owned.
std::unique_ptr<Backend> NewMemoryBackend(Clock* clock = RealClock());
// The embedded RocksDB store in `dir` (leases and registers durable; buckets in memory).
[[nodiscard]] absl::StatusOr<std::unique_ptr<Backend>> NewEmbeddedBackend(
    const std::string& dir, Clock* clock = RealClock());

}  // namespace tollgate

#endif  // TOLLGATE_BACKEND_H_
