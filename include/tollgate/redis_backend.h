// The Redis backend: leases, fenced registers and token buckets kept in a Redis server (7.0+).
//
// Every operation is one atomic Lua script (loaded once with SCRIPT LOAD, run with EVALSHA, loaded
// again when the server answers NOSCRIPT, e.g. after a restart or SCRIPT FLUSH). The Redis server's
// TIME is the only clock: lease expiry is Redis key expiry (PX), buckets refill by server time.
//
// Keys (binary-safe; <key> is the caller's key as given):
//   tollgate:{<key>}:lock    hash {id, fence, owner?} with PX = the lease's ttl
//   tollgate:{<key>}:fence   per-key fence counter (INCR; never expires, so fences never go back)
//   tollgate:{<res>}:reg     fenced register: hash {fence, value}
//   tollgate:t:{<key>}       THROTTLE bucket: hash {d debt, t time, r rate}, PEXPIRE = to full
//   tollgate:l:{tollgate-rl}:<len(layer)>:<layer>:<key>
//                            CheckLayers bucket (same layout)
// The lock and fence keys of one lease share a hash tag, so Acquire (which touches both) works on a
// Redis Cluster slot. CheckLayers touches every bucket of the check in one script, so all layered
// buckets share one constant tag, {tollgate-rl}: any two checks may share a bucket (a global
// layer), so no per-request tag could keep them apart. The cost: on a Cluster every layered bucket
// lives on one node. Note that this backend itself opens one connection to one node and does not
// follow MOVED/ASK redirects (answered Unimplemented); the key layout only keeps the scripts
// Cluster-legal.
//
// Durability: fences are safe only if the fence counters survive a Redis restart. Run Redis with
// AOF (appendonly yes, appendfsync always) or accept that a restart may reissue fences.
//
// Rate-limit arithmetic (Lua numbers are doubles, so every quantity is kept an integer < 2^53):
// amounts in micro-tokens, time in whole milliseconds of server TIME (floored), refill in
// micro-tokens per millisecond. Exact when rate has at most 3 decimals (then rate x 1e3 is an
// integer number of micro-tokens per ms), capacity and cost at most 6 decimals, and capacity at
// most 4e9 tokens (cost may exceed capacity: the answer is "never"). Other parameters are rejected
// with InvalidArgument naming them; nothing is rounded silently. retry_after and reset_after are
// whole milliseconds, rounded up (never too short). Rates up to kMaxRate are fine.
//
// Errors: as Backend. Unavailable for any I/O error or timeout (with the Redis/OS error text) and
// for a server that is loading, busy or read-only; the connection is then dropped and the next call
// reconnects, so a backend recovers by itself once the server is back.
//
// Thread-safety: one connection per Backend object, guarded by a mutex (calls are serialized). Use
// one backend per thread for parallelism.
#ifndef TOLLGATE_REDIS_BACKEND_H_
#define TOLLGATE_REDIS_BACKEND_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tollgate/backend.h"
#include "tollgate/clock.h"

namespace tollgate {

// Connects to `url` = "redis://host:port[/db]" (host a name, IPv4 address or [IPv6] address; port
// 1..65535; db a database number, default 0). `timeout` (> 0, at most 1 hour) bounds connecting and
// every command. InvalidArgument naming the url if it is malformed or the timeout is out of range;
// Unavailable if the server cannot be reached now (the scripts are loaded eagerly).
[[nodiscard]] absl::StatusOr<std::unique_ptr<Backend>> NewRedisBackend(
    const std::string& url, Duration timeout = std::chrono::seconds(2));

// Fencing for your own data (docs/fencing-your-data.md): SETs your Redis key `key` to `value` iff
// `fence` is at least the highest fence recorded for `key`, recording it in
// RedisFenceRecordKey(key) (both in one atomic script, fenced_write.lua). `redis` must be a backend
// made by NewRedisBackend (its connection, timeout and reconnect logic are used). OK when written;
// Aborted "fence X is older than Y" when stale (nothing changes); InvalidArgument for a key that is
// empty or longer than 512 bytes, fence 0, or a backend that is not Redis; Unavailable as any Redis
// call. On a Redis Cluster, `key` must contain a hash tag (e.g. "{order:42}:state") so the record
// lives in its slot.
[[nodiscard]] absl::Status RedisFencedWrite(Backend& redis, std::string_view key, uint64_t fence,
                                            std::string_view value);

// Where RedisFencedWrite records the highest fence for `key`: key + ":tollgate-fence".
std::string RedisFenceRecordKey(std::string_view key);

// The text of fenced_write.lua, for loading it yourself (KEYS = {key, RedisFenceRecordKey(key)},
// ARGV = {fence, value}).
std::string_view RedisFencedWriteScript();

}  // namespace tollgate

#endif  // TOLLGATE_REDIS_BACKEND_H_
