#include "client/lock_command.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <ostream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/duration.h"
#include "client/reaper.h"
#include "core/absl_compat.h"
#include "tollgate/async_backend.h"
#include "tollgate/client.h"
#include "tollgate/lease_holder.h"
#include "tollgate/server.h"

extern char** environ;

namespace tollgate {
namespace {

using std::chrono::milliseconds;

constexpr Duration kMainLoopPeriod = milliseconds(20);

struct Parsed {
  LeaseOptions lease;
  ClientOptions client;
  std::optional<Duration> kill_after;
};

int Usage(std::ostream& err, const absl::Status& s) {
  err << "tollgate lock: " << s.message() << "\nRun with --help for more information.\n";
  return kLockExitUsage;
}

// ValidateLeaseOptions' message, prefixed with the flag it is about.
std::string FlagMessage(std::string_view message) {
  for (auto [field, flag] : {std::pair<std::string_view, std::string_view>{"ttl", "--ttl"},
                             {"wait", "--wait"},
                             {"max_hold", "--max-hold"}}) {
    if (message.substr(0, field.size() + 1) == absl::StrCat(AV(field), " ")) {
      return absl::StrCat(AV(flag), ": ", AV(message));
    }
  }
  // The guard (100 ms) and the renewal period (ttl / 3) follow from --ttl.
  return absl::StrCat("--ttl: too short for the 100 ms guard and renewal (", AV(message), ")");
}

absl::StatusOr<Parsed> Parse(const LockCommandArgs& a) {
  Parsed p;
  if (absl::Status s = ValidateKey(a.key, "KEY"); !s.ok()) return s;
  if (a.command.empty() || a.command.front().empty()) {
    return absl::InvalidArgumentError("COMMAND: missing (give it after --)");
  }
  absl::StatusOr<Duration> ttl = client::ParseDuration(a.ttl, "--ttl");
  if (!ttl.ok()) return ttl.status();
  absl::StatusOr<Duration> wait = client::ParseDuration(a.wait, "--wait");
  if (!wait.ok()) return wait.status();
  p.lease.ttl = *ttl;
  p.lease.wait = *wait;
  if (!a.owner.empty()) p.lease.owner = a.owner;
  if (!a.max_hold.empty()) {
    absl::StatusOr<Duration> d = client::ParseDuration(a.max_hold, "--max-hold");
    if (!d.ok()) return d.status();
    if (*d == Duration(0)) return absl::InvalidArgumentError("--max-hold: must be > 0");
    p.lease.max_hold = *d;
  }
  if (!a.kill_after.empty()) {
    absl::StatusOr<Duration> d = client::ParseDuration(a.kill_after, "--kill-after");
    if (!d.ok()) return d.status();
    p.kill_after = *d;
  }
  if (absl::Status s = ValidateLeaseOptions(p.lease); !s.ok()) {
    return absl::InvalidArgumentError(FlagMessage(SV(s.message())));
  }
  if (!a.server.empty()) {
    size_t colon = a.server.rfind(':');
    int port = 0;
    if (colon == std::string::npos || colon == 0 ||
        !absl::SimpleAtoi(AV(std::string_view(a.server).substr(colon + 1)), &port) || port < 1 ||
        port > 65535) {
      return absl::InvalidArgumentError(absl::StrCat("--server: \"", a.server.substr(0, 200),
                                                     "\" is not HOST:PORT (port in [1, 65535])"));
    }
    p.client.host = a.server.substr(0, colon);
    p.client.port = port;
  }
  if (const char* pw = std::getenv("TOLLGATE_PASSWORD"); pw != nullptr) p.client.password = pw;
  // Each request must fail well within the lease, so a stuck renewal is retried in time.
  p.client.io_timeout = std::clamp<Duration>(*ttl / 4, milliseconds(100), milliseconds(2000));
  p.client.pool_size = 2;  // the renewer and the main thread
  return p;
}

// COMMAND's path as execve needs it: with a '/', as is; else the first executable in $PATH.
std::optional<std::string> FindCommand(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  const char* path = std::getenv("PATH");
  std::string_view dirs = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
  while (true) {
    size_t colon = dirs.find(':');
    std::string dir(dirs.substr(0, colon));
    std::string candidate = (dir.empty() ? std::string(".") : dir) + "/" + name;
    struct stat st;
    if (stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
    if (colon == std::string_view::npos) return std::nullopt;
    dirs.remove_prefix(colon + 1);
  }
}

// The environment with TOLLGATE_FENCE and TOLLGATE_LOCK_KEY set (replacing inherited ones).
std::vector<std::string> CommandEnv(const Lease& lease) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view v(*e);
    if (v.rfind("TOLLGATE_FENCE=", 0) == 0 || v.rfind("TOLLGATE_LOCK_KEY=", 0) == 0) continue;
    env.emplace_back(v);
  }
  env.push_back(absl::StrCat("TOLLGATE_FENCE=", lease.fence()));
  env.push_back("TOLLGATE_LOCK_KEY=" + lease.key());
  return env;
}

std::vector<char*> Pointers(std::vector<std::string>& v) {
  std::vector<char*> out;
  for (std::string& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

int ExitCodeOf(const absl::Status& s) {
  if (absl::IsInvalidArgument(s)) return kLockExitUsage;
  if (absl::IsUnauthenticated(s) || absl::IsPermissionDenied(s)) return kLockExitNoPerm;
  return kLockExitUnavailable;
}

}  // namespace

int RunLockCommand(const LockCommandArgs& args, std::ostream& err) {
  absl::StatusOr<Parsed> parsed = Parse(args);
  if (!parsed.ok()) return Usage(err, parsed.status());
  std::optional<std::string> path = FindCommand(args.command.front());
  if (!path.has_value()) {
    err << "tollgate lock: " << args.command.front() << ": command not found\n";
    return 127;
  }

  // Signals are taken with sigtimedwait on the main thread: block them before any thread exists
  // (the lease's watchdog threads inherit the mask).
  sigset_t signals;
  sigemptyset(&signals);
  for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGHUP}) sigaddset(&signals, s);
  sigset_t old_mask;
  pthread_sigmask(SIG_BLOCK, &signals, &old_mask);

  std::unique_ptr<Backend> opened;
  std::optional<Client> client;
  if (!args.backend_url.empty()) {
    absl::StatusOr<std::unique_ptr<Backend>> b = OpenBackend(args.backend_url);
    if (!b.ok()) {
      err << "tollgate lock: --backend: " << b.status().message() << "\n";
      return ExitCodeOf(b.status());
    }
    opened = std::move(*b);
    client.emplace(*opened);
  } else {
    absl::StatusOr<Client> c = Client::Connect(parsed->client);
    if (!c.ok()) {
      err << "tollgate lock: " << c.status().message() << "\n";
      return ExitCodeOf(c.status());
    }
    client.emplace(std::move(*c));
  }

  absl::StatusOr<std::optional<Lease>> acquired = client->Acquire(args.key, parsed->lease);
  if (!acquired.ok()) {
    err << "tollgate lock: acquiring \"" << args.key << "\": " << acquired.status().message()
        << "\n";
    return ExitCodeOf(acquired.status());
  }
  if (!acquired->has_value()) {
    err << "tollgate lock: \"" << args.key << "\" is held by someone else; not acquired within "
        << "--wait " << args.wait << "\n";
    return kLockExitNotAcquired;
  }
  Lease& lease = **acquired;

  client::KillPlan* plan = client::NewSharedKillPlan(parsed->kill_after);
  if (plan == nullptr) {
    err << "tollgate lock: mmap: " << std::strerror(errno) << "\n";
    (void)lease.release();
    return 71;  // EX_OSERR
  }
  plan->safe_until_ns.store(client::SteadyNs(lease.safe_until()));
  const pid_t reaper = client::StartReaper(plan);
  if (reaper < 0) {
    err << "tollgate lock: fork: " << std::strerror(errno) << "\n";
    (void)lease.release();
    return 71;
  }

  std::vector<std::string> argv_s = args.command;
  std::vector<std::string> env_s = CommandEnv(lease);
  std::vector<char*> argv = Pointers(argv_s);
  std::vector<char*> envp = Pointers(env_s);
  const pid_t child = fork();
  if (child == 0) {
    setpgid(0, 0);
    plan->pgid.store(getpid());
    pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
    execve(path->c_str(), argv.data(), envp.data());
    const int code = errno == ENOENT ? 127 : 126;
    const char* msg = "tollgate lock: cannot execute COMMAND\n";
    (void)!write(2, msg, std::strlen(msg));
    _exit(code);
  }
  if (child < 0) {
    err << "tollgate lock: fork: " << std::strerror(errno) << "\n";
    plan->done.store(1);
    (void)lease.release();
    return 71;
  }
  setpgid(child, child);  // also here: no window in which signals would miss the group
  plan->pgid.store(child);

  int status = 0;
  std::optional<LossReason> lost;
  while (true) {
    pid_t w = waitpid(child, &status, WNOHANG);
    if (w == child) break;
    // safe_until only ever moves forward, and only after a successful renewal.
    plan->safe_until_ns.store(client::SteadyNs(lease.safe_until()));
    std::optional<LossReason> now_lost = lease.lost();
    if (now_lost.has_value() && !lost.has_value()) {
      lost = now_lost;
      err << "tollgate lock: " << lease.check().message() << "; stopping COMMAND (process group "
          << child << ")\n";
    }
    const int64_t now = client::SteadyNowNs();
    client::Step(*plan, now, lost.has_value());
    int64_t nap = std::min<int64_t>(kMainLoopPeriod.count(), client::NextDeadlineNs(*plan) - now);
    nap = std::max<int64_t>(nap, 100'000);
    timespec ts{static_cast<time_t>(nap / 1'000'000'000), static_cast<long>(nap % 1'000'000'000)};
    int sig = sigtimedwait(&signals, nullptr, &ts);
    if (sig == SIGTERM || sig == SIGINT || sig == SIGHUP) kill(-child, sig);
  }
  // Was the lease still safe when COMMAND ended? If not, its last actions may have run unguarded.
  if (!lost.has_value()) lost = lease.lost();
  plan->done.store(1);
  waitpid(reaper, nullptr, 0);

  if (lost.has_value()) {
    err << "tollgate lock: " << lease.check().message() << "; exit " << kLockExitLost << "\n";
    err.flush();
    // Exit without waiting for an in-flight renewal or a release to a server that may not answer.
    std::_Exit(kLockExitLost);
  }
  if (absl::Status s = lease.release(); !s.ok()) {
    err << "tollgate lock: releasing \"" << args.key << "\": " << s.message() << "\n";
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

}  // namespace tollgate
