// LeaseManager's implementation, shared by the files that define it: lease_core.cc (single-key
// leases, timers, the timer thread), lease_multi.cc (multi-key locks) and semaphores.cc. Private
// to src/core.
//
// State is split into kShards shards by key hash, each with its own mutex; leases and semaphores
// of one key hash to the same shard but live in separate maps. An operation on one key locks one
// shard; a multi-key operation locks the shards of all its keys in shard-index order (ShardLocks),
// so shard locks never deadlock. Callbacks (grants, timeouts) are collected in an Outbox and run
// after every shard lock is released.
//
// LookupById's index (lock_id -> key of a lease granted by a single-key acquire) is kept in
// kShards IdShards of its own, picked by lock_id hash, each with its own mutex. Lock order: shard
// mutexes (as above), then at most one IdShard mutex, which is a leaf: nothing else is locked while
// it is held. An entry is added and removed under the key's shard lock together with the change
// of the lease (Hold, DropLease), so the index never names a key for longer than the lease lives;
// LookupById reads it, lets go, then locks the key's shard and checks the lease's lock_id.
#ifndef TOLLGATE_CORE_LEASE_MANAGER_IMPL_H_
#define TOLLGATE_CORE_LEASE_MANAGER_IMPL_H_

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <queue>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "tollgate/lease_manager.h"

namespace tollgate::lease_internal {

inline constexpr size_t kShards = 32;
inline constexpr SteadyTime kNever = SteadyTime::max();

// A queued MultiAcquireAsync: one object, referenced from the queue of each of its keys.
struct MultiWaiter {
  uint64_t id = 0;
  std::vector<std::string> keys;
  Duration ttl{0};
  std::optional<std::string> owner;
  SteadyTime deadline{};
  GrantCallback cb;  // moved out by whoever sets `answered`
  // Set exactly once, by whoever answers the waiter (grant, timeout, cancel, shutdown), while
  // holding the shard lock of at least one of its keys; a grant or cancel holds all of them.
  std::atomic<bool> answered{false};
};

// One place in a key's FIFO queue: a single-key waiter (cb set) or one key of a multi-key waiter
// (multi set; its callback lives there).
struct Waiter {
  uint64_t id = 0;
  Duration ttl{0};
  std::optional<std::string> owner;
  SteadyTime deadline{};
  GrantCallback cb;
  std::shared_ptr<MultiWaiter> multi;
};

// Everything the manager knows about one lease key. An entry exists while the key is held, blocked
// by lock-delay, has waiters, or still has a record in the journal.
struct Entry {
  bool held = false;
  std::string lock_id;
  uint64_t fence = 0;
  SteadyTime expiry{};
  std::optional<std::string> owner;
  std::optional<WallTime> acquired_at;  // while held; nullopt for a lease restored from a v1 record
  bool indexed = false;  // while held: lock_id -> key is in the by-id index (single-key grants)
  SteadyTime blocked_until{};  // lock-delay after an unreleased expiry
  bool stored = false;         // a lease record for this key exists in the journal
  SteadyTime timer = kNever;   // earliest timer currently queued for this key
  std::deque<Waiter> waiters;
};

struct Permit {
  std::string id;
  int64_t slot = 0;
  uint64_t fence = 0;
  SteadyTime expiry{};
  std::optional<std::string> owner;
};

struct SemWaiter {
  uint64_t id = 0;
  int64_t limit = 0;
  Duration ttl{0};
  std::optional<std::string> owner;
  SteadyTime deadline{};
  PermitCallback cb;
};

// One semaphore key. Exists while it has unexpired permits (each with a journal record) or
// waiters.
struct SemEntry {
  int64_t limit = 0;            // of the holders; meaningful while `permits` is not empty
  std::vector<Permit> permits;  // at most limit (<= kMaxSemaphoreLimit)
  std::deque<SemWaiter> waiters;
  SteadyTime timer = kNever;
};

struct Timer {
  SteadyTime at;
  bool semaphore = false;  // which map `key` is in
  std::string key;
  bool operator>(const Timer& o) const { return at > o.at; }
};

// What to do once the shard locks are released: callbacks to run, and multi-key waiters that may
// have become grantable (first in a queue of a key that is free).
struct Outbox {
  std::vector<std::pair<GrantCallback, std::optional<LeaseGrant>>> grants;
  std::vector<std::pair<PermitCallback, std::optional<PermitGrant>>> permits;
  std::vector<std::shared_ptr<MultiWaiter>> multi_tries;
};

struct Shard {
  absl::Mutex mu;
  absl::flat_hash_map<std::string, Entry> entries ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<std::string, SemEntry> sems ABSL_GUARDED_BY(mu);
  std::priority_queue<Timer, std::vector<Timer>, std::greater<Timer>> timers ABSL_GUARDED_BY(mu);
};

// One shard of LookupById's index: lock_id -> lease key (see the top of this file).
struct IdShard {
  absl::Mutex mu;
  absl::flat_hash_map<std::string, std::string> key_of ABSL_GUARDED_BY(mu);
};

using EntryIt = absl::flat_hash_map<std::string, Entry>::iterator;
using SemIt = absl::flat_hash_map<std::string, SemEntry>::iterator;

// Locks several shards for its lifetime, each once, in address order (the shards are one array,
// so that is index order): every multi-shard locker uses the same order, so none deadlocks.
class ShardLocks {
 public:
  explicit ShardLocks(std::vector<Shard*> shards);
  ~ShardLocks();
  ShardLocks(const ShardLocks&) = delete;
  ShardLocks& operator=(const ShardLocks&) = delete;

 private:
  std::vector<Shard*> shards_;
};

}  // namespace tollgate::lease_internal

namespace tollgate {

class LeaseManager::Impl {
 public:
  using Shard = lease_internal::Shard;
  using Entry = lease_internal::Entry;
  using SemEntry = lease_internal::SemEntry;
  using Outbox = lease_internal::Outbox;
  using MultiWaiter = lease_internal::MultiWaiter;

  explicit Impl(Options o);
  ~Impl();

  // ---- lease_core.cc
  void RestoreFence(uint64_t fence);
  void RestoreLease(std::string_view key, const StoredLease& lease);
  absl::StatusOr<AsyncStart> AcquireAsync(const AcquireRequest& req, GrantCallback cb);
  bool CancelWaiter(std::string_view key, uint64_t waiter_id);
  absl::Status Release(std::string_view key, std::string_view lock_id);
  absl::StatusOr<Duration> Extend(std::string_view key, std::string_view lock_id, Duration ttl);
  std::optional<LeaseInfo> Info(std::string_view key);
  // REQUIRES: core::IsLockIdFormat(lock_id) (checked by the caller).
  std::optional<LeaseById> LookupById(std::string_view lock_id);
  void Tick();
  std::optional<SteadyTime> NextDeadline();
  uint64_t last_fence() const { return fence_.load(); }
  size_t key_count();
  size_t semaphore_count();
  const Options& options() const { return opt_; }

  // ---- lease_multi.cc
  absl::StatusOr<AsyncStart> MultiAcquireAsync(const MultiAcquireRequest& req, GrantCallback cb);
  absl::StatusOr<size_t> MultiRelease(std::span<const std::string> keys, std::string_view lock_id);
  absl::StatusOr<Duration> MultiExtend(std::span<const std::string> keys, std::string_view lock_id,
                                       Duration ttl);

  // ---- semaphores.cc
  void RestorePermit(std::string_view key, std::string_view permit_id, const StoredPermit& p);
  absl::StatusOr<SemAsyncStart> SemAcquireAsync(const SemAcquireRequest& req, PermitCallback cb);
  bool CancelSemWaiter(std::string_view key, uint64_t waiter_id);
  absl::Status SemRelease(std::string_view key, std::string_view permit_id);
  absl::StatusOr<Duration> SemExtend(std::string_view key, std::string_view permit_id,
                                     Duration ttl);
  std::optional<SemaphoreInfo> SemInfo(std::string_view key);

  uint64_t expirations() const { return expirations_.load(std::memory_order_relaxed); }
 private:
  // High bits pick the shard: the hash maps inside use the low ones.
  Shard& ShardFor(std::string_view key);
  // The shards of `keys` (with repeats; ShardLocks drops them).
  std::vector<Shard*> ShardsOf(std::span<const std::string> keys);
  uint64_t NextFence() { return fence_.fetch_add(1) + 1; }
  uint64_t NextWaiterId() { return next_waiter_.fetch_add(1) + 1; }

  // Free for a newcomer: not held, not in lock-delay, nobody queued.
  static bool Grantable(const Entry& e, SteadyTime now);
  // Free for the waiter at the front of its queue: not held, not in lock-delay.
  static bool FreeAt(const Entry& e, SteadyTime now);
  // Makes `e` (which must be free) held under grant.lock_id / grant.fence until now + grant.ttl,
  // acquired at grant.acquired_at; adds lock_id -> key to the by-id index if `indexed` (a
  // single-key grant); journals it and schedules its expiry. Call with the key's shard locked.
  void Hold(Shard& s, const std::string& key, Entry& e, const LeaseGrant& grant,
            const std::optional<std::string>& owner, bool indexed, SteadyTime now);
  // Ends the lease `e` holds (released or expired): clears its holder fields and drops its
  // by-id index entry. Does not journal or settle. Call with the key's shard locked.
  void DropLease(const std::string& key, Entry& e);
  // Issues a single-key lease on the entry (which must be free) under a new lock_id and fence,
  // acquired now (the clock's WallNow), indexed by lock_id.
  LeaseGrant Grant(Shard& s, const std::string& key, Entry& e, Duration ttl,
                   const std::optional<std::string>& owner, SteadyTime now);
  // A new grant (not yet held anywhere): new lock_id and fence, acquired at the clock's WallNow.
  LeaseGrant NewGrant(Duration ttl);
  lease_internal::IdShard& IdShardFor(std::string_view lock_id);
  // The index's changes. Call with the shard of `key` locked (IndexAdd/IndexRemove take the
  // IdShard's lock themselves, after it).
  void IndexAdd(std::string_view lock_id, std::string_view key);
  void IndexRemove(std::string_view lock_id, std::string_view key);
  // Appends the entry's current lease to the journal (if any) and marks it stored.
  void JournalLease(const std::string& key, Entry& e);
  // Brings one lease key up to date at `now`: expires its lease, answers waiters whose wait ran
  // out (and drops places of multi-key waiters answered elsewhere), grants the front single-key
  // waiter if the key is free (or, for a multi-key waiter in front other than `skip`, asks for a
  // try in `out`), schedules the key's next timer, and erases the entry when it carries no
  // information. May invalidate `it` and other iterators of the shard.
  void Settle(Shard& s, lease_internal::EntryIt it, SteadyTime now, Outbox& out,
              const MultiWaiter* skip = nullptr);
  // Settle for `key` if it has an entry.
  void SettleKey(Shard& s, std::string_view key, SteadyTime now, Outbox& out,
                 const MultiWaiter* skip = nullptr);
  // When this entry next needs attention (kNever: never by itself).
  static SteadyTime NextTimerFor(const Entry& e, SteadyTime now);
  // Queues a timer for the key unless an earlier one is queued.
  void Schedule(Shard& s, const std::string& key, Entry& e, SteadyTime at);
  void ScheduleSem(Shard& s, const std::string& key, SemEntry& e, SteadyTime at);
  void NoteTimer(SteadyTime at);

  // Grants a multi-key waiter if it is now first in every one of its keys' queues and every key
  // is free. Locks its shards itself: call with no shard lock held.
  void TryServeMulti(const std::shared_ptr<MultiWaiter>& mw, Outbox& out);
  // Cancels a queued multi-key waiter: takes it out of every queue (and settles those keys).
  // False if it was answered already. Call with no shard lock held.
  bool CancelMulti(const std::shared_ptr<MultiWaiter>& mw, Outbox& out);

  // Semaphore counterparts of Settle / Grant (semaphores.cc).
  void SemSettle(Shard& s, lease_internal::SemIt it, SteadyTime now, Outbox& out);
  PermitGrant GrantPermit(Shard& s, const std::string& key, SemEntry& e, int64_t limit,
                          Duration ttl, const std::optional<std::string>& owner, SteadyTime now);
  void JournalPermit(const std::string& key, const SemEntry& e, const lease_internal::Permit& p);

  // Runs the outbox: tries multi-key waiters (which may add more work) and then the callbacks.
  // Call with no shard lock held.
  void Flush(Outbox& out);
  // Called after a public operation released its locks: wakes the timer thread if the operation
  // queued a timer earlier than the thread planned to wake.
  void MaybeWakeTimer();
  void TimerLoop();

  Options opt_;
  Shard shards_[lease_internal::kShards];
  lease_internal::IdShard id_shards_[lease_internal::kShards];
  std::atomic<uint64_t> fence_{0};
  std::atomic<uint64_t> expirations_{0};  // leases that expired unreleased (Settle)
  std::atomic<uint64_t> next_waiter_{0};
  std::atomic<int64_t> planned_wake_{std::numeric_limits<int64_t>::max()};
  std::atomic<bool> wake_pending_{false};
  std::mutex timer_mu_;
  std::condition_variable timer_cv_;
  bool stop_ = false;  // guarded by timer_mu_
  bool kick_ = false;  // guarded by timer_mu_
  std::thread timer_;
};

}  // namespace tollgate

#endif  // TOLLGATE_CORE_LEASE_MANAGER_IMPL_H_
