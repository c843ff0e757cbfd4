// The PostgreSQL backend: leases, fenced registers and token buckets kept in tables of a
// PostgreSQL (>= 14) database, manipulated only through SQL functions that `tollgate migrate`
// (MigratePostgres) installs. The server's now() is the only time authority, so clients with
// skewed clocks agree; every operation is one round trip (one function call).
//
// Also installed: tollgate_fence_check(resource text, fence bigint), for fencing the user's own
// tables inside their own transactions (see docs/fencing-your-data.md).
#ifndef TOLLGATE_POSTGRES_BACKEND_H_
#define TOLLGATE_POSTGRES_BACKEND_H_

#include <chrono>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tollgate/backend.h"
#include "tollgate/clock.h"

namespace tollgate {

// The schema version this build installs and requires.
inline constexpr int kPostgresSchemaVersion = 2;  // 2: FencedSet refuses fences never issued

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

// Creates or upgrades tollgate's tables, sequence and functions in one transaction (serialized
// against concurrent migrations by an advisory lock) and records kPostgresSchemaVersion.
// Idempotent. Unavailable if the server cannot be reached; Internal for an SQL error (e.g. missing
// privileges), with the server's message.
[[nodiscard]] absl::Status MigratePostgres(const std::string& conninfo);

}  // namespace tollgate

#endif  // TOLLGATE_POSTGRES_BACKEND_H_
