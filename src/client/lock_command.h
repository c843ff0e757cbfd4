// `tollgate lock KEY --ttl DURATION [--wait DURATION] [--server HOST:PORT | --backend URL]
//  [--owner LABEL] [--max-hold DURATION] [--kill-after DURATION] -- COMMAND [ARGS...]`
//
// Runs COMMAND while holding the lease on KEY (like flock(1), `consul lock`, `etcdctl lock`):
// acquires (waiting up to --wait: server-side with --server, retrying with backoff with
// --backend), starts COMMAND in its own process group with TOLLGATE_FENCE and TOLLGATE_LOCK_KEY in
// its environment, renews the lease while it runs, releases it when COMMAND exits, and exits with
// COMMAND's status (128 + the signal number if a signal ended it). SIGTERM, SIGINT and SIGHUP sent
// to `tollgate lock` are forwarded to COMMAND's process group.
//
// When the lease is lost (renewal rejected, --max-hold passed) or safe_until passes without a
// successful renewal (server unreachable, stopped, or `tollgate lock` itself stopped): SIGTERM to
// COMMAND's group at once, SIGKILL --kill-after later (default: at safe_until, so COMMAND is gone
// before the server can grant KEY to anyone else), exit 76. A reaper process (reaper.h) applies the
// same deadline, so this holds even while `tollgate lock` is stopped.
//
// Exit codes: COMMAND's status; 2 bad arguments (the message names the argument); 69 the server
// or backend could not be reached (EX_UNAVAILABLE); 75 not acquired within --wait (EX_TEMPFAIL);
// 76 lease lost while COMMAND ran; 77 the server refused the password (EX_NOPERM); 126 COMMAND
// could not be executed, 127 COMMAND not found (as a shell). The password comes from
// TOLLGATE_PASSWORD.
#ifndef TOLLGATE_CLIENT_LOCK_COMMAND_H_
#define TOLLGATE_CLIENT_LOCK_COMMAND_H_

#include <iosfwd>
#include <string>
#include <vector>

namespace tollgate {

inline constexpr int kLockExitUsage = 2;
inline constexpr int kLockExitUnavailable = 69;
inline constexpr int kLockExitNotAcquired = 75;
inline constexpr int kLockExitLost = 76;
inline constexpr int kLockExitNoPerm = 77;

// As given on the command line; RunLockCommand parses and checks them.
struct LockCommandArgs {
  std::string key;
  std::string ttl;  // required
  std::string wait = "0";
  std::string server;                // HOST:PORT; empty = 127.0.0.1:kDefaultPort
  std::string backend_url;           // instead of server: redis://, postgres://, etcd://
  std::string owner;                 // empty = none
  std::string max_hold;              // empty = unbounded
  std::string kill_after;            // empty = at safe_until
  std::vector<std::string> command;  // COMMAND [ARGS...], non-empty
};

// Runs `tollgate lock` (see the file comment) and returns the process's exit code. Messages go to
// `err`. REQUIRES: called from the main thread before other threads exist (it blocks signals).
int RunLockCommand(const LockCommandArgs& args, std::ostream& err);

}  // namespace tollgate

#endif  // TOLLGATE_CLIENT_LOCK_COMMAND_H_
