// The PostgreSQL backend: leases, semaphores, multi-key locks, fenced registers and token buckets
// kept in tables of a PostgreSQL (>= 14) database, manipulated only through SQL functions that
// `tollgate migrate` (MigratePostgres) installs. The server's now() is the only time authority for
// expiry, so clients with skewed clocks agree; every operation is one round trip (one function
// call). A lease's acquired_at is the one exception: the tollgate process's wall clock at the
// grant, stored with the lease (LeaseInfo::acquired_at).
//
// Also installed: tollgate_fence_check(resource text, fence bigint), for fencing the user's own
// tables inside their own transactions (see docs/fencing-your-data.md).
#ifndef TOLLGATE_POSTGRES_BACKEND_H_
#define TOLLGATE_POSTGRES_BACKEND_H_

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tollgate/async_backend.h"
#include "tollgate/backend.h"
#include "tollgate/clock.h"

namespace tollgate {

// The schema version this build installs and requires.
// 2: FencedSet refuses fences never issued. 3: semaphores (tollgate_permits) and multi-key locks.
// 4: acquisition times of leases and lookup by lock_id (LookupById).
inline constexpr int kPostgresSchemaVersion = 4;

// Connects to the database named by `conninfo` (a postgres:// URL or a libpq "key=value" string)
// and checks the installed schema. One connection per Backend, shared by its callers under a
// mutex; a lost connection makes the current call fail with Unavailable and is re-established by
// the next call. Every call (connecting included) gives up after `timeout` with Unavailable.
// The connection sets statement_timeout = `timeout` (through libpq's `options`, replacing any
// `options` in conninfo) so the server, too, abandons work the client gave up on.
// Errors: Unavailable if the server cannot be reached; FailedPrecondition ("... run tollgate
// migrate") if the schema is missing or older than kPostgresSchemaVersion; InvalidArgument for a
// malformed conninfo or a non-positive timeout.
[[nodiscard]] absl::StatusOr<std::unique_ptr<Backend>> NewPostgresBackend(
    const std::string& conninfo, Duration timeout = std::chrono::seconds(2));

// The most operations one connection of an asynchronous PostgreSQL backend holds (sent and not yet
// answered, or waiting to be sent); one more completes at once with Unavailable "backend pipeline
// full (1024 operations in flight)".
inline constexpr size_t kPostgresMaxInFlight = 1024;
// The most connections NewAsyncPostgresBackend opens.
inline constexpr int kPostgresMaxConnections = 64;

// The asynchronous PostgreSQL backend: `connections` non-blocking connections in libpq pipeline
// mode, driven by `loop` (which must outlive it; call this on the loop's thread or before the loop
// runs). An operation goes to the connection of its key (resource; the first layer's key for
// CheckLayers), so operations on one key keep their order; with one connection, all of them do.
// The operations submitted on a connection during one pass of the loop are written together at the
// pass's end; each is its own transaction (its statement, prepared on the session, then a sync
// point), so an error fails that operation only; replies arrive, and operations complete, in
// submission order. One connection runs one server process: use several when the server's CPU,
// not the round trip, bounds the rate (Throttle and CheckLayers are PL/pgSQL).
// `conninfo`, `timeout` and the errors of this call are those of NewPostgresBackend (every
// connection is made and the schema checked here, blocking for at most `timeout` each);
// InvalidArgument for `connections` outside [1, kPostgresMaxConnections].
// Every operation has a deadline of `timeout`: when the oldest one on a connection is overdue, or
// the connection fails (or a connect, or a new session's setup, fails), the connection is closed
// and every operation pending on it completes with Unavailable naming the server and the cause;
// none is retried, as it may have reached the server. The next operation reconnects without
// blocking the loop (only a host name lookup, if any, blocks): at once after a working connection
// broke, else after a backoff (50 ms doubling to 1 s) during which operations complete at once with
// the last error. An error after which the synchronous backend would drop its connection (a
// read-only server, admin shutdown, statement timeout...) fails its own operation; the operations
// sent after it complete normally, then the connection is replaced. Every session gets SET
// bytea_output = hex, the schema check and the prepared statements.
// LOCK.ACQUIRE, SEM.ACQUIRE and LOCK.MACQUIRE with WAIT poll on the loop (WaitQueue). Shutdown()
// refuses later calls with Unavailable "backend is shutting down"; destroying the backend completes
// every pending operation with Unavailable.
[[nodiscard]] absl::StatusOr<std::unique_ptr<AsyncBackend>> NewAsyncPostgresBackend(
    const std::string& conninfo, EventLoop& loop, Duration timeout = std::chrono::seconds(2),
    int connections = 1);

// Creates or upgrades tollgate's tables, sequence and functions in one transaction (serialized
// against concurrent migrations by an advisory lock) and records kPostgresSchemaVersion.
// Idempotent. Unavailable if the server cannot be reached; Internal for an SQL error (e.g. missing
// privileges), with the server's message.
[[nodiscard]] absl::Status MigratePostgres(const std::string& conninfo);

}  // namespace tollgate

#endif  // TOLLGATE_POSTGRES_BACKEND_H_
