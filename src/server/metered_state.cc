// The State seam's instrumentation: lock acquisitions, lock hold time, fence writes and (on a
// shared backend) every backend request, counted at the completions whatever state answers.
#include <memory>
#include <string>
#include <utility>

#include "metrics/metrics.h"
#include "server/state.h"

namespace tollgate::server {
namespace {

using metrics::LockResult;

// A backend failure, as opposed to an answer (not held, stale fence, unknown policy...).
bool IsBackendError(const absl::Status& st) {
  switch (st.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kDataLoss:
      return true;
    default:
      return false;
  }
}

class MeteredState final : public State {
 public:
  MeteredState(std::unique_ptr<State> inner, metrics::Metrics& m, Clock* clock, bool timed)
      : inner_(std::move(inner)), m_(m), clock_(clock), timed_(timed) {}

  uint64_t Acquire(const AcquireRequest& req, Completion<std::optional<LeaseGrant>> done) override {
    return inner_->Acquire(req, Granting(req.wait > Duration(0), std::move(done)));
  }
  uint64_t MultiAcquire(const MultiAcquireRequest& req,
                        Completion<std::optional<LeaseGrant>> done) override {
    return inner_->MultiAcquire(req, Granting(req.wait > Duration(0), std::move(done)));
  }
  void CancelWait(uint64_t ticket) override { inner_->CancelWait(ticket); }
  void Release(std::string_view key, std::string_view lock_id, StatusCompletion done) override {
    inner_->Release(key, lock_id,
                    Timed<absl::Status>([this, id = std::string(lock_id),
                                         done = std::move(done)](absl::Status st) mutable {
                      if (st.ok()) m_.NoteRelease(id, clock_->SteadyNow());
                      done(std::move(st));
                    }));
  }
  void Extend(std::string_view key, std::string_view lock_id, Duration ttl,
              Completion<Duration> done) override {
    inner_->Extend(key, lock_id, ttl, Extending(lock_id, std::move(done)));
  }
  void Info(std::string_view key, Completion<std::optional<LeaseInfo>> done) override {
    inner_->Info(key, Timed<absl::StatusOr<std::optional<LeaseInfo>>>(std::move(done)));
  }
  // LOCKID.RELEASE / EXTEND go on to Release / Extend, which count them like LOCK.RELEASE / EXTEND.
  void LookupById(std::string_view lock_id, Completion<std::optional<LeaseById>> done) override {
    inner_->LookupById(lock_id, Timed<absl::StatusOr<std::optional<LeaseById>>>(std::move(done)));
  }
  uint64_t SemAcquire(const SemAcquireRequest& req,
                      Completion<std::optional<PermitGrant>> done) override {
    return inner_->SemAcquire(req,
                              Timed<absl::StatusOr<std::optional<PermitGrant>>>(std::move(done)));
  }
  void SemRelease(std::string_view key, std::string_view permit_id,
                  StatusCompletion done) override {
    inner_->SemRelease(key, permit_id, Timed<absl::Status>(std::move(done)));
  }
  void SemExtend(std::string_view key, std::string_view permit_id, Duration ttl,
                 Completion<Duration> done) override {
    inner_->SemExtend(key, permit_id, ttl, Timed<absl::StatusOr<Duration>>(std::move(done)));
  }
  void SemInfo(std::string_view key, Completion<std::optional<SemaphoreInfo>> done) override {
    inner_->SemInfo(key, Timed<absl::StatusOr<std::optional<SemaphoreInfo>>>(std::move(done)));
  }
  void MultiRelease(std::span<const std::string> keys, std::string_view lock_id,
                    Completion<size_t> done) override {
    inner_->MultiRelease(
        keys, lock_id,
        Timed<absl::StatusOr<size_t>>([this, id = std::string(lock_id),
                                       done = std::move(done)](absl::StatusOr<size_t> n) mutable {
          if (n.ok() && *n > 0) m_.NoteRelease(id, clock_->SteadyNow());
          done(std::move(n));
        }));
  }
  void MultiExtend(std::span<const std::string> keys, std::string_view lock_id, Duration ttl,
                   Completion<Duration> done) override {
    inner_->MultiExtend(keys, lock_id, ttl, Extending(lock_id, std::move(done)));
  }
  void FencedSet(std::string_view resource, uint64_t fence, std::string_view value,
                 StatusCompletion done) override {
    inner_->FencedSet(resource, fence, value,
                      Timed<absl::Status>([this, done = std::move(done)](absl::Status st) mutable {
                        if (st.ok() || st.code() == absl::StatusCode::kAborted) {
                          m_.CountFenceWrite(st.ok());
                        }
                        done(std::move(st));
                      }));
  }
  void FencedGet(std::string_view resource, Completion<std::optional<FencedValue>> done) override {
    inner_->FencedGet(resource, Timed<absl::StatusOr<std::optional<FencedValue>>>(std::move(done)));
  }
  void Throttle(std::string_view key, const BucketParams& params, Decimal cost,
                Completion<Decision> done) override {
    inner_->Throttle(key, params, cost, Timed<absl::StatusOr<Decision>>(std::move(done)));
  }
  void RateCheck(std::string_view policy, std::span<const Field> fields,
                 std::optional<Decimal> cost, Completion<PolicyDecision> done) override {
    inner_->RateCheck(policy, fields, cost, Timed<absl::StatusOr<PolicyDecision>>(std::move(done)));
  }
  void Shutdown() override { inner_->Shutdown(); }
  InfoLines PersistenceInfo() const override { return inner_->PersistenceInfo(); }
  InfoLines LeasesInfo() const override { return inner_->LeasesInfo(); }
  bool KnowsBucketCounts() const override { return inner_->KnowsBucketCounts(); }

 private:
  // On a shared backend, wraps `done` to count the request and its round trip (the embedded store
  // has no backend: `done` unchanged). An error status whose code is a failure counts as error.
  template <class R>
  absl::AnyInvocable<void(R)> Timed(absl::AnyInvocable<void(R)> done) {
    if (!timed_) return done;
    return [this, started = clock_->SteadyNow(), done = std::move(done)](R r) mutable {
      const absl::Status& st = StatusOf(r);
      m_.ObserveBackendRequest(!IsBackendError(st), clock_->SteadyNow() - started);
      done(std::move(r));
    };
  }
  static const absl::Status& StatusOf(const absl::Status& s) { return s; }
  template <class T>
  static const absl::Status& StatusOf(const absl::StatusOr<T>& s) {
    return s.status();
  }

  Completion<std::optional<LeaseGrant>> Granting(bool waits,
                                                 Completion<std::optional<LeaseGrant>> done) {
    using R = absl::StatusOr<std::optional<LeaseGrant>>;
    return Timed<R>([this, waits, done = std::move(done)](R g) mutable {
      if (g.ok()) {
        if (g->has_value()) {
          m_.CountLockAcquisition(LockResult::kGranted);
          m_.NoteGrant((*g)->lock_id, clock_->SteadyNow(), (*g)->ttl);
        } else {
          m_.CountLockAcquisition(waits ? LockResult::kTimeout : LockResult::kContended);
        }
      }
      done(std::move(g));
    });
  }

  Completion<Duration> Extending(std::string_view lock_id, Completion<Duration> done) {
    return Timed<absl::StatusOr<Duration>>(
        [this, id = std::string(lock_id),
         done = std::move(done)](absl::StatusOr<Duration> d) mutable {
          if (d.ok()) m_.NoteExtend(id, clock_->SteadyNow(), *d);
          done(std::move(d));
        });
  }

  std::unique_ptr<State> inner_;
  metrics::Metrics& m_;
  Clock* const clock_;
  const bool timed_;
};

}  // namespace

std::unique_ptr<State> NewMeteredState(std::unique_ptr<State> inner, metrics::Metrics& m,
                                       Clock* clock, bool shared_backend) {
  return std::make_unique<MeteredState>(std::move(inner), m, clock, shared_backend);
}

}  // namespace tollgate::server
