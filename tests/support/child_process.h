// Helpers for tests that run a server binary (redis-server, etcd) as a child process.
#ifndef TOLLGATE_TESTS_SUPPORT_CHILD_PROCESS_H_
#define TOLLGATE_TESTS_SUPPORT_CHILD_PROCESS_H_

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace tollgate::testing {

// A loopback TCP port the kernel considers free right now (0 if none could be found). Another
// process may take it before the caller binds it: callers retry on a failed start.
int FreeLoopbackPort();

// Starts args[0] (looked up in PATH) with stdin/stdout/stderr on /dev/null. Returns the child's
// pid, or -1 if fork failed.
pid_t SpawnQuiet(std::vector<std::string> args);

// Polls ready() every `poll` until it returns true (-> true), the child exits (-> false, *pid set
// to -1) or `timeout` passes (-> false, the child SIGKILLed and reaped, *pid set to -1).
bool WaitUntilReady(pid_t* pid, std::chrono::milliseconds timeout, std::chrono::milliseconds poll,
                    const std::function<bool()>& ready);

// SIGTERM, then waits up to `grace` for the child to exit, then SIGKILL; reaps it and sets *pid
// to -1. Does nothing if *pid <= 0.
void StopChild(pid_t* pid, std::chrono::milliseconds grace = std::chrono::seconds(10));

}  // namespace tollgate::testing

#endif  // TOLLGATE_TESTS_SUPPORT_CHILD_PROCESS_H_
