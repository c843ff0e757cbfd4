// Leases with fencing tokens: the lease core. In-process, no sockets; thread-safe.
//
// A lease is a lock with a time to live. Every grant carries a fence: a positive 64-bit integer
// from one process-wide counter, so fences strictly increase across all acquisitions of every key
// and are never reissued (the counter is restored from storage after a restart). Whoever writes to
// a shared resource passes the fence along, and the resource rejects writes with an older fence
// (see fenced_register.h), which makes lease expiry safe.
#ifndef TOLLGATE_LEASE_MANAGER_H_
#define TOLLGATE_LEASE_MANAGER_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tollgate/clock.h"
#include "tollgate/journal.h"

namespace tollgate {

inline constexpr size_t kMaxKeyBytes = 512;
inline constexpr Duration kMinTtl = std::chrono::milliseconds(1);
inline constexpr Duration kMaxTtl = std::chrono::milliseconds(86'400'000);
inline constexpr Duration kMaxWait = std::chrono::milliseconds(86'400'000);

struct LeaseGrant {
  std::string lock_id;  // 32 lowercase hex chars: 128 bits from the kernel CSPRNG
  uint64_t fence = 0;
  Duration ttl{0};
  // The granting process's wall clock (Clock::WallNow) at the grant; the same value LeaseInfo
  // reports later. Zero (the epoch) from a backend that does not record it.
  WallTime acquired_at{};
};

struct LeaseInfo {
  uint64_t fence = 0;
  Duration ttl_remaining{0};
  std::optional<std::string> owner;
  size_t waiters = 0;
  // The holder's lock_id. Proves ownership: the server never prints it (it prints
  // LockIdHash(lock_id), see lock_id.h); in-process callers may use it.
  std::string lock_id;
  // As LeaseGrant::acquired_at, kept with the lease (Extend does not change it). nullopt for a
  // lease granted by a version of tollgate that did not record it.
  std::optional<WallTime> acquired_at;
};

// What LookupById finds: the key a lock_id holds, and that lease's Info.
struct LeaseById {
  std::string key;
  LeaseInfo info;
};

struct AcquireRequest {
  std::string key;                   // 1..kMaxKeyBytes bytes, binary-safe
  Duration ttl{0};                   // [kMinTtl, kMaxTtl]
  Duration wait{0};                  // [0, kMaxWait]; 0 = do not wait
  std::optional<std::string> owner;  // free-form label shown by Info
};

// Fenced semaphores: at most `limit` unexpired permits per semaphore key. Each permit occupies a
// numbered slot in [0, limit) (the lowest free one) and carries a fence from the same strictly
// increasing sequence as lease fences, so a stale holder of a slot (expired, slot re-granted) is
// refused by any fenced resource of that slot. Semaphore keys are a namespace of their own: "jobs"
// as a semaphore and "jobs" as a lease are unrelated.
inline constexpr int64_t kMaxSemaphoreLimit = 1024;
// Multi-key locks: at most this many keys per LOCK.MACQUIRE.
inline constexpr size_t kMaxMultiKeys = 64;

struct PermitGrant {
  std::string permit_id;  // 32 lowercase hex chars, like a lock_id
  int64_t slot = 0;       // [0, limit)
  uint64_t fence = 0;
  Duration ttl{0};
};

struct SemaphoreInfo {
  int64_t limit = 0;   // of the current holders
  int64_t holders = 0;  // unexpired permits
  size_t waiters = 0;
  uint64_t fence = 0;  // of the newest unexpired permit
};

struct SemAcquireRequest {
  std::string key;                   // 1..kMaxKeyBytes bytes
  int64_t limit = 0;                 // [1, kMaxSemaphoreLimit]; must equal the current holders'
  Duration ttl{0};                   // [kMinTtl, kMaxTtl]
  Duration wait{0};                  // [0, kMaxWait]
  std::optional<std::string> owner;  // free-form label
};

// All of `keys` or none, under one lock_id and one fence (greater than every fence issued before
// for any of the keys). Each key is then held as an ordinary lease: Release/Extend/Info work on it
// one key at a time.
struct MultiAcquireRequest {
  std::vector<std::string> keys;     // 1..kMaxMultiKeys distinct keys, each as AcquireRequest::key
  Duration ttl{0};                   // [kMinTtl, kMaxTtl]
  Duration wait{0};                  // [0, kMaxWait]
  std::optional<std::string> owner;  // free-form label
};

// Called exactly once for a queued waiter: with the grant, or nullopt when the wait ran out (or the
// manager shut down). Invoked on the timer thread or on the thread whose call freed the key, never
// while the manager holds a lock, so it may call back into the manager.
using GrantCallback = std::function<void(std::optional<LeaseGrant>)>;
// As GrantCallback, for a queued semaphore waiter.
using PermitCallback = std::function<void(std::optional<PermitGrant>)>;

class LeaseManager {
 public:
  struct Options {
    Clock* clock = RealClock();  // not owned
    Journal* journal = nullptr;  // not owned; null = memory only
    // After a lease expires without release, the key is not granted again for this long (single-
    // and multi-key acquires alike; semaphore permits ignore it).
    Duration lock_delay{0};
    // Runs a thread that fires due timers (waiter timeouts, grants on expiry, memory sweep).
    // Without it the caller must call Tick() itself.
    bool timer_thread = true;
    // Blocking calls (Acquire/TryAcquire/Release/Extend and the Try*/Release/Extend calls of
    // multi-key locks and semaphores) return only after the journal made their change durable.
    // The server turns this off and holds replies itself.
    bool wait_durable = true;
  };

  explicit LeaseManager(Options options);
  // Stops the timer thread; queued waiters receive nullopt.
  ~LeaseManager();
  LeaseManager(const LeaseManager&) = delete;
  LeaseManager& operator=(const LeaseManager&) = delete;

  // Recovery, before serving: raises the fence counter to at least `fence`.
  void RestoreFence(uint64_t fence);
  // Recovery, before serving: reinstates a stored lease. If it is still unexpired (by the wall
  // clock) it is held for its remaining time; if it expired less than lock_delay ago the key stays
  // blocked for the rest of the delay; otherwise the stored record is deleted.
  void RestoreLease(std::string_view key, const StoredLease& lease);

  // Grants the lease if the key is free (not held, not in lock-delay, nobody queued), else returns
  // nullopt. Never waits (req.wait is ignored). InvalidArgument for a bad key or ttl.
  [[nodiscard]] absl::StatusOr<std::optional<LeaseGrant>> TryAcquire(const AcquireRequest& req);
  // Like TryAcquire but, if the key is taken, waits up to req.wait in FIFO order with other
  // waiters. Needs the timer thread (or another thread calling Tick()).
  [[nodiscard]] absl::StatusOr<std::optional<LeaseGrant>> Acquire(const AcquireRequest& req);

  struct AsyncStart {
    bool queued = false;              // true: `cb` will be called later, once
    std::optional<LeaseGrant> grant;  // when !queued: the immediate answer
    uint64_t waiter_id = 0;           // when queued: pass to CancelWaiter
  };
  // Non-blocking acquire. If the answer is known now (granted, or taken and req.wait == 0), returns
  // it and never calls `cb`. Otherwise queues a waiter (FIFO per key) and calls `cb` exactly once
  // later.
  [[nodiscard]] absl::StatusOr<AsyncStart> AcquireAsync(const AcquireRequest& req,
                                                        GrantCallback cb);
  // Removes a queued waiter of AcquireAsync or MultiAcquireAsync (`key`: any one of its keys).
  // Returns true if it was still queued (its callback will not be called); false if it was already
  // answered or unknown.
  bool CancelWaiter(std::string_view key, uint64_t waiter_id);

  // Releases the lease held by lock_id. OK; FailedPrecondition if key is not held by lock_id
  // (expired, released, or another holder); InvalidArgument for a bad key.
  [[nodiscard]] absl::Status Release(std::string_view key, std::string_view lock_id);
  // Sets the expiry of the lease held by lock_id to now + ttl and returns ttl. Never revives an
  // expired lease: FailedPrecondition if the key is not held by lock_id. InvalidArgument for bad
  // key or ttl.
  [[nodiscard]] absl::StatusOr<Duration> Extend(std::string_view key, std::string_view lock_id,
                                                Duration ttl);
  // The current lease on key, or nullopt when nobody holds it. LeaseInfo::lock_id is the holder's
  // (for in-process callers: the server never prints it).
  [[nodiscard]] absl::StatusOr<std::optional<LeaseInfo>> Info(std::string_view key);
  // The unexpired lease that `lock_id` holds, found by lock_id alone, as Backend::LookupById: only
  // leases granted by TryAcquire/Acquire/AcquireAsync (queued waiters included) are found, not the
  // keys of a multi-key group (MultiAcquireAsync/TryMultiAcquire) nor semaphore permits. nullopt
  // when no unexpired lease has this lock_id (released, expired, never issued). Changes no lease
  // (it brings the key up to date, as Info does). InvalidArgument "lock_id must be 32 lowercase
  // hex characters" for a malformed lock_id. O(1): an index kept with every grant and release.
  [[nodiscard]] absl::StatusOr<std::optional<LeaseById>> LookupById(std::string_view lock_id);

  // ---- Multi-key locks (MultiAcquireRequest). Each key granted becomes an ordinary lease:
  // Release/Extend/Info act on it one key at a time.
  //
  // Grants every key under one new lock_id and one new fence (from the same counter as leases)
  // if all are free (not held, not in lock-delay, nobody queued), else returns nullopt and changes
  // nothing. Never waits. InvalidArgument for a bad request (ValidateMultiAcquireRequest).
  [[nodiscard]] absl::StatusOr<std::optional<LeaseGrant>> TryMultiAcquire(
      const MultiAcquireRequest& req);
  // As AcquireAsync, for all of req.keys at once. A queued waiter stands in the FIFO queue of every
  // one of its keys (so later single-key acquirers wait behind it) and holds none of them while it
  // waits; it is granted when it is first in all of those queues and every key is free. Queue
  // order is one global arrival order, so the oldest waiter is first on all of its keys and two
  // waiters never block each other for good. waiter_id is for CancelWaiter (with any of its keys).
  [[nodiscard]] absl::StatusOr<AsyncStart> MultiAcquireAsync(const MultiAcquireRequest& req,
                                                             GrantCallback cb);
  // Releases each of `keys` held by lock_id and returns how many it released (0..keys.size()).
  // InvalidArgument for a bad key list (ValidateKeyList).
  [[nodiscard]] absl::StatusOr<size_t> MultiRelease(std::span<const std::string> keys,
                                                    std::string_view lock_id);
  // All or none: if lock_id holds every one of `keys` (unexpired), sets each expiry to now + ttl
  // and returns ttl; otherwise FailedPrecondition and nothing changes. InvalidArgument for a bad
  // key list or ttl.
  [[nodiscard]] absl::StatusOr<Duration> MultiExtend(std::span<const std::string> keys,
                                                     std::string_view lock_id, Duration ttl);

  // ---- Fenced semaphores (SemAcquireRequest). Keys are a namespace apart from lease keys.
  //
  // Recovery, before serving: reinstates a stored permit for its remaining wall-clock time and
  // raises the fence counter to its fence. An expired permit, or one that does not fit the
  // semaphore as restored so far (another limit, its slot taken), has its record deleted instead.
  void RestorePermit(std::string_view key, std::string_view permit_id, const StoredPermit& permit);

  struct SemAsyncStart {
    bool queued = false;               // true: `cb` will be called later, once
    std::optional<PermitGrant> grant;  // when !queued: the immediate answer
    uint64_t waiter_id = 0;            // when queued: pass to CancelSemWaiter
  };
  // If unexpired permits exist and their limit differs from req.limit: InvalidArgument
  // `limit <req.limit> differs from the limit <L> of the current holders of semaphore "<key>"`
  // (key cut to 64 bytes), nothing changes. Else, with fewer than req.limit unexpired permits and
  // nobody queued, grants a permit: the lowest free slot in [0, limit), a new permit_id, a new
  // fence, expiry now + ttl. Else, with req.wait > 0 and `cb`, queues a waiter (FIFO per
  // semaphore) that is served when a permit is released or expires, and calls `cb` once later
  // (nullopt when the wait runs out); else answers nullopt. Lock-delay does not apply.
  // InvalidArgument for a bad request (ValidateSemAcquireRequest).
  [[nodiscard]] absl::StatusOr<SemAsyncStart> SemAcquireAsync(const SemAcquireRequest& req,
                                                              PermitCallback cb);
  // SemAcquireAsync without waiting (req.wait is ignored).
  [[nodiscard]] absl::StatusOr<std::optional<PermitGrant>> TrySemAcquire(
      const SemAcquireRequest& req);
  // Removes a queued semaphore waiter; as CancelWaiter.
  bool CancelSemWaiter(std::string_view key, uint64_t waiter_id);
  // Releases the permit. OK; FailedPrecondition if `permit_id` holds no unexpired permit of `key`;
  // InvalidArgument for a bad key.
  [[nodiscard]] absl::Status SemRelease(std::string_view key, std::string_view permit_id);
  // Sets the permit's expiry to now + ttl and returns ttl. Never revives an expired permit
  // (FailedPrecondition). InvalidArgument for a bad key or ttl.
  [[nodiscard]] absl::StatusOr<Duration> SemExtend(std::string_view key, std::string_view permit_id,
                                                   Duration ttl);
  // nullopt when the semaphore has no unexpired permit; else its limit, the number of unexpired
  // permits, the number of queued waiters and the fence of the newest permit. Never reveals
  // permit ids. InvalidArgument for a bad key.
  [[nodiscard]] absl::StatusOr<std::optional<SemaphoreInfo>> SemInfo(std::string_view key);

  // Fires every timer due at the clock's current time: expires leases, times out waiters, grants
  // queued waiters, frees memory of idle keys. Safe to call from any thread at any time.
  void Tick();
  // The earliest pending timer, if any.
  std::optional<SteadyTime> NextDeadline();

  // Highest fence issued so far (0 if none).
  // Leases (per key) that expired without being released, since start.
  uint64_t expirations() const;
  uint64_t last_fence() const;
  // Number of keys the manager currently keeps state for (held, blocked or with waiters).
  size_t key_count();
  // Number of semaphore keys it keeps state for (with unexpired permits or waiters).
  size_t semaphore_count();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// Validation shared by the core and the server's argument parsing. Each returns InvalidArgument
// with a message naming the argument and the accepted range.
[[nodiscard]] absl::Status ValidateKey(std::string_view key, std::string_view what = "key");
[[nodiscard]] absl::Status ValidateTtl(Duration ttl);
[[nodiscard]] absl::Status ValidateWait(Duration wait);
// An acquire request's key, ttl and wait, in that order (the first error).
[[nodiscard]] absl::Status ValidateAcquireRequest(const AcquireRequest& req);
// A semaphore request's key, limit ([1, kMaxSemaphoreLimit]), ttl and wait, in that order.
[[nodiscard]] absl::Status ValidateSemAcquireRequest(const SemAcquireRequest& req);
// A multi-key request's number of keys ([1, kMaxMultiKeys]), each key, distinctness ("key \"x\"
// given twice"), ttl and wait, in that order.
[[nodiscard]] absl::Status ValidateMultiAcquireRequest(const MultiAcquireRequest& req);
// The keys of LOCK.MRELEASE / LOCK.MEXTEND: count, each key, distinctness, as above.
[[nodiscard]] absl::Status ValidateKeyList(std::span<const std::string> keys);

}  // namespace tollgate

#endif  // TOLLGATE_LEASE_MANAGER_H_
