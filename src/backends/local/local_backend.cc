// The in-process backends: memory (volatile) and embedded (the RocksDB store), both thin adapters
// over the cores.
#include <memory>

#include "tollgate/backend.h"
#include "tollgate/store.h"

namespace tollgate {
namespace {

class LocalBackend final : public Backend {
 public:
  // `store` may be null (memory backend).
  LocalBackend(std::string_view kind, Clock* clock, std::unique_ptr<DurableStore> store)
      : kind_(kind),
        store_(std::move(store)),
        leases_({.clock = clock, .journal = store_.get(), .timer_thread = false}),
        // Fences these registers accept are the ones leases_ issued: a made-up fence is refused.
        registers_(
            {.journal = store_.get(), .highest_issued = [this] { return leases_.last_fence(); }}),
        throttler_({.clock = clock}) {}

  void Recover(const RecoveredState& r) { ApplyRecovered(r, leases_, registers_); }

  std::string_view kind() const override { return kind_; }

  absl::StatusOr<std::optional<LeaseGrant>> Acquire(std::string_view key, Duration ttl,
                                                    std::optional<std::string> owner) override {
    return leases_.TryAcquire({std::string(key), ttl, Duration(0), std::move(owner)});
  }
  absl::Status Release(std::string_view key, std::string_view lock_id) override {
    return leases_.Release(key, lock_id);
  }
  absl::StatusOr<Duration> Extend(std::string_view key, std::string_view lock_id,
                                  Duration ttl) override {
    return leases_.Extend(key, lock_id, ttl);
  }
  absl::StatusOr<std::optional<LeaseInfo>> Info(std::string_view key) override {
    return leases_.Info(key);
  }
  absl::StatusOr<std::optional<LeaseById>> LookupById(std::string_view lock_id) override {
    return leases_.LookupById(lock_id);  // waiters is 0: nobody waits in the core here
  }
  absl::StatusOr<std::optional<PermitGrant>> SemAcquire(const SemAcquireRequest& req) override {
    return leases_.TrySemAcquire(req);
  }
  absl::Status SemRelease(std::string_view key, std::string_view permit_id) override {
    return leases_.SemRelease(key, permit_id);
  }
  absl::StatusOr<Duration> SemExtend(std::string_view key, std::string_view permit_id,
                                     Duration ttl) override {
    return leases_.SemExtend(key, permit_id, ttl);
  }
  absl::StatusOr<std::optional<SemaphoreInfo>> SemInfo(std::string_view key) override {
    return leases_.SemInfo(key);  // nobody waits in the core here: waiters is 0
  }
  absl::StatusOr<std::optional<LeaseGrant>> MultiAcquire(const MultiAcquireRequest& req) override {
    return leases_.TryMultiAcquire(req);
  }
  absl::StatusOr<size_t> MultiRelease(std::span<const std::string> keys,
                                      std::string_view lock_id) override {
    return leases_.MultiRelease(keys, lock_id);
  }
  absl::StatusOr<Duration> MultiExtend(std::span<const std::string> keys, std::string_view lock_id,
                                       Duration ttl) override {
    return leases_.MultiExtend(keys, lock_id, ttl);
  }
  absl::Status FencedSet(std::string_view resource, uint64_t fence,
                         std::string_view value) override {
    return registers_.Set(resource, fence, value);
  }
  absl::StatusOr<std::optional<FencedValue>> FencedGet(std::string_view resource) override {
    return registers_.Get(resource);
  }
  absl::StatusOr<Decision> Throttle(std::string_view key, const BucketParams& params,
                                    Decimal cost) override {
    return throttler_.Check(key, params, cost);
  }
  absl::StatusOr<PolicyDecision> CheckLayers(std::span<const LayerCheck> layers,
                                             Decimal cost) override {
    return throttler_.CheckLayers(layers, cost);
  }

 private:
  const std::string_view kind_;
  std::unique_ptr<DurableStore> store_;  // declared first: outlives the cores that journal to it
  LeaseManager leases_;
  FencedRegisters registers_;
  Throttler throttler_;
};

}  // namespace

std::unique_ptr<Backend> NewMemoryBackend(Clock* clock) {
  return std::make_unique<LocalBackend>("memory", clock, nullptr);
}

absl::StatusOr<std::unique_ptr<Backend>> NewEmbeddedBackend(const std::string& dir, Clock* clock) {
  RecoveredState recovered;
  absl::StatusOr<std::unique_ptr<DurableStore>> store =
      DurableStore::Open({.dir = dir, .clock = clock}, &recovered);
  if (!store.ok()) return store.status();
  auto b = std::make_unique<LocalBackend>("embedded", clock, std::move(*store));
  b->Recover(recovered);
  return std::unique_ptr<Backend>(std::move(b));
}

}  // namespace tollgate
