#include "tollgate/lease_holder.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/absl_compat.h"
#include "tollgate/lease_manager.h"

namespace tollgate {
namespace {

using std::chrono::milliseconds;

constexpr double kMaxMaxDrift = 0.1;
constexpr Duration kFirstBackoff = milliseconds(50);
constexpr Duration kMaxBackoff = milliseconds(1000);
constexpr Duration kMinRetry = milliseconds(1);

// d * factor, rounded down (never lengthens a safe window). d <= kMaxTtl fits a double exactly.
Duration Scale(Duration d, double factor) {
  return Duration(static_cast<int64_t>(std::floor(static_cast<double>(d.count()) * factor)));
}

Duration SafeWindow(const LeaseOptions& o, Duration ttl) {
  return Scale(ttl, 1.0 - o.max_drift) - o.guard;
}

Duration RenewPeriod(const LeaseOptions& o) {
  return o.renew_every > Duration(0) ? o.renew_every : o.ttl / 3;
}

int64_t Ms(Duration d) { return std::chrono::duration_cast<milliseconds>(d).count(); }

}  // namespace

std::string_view LossReasonName(LossReason reason) {
  switch (reason) {
    case LossReason::kExpired:
      return "expired";
    case LossReason::kRenewRejected:
      return "renewal rejected";
    case LossReason::kUnreachable:
      return "unreachable";
    case LossReason::kMaxHoldExceeded:
      return "max hold exceeded";
    case LossReason::kNoProgress:
      return "no progress";
    case LossReason::kReleased:
      return "released";
  }
  return "unknown";
}

absl::Status ValidateLeaseOptions(const LeaseOptions& o) {
  if (o.ttl < kMinTtl || o.ttl > kMaxTtl) {
    return absl::InvalidArgumentError(absl::StrCat("ttl must be in [", Ms(kMinTtl), ", ",
                                                   Ms(kMaxTtl), "] ms, got ", Ms(o.ttl), " ms"));
  }
  if (o.wait < Duration(0) || o.wait > kMaxWait) {
    return absl::InvalidArgumentError(
        absl::StrCat("wait must be in [0, ", Ms(kMaxWait), "] ms, got ", Ms(o.wait), " ms"));
  }
  if (!(o.max_drift >= 0 && o.max_drift <= kMaxMaxDrift)) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_drift must be in [0, ", kMaxMaxDrift, "], got ", o.max_drift));
  }
  if (o.guard < Duration(0) || SafeWindow(o, o.ttl) <= Duration(0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("guard must be in [0, ttl * (1 - max_drift)) = [0, ",
                     Ms(Scale(o.ttl, 1.0 - o.max_drift)), " ms), got ", Ms(o.guard), " ms"));
  }
  if (o.renew_every < Duration(0) || RenewPeriod(o) >= SafeWindow(o, o.ttl) ||
      RenewPeriod(o) <= Duration(0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "renew_every (0 = ttl / 3) must be in (0, ttl * (1 - max_drift) - guard) = (0, ",
        Ms(SafeWindow(o, o.ttl)), " ms), got ", Ms(RenewPeriod(o)), " ms"));
  }
  if (o.max_hold < Duration(0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_hold must be >= 0 (0 = unbounded), got ", Ms(o.max_hold), " ms"));
  }
  if (o.progress_timeout < Duration(0)) {
    return absl::InvalidArgumentError(absl::StrCat("progress_timeout must be >= 0 (0 = off), got ",
                                                   Ms(o.progress_timeout), " ms"));
  }
  if (o.clock == nullptr) return absl::InvalidArgumentError("clock must not be null");
  return absl::OkStatus();
}

struct Lease::State {
  State(Backend* b, LeaseKind kd, std::vector<std::string> ks, std::optional<int64_t> sl,
        LeaseGrant g, const LeaseOptions& o, SteadyTime t_send)
      : backend(b),
        kind(kd),
        keys(std::move(ks)),
        key(keys.front()),
        slot(sl),
        grant(std::move(g)),
        options(o),
        clock(o.clock),
        acquire_sent(t_send),
        safe_until(t_send + SafeWindow(o, grant.ttl)),
        next_renew(t_send + RenewPeriod(o)),
        last_touch(t_send) {}

  Backend* const backend;
  const LeaseKind kind;
  const std::vector<std::string> keys;
  const std::string& key;  // keys.front()
  const std::optional<int64_t> slot;
  const LeaseGrant grant;
  const LeaseOptions options;
  Clock* const clock;
  const SteadyTime acquire_sent;
  std::stop_source stop;

  // Serializes renewals and release (held across the backend call); taken before mu.
  absl::Mutex renew_mu ABSL_ACQUIRED_BEFORE(mu);
  bool released ABSL_GUARDED_BY(renew_mu) = false;

  mutable absl::Mutex mu;
  absl::CondVar changed;  // signalled on shutdown, loss, renewal
  SteadyTime safe_until ABSL_GUARDED_BY(mu);
  SteadyTime next_renew ABSL_GUARDED_BY(mu);
  SteadyTime last_touch ABSL_GUARDED_BY(mu);
  std::optional<LossReason> lost ABSL_GUARDED_BY(mu);
  SteadyTime lost_at ABSL_GUARDED_BY(mu);
  // Why the watchdog stopped renewing (kMaxHoldExceeded, kNoProgress), if it did.
  std::optional<LossReason> renewal_stopped ABSL_GUARDED_BY(mu);
  // The last renewal failed (other than a rejection), or one is in flight.
  bool renew_failing ABSL_GUARDED_BY(mu) = false;
  bool renew_in_flight ABSL_GUARDED_BY(mu) = false;
  bool shutdown ABSL_GUARDED_BY(mu) = false;

  std::thread renewer;
  std::thread timer;

  // Marks the lease lost at `at` unless it already is. Returns true if it became lost now (the
  // caller then calls stop.request_stop() after unlocking).
  bool MarkLost(LossReason reason, SteadyTime at) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (lost.has_value()) return false;
    lost = reason;
    lost_at = at;
    changed.SignalAll();
    return true;
  }
  // Marks the lease lost if `now` is past safe_until. Same return as MarkLost.
  bool Evaluate(SteadyTime now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (lost.has_value() || now < safe_until) return false;
    LossReason reason = LossReason::kExpired;
    if (renewal_stopped.has_value()) {
      reason = *renewal_stopped;
    } else if (renew_failing || renew_in_flight) {
      reason = LossReason::kUnreachable;
    }
    return MarkLost(reason, safe_until);
  }
  // Evaluate at the clock's current time, requesting stop if the lease became lost. Not under mu.
  void EvaluateNow() ABSL_LOCKS_EXCLUDED(mu) {
    bool fire;
    {
      absl::MutexLock l(&mu);
      fire = Evaluate(clock->SteadyNow());
    }
    if (fire) stop.request_stop();
  }

  // The backend call that renews this kind of lease.
  absl::StatusOr<Duration> BackendExtend() {
    switch (kind) {
      case LeaseKind::kPermit:
        return backend->SemExtend(key, grant.lock_id, options.ttl);
      case LeaseKind::kMulti:
        return backend->MultiExtend(keys, grant.lock_id, options.ttl);
      case LeaseKind::kLock:
        break;
    }
    return backend->Extend(key, grant.lock_id, options.ttl);
  }
  // The backend call that releases this kind of lease. kMulti: OK only if every key was released.
  absl::Status BackendRelease() {
    switch (kind) {
      case LeaseKind::kPermit:
        return backend->SemRelease(key, grant.lock_id);
      case LeaseKind::kMulti: {
        absl::StatusOr<size_t> n = backend->MultiRelease(keys, grant.lock_id);
        if (!n.ok()) return n.status();
        if (*n == keys.size()) return absl::OkStatus();
        return absl::FailedPreconditionError(absl::StrCat(
            Describe(), ": released ", *n, " of ", keys.size(), " keys; the others were not held"));
      }
      case LeaseKind::kLock:
        break;
    }
    return backend->Release(key, grant.lock_id);
  }

  // `lease on "k"`, `permit (slot 3) of semaphore "k"`, `lease on keys "a", "b"`.
  std::string Describe() const {
    switch (kind) {
      case LeaseKind::kPermit:
        return absl::StrCat("permit (slot ", slot.value_or(-1), ") of semaphore \"", key, "\"");
      case LeaseKind::kMulti: {
        std::string out = "lease on keys ";
        for (size_t i = 0; i < keys.size(); ++i) {
          absl::StrAppend(&out, i == 0 ? "" : ", ", "\"", keys[i], "\"");
        }
        return out;
      }
      case LeaseKind::kLock:
        break;
    }
    return absl::StrCat("lease on \"", key, "\"");
  }

  enum class RenewMode {
    kWatchdog,  // from the watchdog: skipped once shut down
    kExplicit,  // Lease::renew(): ignores next_renew; refuses past max_hold
    // Right after a grant that waited server-side, before the Lease is handed out: the grant time
    // is unknown, so safe_until (counted from the acquire's send time) may already have passed;
    // the renewal is sent regardless and, if accepted, counts from its own send time (the server
    // never revives an expired lease, so an accepted renewal proves the lease was still held).
    kAfterQueuedGrant,
  };

  // One Extend.
  absl::Status Renew(RenewMode mode) ABSL_LOCKS_EXCLUDED(renew_mu, mu) {
    const bool explicit_call = mode == RenewMode::kExplicit;
    const bool after_queued = mode == RenewMode::kAfterQueuedGrant;
    absl::MutexLock rl(&renew_mu);
    if (released) return absl::FailedPreconditionError(LostMessage(LossReason::kReleased));
    SteadyTime t_send = clock->SteadyNow();
    bool fire = false;
    std::optional<LossReason> already_lost;
    {
      absl::MutexLock l(&mu);
      if (mode == RenewMode::kWatchdog && shutdown) return absl::OkStatus();  // destructor waits
      if (!after_queued) fire = Evaluate(t_send);
      already_lost = lost;
      if (!lost.has_value()) {
        if (explicit_call && options.max_hold > Duration(0) &&
            t_send - acquire_sent >= options.max_hold) {
          return absl::FailedPreconditionError(absl::StrCat(
              Describe(), ": past max_hold (", Ms(options.max_hold), " ms), not renewed"));
        }
        renew_in_flight = true;
      }
    }
    if (fire) stop.request_stop();
    if (already_lost.has_value()) {
      return absl::FailedPreconditionError(LostMessage(*already_lost));
    }
    absl::StatusOr<Duration> extended = BackendExtend();
    SteadyTime now = clock->SteadyNow();
    absl::Status result;
    {
      absl::MutexLock l(&mu);
      // Had the reply not come by safe_until, the timer would have fired then: decide that first
      // (no timer runs yet after a queued grant).
      if (!(after_queued && extended.ok())) fire = Evaluate(now);
      renew_in_flight = false;
      if (lost.has_value()) {
        result = absl::FailedPreconditionError(LostMessage(*lost));
      } else if (extended.ok()) {
        safe_until = t_send + SafeWindow(options, *extended);
        next_renew = t_send + RenewPeriod(options);
        renew_failing = false;
        changed.SignalAll();
      } else if (absl::IsFailedPrecondition(extended.status())) {
        fire = MarkLost(LossReason::kRenewRejected, now);
        result = absl::FailedPreconditionError(absl::StrCat(LostMessage(LossReason::kRenewRejected),
                                                            ": ", extended.status().message()));
      } else {
        renew_failing = true;
        next_renew = now + std::max(RenewPeriod(options) / 4, kMinRetry);
        changed.SignalAll();
        result = extended.status();
      }
    }
    if (fire) stop.request_stop();
    return result;
  }

  std::string LostMessage(LossReason reason) const {
    return absl::StrCat(Describe(), " (fence ", grant.fence,
                        ") lost: ", AV(LossReasonName(reason)));
  }

  // The watchdog's work at the current time. Returns when it next needs to run, or nullopt when
  // done (lost, released or shut down).
  std::optional<SteadyTime> Step() ABSL_LOCKS_EXCLUDED(renew_mu, mu) {
    bool due = false;
    bool fire = false;
    {
      absl::MutexLock l(&mu);
      SteadyTime now = clock->SteadyNow();
      fire = Evaluate(now);
      if (!lost.has_value() && !shutdown && !renewal_stopped.has_value() && now >= next_renew) {
        if (options.max_hold > Duration(0) && now - acquire_sent >= options.max_hold) {
          renewal_stopped = LossReason::kMaxHoldExceeded;
        } else if (options.progress_timeout > Duration(0) &&
                   now - last_touch >= options.progress_timeout) {
          renewal_stopped = LossReason::kNoProgress;
        } else {
          due = true;
        }
      }
    }
    if (fire) stop.request_stop();
    if (due) (void)Renew(RenewMode::kWatchdog);
    absl::MutexLock l(&mu);
    if (lost.has_value() || shutdown) return std::nullopt;
    if (renewal_stopped.has_value()) return safe_until;
    return std::min(safe_until, next_renew);
  }

  // Waits on `changed` until `deadline` (on clock), shutdown or a signal.
  void WaitUntil(SteadyTime deadline) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    Duration left = deadline - clock->SteadyNow();
    if (left > Duration(0)) changed.WaitWithTimeout(&mu, absl::FromChrono(left));
  }

  void RenewerLoop() ABSL_LOCKS_EXCLUDED(renew_mu, mu) {
    while (true) {
      std::optional<SteadyTime> next = Step();
      if (!next.has_value()) return;
      absl::MutexLock l(&mu);
      if (shutdown) return;
      // Renewal stopped: the timer thread handles safe_until; just wait for shutdown.
      if (renewal_stopped.has_value() || lost.has_value()) {
        mu.Await(absl::Condition(&shutdown));
        return;
      }
      WaitUntil(*next);
    }
  }

  void TimerLoop() ABSL_LOCKS_EXCLUDED(mu) {
    while (true) {
      bool fire;
      {
        absl::MutexLock l(&mu);
        fire = Evaluate(clock->SteadyNow());
        if (!fire) {
          if (shutdown) return;
          if (lost.has_value()) {
            mu.Await(absl::Condition(&shutdown));
            return;
          }
          WaitUntil(safe_until);
          continue;
        }
      }
      stop.request_stop();
    }
  }
};

Lease::Lease(std::unique_ptr<State> state) : state_(std::move(state)) {}
Lease::Lease(Lease&& other) noexcept = default;
Lease& Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    Shutdown();
    state_ = std::move(other.state_);
  }
  return *this;
}
Lease::~Lease() { Shutdown(); }

void Lease::Shutdown() {
  if (state_ == nullptr) return;
  {
    absl::MutexLock l(&state_->mu);
    state_->shutdown = true;
    state_->changed.SignalAll();
  }
  if (state_->renewer.joinable()) state_->renewer.join();  // waits for an in-flight renewal
  if (state_->timer.joinable()) state_->timer.join();
  (void)release();
  state_.reset();
}

LeaseKind Lease::kind() const { return state_->kind; }
const std::string& Lease::key() const { return state_->key; }
const std::vector<std::string>& Lease::keys() const { return state_->keys; }
std::optional<int64_t> Lease::slot() const { return state_->slot; }
uint64_t Lease::fence() const { return state_->grant.fence; }
const std::string& Lease::lock_id() const { return state_->grant.lock_id; }
SteadyTime Lease::safe_until() const {
  absl::MutexLock l(&state_->mu);
  return state_->safe_until;
}
std::stop_token Lease::stop_token() const {
  state_->EvaluateNow();
  return state_->stop.get_token();
}
std::optional<LossReason> Lease::lost() const {
  state_->EvaluateNow();
  absl::MutexLock l(&state_->mu);
  return state_->lost;
}
std::optional<SteadyTime> Lease::lost_at() const {
  state_->EvaluateNow();
  absl::MutexLock l(&state_->mu);
  if (!state_->lost.has_value()) return std::nullopt;
  return state_->lost_at;
}
absl::Status Lease::check() const {
  std::optional<LossReason> reason = lost();
  if (!reason.has_value()) return absl::OkStatus();
  return absl::FailedPreconditionError(state_->LostMessage(*reason));
}
void Lease::touch() {
  absl::MutexLock l(&state_->mu);
  state_->last_touch = state_->clock->SteadyNow();
}
absl::Status Lease::renew() { return state_->Renew(State::RenewMode::kExplicit); }

absl::Status Lease::release() {
  State& s = *state_;
  absl::Status result;
  {
    absl::MutexLock rl(&s.renew_mu);  // waits for an in-flight renewal
    if (s.released) return absl::OkStatus();
    s.released = true;
    {
      absl::MutexLock l(&s.mu);
      s.Evaluate(s.clock->SteadyNow());
    }
    result = s.BackendRelease();
    absl::MutexLock l(&s.mu);
    s.MarkLost(LossReason::kReleased, s.clock->SteadyNow());
    s.changed.SignalAll();
  }
  // Whatever the reason: the loss may also have been found by the Evaluate above.
  s.stop.request_stop();
  return result;
}

std::optional<SteadyTime> Lease::RunWatchdogOnce() { return state_->Step(); }

namespace lease_internal {

absl::Status LostWhileRunning(const absl::Status& lost, const absl::Status& fn_status) {
  if (fn_status.ok()) return lost;
  return absl::FailedPreconditionError(
      absl::StrCat(lost.message(), " (and the function failed: ", fn_status.ToString(), ")"));
}

// What to acquire: the kind and its arguments.
struct AcquireSpec {
  LeaseKind kind = LeaseKind::kLock;
  std::vector<std::string> keys;  // one for kLock and kPermit
  int64_t limit = 0;              // kPermit
};

// A grant of any kind: the permit_id goes into lock_id.
struct AnyGrant {
  LeaseGrant grant;
  std::optional<int64_t> slot;
};

struct LeaseFactory {
  // One acquire request; `wait` > 0 only where the backend queues waiters.
  static absl::StatusOr<std::optional<AnyGrant>> TryOnce(Backend& backend, const AcquireSpec& spec,
                                                         const LeaseOptions& o, Duration wait) {
    switch (spec.kind) {
      case LeaseKind::kPermit: {
        absl::StatusOr<std::optional<PermitGrant>> p =
            backend.SemAcquire({spec.keys.front(), spec.limit, o.ttl, wait, o.owner});
        if (!p.ok()) return p.status();
        if (!p->has_value()) return std::optional<AnyGrant>();
        PermitGrant& g = **p;
        return std::optional<AnyGrant>(
            AnyGrant{LeaseGrant{std::move(g.permit_id), g.fence, g.ttl}, g.slot});
      }
      case LeaseKind::kMulti: {
        absl::StatusOr<std::optional<LeaseGrant>> g =
            backend.MultiAcquire({spec.keys, o.ttl, wait, o.owner});
        if (!g.ok()) return g.status();
        if (!g->has_value()) return std::optional<AnyGrant>();
        return std::optional<AnyGrant>(AnyGrant{std::move(**g), std::nullopt});
      }
      case LeaseKind::kLock:
        break;
    }
    absl::StatusOr<std::optional<LeaseGrant>> g =
        wait > Duration(0) ? backend.AcquireQueued({spec.keys.front(), o.ttl, wait, o.owner})
                           : backend.Acquire(spec.keys.front(), o.ttl, o.owner);
    if (!g.ok()) return g.status();
    if (!g->has_value()) return std::optional<AnyGrant>();
    return std::optional<AnyGrant>(AnyGrant{std::move(**g), std::nullopt});
  }

  static Lease Make(Backend& backend, AcquireSpec spec, AnyGrant grant, const LeaseOptions& o,
                    SteadyTime t_send, bool queued, const TestHooks& hooks) {
    auto state = std::make_unique<Lease::State>(&backend, spec.kind, std::move(spec.keys),
                                                grant.slot, std::move(grant.grant), o, t_send);
    Lease::State* s = state.get();
    // See AcquireLease: a grant that waited server-side is renewed once before it is handed out.
    if (queued && o.clock->SteadyNow() - t_send > RenewPeriod(o) / 4) {
      (void)s->Renew(Lease::State::RenewMode::kAfterQueuedGrant);
    }
    if (!hooks.manual_watchdog) {
      s->renewer = std::thread([s] { s->RenewerLoop(); });
      s->timer = std::thread([s] { s->TimerLoop(); });
    }
    return Lease(std::move(state));
  }

  static absl::StatusOr<std::optional<Lease>> Acquire(Backend& backend, AcquireSpec spec,
                                                      const LeaseOptions& options,
                                                      const TestHooks& hooks) {
    if (absl::Status s = ValidateLeaseOptions(options); !s.ok()) return s;
    if (spec.keys.empty()) return absl::InvalidArgumentError("no keys given");
    Clock* clock = options.clock;
    if (backend.queues_waiters() && options.wait > Duration(0)) {
      SteadyTime t_send = clock->SteadyNow();
      absl::StatusOr<std::optional<AnyGrant>> grant = TryOnce(backend, spec, options, options.wait);
      if (!grant.ok()) return grant.status();
      if (!grant->has_value()) return std::optional<Lease>();
      return std::optional<Lease>(Make(backend, std::move(spec), std::move(**grant), options,
                                       t_send, /*queued=*/true, hooks));
    }
    std::mt19937_64 rng(hooks.jitter_seed.has_value() ? *hooks.jitter_seed
                                                      : std::random_device{}());
    const SteadyTime give_up = clock->SteadyNow() + options.wait;
    Duration backoff = kFirstBackoff;
    while (true) {
      SteadyTime t_send = clock->SteadyNow();
      absl::StatusOr<std::optional<AnyGrant>> grant = TryOnce(backend, spec, options, Duration(0));
      if (!grant.ok()) return grant.status();
      if (grant->has_value()) {
        return std::optional<Lease>(Make(backend, std::move(spec), std::move(**grant), options,
                                         t_send, /*queued=*/false, hooks));
      }
      SteadyTime now = clock->SteadyNow();
      if (now >= give_up) return std::optional<Lease>();
      std::uniform_int_distribution<int64_t> jitter(backoff.count() / 2, backoff.count());
      Duration pause = std::min(Duration(jitter(rng)), give_up - now);
      if (hooks.sleep) {
        hooks.sleep(pause);
      } else {
        std::this_thread::sleep_for(pause);
      }
      backoff = std::min(backoff * 2, kMaxBackoff);
    }
  }
};

absl::StatusOr<std::optional<Lease>> AcquireLease(Backend& backend, std::string key,
                                                  const LeaseOptions& options,
                                                  const TestHooks& hooks) {
  AcquireSpec spec{LeaseKind::kLock, {std::move(key)}, 0};
  return LeaseFactory::Acquire(backend, std::move(spec), options, hooks);
}

absl::StatusOr<std::optional<Lease>> AcquirePermit(Backend& backend, std::string key, int64_t limit,
                                                   const LeaseOptions& options,
                                                   const TestHooks& hooks) {
  AcquireSpec spec{LeaseKind::kPermit, {std::move(key)}, limit};
  return LeaseFactory::Acquire(backend, std::move(spec), options, hooks);
}

absl::StatusOr<std::optional<Lease>> AcquireAll(Backend& backend, std::vector<std::string> keys,
                                                const LeaseOptions& options,
                                                const TestHooks& hooks) {
  AcquireSpec spec{LeaseKind::kMulti, std::move(keys), 0};
  return LeaseFactory::Acquire(backend, std::move(spec), options, hooks);
}

}  // namespace lease_internal

absl::StatusOr<std::optional<Lease>> AcquireLease(Backend& backend, std::string key,
                                                  const LeaseOptions& options) {
  return lease_internal::AcquireLease(backend, std::move(key), options, {});
}

absl::StatusOr<std::optional<Lease>> AcquirePermit(Backend& backend, std::string key, int64_t limit,
                                                   const LeaseOptions& options) {
  return lease_internal::AcquirePermit(backend, std::move(key), limit, options, {});
}

absl::StatusOr<std::optional<Lease>> AcquireAll(Backend& backend, std::vector<std::string> keys,
                                                const LeaseOptions& options) {
  return lease_internal::AcquireAll(backend, std::move(keys), options, {});
}

}  // namespace tollgate
