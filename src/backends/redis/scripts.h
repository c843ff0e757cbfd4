// What the Redis backend sends and how it reads the answers, independent of any connection: the
// Lua scripts, the key layout, the argument formatting, the validation of what the Lua arithmetic
// can represent, the decoding of script replies and the mapping of error replies to statuses (see
// include/tollgate/redis_backend.h). Internal to the Redis backend.
#ifndef TOLLGATE_BACKENDS_REDIS_SCRIPTS_H_
#define TOLLGATE_BACKENDS_REDIS_SCRIPTS_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "hiredis/hiredis.h"
#include "tollgate/clock.h"
#include "tollgate/decimal.h"
#include "tollgate/fenced_register.h"
#include "tollgate/lease_manager.h"
#include "tollgate/limiter.h"

namespace tollgate::redis {

enum Script {
  kAcquire,
  kRelease,
  kExtend,
  kInfo,
  kRegSet,
  kRegGet,
  kBuckets,
  kFencedWrite,
  // Semaphores and multi-key locks: lua/*.lua (see sem_scripts.h, multi_scripts.h).
  kSemAcquire,
  kSemRelease,
  kSemExtend,
  kSemInfo,
  kMultiAcquire,
  kMultiRelease,
  kMultiExtend,
  // Lookup by lock_id (lua/lookup_by_id.lua; standalone Redis only).
  kLookupById,
  kCount
};

// The Lua source of script `s` (one of Script, kCount excluded).
std::string_view ScriptText(int s);

// One script invocation: EVALSHA (or EVAL) `script` with KEYS = keys, ARGV = args.
struct ScriptCall {
  int script = kAcquire;
  std::vector<std::string> keys;
  std::vector<std::string> args;
};

// An owned hiredis reply.
struct ReplyDeleter {
  void operator()(redisReply* r) const {
    if (r != nullptr) freeReplyObject(r);
  }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

// The bytes of a string, status or error reply.
inline std::string_view Str(const redisReply* r) { return {r->str, r->len}; }

// ---- Keys ----

// Standalone Redis: the one fence counter of every key (see AcquireCall).
inline constexpr std::string_view kGlobalFenceKey = "tollgate:fence";

std::string LockKey(std::string_view key);
// LockKey(key) == kLockKeyPrefix + key + kLockKeySuffix (the lookup script builds it so).
inline constexpr std::string_view kLockKeyPrefix = "tollgate:{";
inline constexpr std::string_view kLockKeySuffix = "}:lock";
// Standalone Redis: the reverse index of a single-key lease, tollgate:i:<lock_id> -> the caller's
// key, written by the acquire with the lease's PX, kept in step by extend (PEXPIRE) and dropped by
// release (DEL) in the same scripts. A cluster has no index: it lives in another slot than the
// lease (see LookupByIdCall).
std::string IndexKey(std::string_view lock_id);
std::string FenceKey(std::string_view key);
std::string RegKey(std::string_view resource);
std::string ThrottleKey(std::string_view key);
std::string LayerKey(std::string_view layer, std::string_view key);

// `t` as the lease hash stores it: whole Unix milliseconds, floored (before the epoch too).
int64_t AcquiredAtMs(WallTime t);

// ---- Validation and calls (InvalidArgument as the synchronous backend always said) ----

// A TTL as Redis gets it: whole milliseconds, rounded up (a lease never ends before its ttl).
std::string TtlMs(Duration ttl);
// Internal "unexpected reply from Redis to <what>" (a reply of the wrong shape).
absl::Status Unexpected(std::string_view what);

// The cost rules of the core (the Throttler's message).
absl::Status ValidateCost(Decimal cost);
// What the Lua arithmetic can represent exactly (after the core's validation).
absl::Status ValidateRedisParams(const BucketParams& p);
absl::Status ValidateRedisCost(Decimal cost);

// The calls of each operation, for arguments already validated. TTLs go to Redis in whole
// milliseconds, rounded up (a lease never ends before its ttl).
//
// `global_fences` (standalone Redis; a cluster cannot touch one key from every slot): fences come
// from the one counter kGlobalFenceKey, so they increase across all keys, and the key's own counter
// is kept at its highest fence; RegSetCall then refuses (InvalidArgument, "fence N was never
// issued; ...") a fence above that counter. Without it: one counter per key, nothing refused.
//
// `lock_delay` > 0: a lease that expires without release keeps the key blocked that much longer
// (see the scripts); Release, Extend and Info then see the lease gone at its ttl.
//
// `acquired_at`: the tollgate process's Clock::WallNow() at the grant, stored in the lease hash
// ('at', whole Unix milliseconds, floored: AcquiredAtMs) and reported by Info and LookupById; the
// one time authority is the tollgate process, never Redis TIME.
//
// `index` (standalone Redis only; a cluster cannot reach IndexKey from the lease's slot): the
// acquire also sets IndexKey(lock_id) -> key with the lease's PX, and release and extend of a
// lease keep it in step (DEL, PEXPIRE) in the same script.
ScriptCall AcquireCall(std::string_view key, Duration ttl, const std::optional<std::string>& owner,
                       const std::string& lock_id, bool global_fences, Duration lock_delay,
                       WallTime acquired_at, bool index);
ScriptCall ReleaseCall(std::string_view key, std::string_view lock_id, bool index);
ScriptCall ExtendCall(std::string_view key, std::string_view lock_id, Duration ttl, bool index);
ScriptCall InfoCall(std::string_view key);
// Standalone Redis only: reads IndexKey(lock_id), then the lease of the key found there, and
// answers only if that lease is unexpired and held by `lock_id` (read-only). `lock_id` must be
// 32 lowercase hex characters (checked by the caller).
ScriptCall LookupByIdCall(std::string_view lock_id);
ScriptCall RegSetCall(std::string_view resource, uint64_t fence, std::string_view value,
                      bool global_fences);
ScriptCall RegGetCall(std::string_view resource);
ScriptCall FencedWriteCall(std::string_view key, uint64_t fence, std::string_view value);
// The bucket script over `keys` (one per params and shadow entry) for `cost`.
ScriptCall BucketsCall(std::vector<std::string> keys, std::span<const BucketParams* const> params,
                       std::span<const bool> shadow, Decimal cost);

// ---- Replies ----

// The decoded answer of each script (Internal "unexpected reply from Redis to ..." for a reply of
// the wrong shape; FailedPrecondition "lease on 'k' is not held by this lock_id" for release and
// extend of a lease not held).
// DecodeAcquire's grant carries `acquired_at` floored to whole milliseconds (what Info reports).
absl::StatusOr<std::optional<LeaseGrant>> DecodeAcquire(const redisReply* r, std::string lock_id,
                                                        Duration ttl, WallTime acquired_at);
absl::Status DecodeRelease(const redisReply* r, std::string_view key);
absl::StatusOr<Duration> DecodeExtend(const redisReply* r, std::string_view key, Duration ttl);
// Info has the holder's lock_id, and acquired_at unless the lease was stored without one (by a
// tollgate before it kept it).
absl::StatusOr<std::optional<LeaseInfo>> DecodeInfo(const redisReply* r);
// LookupById's answer (waiters 0).
absl::StatusOr<std::optional<LeaseById>> DecodeLookupById(const redisReply* r);
absl::StatusOr<std::optional<FencedValue>> DecodeFencedGet(const redisReply* r);
// The bucket script's answer for `n` buckets: its all-or-nothing verdict and one Decision each.
absl::StatusOr<std::pair<bool, std::vector<Decision>>> DecodeBuckets(const redisReply* r, size_t n);

// Maps an error reply to a status: Aborted for a stale fence; InvalidArgument for a fence never
// issued; Unavailable for every state of the
// server (loading, busy, failing over, out of memory, refusing writes after a failed save
// (MISCONF), wanting a password or permission we do not have); Internal otherwise.
absl::Status ErrorReply(std::string_view msg);

// A parsed "MOVED <slot> <host>:<port>" or "ASK <slot> <host>:<port>" error reply.
struct Redirect {
  bool ask = false;
  int slot = 0;
  std::string host;  // empty: the host of the node that answered
  int port = 0;
};
// nullopt for any other error reply (or a malformed redirect).
std::optional<Redirect> ParseRedirect(std::string_view msg);

}  // namespace tollgate::redis

#endif  // TOLLGATE_BACKENDS_REDIS_SCRIPTS_H_
