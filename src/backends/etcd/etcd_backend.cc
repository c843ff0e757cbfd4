// The synchronous etcd backend: a thin wrapper over the asynchronous one (async_etcd.h), which
// holds the one implementation (requests, decoding, error mapping, the optimistic loops, watches).
// Each call submits the operation to a private event loop and runs that loop on the calling thread
// until the operation completes; a mutex serializes calls. WaitForRelease runs on a second private
// loop and backend (its own connection), under its own mutex.
#include "tollgate/etcd_backend.h"

#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "backends/async/run_to_completion.h"
#include "backends/etcd/async_etcd.h"
#include "core/absl_compat.h"
#include "tollgate/event_loop.h"

namespace tollgate {
namespace {

// How long a call may take at most: an optimistic loop of kMaxTxnRetries (100) rounds of up to
// three requests, each within the timeout, then the old leases given back (a multi-key release:
// up to two requests per key, concurrently). Only a safety net: every request has its own deadline.
constexpr int kMaxRequestsPerCall = 3 * 100 + 4;

// One private loop and the asynchronous backend it drives.
struct Driver {
  std::unique_ptr<EpollEventLoop> loop;
  std::unique_ptr<etcd::AsyncEtcdBackend> async;  // declared after loop, so destroyed before it

  // Submits one operation and runs the loop until it completes.
  template <class T>
  absl::StatusOr<T> Call(absl::FunctionRef<void(Completion<T>)> submit) {
    return RunToCompletion<T>(*loop, kMaxRequestsPerCall * async->timeout(), "etcd", submit);
  }
  absl::Status CallStatus(absl::FunctionRef<void(StatusCompletion)> submit) {
    return RunStatusToCompletion(*loop, kMaxRequestsPerCall * async->timeout(), "etcd", submit);
  }
};

absl::StatusOr<Driver> NewDriver(const std::string& base, Duration timeout) {
  absl::StatusOr<std::unique_ptr<EpollEventLoop>> loop = EpollEventLoop::Create();
  if (!loop.ok()) return loop.status();
  Driver d;
  d.loop = std::move(*loop);
  d.async = std::make_unique<etcd::AsyncEtcdBackend>(base, timeout, *d.loop);
  return d;
}

class EtcdBackend final : public Backend {
 public:
  EtcdBackend(Driver requests, std::string base, Duration timeout)
      : requests_(std::move(requests)), base_(std::move(base)), timeout_(timeout) {}

  std::string_view kind() const override { return "etcd"; }

  absl::StatusOr<std::optional<LeaseGrant>> Acquire(std::string_view key, Duration ttl,
                                                    std::optional<std::string> owner) override {
    AcquireRequest req{std::string(key), ttl, Duration(0), std::move(owner)};
    absl::MutexLock l(&mu_);
    return requests_.Call<std::optional<LeaseGrant>>(
        [&](Completion<std::optional<LeaseGrant>> done) {
          requests_.async->AcquireNow(req, std::move(done));
        });
  }

  absl::Status Release(std::string_view key, std::string_view lock_id) override {
    absl::MutexLock l(&mu_);
    return requests_.CallStatus(
        [&](StatusCompletion done) { requests_.async->Release(key, lock_id, std::move(done)); });
  }

  absl::StatusOr<Duration> Extend(std::string_view key, std::string_view lock_id,
                                  Duration ttl) override {
    absl::MutexLock l(&mu_);
    return requests_.Call<Duration>([&](Completion<Duration> done) {
      requests_.async->Extend(key, lock_id, ttl, std::move(done));
    });
  }

  absl::StatusOr<std::optional<LeaseInfo>> Info(std::string_view key) override {
    absl::MutexLock l(&mu_);
    return requests_.Call<std::optional<LeaseInfo>>([&](Completion<std::optional<LeaseInfo>> done) {
      requests_.async->Info(key, std::move(done));
    });
  }

  absl::StatusOr<std::optional<LeaseById>> LookupById(std::string_view lock_id) override {
    absl::MutexLock l(&mu_);
    return requests_.Call<std::optional<LeaseById>>([&](Completion<std::optional<LeaseById>> done) {
      requests_.async->LookupById(lock_id, std::move(done));
    });
  }

  absl::StatusOr<std::optional<PermitGrant>> SemAcquire(const SemAcquireRequest& req) override {
    absl::MutexLock l(&mu_);
    return requests_.Call<std::optional<PermitGrant>>(
        [&](Completion<std::optional<PermitGrant>> done) {
          requests_.async->SemAcquireNow(req, std::move(done));
        });
  }

  absl::Status SemRelease(std::string_view key, std::string_view permit_id) override {
    absl::MutexLock l(&mu_);
    return requests_.CallStatus([&](StatusCompletion done) {
      requests_.async->SemRelease(key, permit_id, std::move(done));
    });
  }

  absl::StatusOr<Duration> SemExtend(std::string_view key, std::string_view permit_id,
                                     Duration ttl) override {
    absl::MutexLock l(&mu_);
    return requests_.Call<Duration>([&](Completion<Duration> done) {
      requests_.async->SemExtend(key, permit_id, ttl, std::move(done));
    });
  }

  // waiters is 0: the synchronous backend never queues.
  absl::StatusOr<std::optional<SemaphoreInfo>> SemInfo(std::string_view key) override {
    absl::MutexLock l(&mu_);
    return requests_.Call<std::optional<SemaphoreInfo>>(
        [&](Completion<std::optional<SemaphoreInfo>> done) {
          requests_.async->SemInfo(key, std::move(done));
        });
  }

  absl::StatusOr<std::optional<LeaseGrant>> MultiAcquire(const MultiAcquireRequest& req) override {
    absl::MutexLock l(&mu_);
    return requests_.Call<std::optional<LeaseGrant>>(
        [&](Completion<std::optional<LeaseGrant>> done) {
          requests_.async->MultiAcquireNow(req, std::move(done));
        });
  }

  absl::StatusOr<size_t> MultiRelease(std::span<const std::string> keys,
                                      std::string_view lock_id) override {
    absl::MutexLock l(&mu_);
    return requests_.Call<size_t>([&](Completion<size_t> done) {
      requests_.async->MultiRelease(keys, lock_id, std::move(done));
    });
  }

  absl::StatusOr<Duration> MultiExtend(std::span<const std::string> keys, std::string_view lock_id,
                                       Duration ttl) override {
    absl::MutexLock l(&mu_);
    return requests_.Call<Duration>([&](Completion<Duration> done) {
      requests_.async->MultiExtend(keys, lock_id, ttl, std::move(done));
    });
  }

  // Reads the lock and, if it is held, watches it from the revision after the read, so a delete
  // between the read and the watch's creation is still delivered (etcd replays history from
  // start_revision).
  absl::Status WaitForRelease(std::string_view key, Duration max_wait) override {
    if (absl::Status st = ValidateKey(key); !st.ok()) return st;
    if (max_wait <= Duration(0)) return absl::OkStatus();
    const SteadyTime deadline = RealClock()->SteadyNow() + max_wait;
    absl::MutexLock l(&watch_mu_);
    absl::StatusOr<Driver*> w = Watcher();
    if (!w.ok()) return w.status();
    absl::StatusOr<int64_t> revision = (*w)->Call<int64_t>(
        [&](Completion<int64_t> done) { (*w)->async->HeldAt(key, std::move(done)); });
    if (!revision.ok()) return revision.status();
    if (*revision == 0) return absl::OkStatus();  // free
    return WatchLocked(**w, key, *revision, deadline).status();
  }

  absl::StatusOr<bool> WatchForDelete(std::string_view key, int64_t after_revision,
                                      SteadyTime deadline) {
    absl::MutexLock l(&watch_mu_);
    absl::StatusOr<Driver*> w = Watcher();
    if (!w.ok()) return w.status();
    return WatchLocked(**w, key, after_revision, deadline);
  }

  absl::Status FencedSet(std::string_view resource, uint64_t fence,
                         std::string_view value) override {
    absl::MutexLock l(&mu_);
    return requests_.CallStatus([&](StatusCompletion done) {
      requests_.async->FencedSet(resource, fence, value, std::move(done));
    });
  }

  absl::StatusOr<std::optional<FencedValue>> FencedGet(std::string_view resource) override {
    absl::MutexLock l(&mu_);
    return requests_.Call<std::optional<FencedValue>>(
        [&](Completion<std::optional<FencedValue>> done) {
          requests_.async->FencedGet(resource, std::move(done));
        });
  }

  absl::StatusOr<Decision> Throttle(std::string_view, const BucketParams&, Decimal) override {
    return absl::UnimplementedError("rate limiting is not offered on etcd");
  }
  absl::StatusOr<PolicyDecision> CheckLayers(std::span<const LayerCheck>, Decimal) override {
    return absl::UnimplementedError("rate limiting is not offered on etcd");
  }

 private:
  // The watch driver, made at the first watch.
  absl::StatusOr<Driver*> Watcher() ABSL_EXCLUSIVE_LOCKS_REQUIRED(watch_mu_) {
    if (!watcher_.has_value()) {
      absl::StatusOr<Driver> d = NewDriver(base_, timeout_);
      if (!d.ok()) return d.status();
      watcher_.emplace(std::move(*d));
    }
    return &*watcher_;
  }

  absl::StatusOr<bool> WatchLocked(Driver& w, std::string_view key, int64_t after_revision,
                                   SteadyTime deadline) ABSL_EXCLUSIVE_LOCKS_REQUIRED(watch_mu_) {
    return w.Call<bool>([&](Completion<bool> done) {
      w.async->WatchForDelete(key, after_revision, deadline, std::move(done));
    });
  }

  absl::Mutex mu_;  // serializes calls on requests_
  Driver requests_ ABSL_GUARDED_BY(mu_);
  const std::string base_;
  const Duration timeout_;
  absl::Mutex watch_mu_;  // one watch at a time
  std::optional<Driver> watcher_ ABSL_GUARDED_BY(watch_mu_);
};

}  // namespace

namespace etcd_internal {

absl::StatusOr<bool> WatchForRelease(Backend& etcd, std::string_view key, int64_t after_revision,
                                     Duration max_wait) {
  auto* b = etcd.kind() == "etcd" ? dynamic_cast<EtcdBackend*>(&etcd) : nullptr;
  if (b == nullptr) return absl::InvalidArgumentError("WatchForRelease needs an etcd backend");
  if (absl::Status st = ValidateKey(key); !st.ok()) return st;
  return b->WatchForDelete(key, after_revision, RealClock()->SteadyNow() + max_wait);
}

}  // namespace etcd_internal

absl::StatusOr<std::unique_ptr<Backend>> NewEtcdBackend(const std::string& url, Duration timeout) {
  absl::StatusOr<std::string> base = etcd::CheckArgs(url, timeout);
  if (!base.ok()) return base.status();
  absl::StatusOr<Driver> requests = NewDriver(*base, timeout);
  if (!requests.ok()) return requests.status();
  // The eager probe, through the one implementation.
  absl::Status probe =
      requests->CallStatus([&](StatusCompletion done) { requests->async->Probe(std::move(done)); });
  if (!probe.ok()) return probe;
  return std::unique_ptr<Backend>(
      std::make_unique<EtcdBackend>(std::move(*requests), *base, timeout));
}

}  // namespace tollgate
