// LOCK.ACQUIRE ... WAIT for shared backends, on the backend's event loop: no thread per waiting
// key, no cap on keys.
//
// Per key, the waiters of one WaitQueue are served in arrival order (FIFO among the waiters of this
// object, and among those of every WaitQueue sharing one WaitOrder, e.g. all the I/O threads of a
// server; across servers sharing the backend, whoever's acquire lands first wins). The
// head waiter of each key tries the backend's non-waiting acquire; when it is not granted, it
// tries again after `poll` (or at its deadline, whichever is first). A waiter whose deadline passes
// gets nullopt ("not acquired") — or, when every attempt since its last clean answer failed, that
// failure (Unavailable), so a client can tell an outage from contention. A newcomer for a key that
// has waiters queues behind them (or, without WAIT, is answered "not acquired" at once) rather than
// taking the key from under them.
//
// Cost: one acquire round trip per waiting key per `poll` (default 25 ms: 40/s per key), whatever
// the number of waiters on the key.
#ifndef TOLLGATE_BACKENDS_ASYNC_WAIT_QUEUE_H_
#define TOLLGATE_BACKENDS_ASYNC_WAIT_QUEUE_H_

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"
#include "tollgate/async_backend.h"

namespace tollgate {

// One arrival order per key across several WaitQueues (each on its own loop and thread): a queue's
// head waiter tries the backend only while it is first for its key in this order, and a request
// without WAIT is "not acquired" while anyone waits. Thread-safe; must outlive the queues using it.
class WaitOrder {
 public:
  void Join(const std::string& key, const void* queue, uint64_t ticket);
  // Joins every key at once (one critical section), so two multi-key waiters never end up in
  // opposite orders on two keys (which would deadlock them).
  void JoinAll(std::span<const std::string> keys, const void* queue, uint64_t ticket);
  void Leave(const std::string& key, const void* queue, uint64_t ticket);
  bool IsFirst(const std::string& key, const void* queue, uint64_t ticket) const;
  size_t Count(const std::string& key) const;

 private:
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::deque<std::pair<const void*, uint64_t>>> keys_
      ABSL_GUARDED_BY(mu_);
};

class WaitQueue {
 public:
  // The backend's non-waiting acquire (req.wait is ignored); must complete exactly once, on the
  // loop.
  using TryAcquire =
      absl::AnyInvocable<void(const AcquireRequest&, Completion<std::optional<LeaseGrant>>)>;
  // Releases a lease nobody will take (its waiter was cancelled after the grant was requested).
  using ReleaseAbandoned = absl::AnyInvocable<void(const std::string& key, const std::string& id)>;
  // The backend's non-waiting operations, each completing exactly once on the loop, and how to
  // give back a grant nobody will take (its waiter was cancelled after the attempt was sent).
  // Semaphore and multi-key members may be left empty by a backend without them: their requests
  // then complete with Unimplemented.
  struct Ops {
    TryAcquire acquire;
    ReleaseAbandoned release;
    absl::AnyInvocable<void(const SemAcquireRequest&, Completion<std::optional<PermitGrant>>)>
        sem_acquire;
    absl::AnyInvocable<void(const std::string& key, const std::string& permit_id)> sem_release;
    absl::AnyInvocable<void(const MultiAcquireRequest&, Completion<std::optional<LeaseGrant>>)>
        multi_acquire;
    absl::AnyInvocable<void(const std::vector<std::string>& keys, const std::string& lock_id)>
        multi_release;
  };
  struct Options {
    Duration poll = std::chrono::milliseconds(25);
  };
  // `loop` must outlive this object; the callbacks are called on it.
  WaitQueue(EventLoop& loop, Ops ops, Options options);
  WaitQueue(EventLoop& loop, Ops ops) : WaitQueue(loop, std::move(ops), Options{}) {}
  WaitQueue(EventLoop& loop, TryAcquire try_acquire, ReleaseAbandoned release, Options options)
      : WaitQueue(loop, Ops{std::move(try_acquire), std::move(release), {}, {}, {}, {}}, options) {}
  WaitQueue(EventLoop& loop, TryAcquire try_acquire, ReleaseAbandoned release)
      : WaitQueue(loop, std::move(try_acquire), std::move(release), Options{}) {}
  // Shutdown(), then forgets pending timers.
  ~WaitQueue();
  WaitQueue(const WaitQueue&) = delete;
  WaitQueue& operator=(const WaitQueue&) = delete;

  // AsyncBackend::Acquire for a validated request: with nobody waiting for the key, tries at once;
  // granted → done(grant); not granted and req.wait == 0 → done(nullopt); else queues. With
  // waiters for the key: req.wait == 0 → done(nullopt) at once, else queues behind them. Returns a
  // ticket for Cancel when the request may still wait, else 0.
  uint64_t Acquire(const AcquireRequest& req, Completion<std::optional<LeaseGrant>> done);
  // AsyncBackend::SemAcquire for a validated request, as Acquire, per semaphore key. After a
  // waiter is granted a permit, the next waiter tries at once (more slots may be free).
  uint64_t SemAcquire(const SemAcquireRequest& req, Completion<std::optional<PermitGrant>> done);
  // AsyncBackend::MultiAcquire for a validated request: the waiter queues on every one of its keys
  // (behind earlier waiters of any of them, ahead of later ones) and tries only when it is first on
  // all of them, so it holds nothing while it waits and later single-key waiters cannot pass it.
  uint64_t MultiAcquire(const MultiAcquireRequest& req, Completion<std::optional<LeaseGrant>> done);
  // AsyncBackend::CancelWait, for a ticket of any of the three.
  void Cancel(uint64_t ticket);
  // Waiters queued for lease `key` (single- and multi-key): in every queue sharing this one's
  // WaitOrder, if it has one.
  size_t Count(std::string_view key) const;
  // Waiters queued for semaphore `key`, likewise.
  size_t SemCount(std::string_view key) const;
  // The lease key may have become free (a backend that can watch keys saw it deleted): its head
  // waiter tries at once instead of at its next poll. No effect without waiters for `key`.
  void Poke(const std::string& key);
  // Likewise for a semaphore key (a permit was released or expired).
  void PokeSemaphore(const std::string& key);
  // Lease keys with waiters (for a backend that watches them).
  std::vector<std::string> WaitingKeys() const;
  // Semaphore keys with waiters.
  std::vector<std::string> WaitingSemaphores() const;
  // Shares `order` (null: none) with other queues from now on. REQUIRES: no waiter queued yet.
  void set_order(WaitOrder* order) { order_ = order; }
  // Every waiter completes with nullopt now; later Acquires with wait complete with nullopt too.
  void Shutdown();

 private:
  struct Waiter;
  template <class Grant>
  struct TypedWaiter;
  struct Key;
  // Queue keys: a namespace byte ('L' lease, 'S' semaphore) and the key, so one map (and one
  // WaitOrder) holds both namespaces.
  static std::string LeaseQKey(std::string_view key);
  static std::string SemQKey(std::string_view key);
  // Queues `w` (deadline `wait`) on its keys, or answers at once when it cannot wait; the shared
  // body of Acquire, SemAcquire and MultiAcquire.
  uint64_t Enqueue(std::shared_ptr<Waiter> w, Duration wait);
  void Attempt(const std::string& qkey);
  void Schedule(const std::string& qkey);
  void Expire(uint64_t ticket);
  void PruneHead(Key& k);
  // Whether `w` is first on every one of its keys, here and in the shared order.
  bool FirstEverywhere(const Waiter& w) const;
  // Waiters queued for `qkey` in this queue; in the shared order too, if any.
  size_t LocalCount(std::string_view qkey) const;
  size_t CountQ(const std::string& qkey) const;
  // Marks `w` answered, takes it out of the shared order and out of ticket lookup.
  void MarkAnswered(Waiter& w);
  // After `w` left: each of its keys' next waiter goes on (at once, or at the next poll).
  void AfterLeaving(const Waiter& w, bool at_once);

  EventLoop& loop_;
  Ops ops_;
  const Options options_;
  bool shut_down_ = false;
  WaitOrder* order_ = nullptr;
  uint64_t next_ticket_ = 1;
  absl::flat_hash_map<std::string, std::unique_ptr<Key>> keys_;
  absl::flat_hash_map<uint64_t, std::shared_ptr<Waiter>> tickets_;  // waiting tickets
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);      // for callbacks after destruction
};

}  // namespace tollgate

#endif  // TOLLGATE_BACKENDS_ASYNC_WAIT_QUEUE_H_
