// One interface for every place tollgate can keep its state: in process (memory), the embedded
// durable store, Redis, PostgreSQL, etcd. The same contract suite (tests/contract/) runs against
// each. Operations never wait for a lease (no WAIT): waiting is a server feature.
//
// Errors: InvalidArgument for bad input (same rules and messages as the cores), FailedPrecondition
// when the caller does not hold the lease, Aborted for a stale fence ("fence X is older than Y"),
// Unavailable when the backend cannot be reached or timed out (an operation never hangs: every
// network backend has a timeout), Unimplemented for what a backend does not offer (rate limiting on
// etcd).
#ifndef TOLLGATE_BACKEND_H_
#define TOLLGATE_BACKEND_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
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

  // Leases, as LeaseManager::TryAcquire / Release / Extend / Info. Fences strictly increase per key
  // (and never go back after a restart of the backend's server).
  [[nodiscard]] virtual absl::StatusOr<std::optional<LeaseGrant>> Acquire(
      std::string_view key, Duration ttl, std::optional<std::string> owner) = 0;
  [[nodiscard]] virtual absl::Status Release(std::string_view key, std::string_view lock_id) = 0;
  [[nodiscard]] virtual absl::StatusOr<Duration> Extend(std::string_view key,
                                                        std::string_view lock_id, Duration ttl) = 0;
  [[nodiscard]] virtual absl::StatusOr<std::optional<LeaseInfo>> Info(std::string_view key) = 0;

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
};

// In process, nothing persisted. `clock` is not owned.
std::unique_ptr<Backend> NewMemoryBackend(Clock* clock = RealClock());
// The embedded RocksDB store in `dir` (leases and registers durable; buckets in memory).
[[nodiscard]] absl::StatusOr<std::unique_ptr<Backend>> NewEmbeddedBackend(
    const std::string& dir, Clock* clock = RealClock());

}  // namespace tollgate

#endif  // TOLLGATE_BACKEND_H_
