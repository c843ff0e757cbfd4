// Fenced semaphores on Redis: the keys, the script calls and the decoding of their replies
// (the scripts are lua/sem_*.lua). Internal to the Redis backend.
//
// Key layout, per semaphore key K (a namespace of its own: no lease key starts "tollgate:s:"):
//   tollgate:s:{K}        hash: 'limit' -> the holders' limit; permit_id -> "<slot> <fence> <expiry
//                         in ms of Redis TIME>[ <owner>]". Expired permits are not counted and are
//                         purged at the next grant; the hash expires at its furthest permit expiry.
//   tollgate:s:{K}:fence  the semaphore's fence counter (never expires). On standalone Redis fences
//                         come from tollgate:fence (shared with leases) and this counter follows
//                         it, as a lease key's counter does; on a Cluster it is the sequence.
#ifndef TOLLGATE_BACKENDS_REDIS_SEM_SCRIPTS_H_
#define TOLLGATE_BACKENDS_REDIS_SEM_SCRIPTS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "backends/redis/scripts.h"
#include "hiredis/hiredis.h"
#include "tollgate/clock.h"
#include "tollgate/lease_manager.h"

namespace tollgate::redis {

std::string SemKey(std::string_view key);       // tollgate:s:{key}
std::string SemFenceKey(std::string_view key);  // tollgate:s:{key}:fence

// The calls, for arguments already validated. `global_fences`: as AcquireCall (standalone Redis).
ScriptCall SemAcquireCall(const SemAcquireRequest& req, const std::string& permit_id,
                          bool global_fences);
ScriptCall SemReleaseCall(std::string_view key, std::string_view permit_id);
ScriptCall SemExtendCall(std::string_view key, std::string_view permit_id, Duration ttl);
ScriptCall SemInfoCall(std::string_view key);

// The decoded answers. SemAcquire: the grant (with `permit_id` and `ttl`), nullopt when every slot
// is held, or InvalidArgument `limit <limit> differs from the limit <L> of the current holders of
// semaphore "<key>"` (key cut to 64 bytes). SemRelease/SemExtend: FailedPrecondition "permit of
// semaphore '<key>' is not held by this permit_id" when the script found no unexpired permit.
// SemInfo: waiters 0 (the caller counts its own). Internal for a reply of the wrong shape.
absl::StatusOr<std::optional<PermitGrant>> DecodeSemAcquire(const redisReply* r,
                                                            std::string_view key, int64_t limit,
                                                            std::string permit_id, Duration ttl);
absl::Status DecodeSemRelease(const redisReply* r, std::string_view key);
absl::StatusOr<Duration> DecodeSemExtend(const redisReply* r, std::string_view key, Duration ttl);
absl::StatusOr<std::optional<SemaphoreInfo>> DecodeSemInfo(const redisReply* r);

}  // namespace tollgate::redis

#endif  // TOLLGATE_BACKENDS_REDIS_SEM_SCRIPTS_H_
