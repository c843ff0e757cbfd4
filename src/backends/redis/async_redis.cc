// The Redis AsyncBackend (see async_redis.h) and NewAsyncRedisBackend.
#include "backends/redis/async_redis.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/absl_compat.h"
#include "core/lock_id.h"
#include "tollgate/redis_backend.h"

namespace tollgate::redis {

AsyncRedisBackend::AsyncRedisBackend(std::unique_ptr<Client> client, EventLoop& loop,
                                     Duration lock_delay, Clock* clock)
    : client_(std::move(client)),
      lock_delay_(lock_delay),
      clock_(clock),
      waits_(loop, QueueOps()) {}

AsyncRedisBackend::~AsyncRedisBackend() {
  // Waiters complete (nullopt) while this object is whole; requests in flight are dropped.
  shut_down_ = true;
  waits_.Shutdown();
}

uint64_t AsyncRedisBackend::Acquire(const AcquireRequest& req,
                                    Completion<std::optional<LeaseGrant>> done) {
  if (absl::Status st = ValidateAcquireRequest(req); !st.ok()) {
    done(std::move(st));
    return 0;
  }
  if (Refused(done)) return 0;
  return waits_.Acquire(req, std::move(done));
}

void AsyncRedisBackend::CancelWait(uint64_t ticket) { waits_.Cancel(ticket); }

size_t AsyncRedisBackend::LocalWaiters(std::string_view key) const { return waits_.Count(key); }

void AsyncRedisBackend::Shutdown() {
  shut_down_ = true;
  waits_.Shutdown();
}

void AsyncRedisBackend::AcquireNow(const AcquireRequest& req,
                                   Completion<std::optional<LeaseGrant>> done) {
  if (absl::Status st = ValidateKey(req.key); !st.ok()) return done(std::move(st));
  if (absl::Status st = ValidateTtl(req.ttl); !st.ok()) return done(std::move(st));
  if (Refused(done)) return;
  std::string lock_id = core::NewLockId();
  const WallTime now = clock_->WallNow();
  ScriptCall call = AcquireCall(req.key, req.ttl, req.owner, lock_id, !client_->cluster(),
                                lock_delay_, now, indexed());
  client_->Run(std::move(call), [lock_id = std::move(lock_id), ttl = req.ttl, now,
                                 done = std::move(done)](absl::StatusOr<Reply> r) mutable {
    if (!r.ok()) return done(r.status());
    done(DecodeAcquire(r->get(), std::move(lock_id), ttl, now));
  });
}

void AsyncRedisBackend::Release(std::string_view key, std::string_view lock_id,
                                StatusCompletion done) {
  if (absl::Status st = ValidateKey(key); !st.ok()) return done(std::move(st));
  if (Refused(done)) return;
  client_->Run(ReleaseCall(key, lock_id, indexed()),
               [key = std::string(key), done = std::move(done)](absl::StatusOr<Reply> r) mutable {
                 if (!r.ok()) return done(r.status());
                 done(DecodeRelease(r->get(), key));
               });
}

void AsyncRedisBackend::Extend(std::string_view key, std::string_view lock_id, Duration ttl,
                               Completion<Duration> done) {
  if (absl::Status st = ValidateKey(key); !st.ok()) return done(std::move(st));
  if (absl::Status st = ValidateTtl(ttl); !st.ok()) return done(std::move(st));
  if (Refused(done)) return;
  client_->Run(
      ExtendCall(key, lock_id, ttl, indexed()),
      [key = std::string(key), ttl, done = std::move(done)](absl::StatusOr<Reply> r) mutable {
        if (!r.ok()) return done(r.status());
        done(DecodeExtend(r->get(), key, ttl));
      });
}

void AsyncRedisBackend::Info(std::string_view key, Completion<std::optional<LeaseInfo>> done) {
  if (absl::Status st = ValidateKey(key); !st.ok()) return done(std::move(st));
  if (Refused(done)) return;
  client_->Run(InfoCall(key), [done = std::move(done)](absl::StatusOr<Reply> r) mutable {
    if (!r.ok()) return done(r.status());
    done(DecodeInfo(r->get()));
  });
}

void AsyncRedisBackend::LookupById(std::string_view lock_id,
                                   Completion<std::optional<LeaseById>> done) {
  if (!core::IsLockIdFormat(lock_id)) {
    return done(absl::InvalidArgumentError("lock_id must be 32 lowercase hex characters"));
  }
  if (!indexed()) {
    return done(absl::UnimplementedError(
        "lookup by lock_id is not available on a Redis Cluster: the lock_id index and the lease "
        "live in different hash slots, which one atomic script cannot reach"));
  }
  if (Refused(done)) return;
  client_->Run(LookupByIdCall(lock_id), [done = std::move(done)](absl::StatusOr<Reply> r) mutable {
    if (!r.ok()) return done(r.status());
    done(DecodeLookupById(r->get()));
  });
}

void AsyncRedisBackend::FencedSet(std::string_view resource, uint64_t fence, std::string_view value,
                                  StatusCompletion done) {
  if (absl::Status st = ValidateKey(resource, "resource"); !st.ok()) return done(std::move(st));
  if (fence == 0) return done(absl::InvalidArgumentError("fence must be a positive integer"));
  if (Refused(done)) return;
  client_->Run(RegSetCall(resource, fence, value, !client_->cluster()),
               [done = std::move(done)](absl::StatusOr<Reply> r) mutable {
                 done(r.ok() ? absl::OkStatus() : r.status());
               });
}

void AsyncRedisBackend::FencedGet(std::string_view resource,
                                  Completion<std::optional<FencedValue>> done) {
  if (absl::Status st = ValidateKey(resource, "resource"); !st.ok()) return done(std::move(st));
  if (Refused(done)) return;
  client_->Run(RegGetCall(resource), [done = std::move(done)](absl::StatusOr<Reply> r) mutable {
    if (!r.ok()) return done(r.status());
    done(DecodeFencedGet(r->get()));
  });
}

void AsyncRedisBackend::Throttle(std::string_view key, const BucketParams& params, Decimal cost,
                                 Completion<Decision> done) {
  if (absl::Status st = ValidateKey(key); !st.ok()) return done(std::move(st));
  if (absl::Status st = ValidateBucketParams(params); !st.ok()) return done(std::move(st));
  if (absl::Status st = ValidateCost(cost); !st.ok()) return done(std::move(st));
  if (absl::Status st = ValidateRedisParams(params); !st.ok()) return done(std::move(st));
  if (absl::Status st = ValidateRedisCost(cost); !st.ok()) return done(std::move(st));
  if (Refused(done)) return;
  const BucketParams* p[] = {&params};
  const bool shadow[] = {false};
  client_->Run(BucketsCall({ThrottleKey(key)}, p, shadow, cost),
               [done = std::move(done)](absl::StatusOr<Reply> r) mutable {
                 if (!r.ok()) return done(r.status());
                 auto d = DecodeBuckets(r->get(), 1);
                 if (!d.ok()) return done(d.status());
                 done(std::move(d->second[0]));
               });
}

void AsyncRedisBackend::CheckLayers(std::span<const LayerCheck> layers, Decimal cost,
                                    Completion<PolicyDecision> done) {
  // The core's validation, in the core's order, then what the Lua arithmetic can represent.
  if (absl::Status st = ValidateLayerChecks(layers, cost); !st.ok()) return done(std::move(st));
  if (absl::Status st = ValidateRedisCost(cost); !st.ok()) return done(std::move(st));
  std::vector<std::string> keys;
  std::vector<const BucketParams*> params;
  std::unique_ptr<bool[]> shadow(new bool[layers.size()]);
  for (size_t i = 0; i < layers.size(); ++i) {
    if (absl::Status st = ValidateRedisParams(layers[i].params); !st.ok()) {
      return done(
          absl::InvalidArgumentError(absl::StrCat("layer '", layers[i].name, "': ", st.message())));
    }
    keys.push_back(LayerKey(layers[i].name, layers[i].key));
    params.push_back(&layers[i].params);
    shadow[i] = layers[i].shadow;
  }
  if (Refused(done)) return;
  ScriptCall call = BucketsCall(std::move(keys), params,
                                std::span<const bool>(shadow.get(), layers.size()), cost);
  client_->Run(std::move(call), [layers = std::vector<LayerCheck>(layers.begin(), layers.end()),
                                 done = std::move(done)](absl::StatusOr<Reply> r) mutable {
    if (!r.ok()) return done(r.status());
    auto d = DecodeBuckets(r->get(), layers.size());
    if (!d.ok()) return done(d.status());
    PolicyDecision out = CombineLayerDecisions(layers, d->second);
    out.allowed = d->first;  // the script's own all-or-nothing verdict
    done(std::move(out));
  });
}

void AsyncRedisBackend::FencedWrite(std::string_view key, uint64_t fence, std::string_view value,
                                    StatusCompletion done) {
  if (absl::Status st = ValidateKey(key); !st.ok()) return done(std::move(st));
  if (fence == 0) return done(absl::InvalidArgumentError("fence must be a positive integer"));
  if (Refused(done)) return;
  client_->Run(FencedWriteCall(key, fence, value),
               [done = std::move(done)](absl::StatusOr<Reply> r) mutable {
                 done(r.ok() ? absl::OkStatus() : r.status());
               });
}

}  // namespace tollgate::redis

namespace tollgate {

absl::StatusOr<std::unique_ptr<AsyncBackend>> NewAsyncRedisBackend(const std::string& url,
                                                                   EventLoop& loop,
                                                                   Duration timeout,
                                                                   Duration lock_delay) {
  if (lock_delay < Duration(0) || lock_delay > kMaxTtl) {
    return absl::InvalidArgumentError(absl::StrCat(
        "lock_delay must be in [0, ",
        std::chrono::duration_cast<std::chrono::milliseconds>(kMaxTtl).count(), "] ms, got ",
        std::chrono::duration_cast<std::chrono::milliseconds>(lock_delay).count()));
  }
  absl::StatusOr<redis::RedisUrl> u = redis::ParseUrl(url);
  if (!u.ok()) return u.status();
  if (timeout <= Duration(0) || timeout > std::chrono::hours(1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("Redis timeout for '", url, "' must be positive and at most 1 hour"));
  }
  absl::StatusOr<std::unique_ptr<redis::Client>> client =
      redis::Client::Connect(std::move(*u), timeout, loop);
  if (!client.ok()) return client.status();
  return std::unique_ptr<AsyncBackend>(
      std::make_unique<redis::AsyncRedisBackend>(std::move(*client), loop, lock_delay));
}

}  // namespace tollgate
