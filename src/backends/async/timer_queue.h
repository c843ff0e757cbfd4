// Timers for an event loop (EventLoop::RunAt / CancelTimer): one definition for the standalone
// EpollEventLoop and the server's I/O threads. Not thread-safe: the loop's thread only.
#ifndef TOLLGATE_BACKENDS_ASYNC_TIMER_QUEUE_H_
#define TOLLGATE_BACKENDS_ASYNC_TIMER_QUEUE_H_

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "tollgate/clock.h"

namespace tollgate {

class TimerQueue {
 public:
  // As EventLoop::RunAt: an id (never 0) for Cancel.
  uint64_t Add(SteadyTime at, absl::AnyInvocable<void()> fn) {
    const uint64_t id = next_++;
    timers_.emplace(std::make_pair(at, id), std::move(fn));
    at_.emplace(id, at);
    return id;
  }
  // No effect for a timer that ran or was cancelled.
  void Cancel(uint64_t id) {
    auto it = at_.find(id);
    if (it == at_.end()) return;
    timers_.erase(std::make_pair(it->second, id));
    at_.erase(it);
  }
  // Runs every timer due at `now` (in deadline order; a timer added meanwhile for `now` or earlier
  // runs too), then returns the epoll timeout until the next one in ms: -1 for none, at most
  // 60000.
  int RunDue(Clock* clock) {
    const SteadyTime now = clock->SteadyNow();
    while (!timers_.empty() && timers_.begin()->first.first <= now) {
      auto node = timers_.extract(timers_.begin());
      at_.erase(node.key().second);
      node.mapped()();
    }
    if (timers_.empty()) return -1;
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(timers_.begin()->first.first -
                                                                 clock->SteadyNow());
    return static_cast<int>(std::clamp<int64_t>(ms.count(), 0, 60'000));
  }
  // The epoll timeout until the next timer in ms, without running any: -1 for none, at most 60000.
  int NextTimeoutMs(Clock* clock) const {
    if (timers_.empty()) return -1;
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(timers_.begin()->first.first -
                                                                 clock->SteadyNow());
    return static_cast<int>(std::clamp<int64_t>(ms.count(), 0, 60'000));
  }
  bool empty() const { return timers_.empty(); }

 private:
  std::map<std::pair<SteadyTime, uint64_t>, absl::AnyInvocable<void()>> timers_;
  absl::flat_hash_map<uint64_t, SteadyTime> at_;
  uint64_t next_ = 1;
};

}  // namespace tollgate

#endif  // TOLLGATE_BACKENDS_ASYNC_TIMER_QUEUE_H_
