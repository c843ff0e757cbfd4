// The Redis AsyncBackend: every operation is one script call on the pipelined client (client.h);
// LOCK.ACQUIRE with WAIT waits in a WaitQueue on the loop. Internal to the Redis backend (made by
// NewAsyncRedisBackend; the synchronous NewRedisBackend wraps it).
#ifndef TOLLGATE_BACKENDS_REDIS_ASYNC_REDIS_H_
#define TOLLGATE_BACKENDS_REDIS_ASYNC_REDIS_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "backends/async/wait_queue.h"
#include "backends/redis/client.h"
#include "tollgate/async_backend.h"
#include "tollgate/clock.h"

namespace tollgate::redis {

class AsyncRedisBackend final : public AsyncBackend {
 public:
  // `loop` must outlive this object, which must be destroyed on the loop's thread (or while no
  // thread runs the loop); operations still pending then are dropped without completing.
  // `lock_delay`: see NewAsyncRedisBackend (validated there). `clock` (not owned, outlives this
  // object): its WallNow() is every grant's acquired_at (Redis TIME never is).
  AsyncRedisBackend(std::unique_ptr<Client> client, EventLoop& loop, Duration lock_delay,
                    Clock* clock = RealClock());
  ~AsyncRedisBackend() override;

  std::string_view kind() const override { return "redis"; }
  uint64_t Acquire(const AcquireRequest& req, Completion<std::optional<LeaseGrant>> done) override;
  void CancelWait(uint64_t ticket) override;
  size_t LocalWaiters(std::string_view key) const override;
  void Release(std::string_view key, std::string_view lock_id, StatusCompletion done) override;
  void Extend(std::string_view key, std::string_view lock_id, Duration ttl,
              Completion<Duration> done) override;
  void Info(std::string_view key, Completion<std::optional<LeaseInfo>> done) override;
  // Standalone Redis: one script (lookup_by_id.lua) reads the index tollgate:i:<lock_id> and the
  // lease it names and verifies the lock_id. A Redis Cluster has no index (it would live in another
  // slot than the lease): Unimplemented, after the lock_id's format is checked.
  void LookupById(std::string_view lock_id, Completion<std::optional<LeaseById>> done) override;
  void FencedSet(std::string_view resource, uint64_t fence, std::string_view value,
                 StatusCompletion done) override;
  void FencedGet(std::string_view resource, Completion<std::optional<FencedValue>> done) override;
  void Throttle(std::string_view key, const BucketParams& params, Decimal cost,
                Completion<Decision> done) override;
  void CheckLayers(std::span<const LayerCheck> layers, Decimal cost,
                   Completion<PolicyDecision> done) override;
  void Shutdown() override;

  // Semaphores and multi-key locks (async_redis_sem_multi.cc; keys and scripts: sem_scripts.h,
  // multi_scripts.h). SemAcquire and MultiAcquire wait in the WaitQueue as Acquire does; SemInfo's
  // waiters are this object's (and its WaitOrder's) waiters for the semaphore.
  uint64_t SemAcquire(const SemAcquireRequest& req,
                      Completion<std::optional<PermitGrant>> done) override;
  void SemRelease(std::string_view key, std::string_view permit_id, StatusCompletion done) override;
  void SemExtend(std::string_view key, std::string_view permit_id, Duration ttl,
                 Completion<Duration> done) override;
  void SemInfo(std::string_view key, Completion<std::optional<SemaphoreInfo>> done) override;
  uint64_t MultiAcquire(const MultiAcquireRequest& req,
                        Completion<std::optional<LeaseGrant>> done) override;
  void MultiRelease(std::span<const std::string> keys, std::string_view lock_id,
                    Completion<size_t> done) override;
  void MultiExtend(std::span<const std::string> keys, std::string_view lock_id, Duration ttl,
                   Completion<Duration> done) override;

  // The non-waiting acquire (req.wait ignored): Backend::Acquire's contract. The WaitQueue's
  // attempts and the synchronous wrapper use it.
  void AcquireNow(const AcquireRequest& req, Completion<std::optional<LeaseGrant>> done);
  // The non-waiting semaphore and multi-key acquires (req.wait ignored beyond validation):
  // Backend::SemAcquire's and Backend::MultiAcquire's contracts, likewise.
  void SemAcquireNow(const SemAcquireRequest& req, Completion<std::optional<PermitGrant>> done);
  void MultiAcquireNow(const MultiAcquireRequest& req, Completion<std::optional<LeaseGrant>> done);
  // RedisFencedWrite (include/tollgate/redis_backend.h) on this backend's connections.
  void FencedWrite(std::string_view key, uint64_t fence, std::string_view value,
                   StatusCompletion done);

  const ClientStats& stats() const { return client_->stats(); }
  Duration timeout() const { return client_->timeout(); }
  std::vector<std::string> Warnings() const override { return client_->warnings(); }
  void ShareWaitOrder(WaitOrder* order) override { waits_.set_order(order); }

 private:
  // After Shutdown: completes `done` with Unavailable and returns true.
  template <class Done>
  bool Refused(Done& done) {
    if (!shut_down_) return false;
    done(absl::UnavailableError("the Redis backend is shut down"));
    return true;
  }
  // The WaitQueue's view of this backend: its non-waiting acquires, and how to give back a grant
  // whose waiter was cancelled (also after Shutdown: an attempt in flight may still bring one).
  WaitQueue::Ops QueueOps();
  // On a Redis Cluster, CheckOneSlot(command, keys); OK on standalone Redis.
  absl::Status CheckSlots(std::string_view command, std::span<const std::string> keys) const;

  // Whether single-key leases are indexed by lock_id (standalone Redis; see IndexKey).
  bool indexed() const { return !client_->cluster(); }

  std::unique_ptr<Client> client_;
  const Duration lock_delay_;
  Clock* const clock_;
  bool shut_down_ = false;
  WaitQueue waits_;  // destroyed before client_: its waiters complete while client_ is whole
};

}  // namespace tollgate::redis

#endif  // TOLLGATE_BACKENDS_REDIS_ASYNC_REDIS_H_
