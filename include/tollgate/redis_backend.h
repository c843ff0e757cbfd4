// The Redis backend: leases, fenced registers and token buckets kept in a Redis server (7.0+).
//
// Every operation is one atomic Lua script (loaded once with SCRIPT LOAD, run with EVALSHA; when
// the server answers NOSCRIPT, e.g. after a restart or SCRIPT FLUSH, or on a cluster node that
// never ran it, that one command is sent again as EVAL, which loads it there). The Redis server's
// TIME is the clock of every expiry: lease expiry is Redis key expiry (PX), buckets refill by server
// time. The one exception is a lease's acquisition time (`at`), which is the tollgate process's
// wall clock, as on every backend (LeaseGrant::acquired_at).
//
// One implementation, asynchronous: NewAsyncRedisBackend pipelines operations on non-blocking
// connections owned by an EventLoop (one per node); NewRedisBackend runs that same backend on a
// private loop and waits for each operation. Per connection, the operations submitted during one
// loop pass are written in one batch at the end of the pass, and their replies are matched in
// order; at most 4096 requests are in flight per connection, beyond which an operation completes at
// once with Unavailable "backend pipeline full (4096 requests in flight): Redis host:port".
//
// Keys (binary-safe; <key> is the caller's key as given):
//   tollgate:{<key>}:lock    hash {id, fence, owner?, at (acquired, Unix ms)} with PX = the ttl
//   tollgate:i:<lock_id>     standalone only: the key a single-key lease's lock_id holds (for
//                            LookupById), same PX, kept in step by extend and release
//   tollgate:{<key>}:fence   per-key fence counter (INCR; never expires, so fences never go back)
//   tollgate:fence           standalone only: the one fence counter of every key; each grant takes
//                            the next value of it (or of the key's counter, if that is ahead) and
//                            sets both, so fences increase across keys and FencedSet refuses a
//                            fence above it ("was never issued", InvalidArgument)
//   tollgate:{<res>}:reg     fenced register: hash {fence, value}
//   tollgate:s:{<key>}       semaphore: hash {limit, <permit_id> -> "<slot> <fence> <expiry ms of
//                            TIME>[ <owner>]"}, PX = its furthest permit expiry (expired permits
//                            count as free, purged at the next grant)
//   tollgate:s:{<key>}:fence semaphore's fence counter (as a lease key's; standalone: follows
//                            tollgate:fence). A multi-key grant makes each key an ordinary lease
//                            (lock and fence keys above; one fence: above every counter involved)
//   tollgate:t:{<key>}       THROTTLE bucket: hash {d debt, t time, r rate}, PEXPIRE = to full
//   tollgate:l:{tollgate-rl}:<len(layer)>:<layer>:<key>
//                            CheckLayers bucket (same layout)
// Redis Cluster: every script touches keys of one hash slot only. The lock and fence keys of one
// lease share the hash tag {<key>}; a register and a THROTTLE bucket are one key each; CheckLayers
// touches every bucket of the check in one script, so all layered buckets share one constant tag,
// {tollgate-rl}: any two checks may share a bucket (a global layer), so no per-request tag could
// keep them apart. The cost: on a Cluster every layered bucket lives on one node (one node's
// throughput for RATE.CHECK). Leases, registers and THROTTLE buckets spread over all nodes. A key
// that starts with '}' has an empty hash tag, so its lock and fence keys would land in different
// slots: on a Cluster such a lease key (and a RedisFencedWrite key without a hash tag) is
// InvalidArgument, checked before anything is sent.
//
// The backend follows the cluster: at connect it asks the seed (any node of the cluster) for its
// slot map (CLUSTER SLOTS; a standalone server answers that it is not a cluster, and nothing
// changes for it: one EVALSHA round trip per operation, as before), sends each operation to the
// node that owns its slot (CRC16 of the hash tag), and follows redirects: on "MOVED slot
// host:port" it remembers the new owner and retries there; on "ASK slot host:port" (a slot being
// migrated) it sends ASKING and the command to that node once, remembering nothing. At most 5
// redirects per operation, then Unavailable. Each node gets its own connection (made on first use,
// with the backend's timeout; scripts are loaded on each node by EVAL when it first answers
// NOSCRIPT). A redirect or a NOSCRIPT is the only case where a command is sent again: Redis did
// not run it.
// TRYAGAIN (a multi-key script during a slot migration) and CLUSTERDOWN are Unavailable: retry
// later. A node that fails (I/O error, timeout) makes that call Unavailable; its connection is
// dropped and its slots forgotten, so the next call for them goes to another node, whose MOVED
// leads to the slot's owner (a promoted replica after a failover, or the node once it is back).
// Writes go to masters only; replicas are never read from. A cluster has only database 0: a url
// with /db other than 0 is InvalidArgument there.
//
// Eviction: NewRedisBackend refuses (FailedPrecondition) a server whose maxmemory-policy is not
// noeviction (checked with INFO memory on the seed node), since an evicted fence counter would
// restart its key's fences at 1.
//
// Durability: fences are safe only if the fence counters survive a Redis restart. Run Redis with
// AOF (appendonly yes, appendfsync always) or accept that a restart may reissue fences: without
// AOF on the seed node, Warnings() says so (and `tollgate serve` logs it). On a
// Cluster with replicas, a failover may also lose the last writes the old master acknowledged
// (replication is asynchronous), fence increments included.
//
// Rate-limit arithmetic (Lua numbers are doubles, so every quantity is kept an integer < 2^53):
// amounts in micro-tokens, time in whole milliseconds of server TIME (floored), refill in
// micro-tokens per millisecond. Exact when rate has at most 3 decimals (then rate x 1e3 is an
// integer number of micro-tokens per ms), capacity and cost at most 6 decimals, and capacity at
// most 4e9 tokens (cost may exceed capacity: the answer is "never"). Other parameters are rejected
// with InvalidArgument naming them; nothing is rounded silently. retry_after and reset_after are
// whole milliseconds, rounded up (never too short). Rates up to kMaxRate are fine.
//
// Errors: as Backend. Unavailable for any I/O error or timeout (with the Redis address and the
// Redis/OS error text) and for a server that is loading, busy or read-only. A connection that fails
// (I/O error, end of stream, a request not answered within the timeout) completes every operation
// pending on it with Unavailable and is closed; nothing that may have reached Redis is sent again
// (no operation is applied twice). The next operation reconnects (a non-blocking connect), so a
// backend recovers by itself once the server is back; a node whose connect failed (or that never
// answered) is tried again only after a back-off of 50 ms doubling to 1 s, and operations for it
// meanwhile are Unavailable at once.
//
// Thread-safety: NewRedisBackend: one connection per Backend object (per node, on a Cluster), its
// calls serialized by a mutex. Use one backend per thread for parallelism. NewAsyncRedisBackend:
// as AsyncBackend (everything on the loop's thread).
#ifndef TOLLGATE_REDIS_BACKEND_H_
#define TOLLGATE_REDIS_BACKEND_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tollgate/async_backend.h"
#include "tollgate/backend.h"
#include "tollgate/clock.h"

namespace tollgate {

// Connects to `url` = "redis://host:port[/db]" (host a name, IPv4 address or [IPv6] address; port
// 1..65535; db a database number, default 0) — a standalone server, or any node of a Redis Cluster
// (then db must be 0). `timeout` (> 0, at most 1 hour) bounds connecting and every command (each
// command of a redirect chain separately). InvalidArgument naming the url if it is malformed or
// the timeout is out of range, or if db is not 0 on a Cluster; Unavailable if the server cannot be
// reached now (the scripts are loaded eagerly on the server named by the url).
// `lock_delay` (0 to kMaxTtl, else InvalidArgument): after a lease expires without release, its key
// is not granted again for this long (as LeaseManager's lock_delay; by Redis server time). Release,
// Extend and Info see the lease gone at its ttl.
[[nodiscard]] absl::StatusOr<std::unique_ptr<Backend>> NewRedisBackend(
    const std::string& url, Duration timeout = std::chrono::seconds(2),
    Duration lock_delay = Duration(0));

// The same backend, asynchronous (async_backend.h), driven by `loop`, which must outlive it; url,
// timeout and errors as NewRedisBackend. The connection to the server named by the url is made
// (and the scripts loaded) synchronously here, without touching the loop: call it at startup, from
// any thread. Every operation must be answered within `timeout` (each command of a redirect chain
// separately). LOCK.ACQUIRE with WAIT waits on the loop (backends/async/wait_queue.h). Destroy it
// on the loop's thread (or while no thread runs the loop): operations still pending then are
// dropped without completing (Shutdown first, and let them finish, to have every one answered).
[[nodiscard]] absl::StatusOr<std::unique_ptr<AsyncBackend>> NewAsyncRedisBackend(
    const std::string& url, EventLoop& loop, Duration timeout = std::chrono::seconds(2),
    Duration lock_delay = Duration(0));

// Fencing for your own data (docs/fencing-your-data.md): SETs your Redis key `key` to `value` iff
// `fence` is at least the highest fence recorded for `key`, recording it in
// RedisFenceRecordKey(key) (both in one atomic script, fenced_write.lua). `redis` must be a backend
// made by NewRedisBackend (its connections, timeout and reconnect logic are used). OK when written;
// Aborted "fence X is older than Y" when stale (nothing changes); InvalidArgument for a key that is
// empty or longer than 512 bytes, fence 0, or a backend that is not Redis; Unavailable as any Redis
// call. On a Redis Cluster, `key` must contain a hash tag (e.g. "{order:42}:state") so the record
// lives in its slot (InvalidArgument otherwise, nothing sent).
[[nodiscard]] absl::Status RedisFencedWrite(Backend& redis, std::string_view key, uint64_t fence,
                                            std::string_view value);

// Where RedisFencedWrite records the highest fence for `key`: key + ":tollgate-fence".
std::string RedisFenceRecordKey(std::string_view key);

// The text of fenced_write.lua, for loading it yourself (KEYS = {key, RedisFenceRecordKey(key)},
// ARGV = {fence, value}).
std::string_view RedisFencedWriteScript();

}  // namespace tollgate

#endif  // TOLLGATE_REDIS_BACKEND_H_
