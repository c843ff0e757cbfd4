// The one seam between command handlers and state. Each I/O thread owns one State, driven by its
// own event loop; handlers never ask which implementation they have.
//
// Two implementations, chosen once at startup (server.cc):
//  - the embedded store (NewEmbeddedState): the server's lease manager, fenced registers, throttler
//    and policy engine, shared by every I/O thread; operations complete before they return (their
//    journal records ride on the I/O thread's group commit), WAIT queues in the lease manager;
//  - a shared backend (NewSharedState): an AsyncBackend (Redis, PostgreSQL, etcd) on the I/O
//    thread's loop; operations complete later, WAIT polls on the loop (WaitQueue). RATE.CHECK
//    renders the policy's layers here and checks them on the backend.
//
// Contracts and status codes are those of AsyncBackend (async_backend.h) for the same operation.
// Every completion runs on the I/O thread's loop.
#ifndef TOLLGATE_SERVER_STATE_H_
#define TOLLGATE_SERVER_STATE_H_

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tollgate/async_backend.h"
#include "tollgate/fenced_register.h"
#include "tollgate/lease_manager.h"
#include "tollgate/limiter.h"
#include "tollgate/store.h"

namespace tollgate::metrics {
class Metrics;
}  // namespace tollgate::metrics

namespace tollgate::server {

class State {
 public:
  virtual ~State() = default;

  // As AsyncBackend::Acquire / CancelWait.
  virtual uint64_t Acquire(const AcquireRequest& req,
                           Completion<std::optional<LeaseGrant>> done) = 0;
  virtual void CancelWait(uint64_t ticket) = 0;
  virtual void Release(std::string_view key, std::string_view lock_id, StatusCompletion done) = 0;
  virtual void Extend(std::string_view key, std::string_view lock_id, Duration ttl,
                      Completion<Duration> done) = 0;
  // As AsyncBackend::Info, with `waiters` counting this server's waiters for the key.
  virtual void Info(std::string_view key, Completion<std::optional<LeaseInfo>> done) = 0;
  // As AsyncBackend::LookupById, with `waiters` counting this server's waiters for the key found.
  virtual void LookupById(std::string_view lock_id,
                          Completion<std::optional<LeaseById>> done) = 0;
  // As AsyncBackend::SemAcquire ... MultiExtend (tickets share CancelWait with Acquire);
  // SemInfo's `waiters` counts this server's waiters for the semaphore.
  virtual uint64_t SemAcquire(const SemAcquireRequest& req,
                              Completion<std::optional<PermitGrant>> done) = 0;
  virtual void SemRelease(std::string_view key, std::string_view permit_id,
                          StatusCompletion done) = 0;
  virtual void SemExtend(std::string_view key, std::string_view permit_id, Duration ttl,
                         Completion<Duration> done) = 0;
  virtual void SemInfo(std::string_view key, Completion<std::optional<SemaphoreInfo>> done) = 0;
  virtual uint64_t MultiAcquire(const MultiAcquireRequest& req,
                                Completion<std::optional<LeaseGrant>> done) = 0;
  virtual void MultiRelease(std::span<const std::string> keys, std::string_view lock_id,
                            Completion<size_t> done) = 0;
  virtual void MultiExtend(std::span<const std::string> keys, std::string_view lock_id,
                           Duration ttl, Completion<Duration> done) = 0;
  virtual void FencedSet(std::string_view resource, uint64_t fence, std::string_view value,
                         StatusCompletion done) = 0;
  virtual void FencedGet(std::string_view resource,
                         Completion<std::optional<FencedValue>> done) = 0;
  virtual void Throttle(std::string_view key, const BucketParams& params, Decimal cost,
                        Completion<Decision> done) = 0;
  // As PolicyEngine::Check (NotFound for an unknown policy); the decision is counted in the
  // engine's per-policy counters and latency histogram, whatever holds the buckets.
  virtual void RateCheck(std::string_view policy, std::span<const Field> fields,
                         std::optional<Decimal> cost, Completion<PolicyDecision> done) = 0;
  // Waiting Acquires complete with nullopt now; see AsyncBackend::Shutdown.
  virtual void Shutdown() = 0;

  // INFO's fields that depend on where state lives, as (name, value) lines: the "persistence"
  // section (`store` first) and the "leases" section (lease_keys, last_fence, fenced_registers:
  // "n/a" where this server cannot count them).
  using InfoLines = std::vector<std::pair<std::string, std::string>>;
  virtual InfoLines PersistenceInfo() const = 0;
  virtual InfoLines LeasesInfo() const = 0;
  // Whether this server knows live bucket counts (INFO ratelimit's throttle_buckets and buckets=
  // fields read "n/a" otherwise: on a shared backend other servers make buckets too).
  virtual bool KnowsBucketCounts() const = 0;
};

// The embedded store's state for one I/O thread. Every reference (and `store`, which holds
// `data_dir`) must outlive the result.
std::unique_ptr<State> NewEmbeddedState(LeaseManager& leases, FencedRegisters& registers,
                                        Throttler& throttler, PolicyEngine& policies,
                                        DurableStore& store, std::string data_dir, EventLoop& loop);

// A shared backend's state for one I/O thread: `backend` runs on that thread's loop; `policies`
// renders RATE.CHECK's layers and counts its decisions (must outlive the result).
std::unique_ptr<State> NewSharedState(std::unique_ptr<AsyncBackend> backend, PolicyEngine& policies,
                                      Clock* clock);

// Wraps `inner` to count, at the completions, lock acquisitions and hold times and fence writes
// (and, with `shared_backend`, every request's result and round trip as a backend request) in `m`,
// which must outlive the result.
std::unique_ptr<State> NewMeteredState(std::unique_ptr<State> inner, metrics::Metrics& m,
                                       Clock* clock, bool shared_backend);

}  // namespace tollgate::server

#endif  // TOLLGATE_SERVER_STATE_H_
