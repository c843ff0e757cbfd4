// The Redis AsyncBackend's semaphores and multi-key locks (see async_redis.h), and the WaitQueue
// operations of all three kinds of acquire.
#include <string>
#include <utility>
#include <vector>

#include "backends/redis/async_redis.h"
#include "backends/redis/multi_scripts.h"
#include "backends/redis/sem_scripts.h"
#include "core/lock_id.h"

namespace tollgate::redis {

WaitQueue::Ops AsyncRedisBackend::QueueOps() {
  WaitQueue::Ops ops;
  ops.acquire = [this](const AcquireRequest& req, Completion<std::optional<LeaseGrant>> done) {
    AcquireNow(req, std::move(done));
  };
  ops.release = [this](const std::string& key, const std::string& id) {
    client_->Run(ReleaseCall(key, id, indexed()), [](absl::StatusOr<Reply>) {});
  };
  ops.sem_acquire = [this](const SemAcquireRequest& req,
                           Completion<std::optional<PermitGrant>> done) {
    SemAcquireNow(req, std::move(done));
  };
  ops.sem_release = [this](const std::string& key, const std::string& permit_id) {
    client_->Run(SemReleaseCall(key, permit_id), [](absl::StatusOr<Reply>) {});
  };
  ops.multi_acquire = [this](const MultiAcquireRequest& req,
                             Completion<std::optional<LeaseGrant>> done) {
    MultiAcquireNow(req, std::move(done));
  };
  ops.multi_release = [this](const std::vector<std::string>& keys, const std::string& lock_id) {
    client_->Run(MultiReleaseCall(keys, lock_id, indexed()), [](absl::StatusOr<Reply>) {});
  };
  return ops;
}

absl::Status AsyncRedisBackend::CheckSlots(std::string_view command,
                                           std::span<const std::string> keys) const {
  return client_->cluster() ? CheckOneSlot(command, keys) : absl::OkStatus();
}

// ---- Semaphores ----

uint64_t AsyncRedisBackend::SemAcquire(const SemAcquireRequest& req,
                                       Completion<std::optional<PermitGrant>> done) {
  if (absl::Status st = ValidateSemAcquireRequest(req); !st.ok()) {
    done(std::move(st));
    return 0;
  }
  if (Refused(done)) return 0;
  return waits_.SemAcquire(req, std::move(done));
}

void AsyncRedisBackend::SemAcquireNow(const SemAcquireRequest& req,
                                      Completion<std::optional<PermitGrant>> done) {
  if (absl::Status st = ValidateSemAcquireRequest(req); !st.ok()) return done(std::move(st));
  if (Refused(done)) return;
  std::string permit_id = core::NewLockId();
  ScriptCall call = SemAcquireCall(req, permit_id, !client_->cluster());
  client_->Run(std::move(call),
               [key = req.key, limit = req.limit, ttl = req.ttl, permit_id = std::move(permit_id),
                done = std::move(done)](absl::StatusOr<Reply> r) mutable {
                 if (!r.ok()) return done(r.status());
                 done(DecodeSemAcquire(r->get(), key, limit, std::move(permit_id), ttl));
               });
}

void AsyncRedisBackend::SemRelease(std::string_view key, std::string_view permit_id,
                                   StatusCompletion done) {
  if (absl::Status st = ValidateKey(key); !st.ok()) return done(std::move(st));
  if (Refused(done)) return;
  client_->Run(SemReleaseCall(key, permit_id),
               [key = std::string(key), done = std::move(done)](absl::StatusOr<Reply> r) mutable {
                 if (!r.ok()) return done(r.status());
                 done(DecodeSemRelease(r->get(), key));
               });
}

void AsyncRedisBackend::SemExtend(std::string_view key, std::string_view permit_id, Duration ttl,
                                  Completion<Duration> done) {
  if (absl::Status st = ValidateKey(key); !st.ok()) return done(std::move(st));
  if (absl::Status st = ValidateTtl(ttl); !st.ok()) return done(std::move(st));
  if (Refused(done)) return;
  client_->Run(
      SemExtendCall(key, permit_id, ttl),
      [key = std::string(key), ttl, done = std::move(done)](absl::StatusOr<Reply> r) mutable {
        if (!r.ok()) return done(r.status());
        done(DecodeSemExtend(r->get(), key, ttl));
      });
}

void AsyncRedisBackend::SemInfo(std::string_view key,
                                Completion<std::optional<SemaphoreInfo>> done) {
  if (absl::Status st = ValidateKey(key); !st.ok()) return done(std::move(st));
  if (Refused(done)) return;
  // Completes on the loop while this object is whole (the client drops what is pending when it
  // is destroyed, before this object is).
  client_->Run(SemInfoCall(key), [this, key = std::string(key),
                                  done = std::move(done)](absl::StatusOr<Reply> r) mutable {
    if (!r.ok()) return done(r.status());
    absl::StatusOr<std::optional<SemaphoreInfo>> info = DecodeSemInfo(r->get());
    if (info.ok() && info->has_value()) (*info)->waiters = waits_.SemCount(key);
    done(std::move(info));
  });
}

// ---- Multi-key locks ----

uint64_t AsyncRedisBackend::MultiAcquire(const MultiAcquireRequest& req,
                                         Completion<std::optional<LeaseGrant>> done) {
  absl::Status st = ValidateMultiAcquireRequest(req);
  if (st.ok()) st = CheckSlots("LOCK.MACQUIRE", req.keys);
  if (!st.ok()) {
    done(std::move(st));
    return 0;
  }
  if (Refused(done)) return 0;
  return waits_.MultiAcquire(req, std::move(done));
}

void AsyncRedisBackend::MultiAcquireNow(const MultiAcquireRequest& req,
                                        Completion<std::optional<LeaseGrant>> done) {
  if (absl::Status st = ValidateMultiAcquireRequest(req); !st.ok()) return done(std::move(st));
  if (absl::Status st = CheckSlots("LOCK.MACQUIRE", req.keys); !st.ok()) {
    return done(std::move(st));
  }
  if (Refused(done)) return;
  std::string lock_id = core::NewLockId();
  const WallTime now = clock_->WallNow();
  ScriptCall call = MultiAcquireCall(req, lock_id, !client_->cluster(), lock_delay_, now);
  client_->Run(std::move(call), [lock_id = std::move(lock_id), ttl = req.ttl, now,
                                 done = std::move(done)](absl::StatusOr<Reply> r) mutable {
    if (!r.ok()) return done(r.status());
    done(DecodeMultiAcquire(r->get(), std::move(lock_id), ttl, now));
  });
}

void AsyncRedisBackend::MultiRelease(std::span<const std::string> keys, std::string_view lock_id,
                                     Completion<size_t> done) {
  if (absl::Status st = ValidateKeyList(keys); !st.ok()) return done(std::move(st));
  if (absl::Status st = CheckSlots("LOCK.MRELEASE", keys); !st.ok()) return done(std::move(st));
  if (Refused(done)) return;
  client_->Run(MultiReleaseCall(keys, lock_id, indexed()),
               [n = keys.size(), done = std::move(done)](absl::StatusOr<Reply> r) mutable {
                 if (!r.ok()) return done(r.status());
                 done(DecodeMultiRelease(r->get(), n));
               });
}

void AsyncRedisBackend::MultiExtend(std::span<const std::string> keys, std::string_view lock_id,
                                    Duration ttl, Completion<Duration> done) {
  if (absl::Status st = ValidateKeyList(keys); !st.ok()) return done(std::move(st));
  if (absl::Status st = ValidateTtl(ttl); !st.ok()) return done(std::move(st));
  if (absl::Status st = CheckSlots("LOCK.MEXTEND", keys); !st.ok()) return done(std::move(st));
  if (Refused(done)) return;
  client_->Run(MultiExtendCall(keys, lock_id, ttl, indexed()),
               [keys = std::vector<std::string>(keys.begin(), keys.end()), ttl,
                done = std::move(done)](absl::StatusOr<Reply> r) mutable {
                 if (!r.ok()) return done(r.status());
                 done(DecodeMultiExtend(r->get(), keys, ttl));
               });
}

}  // namespace tollgate::redis
