// The synchronous Redis backend: a thin wrapper over the asynchronous one (async_redis.h), which
// holds the one implementation (scripts, keys, decoding, cluster routing: scripts.h, client.h).
// Each call submits the operation to a private event loop and runs that loop on the calling thread
// until the operation completes; a mutex serializes calls.
#include "tollgate/redis_backend.h"

#include <memory>
#include <optional>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "backends/async/run_to_completion.h"
#include "backends/redis/async_redis.h"
#include "backends/redis/fenced_write_lua.h"
#include "core/absl_compat.h"
#include "tollgate/event_loop.h"

namespace tollgate {
namespace {

class RedisBackend final : public Backend {
 public:
  RedisBackend(std::unique_ptr<EpollEventLoop> loop,
               std::unique_ptr<redis::AsyncRedisBackend> async)
      : loop_(std::move(loop)), async_(std::move(async)), warnings_(async_->Warnings()) {}

  std::string_view kind() const override { return "redis"; }
  std::vector<std::string> Warnings() const override { return warnings_; }

  absl::StatusOr<std::optional<LeaseGrant>> Acquire(std::string_view key, Duration ttl,
                                                    std::optional<std::string> owner) override {
    AcquireRequest req{std::string(key), ttl, Duration(0), std::move(owner)};
    return Call<std::optional<LeaseGrant>>([&](Completion<std::optional<LeaseGrant>> done) {
      async_->AcquireNow(req, std::move(done));
    });
  }

  absl::Status Release(std::string_view key, std::string_view lock_id) override {
    return CallStatus(
        [&](StatusCompletion done) { async_->Release(key, lock_id, std::move(done)); });
  }

  absl::StatusOr<Duration> Extend(std::string_view key, std::string_view lock_id,
                                  Duration ttl) override {
    return Call<Duration>(
        [&](Completion<Duration> done) { async_->Extend(key, lock_id, ttl, std::move(done)); });
  }

  absl::StatusOr<std::optional<LeaseInfo>> Info(std::string_view key) override {
    return Call<std::optional<LeaseInfo>>(
        [&](Completion<std::optional<LeaseInfo>> done) { async_->Info(key, std::move(done)); });
  }

  absl::StatusOr<std::optional<LeaseById>> LookupById(std::string_view lock_id) override {
    return Call<std::optional<LeaseById>>([&](Completion<std::optional<LeaseById>> done) {
      async_->LookupById(lock_id, std::move(done));
    });
  }

  absl::StatusOr<std::optional<PermitGrant>> SemAcquire(const SemAcquireRequest& req) override {
    return Call<std::optional<PermitGrant>>([&](Completion<std::optional<PermitGrant>> done) {
      async_->SemAcquireNow(req, std::move(done));
    });
  }

  absl::Status SemRelease(std::string_view key, std::string_view permit_id) override {
    return CallStatus(
        [&](StatusCompletion done) { async_->SemRelease(key, permit_id, std::move(done)); });
  }

  absl::StatusOr<Duration> SemExtend(std::string_view key, std::string_view permit_id,
                                     Duration ttl) override {
    return Call<Duration>([&](Completion<Duration> done) {
      async_->SemExtend(key, permit_id, ttl, std::move(done));
    });
  }

  // waiters is 0: nobody waits on this object (SemAcquire never waits).
  absl::StatusOr<std::optional<SemaphoreInfo>> SemInfo(std::string_view key) override {
    return Call<std::optional<SemaphoreInfo>>([&](Completion<std::optional<SemaphoreInfo>> done) {
      async_->SemInfo(key, std::move(done));
    });
  }

  absl::StatusOr<std::optional<LeaseGrant>> MultiAcquire(const MultiAcquireRequest& req) override {
    return Call<std::optional<LeaseGrant>>([&](Completion<std::optional<LeaseGrant>> done) {
      async_->MultiAcquireNow(req, std::move(done));
    });
  }

  absl::StatusOr<size_t> MultiRelease(std::span<const std::string> keys,
                                      std::string_view lock_id) override {
    return Call<size_t>(
        [&](Completion<size_t> done) { async_->MultiRelease(keys, lock_id, std::move(done)); });
  }

  absl::StatusOr<Duration> MultiExtend(std::span<const std::string> keys, std::string_view lock_id,
                                       Duration ttl) override {
    return Call<Duration>([&](Completion<Duration> done) {
      async_->MultiExtend(keys, lock_id, ttl, std::move(done));
    });
  }

  absl::Status FencedSet(std::string_view resource, uint64_t fence,
                         std::string_view value) override {
    return CallStatus(
        [&](StatusCompletion done) { async_->FencedSet(resource, fence, value, std::move(done)); });
  }

  absl::StatusOr<std::optional<FencedValue>> FencedGet(std::string_view resource) override {
    return Call<std::optional<FencedValue>>([&](Completion<std::optional<FencedValue>> done) {
      async_->FencedGet(resource, std::move(done));
    });
  }

  absl::StatusOr<Decision> Throttle(std::string_view key, const BucketParams& params,
                                    Decimal cost) override {
    return Call<Decision>(
        [&](Completion<Decision> done) { async_->Throttle(key, params, cost, std::move(done)); });
  }

  absl::StatusOr<PolicyDecision> CheckLayers(std::span<const LayerCheck> layers,
                                             Decimal cost) override {
    return Call<PolicyDecision>([&](Completion<PolicyDecision> done) {
      async_->CheckLayers(layers, cost, std::move(done));
    });
  }

  absl::Status FencedWrite(std::string_view key, uint64_t fence, std::string_view value) {
    return CallStatus(
        [&](StatusCompletion done) { async_->FencedWrite(key, fence, value, std::move(done)); });
  }

 private:
  // Submits one operation and runs the private loop until it completes. The asynchronous backend
  // completes every operation within its timeout per command (a redirect chain, a NOSCRIPT retry
  // and a connect included, a few of those); the loop's own deadline below is only a safety net.
  template <class T>
  absl::StatusOr<T> Call(absl::FunctionRef<void(Completion<T>)> submit) {
    absl::MutexLock l(&mu_);
    return RunToCompletion<T>(*loop_, Limit(), "Redis", submit);
  }
  absl::Status CallStatus(absl::FunctionRef<void(StatusCompletion)> submit) {
    absl::MutexLock l(&mu_);
    return RunStatusToCompletion(*loop_, Limit(), "Redis", submit);
  }
  Duration Limit() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return 4 * (redis::Client::kMaxRedirects + 2) * async_->timeout();
  }

  absl::Mutex mu_;
  const std::unique_ptr<EpollEventLoop> loop_ ABSL_PT_GUARDED_BY(mu_);
  // Declared after loop_, so destroyed before it.
  const std::unique_ptr<redis::AsyncRedisBackend> async_ ABSL_PT_GUARDED_BY(mu_);
  const std::vector<std::string> warnings_;  // found at connect, never changed
};

}  // namespace

absl::StatusOr<std::unique_ptr<Backend>> NewRedisBackend(const std::string& url, Duration timeout,
                                                         Duration lock_delay) {
  absl::StatusOr<std::unique_ptr<EpollEventLoop>> loop = EpollEventLoop::Create();
  if (!loop.ok()) return loop.status();
  absl::StatusOr<std::unique_ptr<AsyncBackend>> async =
      NewAsyncRedisBackend(url, **loop, timeout, lock_delay);
  if (!async.ok()) return async.status();
  std::unique_ptr<redis::AsyncRedisBackend> a(
      static_cast<redis::AsyncRedisBackend*>(async->release()));
  return std::unique_ptr<Backend>(std::make_unique<RedisBackend>(std::move(*loop), std::move(a)));
}

absl::Status RedisFencedWrite(Backend& redis, std::string_view key, uint64_t fence,
                              std::string_view value) {
  auto* r = dynamic_cast<RedisBackend*>(&redis);
  if (r == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("RedisFencedWrite needs a backend made by NewRedisBackend, got kind '",
                     AV(redis.kind()), "'"));
  }
  return r->FencedWrite(key, fence, value);
}

std::string RedisFenceRecordKey(std::string_view key) {
  return absl::StrCat(AV(key), ":tollgate-fence");
}

std::string_view RedisFencedWriteScript() { return redis::kFencedWriteLua; }

}  // namespace tollgate
