// The kill plan of `tollgate lock`: when the command's process group gets SIGTERM and SIGKILL.
//
// It lives in MAP_SHARED memory between the `tollgate lock` process and a small reaper process
// forked from it, and both apply it (Step). The lock process moves safe_until forward after each
// successful renewal and reports a loss as soon as it sees one; the reaper only watches the clock.
// So the command is killed by safe_until even when the lock process itself is stopped (SIGSTOP, a
// debugger, swapped out) or killed: nothing it fails to do can move safe_until forward.
//
// Rule: once the lease is lost or safe_until has passed, SIGTERM to the group at once; SIGKILL at
// kill_after after the SIGTERM, or, without kill_after, at the safe_until in force at the SIGTERM
// (for a loss at safe_until: at once).
#ifndef TOLLGATE_CLIENT_REAPER_H_
#define TOLLGATE_CLIENT_REAPER_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <optional>

#include "tollgate/clock.h"

namespace tollgate::client {

// Steady-clock nanoseconds (the same clock in both processes: CLOCK_MONOTONIC).
int64_t SteadyNs(SteadyTime t);
int64_t SteadyNowNs();

struct KillPlan {
  std::atomic<int64_t> safe_until_ns{0};       // moved forward by the lock process only
  std::atomic<int32_t> pgid{0};                // the command's process group; 0 = not started
  std::atomic<int64_t> term_at_ns{0};          // when the SIGTERM was sent; 0 = not yet
  std::atomic<int64_t> kill_at_ns{INT64_MAX};  // when SIGKILL is due (set with the SIGTERM)
  std::atomic<int32_t> killed{0};              // SIGKILL sent
  std::atomic<int32_t> done{0};                // the command was reaped: nothing more to do
  int64_t kill_after_ns = -1;                  // -1 = at safe_until
};
static_assert(std::atomic<int64_t>::is_always_lock_free &&
              std::atomic<int32_t>::is_always_lock_free);

// A KillPlan in anonymous MAP_SHARED memory (inherited by fork). Never unmapped (the process exits
// soon after). nullptr if mmap failed.
KillPlan* NewSharedKillPlan(std::optional<Duration> kill_after);

// Applies the rule at `now_ns`: `lost` = the lock process knows the lease is lost. Signals the
// group when due (each signal at most once between both processes). Async-signal-safe.
void Step(KillPlan& plan, int64_t now_ns, bool lost);

// The earliest time Step next has something to do, in steady ns (INT64_MAX: nothing scheduled).
int64_t NextDeadlineNs(const KillPlan& plan);

// Forks the reaper: it ignores SIGINT, SIGTERM and SIGHUP (they are forwarded to the command by
// the lock process; a terminal's ^C must not take the reaper down), runs Step every few ms until
// done, the SIGKILL was sent, or the lock process is gone before the command started, then exits.
// Uses only async-signal-safe calls (the caller has threads). Returns the reaper's pid, or -1.
pid_t StartReaper(KillPlan* plan);

}  // namespace tollgate::client

#endif  // TOLLGATE_CLIENT_REAPER_H_
