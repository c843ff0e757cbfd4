#include "client/reaper.h"

#include <signal.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <new>

namespace tollgate::client {
namespace {

constexpr int64_t kPollNs = 5'000'000;  // the reaper's period (5 ms)

}  // namespace

int64_t SteadyNs(SteadyTime t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}
int64_t SteadyNowNs() { return SteadyNs(std::chrono::steady_clock::now()); }

KillPlan* NewSharedKillPlan(std::optional<Duration> kill_after) {
  void* p =
      mmap(nullptr, sizeof(KillPlan), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  KillPlan* plan = new (p) KillPlan();
  if (kill_after.has_value()) plan->kill_after_ns = kill_after->count();
  return plan;
}

void Step(KillPlan& plan, int64_t now, bool lost) {
  if (plan.done.load() != 0) return;
  const pid_t pg = plan.pgid.load();
  if (pg <= 0) return;
  if (plan.term_at_ns.load() == 0 && (lost || now >= plan.safe_until_ns.load())) {
    int64_t expected = 0;
    if (plan.term_at_ns.compare_exchange_strong(expected, now)) {
      plan.kill_at_ns.store(plan.kill_after_ns >= 0 ? now + plan.kill_after_ns
                                                    : plan.safe_until_ns.load());
      kill(-pg, SIGTERM);
    }
  }
  if (plan.term_at_ns.load() != 0 && now >= plan.kill_at_ns.load()) {
    int32_t expected = 0;
    if (plan.killed.compare_exchange_strong(expected, 1)) kill(-pg, SIGKILL);
  }
}

int64_t NextDeadlineNs(const KillPlan& plan) {
  if (plan.killed.load() != 0) return INT64_MAX;
  if (plan.term_at_ns.load() != 0) return plan.kill_at_ns.load();
  return plan.safe_until_ns.load();
}

pid_t StartReaper(KillPlan* plan) {
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid != 0) return pid;  // the lock process (or -1)
  struct sigaction ignore = {};
  ignore.sa_handler = SIG_IGN;
  sigaction(SIGINT, &ignore, nullptr);
  sigaction(SIGTERM, &ignore, nullptr);
  sigaction(SIGHUP, &ignore, nullptr);
  while (plan->done.load() == 0 && plan->killed.load() == 0) {
    if (plan->pgid.load() == 0 && getppid() != parent) break;  // nothing started, nobody left
    int64_t now = SteadyNowNs();
    Step(*plan, now, /*lost=*/false);
    int64_t nap = std::clamp<int64_t>(NextDeadlineNs(*plan) - now, 0, kPollNs);
    if (nap == 0) nap = 100'000;
    timespec ts{static_cast<time_t>(nap / 1'000'000'000), static_cast<long>(nap % 1'000'000'000)};
    nanosleep(&ts, nullptr);
  }
  _exit(0);
}

}  // namespace tollgate::client
