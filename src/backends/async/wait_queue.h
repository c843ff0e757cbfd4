// LOCK.ACQUIRE ... WAIT for shared backends, on the backend's event loop: no thread per waiting
// key, no cap on keys.
//
// Per key, the waiters of one WaitQueue are served in arrival order (FIFO among the waiters of this
// object; across objects and servers sharing the backend, whoever's acquire lands first wins). The
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
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "tollgate/async_backend.h"

namespace tollgate {

class WaitQueue {
 public:
  // The backend's non-waiting acquire (req.wait is ignored); must complete exactly once, on the
  // loop.
  using TryAcquire =
      absl::AnyInvocable<void(const AcquireRequest&, Completion<std::optional<LeaseGrant>>)>;
  // Releases a lease nobody will take (its waiter was cancelled after the grant was requested).
  using ReleaseAbandoned = absl::AnyInvocable<void(const std::string& key, const std::string& id)>;

  struct Options {
    Duration poll = std::chrono::milliseconds(25);
  };

  // `loop` must outlive this object; the callbacks are called on it.
  WaitQueue(EventLoop& loop, TryAcquire try_acquire, ReleaseAbandoned release, Options options);
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
  // AsyncBackend::CancelWait.
  void Cancel(uint64_t ticket);
  // Waiters queued for `key`.
  size_t Count(std::string_view key) const;
  // The key may have become free (a backend that can watch keys saw it deleted): the head waiter
  // of `key` tries at once instead of at its next poll. No effect without waiters for `key`.
  void Poke(const std::string& key);
  // Keys with waiters (for a backend that watches them).
  std::vector<std::string> WaitingKeys() const;
  // Every waiter completes with nullopt now; later Acquires with wait complete with nullopt too.
  void Shutdown();

 private:
  struct Waiter;
  struct Key;
  void Attempt(const std::string& key);
  void Schedule(const std::string& key);
  void Expire(uint64_t ticket);
  void PruneHead(Key& k);

  EventLoop& loop_;
  TryAcquire try_acquire_;
  ReleaseAbandoned release_;
  const Options options_;
  bool shut_down_ = false;
  uint64_t next_ticket_ = 1;
  absl::flat_hash_map<std::string, std::unique_ptr<Key>> keys_;
  absl::flat_hash_map<uint64_t, std::string> ticket_keys_;      // waiting tickets → their key
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // for callbacks after destruction
};

}  // namespace tollgate

#endif  // TOLLGATE_BACKENDS_ASYNC_WAIT_QUEUE_H_
