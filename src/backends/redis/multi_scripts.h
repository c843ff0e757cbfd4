// Multi-key locks on Redis: the script calls and the decoding of their replies (the scripts are
// lua/multi_*.lua). A multi-key grant makes each key an ordinary lease (tollgate:{key}:lock and
// :fence, as AcquireCall), so the single-key scripts work on each key afterwards. Internal to the
// Redis backend.
#ifndef TOLLGATE_BACKENDS_REDIS_MULTI_SCRIPTS_H_
#define TOLLGATE_BACKENDS_REDIS_MULTI_SCRIPTS_H_

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "backends/redis/scripts.h"
#include "hiredis/hiredis.h"
#include "tollgate/clock.h"
#include "tollgate/lease_manager.h"

namespace tollgate::redis {

// On a Redis Cluster one script reaches one slot: InvalidArgument `<command> keys must hash to one
// Redis Cluster slot (use a {hash tag}): "<k1>" is in slot N, "<k2>" in slot M` (k1 the first key,
// k2 the first in another slot; a slot is that of the key's lease hash tollgate:{key}:lock, so
// keys that begin with the same {hash tag} share one). OK when all share a slot.
absl::Status CheckOneSlot(std::string_view command, std::span<const std::string> keys);

// The calls, for arguments already validated (on a Cluster, CheckOneSlot passed). `global_fences`,
// `lock_delay` and `acquired_at`: as AcquireCall (a group has no index: LookupById does not find
// its lock_id).
ScriptCall MultiAcquireCall(const MultiAcquireRequest& req, const std::string& lock_id,
                            bool global_fences, Duration lock_delay, WallTime acquired_at);
// `index` (standalone Redis, as ReleaseCall's and ExtendCall's): a lock_id of a single-key lease
// released or extended here keeps its index in step (a group's lock_id has none).
ScriptCall MultiReleaseCall(std::span<const std::string> keys, std::string_view lock_id,
                            bool index);
ScriptCall MultiExtendCall(std::span<const std::string> keys, std::string_view lock_id,
                           Duration ttl, bool index);

// The decoded answers: the grant (with `lock_id`, `ttl` and `acquired_at` as DecodeAcquire's) or
// nullopt when a key is taken; the
// number of keys released; ttl, or FailedPrecondition "lease on '<k>' is not held by this lock_id"
// naming the first key of `keys` not held (nothing extended). Internal for a reply of the wrong
// shape.
absl::StatusOr<std::optional<LeaseGrant>> DecodeMultiAcquire(const redisReply* r,
                                                             std::string lock_id, Duration ttl,
                                                             WallTime acquired_at);
absl::StatusOr<size_t> DecodeMultiRelease(const redisReply* r, size_t nkeys);
absl::StatusOr<Duration> DecodeMultiExtend(const redisReply* r, std::span<const std::string> keys,
                                           Duration ttl);

}  // namespace tollgate::redis

#endif  // TOLLGATE_BACKENDS_REDIS_MULTI_SCRIPTS_H_
