// The seam between an HTTP worker thread and the I/O threads: an HTTP handler never touches state
// itself. It posts the operation to one I/O thread's loop (IoThread::PostToState), where it runs on
// that thread's State exactly as a RESP command does, and blocks, for a bounded time, until the
// completion hands the result back.
#ifndef TOLLGATE_HTTP_STATE_CALL_H_
#define TOLLGATE_HTTP_STATE_CALL_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "server/state.h"

namespace tollgate::http {

// Posts fn to I/O thread `thread` (modulo the thread count) with its State. fn may be destroyed
// without running (the loop stopped): completions below then answer Unavailable.
using PostToState = std::function<void(size_t thread, absl::AnyInvocable<void(server::State&)> fn)>;

// One result travelling from an I/O thread's completion to the waiting HTTP thread.
template <class T>
class ResultSlot {
 public:
  // Sets the result unless one was set already or the waiter gave up; false then (a grant in `r`
  // reaches nobody and must be undone by the caller).
  bool Set(absl::StatusOr<T> r) {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (result_ || abandoned_) return false;
      result_.emplace(std::move(r));
    }
    cv_.notify_all();
    return true;
  }
  // Waits until a result is set, `deadline` passes or `*stop` becomes true (checked every 50 ms).
  // nullopt on timeout or stop; the slot is then abandoned: a later Set returns false.
  std::optional<absl::StatusOr<T>> Wait(std::chrono::steady_clock::time_point deadline,
                                        const std::atomic<bool>* stop) {
    std::unique_lock<std::mutex> l(mu_);
    for (;;) {
      if (result_) return std::move(*result_);
      const auto now = std::chrono::steady_clock::now();
      if (now >= deadline || (stop != nullptr && stop->load())) {
        abandoned_ = true;
        return std::nullopt;
      }
      cv_.wait_until(l, std::min(deadline, now + std::chrono::milliseconds(50)));
    }
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<absl::StatusOr<T>> result_;
  bool abandoned_ = false;
};

// A completion that fills a ResultSlot; destroyed without being called (the loop or the backend
// shut down), it answers Unavailable, so the HTTP thread never waits for a lost completion.
template <class T>
class SlotCompletion {
 public:
  explicit SlotCompletion(std::shared_ptr<ResultSlot<T>> slot) : slot_(std::move(slot)) {}
  SlotCompletion(SlotCompletion&&) noexcept = default;
  SlotCompletion& operator=(SlotCompletion&&) noexcept = default;
  ~SlotCompletion() {
    if (slot_) slot_->Set(absl::UnavailableError("the server is shutting down"));
  }
  // As ResultSlot::Set. Call at most once.
  bool operator()(absl::StatusOr<T> r) { return std::exchange(slot_, nullptr)->Set(std::move(r)); }

 private:
  std::shared_ptr<ResultSlot<T>> slot_;
};

// For absl::Status completions.
struct Done {};

}  // namespace tollgate::http

#endif  // TOLLGATE_HTTP_STATE_CALL_H_
