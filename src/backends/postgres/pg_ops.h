// What the synchronous and the pipelined PostgreSQL backends share: the connection parameters and
// session setup, the SQL of every operation (one call of a function `tollgate migrate` installs),
// its parameters, the decoding of its result, and the mapping of SQLSTATEs to statuses. Both
// backends build an Op here and only differ in how they get it to the server and back.
#ifndef TOLLGATE_BACKENDS_POSTGRES_PG_OPS_H_
#define TOLLGATE_BACKENDS_POSTGRES_PG_OPS_H_

#include <libpq-fe.h>

#include <array>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tollgate/clock.h"
#include "tollgate/fenced_register.h"
#include "tollgate/lease_manager.h"
#include "tollgate/limiter.h"

namespace tollgate::postgres {

struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using Result = std::unique_ptr<PGresult, ResultDeleter>;

// One statement parameter: text (or NULL), or binary bytes (bytea).
struct Param {
  std::string value;
  bool binary = false;
  bool null = false;
};

// The parameters of one statement in the form PQsendQueryParams / PQsendQueryPrepared take. Points
// into `params`, which must outlive it.
class ParamArrays {
 public:
  explicit ParamArrays(const std::vector<Param>& params);
  int count() const { return static_cast<int>(values_.size()); }
  const char* const* values() const { return values_.data(); }
  const int* lengths() const { return lengths_.data(); }
  const int* formats() const { return formats_.data(); }

 private:
  std::vector<const char*> values_;
  std::vector<int> lengths_, formats_;
};

// A libpq message without its trailing newlines and spaces ("" for null).
std::string Trimmed(const char* msg);

// InvalidArgument ("bad PostgreSQL conninfo: ...") unless libpq can parse `conninfo`.
absl::Status CheckConninfo(const std::string& conninfo);

// The keywords and values for PQconnectStartParams(keys(), values(), /*expand_dbname=*/1):
// `conninfo` (a URL or key=value string), then connect_timeout (whole seconds, at least 2),
// options = "-c statement_timeout=<timeout in ms>" (the server abandons work the client has given
// up on; replaces any options in conninfo) and application_name = tollgate. Not copyable: it points
// into itself.
class ConnectParams {
 public:
  ConnectParams(const std::string& conninfo, Duration timeout);
  ConnectParams(const ConnectParams&) = delete;
  ConnectParams& operator=(const ConnectParams&) = delete;
  const char* const* keys() const { return keys_.data(); }
  const char* const* values() const { return values_.data(); }

 private:
  const std::string conninfo_, connect_timeout_, options_;
  std::array<const char*, 5> keys_, values_;
};

// Run once on every new session, in this order. Values are read back as hex (Unhex): the SET makes
// that the session's format whatever the server, database or role default says.
inline constexpr char kSessionSetupSql[] = "SET bytea_output = hex";
inline constexpr char kSchemaVersionSql[] = "SELECT version FROM tollgate_schema";
// The verdict on the schema check: `query` is kSchemaVersionSql's outcome (its result, or its
// status as MapError gives it). OK when the schema is at least kPostgresSchemaVersion;
// FailedPrecondition ("... run tollgate migrate") when it is missing or older; else query's error.
absl::Status CheckSchemaVersion(const absl::StatusOr<const PGresult*>& query);

// What an error result (PGRES_FATAL_ERROR / PGRES_BAD_RESPONSE) means: Unavailable for connection
// trouble, shutdown, too many connections, statement timeout, a read-only (demoted) server
// (drop_connection: the session is unusable or points at the wrong server) and for transient
// conflicts and overload (40001, 40P01, 55P03, 53100, 53200: the session is kept; each operation is
// its own transaction, so nothing of it was applied); InvalidArgument for a fence never issued
// (TGF02); NotFound for an undefined table or function (42P01, 42883: schema missing); Internal for
// any other SQL error. Messages carry the server's primary message and the SQLSTATE.
struct ErrorVerdict {
  absl::Status status;
  bool drop_connection = false;
};
ErrorVerdict MapError(const PGresult* error);

// Schema objects missing after connecting (dropped behind our back): NotFound becomes
// FailedPrecondition with "; run tollgate migrate" appended. Other statuses pass unchanged.
absl::Status SchemaHint(absl::Status st);

// The statements of the operations: each calls one function of the schema.
enum class Statement : int {
  kAcquire,
  kRelease,
  kExtend,
  kInfo,
  kFencedSet,
  kFencedGet,
  kCheckLayers,
  kSemAcquire,
  kSemRelease,
  kSemExtend,
  kSemInfo,
  kMultiAcquire,
  kMultiRelease,
  kMultiExtend,
  kLookup,
};
inline constexpr int kStatementCount = 15;
// The statement's SQL ($1... parameters) and the name it is prepared under on a session.
const char* StatementSql(Statement s);
const char* StatementName(Statement s);

// One operation: either its answer, known without a round trip (bad input, or a lock id tollgate
// never issues), or the statement to run with its parameters and the decoder of the statement's
// (successful, text-format) result. An error result is not for `decode`: MapError + SchemaHint.
template <class T>
struct Op {
  std::optional<absl::StatusOr<T>> immediate;
  Statement statement = Statement::kAcquire;
  std::vector<Param> params;
  absl::AnyInvocable<absl::StatusOr<T>(const PGresult* r)> decode;
};

// The operations, with the contracts and messages of Backend's members of the same name. Inputs
// are validated here (a bad one yields `immediate`); arguments are copied into the Op.
// Release and FencedSet have no value: std::monostate.
Op<std::optional<LeaseGrant>> AcquireOp(std::string_view key, Duration ttl,
                                        std::optional<std::string> owner,
                                        WallTime now = RealClock()->WallNow());
Op<std::monostate> ReleaseOp(std::string_view key, std::string_view lock_id);
Op<Duration> ExtendOp(std::string_view key, std::string_view lock_id, Duration ttl);
// Acquire and MultiAcquire record `now` (the tollgate process's wall clock, read when the Op is
// built) as the grant's acquired_at, in the grant and with the lease. Info reports the holder's
// lock_id and acquired_at (nullopt for a lease granted before schema version 4).
Op<std::optional<LeaseInfo>> InfoOp(std::string_view key);
// Backend::LookupById: the live single-key lease held by lock_id, verified on the lease's own row.
// InvalidArgument "lock_id must be 32 lowercase hex characters" without a round trip for a
// malformed id. `waiters` is 0.
Op<std::optional<LeaseById>> LookupOp(std::string_view lock_id);
Op<std::monostate> FencedSetOp(std::string_view resource, uint64_t fence, std::string_view value);
Op<std::optional<FencedValue>> FencedGetOp(std::string_view resource);
Op<Decision> ThrottleOp(std::string_view key, const BucketParams& params, Decimal cost);
Op<PolicyDecision> CheckLayersOp(std::span<const LayerCheck> layers, Decimal cost);
// Semaphores and multi-key locks. Inputs are checked with ValidateSemAcquireRequest /
// ValidateMultiAcquireRequest / ValidateKeyList (and ValidateKey, ValidateTtl); req.wait is
// validated but not acted on (waiting is the caller's: WaitQueue). A permit id or lock id that
// tollgate could not have issued holds nothing: FailedPrecondition (MultiRelease: 0) without a
// round trip. SemAcquire: a limit different from the current holders' is InvalidArgument
// `limit <req.limit> differs from the limit <L> of the current holders of semaphore "<key>"`
// (key cut to 64 bytes). SemInfo's `waiters` is 0.
Op<std::optional<PermitGrant>> SemAcquireOp(const SemAcquireRequest& req);
Op<std::monostate> SemReleaseOp(std::string_view key, std::string_view permit_id);
Op<Duration> SemExtendOp(std::string_view key, std::string_view permit_id, Duration ttl);
Op<std::optional<SemaphoreInfo>> SemInfoOp(std::string_view key);
Op<std::optional<LeaseGrant>> MultiAcquireOp(const MultiAcquireRequest& req,
                                             WallTime now = RealClock()->WallNow());
Op<size_t> MultiReleaseOp(std::span<const std::string> keys, std::string_view lock_id);
Op<Duration> MultiExtendOp(std::span<const std::string> keys, std::string_view lock_id,
                           Duration ttl);

// A libpq connection used with the asynchronous API and poll(), so every wait has a deadline: the
// synchronous backend's connection, and the one-off connections of MigratePostgres and of the
// pipelined backend's factory. Not thread-safe: the owner serializes calls.
class Connection {
 public:
  // `check_schema`: Connect also runs the schema check (CheckSchemaVersion).
  Connection(std::string conninfo, Duration timeout, bool check_schema);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // (Re)connects: ConnectParams, non-blocking mode, notices discarded, kSessionSetupSql, then the
  // schema check if asked for; all within the timeout. Unavailable if the server cannot be reached
  // or the time runs out; FailedPrecondition from the schema check.
  absl::Status Connect();
  // Runs one parameterised statement (connecting first if needed). Text results. Returns the last
  // result or the first error (MapError's status; Unavailable "PostgreSQL connection lost: ..." or
  // "PostgreSQL call timed out" for connection trouble). The connection is dropped (and re-made
  // by the next call) when it is lost, timed out, or MapError says drop_connection.
  absl::StatusOr<Result> Exec(const char* sql, const std::vector<Param>& params);
  // Runs a script of several statements (simple query protocol), as Exec.
  absl::StatusOr<Result> ExecScript(const std::string& sql);
  // Hands over the connected session (nullptr if not connected); this object is disconnected then.
  PGconn* Release();

 private:
  void Drop();
  absl::Status Lost(std::string_view what);
  absl::Status Connect(SteadyTime deadline);
  absl::StatusOr<Result> RoundTrip(SteadyTime deadline, absl::AnyInvocable<int(PGconn*)> send);

  const std::string conninfo_;
  const Duration timeout_;
  const bool check_schema_;
  PGconn* conn_ = nullptr;
};

}  // namespace tollgate::postgres

#endif  // TOLLGATE_BACKENDS_POSTGRES_PG_OPS_H_
