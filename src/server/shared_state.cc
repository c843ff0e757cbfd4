// State on a shared backend: every operation goes to the I/O thread's AsyncBackend.
#include <memory>
#include <string>
#include <vector>

#include "server/state.h"

namespace tollgate::server {
namespace {

class SharedState final : public State {
 public:
  SharedState(std::unique_ptr<AsyncBackend> backend, PolicyEngine& policies, Clock* clock)
      : backend_(std::move(backend)), policies_(policies), clock_(clock) {}

  uint64_t Acquire(const AcquireRequest& req, Completion<std::optional<LeaseGrant>> done) override {
    return backend_->Acquire(req, std::move(done));
  }
  void CancelWait(uint64_t ticket) override { backend_->CancelWait(ticket); }
  void Release(std::string_view key, std::string_view lock_id, StatusCompletion done) override {
    backend_->Release(key, lock_id, std::move(done));
  }
  void Extend(std::string_view key, std::string_view lock_id, Duration ttl,
              Completion<Duration> done) override {
    backend_->Extend(key, lock_id, ttl, std::move(done));
  }
  uint64_t SemAcquire(const SemAcquireRequest& req,
                      Completion<std::optional<PermitGrant>> done) override {
    return backend_->SemAcquire(req, std::move(done));
  }
  void SemRelease(std::string_view key, std::string_view permit_id,
                  StatusCompletion done) override {
    backend_->SemRelease(key, permit_id, std::move(done));
  }
  void SemExtend(std::string_view key, std::string_view permit_id, Duration ttl,
                 Completion<Duration> done) override {
    backend_->SemExtend(key, permit_id, ttl, std::move(done));
  }
  // The backend fills in its own (this server's) waiters.
  void SemInfo(std::string_view key, Completion<std::optional<SemaphoreInfo>> done) override {
    backend_->SemInfo(key, std::move(done));
  }
  uint64_t MultiAcquire(const MultiAcquireRequest& req,
                        Completion<std::optional<LeaseGrant>> done) override {
    return backend_->MultiAcquire(req, std::move(done));
  }
  void MultiRelease(std::span<const std::string> keys, std::string_view lock_id,
                    Completion<size_t> done) override {
    backend_->MultiRelease(keys, lock_id, std::move(done));
  }
  void MultiExtend(std::span<const std::string> keys, std::string_view lock_id, Duration ttl,
                   Completion<Duration> done) override {
    backend_->MultiExtend(keys, lock_id, ttl, std::move(done));
  }
  void Info(std::string_view key, Completion<std::optional<LeaseInfo>> done) override {
    backend_->Info(key, [this, k = std::string(key), done = std::move(done)](
                            absl::StatusOr<std::optional<LeaseInfo>> info) mutable {
      // The backend cannot see this server's waiters; the server can.
      if (info.ok() && info->has_value()) (*info)->waiters = backend_->LocalWaiters(k);
      done(std::move(info));
    });
  }
  void LookupById(std::string_view lock_id, Completion<std::optional<LeaseById>> done) override {
    backend_->LookupById(lock_id, [this, done = std::move(done)](
                                      absl::StatusOr<std::optional<LeaseById>> found) mutable {
      // As Info: this server's waiters for the key found.
      if (found.ok() && found->has_value()) {
        (*found)->info.waiters = backend_->LocalWaiters((*found)->key);
      }
      done(std::move(found));
    });
  }
  void FencedSet(std::string_view resource, uint64_t fence, std::string_view value,
                 StatusCompletion done) override {
    backend_->FencedSet(resource, fence, value, std::move(done));
  }
  void FencedGet(std::string_view resource, Completion<std::optional<FencedValue>> done) override {
    backend_->FencedGet(resource, std::move(done));
  }
  void Throttle(std::string_view key, const BucketParams& params, Decimal cost,
                Completion<Decision> done) override {
    backend_->Throttle(key, params, cost, std::move(done));
  }
  void RateCheck(std::string_view policy, std::span<const Field> fields,
                 std::optional<Decimal> cost, Completion<PolicyDecision> done) override {
    const SteadyTime started = clock_->SteadyNow();
    absl::StatusOr<ResolvedCheck> r = policies_.Resolve(policy, fields, cost);
    if (!r.ok()) return done(r.status());
    auto layers = std::make_shared<std::vector<LayerCheck>>(std::move(r->layers));
    backend_->CheckLayers(*layers, r->cost,
                          [this, started, layers, p = std::string(policy),
                           type = std::move(r->cost_type),
                           done = std::move(done)](absl::StatusOr<PolicyDecision> d) mutable {
                            if (d.ok()) {
                              policies_.Record(p, *layers, *d, clock_->SteadyNow() - started,
                                               type);
                            }
                            done(std::move(d));
                          });
  }
  void Shutdown() override { backend_->Shutdown(); }

  InfoLines PersistenceInfo() const override { return {{"store", std::string(backend_->kind())}}; }
  // The leases live on the backend: this server cannot count them.
  InfoLines LeasesInfo() const override {
    return {{"lease_keys", "n/a"}, {"last_fence", "n/a"}, {"fenced_registers", "n/a"}};
  }
  bool KnowsBucketCounts() const override { return false; }

 private:
  std::unique_ptr<AsyncBackend> backend_;
  PolicyEngine& policies_;
  Clock* const clock_;
};

}  // namespace

std::unique_ptr<State> NewSharedState(std::unique_ptr<AsyncBackend> backend, PolicyEngine& policies,
                                      Clock* clock) {
  return std::make_unique<SharedState>(std::move(backend), policies, clock);
}

}  // namespace tollgate::server
