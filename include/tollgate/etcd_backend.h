// The etcd backend: leases and fenced registers kept in an etcd v3 cluster (3.4+). Rate limiting is
// not offered: Throttle and CheckLayers answer Unimplemented.
//
// Transport: the v3 JSON gateway (POST /v3/kv/range, /v3/kv/txn, /v3/lease/grant, ...) over HTTP
// with libcurl. Chosen over gRPC because it needs no gRPC/protobuf code generation toolchain: the
// whole backend builds from Debian packages (libcurl4-openssl-dev, nlohmann-json3-dev), and the
// gateway is part of every etcd server. Keys and values are base64 in the JSON, so everything is
// binary-safe.
//
// Keys (<hex> is the lowercase hex of the caller's key, so any bytes are fine):
//   tollgate/lock/<hex>  value {"id": lock_id, "owner_b64"?: base64(owner), "at_ns"?: acquired_at
//                        (Unix ns of the tollgate process's clock at the grant), "indexed"?: true},
//                        attached to an etcd lease. The lease's fence is the key's create_revision:
//                        the cluster revision of the txn that created it (cluster-wide, strictly
//                        increasing, kept across server restarts), so fences are never stored
//                        separately. Values without "at_ns" (older tollgate) report no acquired_at.
//   tollgate/i/<lock_id> LookupById's reverse index of a single-key lease: value = the caller's
//                        key, attached to the lock's etcd lease (so it expires with it); put in the
//                        acquire txn, moved to the new lease in the extend txn, deleted in the
//                        release txn. LookupById reads it, then the lock, and checks the lock_id.
//   tollgate/reg/<hex>   fenced register: {"fence": N, "value": base64(value)}
//   tollgate/sem/<hex>/<slot>  a semaphore permit (slot: 4 digits, 0000..1023): {"id": permit_id,
//                        "limit": N, "owner_b64"?}, attached to an etcd lease of its own; its fence
//                        is its create_revision, like a lease's. A multi-key grant is ordinary lock
//                        keys put in one txn, sharing one etcd lease and one create_revision (the
//                        fence), marked "shared": true (see src/backends/etcd/async_etcd_multi.cc).
//   Semaphore permits' ttls are whole seconds as leases' are (below).
//
// Acquire grants an etcd lease, then one txn: if create_revision(lock) == 0, put the lock with that
// lease; otherwise the lease is revoked and the answer is nullopt. Release deletes the lock (and
// revokes its lease) in a txn guarded by the mod_revision read together with the lock_id. Extend
// grants a new lease and re-puts the same value with it in a txn guarded the same way (a re-put
// changes mod_revision, not create_revision, so the fence stays), then revokes the old lease; an
// expired lock is already deleted by etcd, so it is never revived. Fenced writes are an optimistic
// loop: read, check the fence, txn guarded by the read mod_revision.
//
// TTLs: etcd leases are whole seconds, with a server minimum (about 2 s with default settings). A
// requested ttl is rounded up to whole seconds, and the ttl reported by Acquire/Extend is the one
// etcd granted: at least the request rounded up. Info's ttl_remaining is etcd's remaining whole
// seconds. Lease expiry is etcd's clock. Acquire never waits, and Info reports 0 waiters (waiting
// queues live in the tollgate server).
//
// WaitForRelease is a watch, not polling: it reads the lock; if it is held at cluster revision R,
// it opens a watch stream (POST /v3/watch, NOPUT filter) on the lock key from revision R + 1 and
// returns at the first DELETE event (a release, or etcd expiring the lease), or when max_wait has
// passed. Starting at R + 1 makes etcd replay a delete that happened between the read and the
// watch's creation, so no release is missed. If etcd cancels the watch (R + 1 was compacted away)
// it returns early and the caller simply looks again.
//
// Errors: as Backend. Unavailable for a transport error or timeout (curl's text), an HTTP 5xx or an
// etcd "unavailable"/"deadline" error. Release, Extend and FencedSet are optimistic loops (read,
// then a txn guarded by the read's mod_revision); after 100 lost races in a row with other writers
// of the same key they give up with Unavailable, naming contention: retryable, and never Aborted,
// which is reserved for a stale fence. Each call uses a fresh request on a kept-alive connection,
// so a backend recovers by itself once the server is back.
//
// Asynchronous: NewAsyncEtcdBackend is the one implementation. Its requests are non-blocking
// libcurl transfers (the multi interface) whose sockets and timers live on the caller's EventLoop,
// so many are in flight at once on one thread, over at most 16 kept-alive HTTP/1.1 connections.
// Every request has the backend's timeout as its deadline; a failed or timed-out request completes
// its operation with Unavailable naming the etcd address and the cause, and is never retried (an
// Acquire whose txn failed revokes its new lease, so no lock stays held without its client
// knowing). Operations on one key complete in submission order (each starts when the previous one
// on that key completed); operations on different keys run concurrently. At most kEtcdMaxInFlight
// operations are pending per backend object; one more completes at once with Unavailable "backend
// pipeline full (1024 requests in flight)". LOCK.ACQUIRE with WAIT waits on the loop (a WaitQueue,
// polling every 25 ms); besides, each key with waiters (up to 64 keys) has a watch stream on its
// lock, and a DELETE makes the head waiter try at once.
//
// Thread-safety (synchronous backend): a thin wrapper over the asynchronous one on a private event
// loop, run by the calling thread until the call completes; calls are serialized by a mutex.
// WaitForRelease has a second private loop and asynchronous backend (with its own connection), so a
// long watch does not hold up requests on the same object (concurrent watches on one object take
// turns).
#ifndef TOLLGATE_ETCD_BACKEND_H_
#define TOLLGATE_ETCD_BACKEND_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "tollgate/async_backend.h"
#include "tollgate/backend.h"
#include "tollgate/clock.h"

namespace tollgate {

// Connects to `url` = "etcd://host:port" (host a name, IPv4 address or [IPv6] address; port
// 1..65535, default 2379; plain HTTP to the v3 JSON gateway). `timeout` (> 0, at most 1 hour)
// bounds connecting and every request. InvalidArgument naming the url if it is malformed or the
// timeout is out of range; Unavailable if the server cannot be reached now (it is probed eagerly).
[[nodiscard]] absl::StatusOr<std::unique_ptr<Backend>> NewEtcdBackend(
    const std::string& url, Duration timeout = std::chrono::seconds(2));

// The most operations one asynchronous etcd backend holds (submitted and not yet completed, running
// or queued behind an earlier operation on the same key); one more completes at once with
// Unavailable "backend pipeline full (1024 requests in flight)".
inline constexpr size_t kEtcdMaxInFlight = 1024;

// The asynchronous etcd backend, driven by `loop` (which must outlive it; destroy it on the loop's
// thread, or while no thread runs the loop: operations pending then are dropped without
// completing). Same url, timeout, errors and eager probe (a blocking request of at most `timeout`,
// made before returning) as NewEtcdBackend. Throttle and CheckLayers complete with Unimplemented.
[[nodiscard]] absl::StatusOr<std::unique_ptr<AsyncBackend>> NewAsyncEtcdBackend(
    const std::string& url, EventLoop& loop, Duration timeout = std::chrono::seconds(2));

namespace etcd_internal {

// For tests: the watch half of WaitForRelease. Watches the lock on `key` for a DELETE at a cluster
// revision > `after_revision`, for at most `max_wait`: true when one is seen (or etcd cancelled the
// watch), false when max_wait passed. A delete that happened before the call but after
// after_revision is still seen. InvalidArgument if `etcd` is not an etcd backend or key is bad;
// Unavailable as the backend's requests.
[[nodiscard]] absl::StatusOr<bool> WatchForRelease(Backend& etcd, std::string_view key,
                                                   int64_t after_revision, Duration max_wait);

}  // namespace etcd_internal

}  // namespace tollgate

#endif  // TOLLGATE_ETCD_BACKEND_H_
