// The holder's side of a lease, for the in-process library: acquire, keep renewed, know at every
// moment whether it is still safe to act as the holder, release.
//
// A lease is only as good as the holder's knowledge of when it ends. The server's expiry is
// `t_apply + ttl` on the server's clock, where t_apply (when the server applied the acquire or
// extend) is unknown to the client; all the client knows is when it SENT the request. So the
// holder's deadline, `safe_until`, is computed from the send time and is shortened for clock drift
// and a guard:
//
//   safe_until = t_send + granted_ttl * (1 - max_drift) - guard
//
// which is never later than the server's expiry as long as the client's clock runs no more than
// max_drift slower than the server's (t_send <= t_apply; a slow client clock measures at least
// ttl * (1 - max_drift) of its own time before the server's ttl is up). A failed or unanswered
// renewal leaves safe_until where it was, so the loss signal fires before the server could give the
// key to someone else. Pass lease.fence() to the protected resource as well (fenced_register.h):
// safe_until protects against a holder that outlives its lease, fences against one whose side
// effect is delayed in flight.
//
// Usage:
//   absl::StatusOr<int> n = WithLock(backend, "jobs/42", {.ttl = 10s}, [&](const Lease& lease) {
//     for (Item& item : items) {
//       if (absl::Status s = lease.check(); !s.ok()) return -1;  // before each side effect
//       Write(item, lease.fence());
//     }
//     return static_cast<int>(items.size());
//   });
#ifndef TOLLGATE_LEASE_HOLDER_H_
#define TOLLGATE_LEASE_HOLDER_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "tollgate/backend.h"
#include "tollgate/clock.h"

namespace tollgate {

// Why a Lease stopped being safe to act on.
enum class LossReason {
  kExpired,        // safe_until passed without a failed renewal (e.g. the watchdog was starved)
  kRenewRejected,  // the backend said the key is no longer held by this lease (FailedPrecondition)
  kUnreachable,    // renewals failed or went unanswered (Unavailable, ...) until safe_until
  kMaxHoldExceeded,  // renewal stopped at max_hold; safe_until then passed
  kNoProgress,       // renewal stopped because touch() was not called within progress_timeout
  kReleased,         // release() (or the destructor) gave the lease back
};
// "expired", "renewal rejected", "unreachable", "max hold exceeded", "no progress", "released".
std::string_view LossReasonName(LossReason reason);

struct LeaseOptions {
  // Lease time to live requested from the backend: [kMinTtl, kMaxTtl].
  Duration ttl{0};
  // AcquireLease: how long to keep retrying while the key is taken: [0, kMaxWait]; 0 = one try.
  Duration wait{0};
  // Free-form label shown by Info.
  std::optional<std::string> owner;
  // Bound on how much slower the client's steady clock may run than the server's, as a fraction:
  // [0, 0.1]. Default 1e-3 (1000 ppm, far above a real quartz clock's ~50 ppm).
  double max_drift = 1e-3;
  // Subtracted from every safe_until, for the time between check() returning OK and the side effect
  // landing: [0, ttl * (1 - max_drift)). Default 100 ms.
  Duration guard = std::chrono::milliseconds(100);
  // Renewal period, measured from the send time of the last successful renewal; 0 = ttl / 3. The
  // effective period must be less than ttl * (1 - max_drift) - guard (the first renewal must be
  // sent while the lease is still safe). A failed renewal is retried every max(period / 4, 1 ms).
  Duration renew_every{0};
  // Stop renewing once this long has passed since the acquire was sent; the lease is then lost
  // (kMaxHoldExceeded) when safe_until passes. 0 = unbounded. >= 0.
  Duration max_hold{0};
  // Stop renewing when touch() has not been called for this long (the acquire counts as a touch);
  // the lease is then lost (kNoProgress) when safe_until passes. 0 = off. >= 0.
  Duration progress_timeout{0};
  // Not owned. The watchdog thread waits real time for durations measured on this clock, so with a
  // FakeClock use the manual watchdog of lease_internal::TestHooks.
  Clock* clock = RealClock();
};

// OK, or InvalidArgument naming the first bad field and its accepted range.
[[nodiscard]] absl::Status ValidateLeaseOptions(const LeaseOptions& options);

// What a Lease holds: one key (AcquireLease), one permit of a semaphore (AcquirePermit) or several
// keys under one lock_id and fence (AcquireAll). All three share the watchdog, safe_until and the
// loss signal; they differ only in the backend calls that renew and release them.
enum class LeaseKind {
  kLock,    // Backend::Acquire / Extend / Release
  kPermit,  // Backend::SemAcquire / SemExtend / SemRelease
  kMulti,   // Backend::MultiAcquire / MultiExtend (all or none) / MultiRelease
};

class Lease;
namespace lease_internal {
struct LeaseFactory;
// For tests only: deterministic driving of AcquireLease and the watchdog.
struct TestHooks {
  // No watchdog threads: the test drives renewal and expiry with Lease::RunWatchdogOnce().
  bool manual_watchdog = false;
  // AcquireLease's sleep between tries; unset = std::this_thread::sleep_for.
  std::function<void(Duration)> sleep;
  // Seed of the backoff jitter; unset = random.
  std::optional<uint64_t> jitter_seed;
};
[[nodiscard]] absl::StatusOr<std::optional<Lease>> AcquireLease(Backend& backend, std::string key,
                                                                const LeaseOptions& options,
                                                                const TestHooks& hooks);
[[nodiscard]] absl::StatusOr<std::optional<Lease>> AcquirePermit(Backend& backend, std::string key,
                                                                 int64_t limit,
                                                                 const LeaseOptions& options,
                                                                 const TestHooks& hooks);
[[nodiscard]] absl::StatusOr<std::optional<Lease>> AcquireAll(Backend& backend,
                                                              std::vector<std::string> keys,
                                                              const LeaseOptions& options,
                                                              const TestHooks& hooks);
}  // namespace lease_internal

// A held lease. Move-only RAII: destruction stops renewal (waiting for an in-flight renewal to
// finish) and then releases the lease. A moved-from Lease may only be destroyed or assigned to.
//
// Watchdog: each Lease runs two threads, a renewer (calls Extend every renew_every, retries
// failures) and a timer (fires the loss signal at safe_until). Why per lease and why two: Backend
// calls are synchronous and may block up to the backend's timeout; a timer shared by all leases, or
// one thread doing both jobs, would let a blocked Extend delay the loss signal past safe_until, the
// one thing it must never do. A process holds few leases at a time, so two mostly sleeping threads
// each cost little.
//
// Thread-safety: all const methods, touch(), renew() and release() may be called concurrently from
// any thread. Callbacks registered on stop_token() run on the thread that detects the loss
// (possibly a watchdog thread); they may call the Lease's methods but must not destroy it.
class Lease {
 public:
  Lease(Lease&& other) noexcept;
  Lease& operator=(Lease&& other) noexcept;
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  ~Lease();

  // Lock, permit or multi-key lease.
  LeaseKind kind() const;
  // The leased key (kLock), the semaphore key (kPermit), or the first of keys() (kMulti).
  const std::string& key() const;
  // Every key held: the one key for kLock and kPermit; all of them, as given, for kMulti.
  const std::vector<std::string>& keys() const;
  // The permit's slot in [0, limit) for kPermit (pair it with fence() at a fenced resource of that
  // slot); nullopt otherwise.
  std::optional<int64_t> slot() const;
  // The fencing token of this grant: pass it with every write to the protected resource. For
  // kMulti one fence for all keys, greater than any fence issued before for any of them.
  uint64_t fence() const;
  // The backend's id of this grant (the permit_id for kPermit).
  const std::string& lock_id() const;
  // Until when (on options.clock) it is safe to act as the holder; moves forward with each
  // successful renewal and never otherwise. See the file comment for the formula.
  SteadyTime safe_until() const;
  // Requested once the lease is lost (any reason) or safe_until passes, whichever is first. Stays
  // requested.
  std::stop_token stop_token() const;
  // The reason once the lease is lost, else nullopt. A lease past safe_until is lost.
  std::optional<LossReason> lost() const;
  // OK while the lease is safe to act on; FailedPrecondition naming the key and the loss reason
  // once it is lost or past safe_until. Call it before each side effect.
  [[nodiscard]] absl::Status check() const;
  // Progress heartbeat for options.progress_timeout.
  void touch();
  // One renewal now, on the calling thread (serialized with the watchdog's). OK and safe_until
  // moved forward; FailedPrecondition if the lease is lost or released, or past max_hold, or the
  // backend rejected it (then lost, kRenewRejected); the backend's error otherwise (e.g.
  // Unavailable: the lease stays as it was, the watchdog keeps trying). kMulti renews all keys or
  // none: losing any key loses the whole lease.
  [[nodiscard]] absl::Status renew();
  // Stops renewal, waits for an in-flight renewal, releases on the backend and marks the lease lost
  // (kReleased, unless it was already lost for another reason). The first call returns the
  // backend's answer (FailedPrecondition if the server had already let the lease go, or for kMulti
  // any of its keys; Unavailable if the backend could not be reached: the lease then just
  // expires); later calls return OK.
  [[nodiscard]] absl::Status release();

  // For tests, with lease_internal::TestHooks::manual_watchdog: does what the watchdog threads
  // would do at the clock's current time (mark the lease lost if past safe_until, send a due
  // renewal). Returns when the watchdog next needs to run, or nullopt once it has nothing more to
  // do.
  std::optional<SteadyTime> RunWatchdogOnce();
  // For tests: when (on options.clock) the loss took effect, i.e. when the watchdog fires the
  // signal (safe_until for the time-based reasons); nullopt while not lost.
  std::optional<SteadyTime> lost_at() const;

 private:
  struct State;
  friend struct lease_internal::LeaseFactory;
  explicit Lease(std::unique_ptr<State> state);
  void Shutdown();

  std::unique_ptr<State> state_;
};

// Acquires `key` for options.ttl. nullopt = the key stayed taken. With options.wait > 0:
// - if backend.queues_waiters() (a tollgate server through tollgate::Client), one request that
//   waits server-side in the key's FIFO queue (LOCK.ACQUIRE ... WAIT). The grant may have happened
//   any time between sending and the reply, so when the reply took longer than a quarter of the
//   renewal period, the lease is renewed once at once, before it is returned, and safe_until counts
//   from that renewal's send time (a failed renewal leaves safe_until counted from the acquire's
//   send time, possibly already past: then the lease comes back lost);
// - otherwise retries until wait has passed with exponential backoff and jitter: the n-th pause is
//   drawn uniformly from [d/2, d] with d = 50 ms * 2^n capped at 1 s, and never runs past the wait
//   (syncguard's retry defaults are similar: 100 ms doubling with jitter).
// InvalidArgument for bad options (ValidateLeaseOptions) or key; the backend's error (e.g.
// Unavailable) otherwise. The lease is renewed in the background from then on (see Lease).
[[nodiscard]] absl::StatusOr<std::optional<Lease>> AcquireLease(Backend& backend, std::string key,
                                                                const LeaseOptions& options);

// A permit of the semaphore `key` with `limit` slots (Backend::SemAcquire), as a Lease of kind
// kPermit: slot() and fence() name it; renewed with SemExtend, released with SemRelease. nullopt =
// all slots stayed taken. Waiting and errors as AcquireLease (InvalidArgument for a limit that
// differs from the current holders').
[[nodiscard]] absl::StatusOr<std::optional<Lease>> AcquirePermit(Backend& backend, std::string key,
                                                                 int64_t limit,
                                                                 const LeaseOptions& options);

// All of `keys` or none (Backend::MultiAcquire), as a Lease of kind kMulti: one lock_id, one fence.
// Renewed all or none with MultiExtend, so losing any key loses the whole lease; released with
// MultiRelease. nullopt = some key stayed taken (never holds some keys while waiting for others, so
// it cannot deadlock). Waiting and errors as AcquireLease.
[[nodiscard]] absl::StatusOr<std::optional<Lease>> AcquireAll(Backend& backend,
                                                              std::vector<std::string> keys,
                                                              const LeaseOptions& options);

namespace lease_internal {
template <class T>
struct IsStatusOr : std::false_type {};
template <class T>
struct IsStatusOr<absl::StatusOr<T>> : std::true_type {};

// The FailedPrecondition WithLock returns when the lease was lost while fn ran: `lost` (from
// Lease::check()), with fn's own error, if any, appended to the message.
absl::Status LostWhileRunning(const absl::Status& lost, const absl::Status& fn_status);

// WithLock's result type for fn's result type R: void and absl::Status -> absl::Status;
// absl::StatusOr<T> -> itself; anything else -> absl::StatusOr<R>.
template <class R>
using WithLockResult =
    std::conditional_t<std::is_void_v<R> || std::is_same_v<R, absl::Status>, absl::Status,
                       std::conditional_t<IsStatusOr<R>::value, R, absl::StatusOr<R>>>;
}  // namespace lease_internal

// Acquires `key` (AcquireLease with options), runs fn(const Lease&), releases, and returns fn's
// result: absl::Status for an fn returning void or absl::Status, fn's absl::StatusOr<T> as is, else
// absl::StatusOr<R>. ResourceExhausted if the key was not acquired within options.wait; the error
// of AcquireLease; FailedPrecondition naming the loss reason if the lease was lost (or passed
// safe_until) while fn ran, even if fn returned OK. A failed release is not reported (the lease
// then expires on the server). fn should call lease.check() before each side effect.
template <class F>
auto WithLock(Backend& backend, std::string key, const LeaseOptions& options, F&& fn)
    -> lease_internal::WithLockResult<std::invoke_result_t<F&, const Lease&>> {
  using R = std::invoke_result_t<F&, const Lease&>;
  using Out = lease_internal::WithLockResult<R>;
  absl::StatusOr<std::optional<Lease>> acquired = AcquireLease(backend, key, options);
  if (!acquired.ok()) return Out(acquired.status());
  if (!acquired->has_value()) {
    return Out(absl::ResourceExhaustedError(absl::StrCat(
        "lease on \"", key, "\" not acquired within wait (",
        std::chrono::duration_cast<std::chrono::milliseconds>(options.wait).count(), " ms)")));
  }
  Lease& lease = **acquired;
  if constexpr (std::is_void_v<R>) {
    fn(static_cast<const Lease&>(lease));
    absl::Status lost = lease.check();
    (void)lease.release();
    if (!lost.ok()) return lease_internal::LostWhileRunning(lost, absl::OkStatus());
    return absl::OkStatus();
  } else {
    R result = fn(static_cast<const Lease&>(lease));
    absl::Status lost = lease.check();
    (void)lease.release();
    if (!lost.ok()) {
      absl::Status fn_status;
      if constexpr (std::is_same_v<R, absl::Status>) {
        fn_status = result;
      } else if constexpr (lease_internal::IsStatusOr<R>::value) {
        fn_status = result.status();
      }
      return Out(lease_internal::LostWhileRunning(lost, fn_status));
    }
    return Out(std::move(result));
  }
}

}  // namespace tollgate

#endif  // TOLLGATE_LEASE_HOLDER_H_
