#include "backends/postgres/pg_ops.h"

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/absl_compat.h"
#include "core/lock_id.h"
#include "tollgate/postgres_backend.h"

namespace tollgate::postgres {
namespace {

using SteadyClock = std::chrono::steady_clock;

Param Text(std::string v) { return {std::move(v), false, false}; }
Param Bytes(std::string_view v) { return {std::string(v), true, false}; }
Param Null() { return {std::string(), false, true}; }

// A wall time as the Unix nanoseconds the schema stores (acquired_at_ns).
Param UnixNanos(WallTime t) {
  return Text(std::to_string(
      std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count()));
}

// SQLSTATEs that mean the connection is unusable or pointed at the wrong server: the request
// fails Unavailable and the connection is dropped (the next request reconnects). 25006
// (read-only transaction) is what a primary demoted by a failover answers: a new connection may
// reach the new primary.
bool IsUnavailableState(std::string_view state) {
  return state.substr(0, 2) == "08" || state == "57P01" || state == "57P02" || state == "57P03" ||
         state == "53300" || state == "57014" || state == "25006";
}

// SQLSTATEs of a transient overload or conflict on a healthy connection: the request fails
// Unavailable (retry later) and the connection is kept. Serialization failure, deadlock, lock
// timeout, disk full, out of memory. Each operation is its own transaction, so nothing of it was
// applied.
bool IsTransientState(std::string_view state) {
  return state == "40001" || state == "40P01" || state == "55P03" || state == "53100" ||
         state == "53200";
}

bool IsNull(const PGresult* r, int row, int col) { return PQgetisnull(r, row, col) != 0; }
std::string_view Value(const PGresult* r, int row, int col) {
  return std::string_view(PQgetvalue(r, row, col), static_cast<size_t>(PQgetlength(r, row, col)));
}

// A non-negative integer column, saturating at `max`.
uint64_t U64(const PGresult* r, int row, int col, uint64_t max) {
  std::string_view v = Value(r, row, col);
  if (!v.empty() && v[0] == '-') return 0;
  uint64_t out = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec == std::errc::result_out_of_range) return max;
  return std::min(out, max);
}
Duration Nanos(const PGresult* r, int row, int col) {
  return Duration(static_cast<int64_t>(
      U64(r, row, col, static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))));
}

// A bigint column of Unix nanoseconds as a wall time; nullopt for NULL (a lease from before schema
// version 4) or a value that is not a number.
std::optional<WallTime> WallNanos(const PGresult* r, int row, int col) {
  if (IsNull(r, row, col)) return std::nullopt;
  std::string_view v = Value(r, row, col);
  int64_t ns = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), ns);
  if (ec != std::errc() || p != v.data() + v.size()) return std::nullopt;
  return WallTime(std::chrono::duration_cast<WallTime::duration>(std::chrono::nanoseconds(ns)));
}

// Decodes bytea text output ("\x" followed by hex).
std::string Unhex(std::string_view v) {
  if (v.size() < 2 || v[0] != '\\' || v[1] != 'x') return std::string(v);
  auto nib = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return c - 'A' + 10;
  };
  std::string out;
  out.reserve((v.size() - 2) / 2);
  for (size_t i = 2; i + 1 < v.size(); i += 2) {
    out.push_back(static_cast<char>((nib(v[i]) << 4) | nib(v[i + 1])));
  }
  return out;
}

// An element of a bytea[] array literal: "\\x<hex>".
void AppendByteaElement(std::string_view bytes, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->append("\"\\\\x");
  for (unsigned char c : bytes) {
    out->push_back(kHex[c >> 4]);
    out->push_back(kHex[c & 15]);
  }
  out->push_back('"');
}

absl::Status ValidateCost(Decimal cost) {
  if (cost.nanos == 0 || kMaxCost < cost) {
    return absl::InvalidArgumentError(
        absl::StrCat("cost must be a positive decimal number, at most ", kMaxCost.ToString(),
                     ", got ", cost.ToString()));
  }
  return absl::OkStatus();
}

// A lock id tollgate could have issued: 32 lowercase hex characters. Anything else cannot hold a
// lease, so it is refused without a round trip.
bool LooksLikeLockId(std::string_view id) { return core::IsLockIdFormat(id); }

absl::Status NotHeld() {
  return absl::FailedPreconditionError("the key is not held by that lock_id");
}

absl::Status NoPermit() {
  return absl::FailedPreconditionError("the semaphore has no unexpired permit with that permit_id");
}

absl::Status NotAllHeld() {
  return absl::FailedPreconditionError("the keys are not all held by that lock_id");
}

// A bytea[] array literal of `keys`, for a text parameter.
std::string ByteaArray(std::span<const std::string> keys) {
  std::string out = "{";
  for (size_t i = 0; i < keys.size(); ++i) {
    if (i > 0) out.push_back(',');
    AppendByteaElement(keys[i], &out);
  }
  out.push_back('}');
  return out;
}

template <class T>
Op<T> Immediate(absl::StatusOr<T> answer) {
  Op<T> op;
  op.immediate = std::move(answer);
  return op;
}

template <class T>
Op<T> Call(Statement s, std::vector<Param> params,
           absl::AnyInvocable<absl::StatusOr<T>(const PGresult*)> decode) {
  Op<T> op;
  op.statement = s;
  op.params = std::move(params);
  op.decode = std::move(decode);
  return op;
}

// One tollgate_check_layers call; decodes to one Decision per layer, in order. Inputs already
// validated.
Op<std::vector<Decision>> LayersOp(std::span<const LayerCheck> layers, Decimal cost) {
  std::string names = "{", keys = "{", caps = "{", rates = "{", shadows = "{";
  for (size_t i = 0; i < layers.size(); ++i) {
    const char* sep = i == 0 ? "" : ",";
    names += sep;
    keys += sep;
    AppendByteaElement(layers[i].name, &names);
    AppendByteaElement(layers[i].key, &keys);
    absl::StrAppend(&caps, sep, layers[i].params.capacity.nanos);
    absl::StrAppend(&rates, sep, layers[i].params.rate.nanos);
    absl::StrAppend(&shadows, sep, layers[i].shadow ? "t" : "f");
  }
  for (std::string* s : {&names, &keys, &caps, &rates, &shadows}) s->push_back('}');
  const size_t count = layers.size();
  return Call<std::vector<Decision>>(
      Statement::kCheckLayers,
      {Text(std::move(names)), Text(std::move(keys)), Text(std::move(caps)), Text(std::move(rates)),
       Text(std::move(shadows)), Text(std::to_string(cost.nanos))},
      [count](const PGresult* r) -> absl::StatusOr<std::vector<Decision>> {
        const int n = PQntuples(r);
        if (n != static_cast<int>(count)) {
          return absl::InternalError(
              absl::StrCat("tollgate_check_layers returned ", n, " rows for ", count, " layers"));
        }
        std::vector<Decision> out(count);
        for (int row = 0; row < n; ++row) {
          const uint64_t ord = U64(r, row, 0, count);
          if (ord < 1 || ord > count) return absl::InternalError("bad ord from PostgreSQL");
          Decision& d = out[ord - 1];
          d.allowed = Value(r, row, 1) == "t";
          d.remaining = U64(r, row, 2, UINT64_MAX);
          if (IsNull(r, row, 3)) {
            d.retry_after = std::nullopt;
          } else {
            d.retry_after = Nanos(r, row, 3);
          }
          d.reset_after = Nanos(r, row, 4);
        }
        return out;
      });
}

struct StatementText {
  const char* name;
  const char* sql;
};
constexpr StatementText kStatements[kStatementCount] = {
    {"tollgate_acquire", "SELECT tollgate_acquire($1, $2, $3, $4, $5)"},
    {"tollgate_release", "SELECT tollgate_release($1, $2)"},
    {"tollgate_extend", "SELECT tollgate_extend($1, $2, $3)"},
    {"tollgate_lease",
     "SELECT out_fence, out_ttl_ns, out_owner, out_lock_id, out_acquired_at_ns "
     "FROM tollgate_lease($1)"},
    {"tollgate_fenced_set", "SELECT tollgate_fenced_set($1, $2, $3)"},
    {"tollgate_fenced_get", "SELECT fence, value FROM tollgate_registers WHERE resource = $1"},
    {"tollgate_check_layers",
     "SELECT ord, allowed, remaining, retry_ns, reset_ns FROM "
     "tollgate_check_layers($1::bytea[], $2::bytea[], $3::numeric[], $4::numeric[], "
     "$5::boolean[], $6::numeric)"},
    {"tollgate_sem_acquire",
     "SELECT out_slot, out_fence, out_limit FROM tollgate_sem_acquire($1, $2, $3, $4, $5)"},
    {"tollgate_sem_release", "SELECT tollgate_sem_release($1, $2)"},
    {"tollgate_sem_extend", "SELECT tollgate_sem_extend($1, $2, $3)"},
    {"tollgate_sem_info", "SELECT out_limit, out_holders, out_fence FROM tollgate_sem_info($1)"},
    {"tollgate_multi_acquire", "SELECT tollgate_multi_acquire($1::bytea[], $2, $3, $4, $5)"},
    {"tollgate_multi_release", "SELECT tollgate_multi_release($1::bytea[], $2)"},
    {"tollgate_multi_extend", "SELECT tollgate_multi_extend($1::bytea[], $2, $3)"},
    {"tollgate_lookup",
     "SELECT out_key, out_fence, out_ttl_ns, out_owner, out_acquired_at_ns "
     "FROM tollgate_lookup($1)"},
};

}  // namespace

ParamArrays::ParamArrays(const std::vector<Param>& params)
    : values_(params.size()), lengths_(params.size()), formats_(params.size()) {
  for (size_t i = 0; i < params.size(); ++i) {
    values_[i] = params[i].null ? nullptr : params[i].value.data();
    lengths_[i] = static_cast<int>(params[i].value.size());
    formats_[i] = params[i].binary ? 1 : 0;
  }
}

std::string Trimmed(const char* msg) {
  std::string s = msg == nullptr ? "" : msg;
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

absl::Status CheckConninfo(const std::string& conninfo) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(conninfo.c_str(), &err);
  if (opts == nullptr) {
    std::string msg = Trimmed(err);
    PQfreemem(err);
    return absl::InvalidArgumentError(absl::StrCat("bad PostgreSQL conninfo: ", msg));
  }
  PQconninfoFree(opts);
  return absl::OkStatus();
}

namespace {
int64_t Millis(Duration timeout) {
  return std::max<int64_t>(1,
                           std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count());
}
}  // namespace

// Later keywords override what the conninfo (expanded from dbname) says.
ConnectParams::ConnectParams(const std::string& conninfo, Duration timeout)
    : conninfo_(conninfo),
      connect_timeout_(std::to_string(std::max<int64_t>(2, (Millis(timeout) + 999) / 1000))),
      options_(absl::StrCat("-c statement_timeout=", Millis(timeout))),
      keys_{"dbname", "connect_timeout", "options", "application_name", nullptr},
      values_{conninfo_.c_str(), connect_timeout_.c_str(), options_.c_str(), "tollgate", nullptr} {}

absl::Status CheckSchemaVersion(const absl::StatusOr<const PGresult*>& query) {
  if (!query.ok()) {
    if (query.status().code() == absl::StatusCode::kNotFound) {
      return absl::FailedPreconditionError(
          "the tollgate schema is not installed in this database; run tollgate migrate");
    }
    return query.status();
  }
  const PGresult* r = *query;
  const int have = PQntuples(r) == 1 ? std::atoi(PQgetvalue(r, 0, 0)) : 0;
  if (have < kPostgresSchemaVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat("the tollgate schema in this database is version ", have,
                     ", this build needs ", kPostgresSchemaVersion, "; run tollgate migrate"));
  }
  return absl::OkStatus();
}

ErrorVerdict MapError(const PGresult* error) {
  const char* st = PQresultErrorField(error, PG_DIAG_SQLSTATE);
  const std::string state = st == nullptr ? "" : st;
  const char* primary = PQresultErrorField(error, PG_DIAG_MESSAGE_PRIMARY);
  const std::string msg = Trimmed(primary != nullptr ? primary : PQresultErrorMessage(error));
  if (IsUnavailableState(state)) {
    return {absl::UnavailableError(absl::StrCat("PostgreSQL: ", msg, " (", state, ")")), true};
  }
  if (IsTransientState(state)) {
    return {absl::UnavailableError(absl::StrCat("PostgreSQL: ", msg, " (", state, ")")), false};
  }
  if (state == "TGF02") {
    // tollgate_fenced_set: a fence no lease carried (InvalidArgument, as on the embedded store).
    return {absl::InvalidArgumentError(absl::StrCat(msg, " (use the fence of a lease you hold)")),
            false};
  }
  if (state == "42P01" || state == "42883") {
    return {absl::NotFoundError(absl::StrCat("PostgreSQL: ", msg, " (", state, ")")), false};
  }
  return {absl::InternalError(absl::StrCat("PostgreSQL: ", msg, " (", state, ")")), false};
}

absl::Status SchemaHint(absl::Status st) {
  if (st.code() != absl::StatusCode::kNotFound) return st;
  return absl::FailedPreconditionError(absl::StrCat(st.message(), "; run tollgate migrate"));
}

const char* StatementSql(Statement s) { return kStatements[static_cast<int>(s)].sql; }
const char* StatementName(Statement s) { return kStatements[static_cast<int>(s)].name; }

Op<std::optional<LeaseGrant>> AcquireOp(std::string_view key, Duration ttl,
                                        std::optional<std::string> owner, WallTime now) {
  using T = std::optional<LeaseGrant>;
  if (absl::Status st = ValidateKey(key); !st.ok()) return Immediate<T>(st);
  if (absl::Status st = ValidateTtl(ttl); !st.ok()) return Immediate<T>(st);
  std::string lock_id = core::NewLockId();
  std::vector<Param> params = {Bytes(key), Text(lock_id), Text(std::to_string(ttl.count())),
                               owner ? Bytes(*owner) : Null(), UnixNanos(now)};
  return Call<T>(
      Statement::kAcquire, std::move(params),
      [lock_id = std::move(lock_id), ttl, now](const PGresult* r) mutable -> absl::StatusOr<T> {
        if (PQntuples(r) != 1 || IsNull(r, 0, 0)) return T();
        LeaseGrant g;
        g.lock_id = std::move(lock_id);
        g.fence = U64(r, 0, 0, UINT64_MAX);
        g.ttl = ttl;
        g.acquired_at = now;
        return T(std::move(g));
      });
}

Op<std::monostate> ReleaseOp(std::string_view key, std::string_view lock_id) {
  using T = std::monostate;
  if (absl::Status st = ValidateKey(key); !st.ok()) return Immediate<T>(st);
  if (!LooksLikeLockId(lock_id)) return Immediate<T>(NotHeld());
  return Call<T>(Statement::kRelease, {Bytes(key), Text(std::string(lock_id))},
                 [](const PGresult* r) -> absl::StatusOr<T> {
                   if (PQntuples(r) != 1 || Value(r, 0, 0) != "t") return NotHeld();
                   return T();
                 });
}

Op<Duration> ExtendOp(std::string_view key, std::string_view lock_id, Duration ttl) {
  if (absl::Status st = ValidateKey(key); !st.ok()) return Immediate<Duration>(st);
  if (absl::Status st = ValidateTtl(ttl); !st.ok()) return Immediate<Duration>(st);
  if (!LooksLikeLockId(lock_id)) return Immediate<Duration>(NotHeld());
  return Call<Duration>(Statement::kExtend,
                        {Bytes(key), Text(std::string(lock_id)), Text(std::to_string(ttl.count()))},
                        [ttl](const PGresult* r) -> absl::StatusOr<Duration> {
                          if (PQntuples(r) != 1 || Value(r, 0, 0) != "t") return NotHeld();
                          return ttl;
                        });
}

Op<std::optional<LeaseInfo>> InfoOp(std::string_view key) {
  using T = std::optional<LeaseInfo>;
  if (absl::Status st = ValidateKey(key); !st.ok()) return Immediate<T>(st);
  return Call<T>(Statement::kInfo, {Bytes(key)}, [](const PGresult* r) -> absl::StatusOr<T> {
    if (PQntuples(r) != 1 || IsNull(r, 0, 0)) return T();
    LeaseInfo info;
    info.fence = U64(r, 0, 0, UINT64_MAX);
    info.ttl_remaining = Nanos(r, 0, 1);
    if (!IsNull(r, 0, 2)) info.owner = Unhex(Value(r, 0, 2));
    info.lock_id = std::string(Value(r, 0, 3));
    info.acquired_at = WallNanos(r, 0, 4);
    return T(std::move(info));
  });
}

Op<std::optional<LeaseById>> LookupOp(std::string_view lock_id) {
  using T = std::optional<LeaseById>;
  if (!core::IsLockIdFormat(lock_id)) {
    return Immediate<T>(absl::InvalidArgumentError("lock_id must be 32 lowercase hex characters"));
  }
  return Call<T>(Statement::kLookup, {Text(std::string(lock_id))},
                 [lock_id = std::string(lock_id)](const PGresult* r) -> absl::StatusOr<T> {
                   if (PQntuples(r) != 1 || IsNull(r, 0, 0) || IsNull(r, 0, 1)) return T();
                   LeaseById out;
                   out.key = Unhex(Value(r, 0, 0));
                   out.info.fence = U64(r, 0, 1, UINT64_MAX);
                   out.info.ttl_remaining = Nanos(r, 0, 2);
                   if (!IsNull(r, 0, 3)) out.info.owner = Unhex(Value(r, 0, 3));
                   out.info.lock_id = lock_id;  // the row was found by it
                   out.info.acquired_at = WallNanos(r, 0, 4);
                   return T(std::move(out));
                 });
}

Op<std::monostate> FencedSetOp(std::string_view resource, uint64_t fence, std::string_view value) {
  using T = std::monostate;
  if (absl::Status st = ValidateKey(resource, "resource"); !st.ok()) return Immediate<T>(st);
  if (fence == 0)
    return Immediate<T>(absl::InvalidArgumentError("fence must be a positive integer"));
  return Call<T>(Statement::kFencedSet,
                 {Bytes(resource), Text(std::to_string(fence)), Bytes(value)},
                 [fence](const PGresult* r) -> absl::StatusOr<T> {
                   if (PQntuples(r) == 1 && !IsNull(r, 0, 0)) {
                     return absl::AbortedError(
                         absl::StrCat("fence ", fence, " is older than ", AV(Value(r, 0, 0))));
                   }
                   return T();
                 });
}

Op<std::optional<FencedValue>> FencedGetOp(std::string_view resource) {
  using T = std::optional<FencedValue>;
  if (absl::Status st = ValidateKey(resource, "resource"); !st.ok()) return Immediate<T>(st);
  return Call<T>(Statement::kFencedGet, {Bytes(resource)},
                 [](const PGresult* r) -> absl::StatusOr<T> {
                   if (PQntuples(r) != 1) return T();
                   FencedValue v;
                   v.fence = U64(r, 0, 0, UINT64_MAX);
                   v.value = Unhex(Value(r, 0, 1));
                   return T(std::move(v));
                 });
}

Op<Decision> ThrottleOp(std::string_view key, const BucketParams& params, Decimal cost) {
  if (absl::Status st = ValidateKey(key); !st.ok()) return Immediate<Decision>(st);
  if (absl::Status st = ValidateBucketParams(params); !st.ok()) return Immediate<Decision>(st);
  if (absl::Status st = ValidateCost(cost); !st.ok()) return Immediate<Decision>(st);
  LayerCheck one{"", std::string(key), params, false};
  Op<std::vector<Decision>> rows = LayersOp(std::span<const LayerCheck>(&one, 1), cost);
  return Call<Decision>(
      rows.statement, std::move(rows.params),
      [decode = std::move(rows.decode)](const PGresult* r) mutable -> absl::StatusOr<Decision> {
        absl::StatusOr<std::vector<Decision>> d = decode(r);
        if (!d.ok()) return d.status();
        return (*d)[0];
      });
}

Op<PolicyDecision> CheckLayersOp(std::span<const LayerCheck> layers, Decimal cost) {
  if (absl::Status st = ValidateLayerChecks(layers, cost); !st.ok()) {
    return Immediate<PolicyDecision>(st);
  }
  Op<std::vector<Decision>> rows = LayersOp(layers, cost);
  return Call<PolicyDecision>(rows.statement, std::move(rows.params),
                              [decode = std::move(rows.decode),
                               copy = std::vector<LayerCheck>(layers.begin(), layers.end())](
                                  const PGresult* r) mutable -> absl::StatusOr<PolicyDecision> {
                                absl::StatusOr<std::vector<Decision>> d = decode(r);
                                if (!d.ok()) return d.status();
                                return CombineLayerDecisions(copy, *d);
                              });
}

Op<std::optional<PermitGrant>> SemAcquireOp(const SemAcquireRequest& req) {
  using T = std::optional<PermitGrant>;
  if (absl::Status st = ValidateSemAcquireRequest(req); !st.ok()) return Immediate<T>(st);
  std::string permit_id = core::NewLockId();
  std::vector<Param> params = {Bytes(req.key), Text(std::to_string(req.limit)), Text(permit_id),
                               Text(std::to_string(req.ttl.count())),
                               req.owner ? Bytes(*req.owner) : Null()};
  return Call<T>(
      Statement::kSemAcquire, std::move(params),
      [permit_id = std::move(permit_id), limit = req.limit, ttl = req.ttl,
       key = req.key.substr(0, 64)](const PGresult* r) mutable -> absl::StatusOr<T> {
        if (PQntuples(r) != 1) return absl::InternalError("bad reply from PostgreSQL");
        if (!IsNull(r, 0, 0)) {
          PermitGrant g;
          g.permit_id = std::move(permit_id);
          g.slot = static_cast<int64_t>(U64(r, 0, 0, static_cast<uint64_t>(kMaxSemaphoreLimit)));
          g.fence = U64(r, 0, 1, UINT64_MAX);
          g.ttl = ttl;
          return T(std::move(g));
        }
        if (!IsNull(r, 0, 2)) {
          return absl::InvalidArgumentError(
              absl::StrCat("limit ", limit, " differs from the limit ", AV(Value(r, 0, 2)),
                           " of the current holders of semaphore \"", AV(key), "\""));
        }
        return T();
      });
}

Op<std::monostate> SemReleaseOp(std::string_view key, std::string_view permit_id) {
  using T = std::monostate;
  if (absl::Status st = ValidateKey(key); !st.ok()) return Immediate<T>(st);
  if (!LooksLikeLockId(permit_id)) return Immediate<T>(NoPermit());
  return Call<T>(Statement::kSemRelease, {Bytes(key), Text(std::string(permit_id))},
                 [](const PGresult* r) -> absl::StatusOr<T> {
                   if (PQntuples(r) != 1 || Value(r, 0, 0) != "t") return NoPermit();
                   return T();
                 });
}

Op<Duration> SemExtendOp(std::string_view key, std::string_view permit_id, Duration ttl) {
  if (absl::Status st = ValidateKey(key); !st.ok()) return Immediate<Duration>(st);
  if (absl::Status st = ValidateTtl(ttl); !st.ok()) return Immediate<Duration>(st);
  if (!LooksLikeLockId(permit_id)) return Immediate<Duration>(NoPermit());
  return Call<Duration>(
      Statement::kSemExtend,
      {Bytes(key), Text(std::string(permit_id)), Text(std::to_string(ttl.count()))},
      [ttl](const PGresult* r) -> absl::StatusOr<Duration> {
        if (PQntuples(r) != 1 || Value(r, 0, 0) != "t") return NoPermit();
        return ttl;
      });
}

Op<std::optional<SemaphoreInfo>> SemInfoOp(std::string_view key) {
  using T = std::optional<SemaphoreInfo>;
  if (absl::Status st = ValidateKey(key); !st.ok()) return Immediate<T>(st);
  return Call<T>(Statement::kSemInfo, {Bytes(key)}, [](const PGresult* r) -> absl::StatusOr<T> {
    if (PQntuples(r) != 1 || IsNull(r, 0, 0)) return T();
    SemaphoreInfo info;
    info.limit = static_cast<int64_t>(U64(r, 0, 0, static_cast<uint64_t>(kMaxSemaphoreLimit)));
    info.holders = static_cast<int64_t>(U64(r, 0, 1, static_cast<uint64_t>(kMaxSemaphoreLimit)));
    info.fence = U64(r, 0, 2, UINT64_MAX);
    if (info.holders == 0) return T();
    return T(info);
  });
}

Op<std::optional<LeaseGrant>> MultiAcquireOp(const MultiAcquireRequest& req, WallTime now) {
  using T = std::optional<LeaseGrant>;
  if (absl::Status st = ValidateMultiAcquireRequest(req); !st.ok()) return Immediate<T>(st);
  std::string lock_id = core::NewLockId();
  std::vector<Param> params = {Text(ByteaArray(req.keys)), Text(lock_id),
                               Text(std::to_string(req.ttl.count())),
                               req.owner ? Bytes(*req.owner) : Null(), UnixNanos(now)};
  return Call<T>(Statement::kMultiAcquire, std::move(params),
                 [lock_id = std::move(lock_id), ttl = req.ttl,
                  now](const PGresult* r) mutable -> absl::StatusOr<T> {
                   if (PQntuples(r) != 1 || IsNull(r, 0, 0)) return T();
                   LeaseGrant g;
                   g.lock_id = std::move(lock_id);
                   g.fence = U64(r, 0, 0, UINT64_MAX);
                   g.ttl = ttl;
                   g.acquired_at = now;
                   return T(std::move(g));
                 });
}

Op<size_t> MultiReleaseOp(std::span<const std::string> keys, std::string_view lock_id) {
  if (absl::Status st = ValidateKeyList(keys); !st.ok()) return Immediate<size_t>(st);
  if (!LooksLikeLockId(lock_id)) return Immediate<size_t>(size_t{0});
  return Call<size_t>(Statement::kMultiRelease,
                      {Text(ByteaArray(keys)), Text(std::string(lock_id))},
                      [n = keys.size()](const PGresult* r) -> absl::StatusOr<size_t> {
                        if (PQntuples(r) != 1 || IsNull(r, 0, 0)) {
                          return absl::InternalError("bad reply from PostgreSQL");
                        }
                        return static_cast<size_t>(U64(r, 0, 0, n));
                      });
}

Op<Duration> MultiExtendOp(std::span<const std::string> keys, std::string_view lock_id,
                           Duration ttl) {
  if (absl::Status st = ValidateKeyList(keys); !st.ok()) return Immediate<Duration>(st);
  if (absl::Status st = ValidateTtl(ttl); !st.ok()) return Immediate<Duration>(st);
  if (!LooksLikeLockId(lock_id)) return Immediate<Duration>(NotAllHeld());
  return Call<Duration>(
      Statement::kMultiExtend,
      {Text(ByteaArray(keys)), Text(std::string(lock_id)), Text(std::to_string(ttl.count()))},
      [ttl](const PGresult* r) -> absl::StatusOr<Duration> {
        if (PQntuples(r) != 1 || Value(r, 0, 0) != "t") return NotAllHeld();
        return ttl;
      });
}

// Connection.

Connection::Connection(std::string conninfo, Duration timeout, bool check_schema)
    : conninfo_(std::move(conninfo)), timeout_(timeout), check_schema_(check_schema) {}

Connection::~Connection() { Drop(); }

absl::StatusOr<Result> Connection::Exec(const char* sql, const std::vector<Param>& params) {
  const SteadyTime deadline = SteadyClock::now() + timeout_;
  if (conn_ == nullptr) {
    if (absl::Status st = Connect(deadline); !st.ok()) return st;
  }
  return RoundTrip(deadline, [&](PGconn* c) {
    ParamArrays p(params);
    return PQsendQueryParams(c, sql, p.count(), nullptr, p.values(), p.lengths(), p.formats(), 0);
  });
}

absl::StatusOr<Result> Connection::ExecScript(const std::string& sql) {
  const SteadyTime deadline = SteadyClock::now() + timeout_;
  if (conn_ == nullptr) {
    if (absl::Status st = Connect(deadline); !st.ok()) return st;
  }
  return RoundTrip(deadline, [&](PGconn* c) { return PQsendQuery(c, sql.c_str()); });
}

absl::Status Connection::Connect() { return Connect(SteadyClock::now() + timeout_); }

PGconn* Connection::Release() { return std::exchange(conn_, nullptr); }

void Connection::Drop() {
  if (conn_ != nullptr) PQfinish(conn_);
  conn_ = nullptr;
}

absl::Status Connection::Lost(std::string_view what) {
  std::string msg = conn_ != nullptr ? Trimmed(PQerrorMessage(conn_)) : "";
  Drop();
  return absl::UnavailableError(absl::StrCat("PostgreSQL ", AV(what), ": ", msg));
}

namespace {
// Waits until fd is ready for `events` or the deadline passes. False on timeout.
bool Wait(int fd, short events, SteadyTime deadline) {
  for (;;) {
    const auto left = deadline - SteadyClock::now();
    if (left <= Duration(0)) return false;
    const int ms = static_cast<int>(
        std::min<int64_t>(std::chrono::ceil<std::chrono::milliseconds>(left).count(), 1 << 30));
    pollfd p{fd, events, 0};
    const int r = poll(&p, 1, ms);
    if (r > 0) return true;
    if (r < 0 && errno != EINTR) return true;  // let libpq report the socket error
  }
}
}  // namespace

absl::Status Connection::Connect(SteadyTime deadline) {
  Drop();
  ConnectParams params(conninfo_, timeout_);
  conn_ = PQconnectStartParams(params.keys(), params.values(), /*expand_dbname=*/1);
  if (conn_ == nullptr) return absl::UnavailableError("PostgreSQL connect: out of memory");
  if (PQstatus(conn_) == CONNECTION_BAD) return Lost("connect failed");
  PostgresPollingStatusType ps = PGRES_POLLING_WRITING;
  while (ps != PGRES_POLLING_OK) {
    if (ps == PGRES_POLLING_FAILED) return Lost("connect failed");
    const short ev = ps == PGRES_POLLING_READING ? POLLIN : POLLOUT;
    if (!Wait(PQsocket(conn_), ev, deadline)) {
      Drop();
      return absl::UnavailableError("PostgreSQL connect timed out");
    }
    ps = PQconnectPoll(conn_);
  }
  if (PQsetnonblocking(conn_, 1) != 0) return Lost("setnonblocking");
  // Server notices (e.g. "relation ... already exists, skipping" during migration) are not errors
  // and must not end up on the application's stderr.
  PQsetNoticeProcessor(
      conn_, [](void*, const char*) {}, nullptr);
  absl::StatusOr<Result> set =
      RoundTrip(deadline, [](PGconn* c) { return PQsendQuery(c, kSessionSetupSql); });
  if (!set.ok()) {
    Drop();
    return set.status();
  }
  if (!check_schema_) return absl::OkStatus();
  absl::StatusOr<Result> r =
      RoundTrip(deadline, [](PGconn* c) { return PQsendQuery(c, kSchemaVersionSql); });
  absl::Status verdict = CheckSchemaVersion(r.ok() ? absl::StatusOr<const PGresult*>(r->get())
                                                   : absl::StatusOr<const PGresult*>(r.status()));
  if (!verdict.ok()) Drop();
  return verdict;
}

// Sends with `send`, then collects every result until the deadline. Returns the last result, or
// the first error: Unavailable for connection trouble or a timeout (the connection is dropped),
// else MapError's status (the connection dropped if it says so).
absl::StatusOr<Result> Connection::RoundTrip(SteadyTime deadline,
                                             absl::AnyInvocable<int(PGconn*)> send) {
  if (send(conn_) == 0) return Lost("send failed");
  for (;;) {
    const int f = PQflush(conn_);
    if (f < 0) return Lost("send failed");
    if (f == 0) break;
    if (!Wait(PQsocket(conn_), POLLIN | POLLOUT, deadline)) {
      Drop();
      return absl::UnavailableError("PostgreSQL call timed out");
    }
    if (PQconsumeInput(conn_) == 0) return Lost("connection lost");
  }
  Result last, error;
  for (;;) {
    while (PQisBusy(conn_) != 0) {
      if (!Wait(PQsocket(conn_), POLLIN, deadline)) {
        Drop();
        return absl::UnavailableError("PostgreSQL call timed out");
      }
      if (PQconsumeInput(conn_) == 0) return Lost("connection lost");
    }
    PGresult* r = PQgetResult(conn_);
    if (r == nullptr) break;
    const ExecStatusType s = PQresultStatus(r);
    if (s == PGRES_FATAL_ERROR || s == PGRES_BAD_RESPONSE || s == PGRES_NONFATAL_ERROR) {
      if (error == nullptr && s != PGRES_NONFATAL_ERROR) {
        error.reset(r);
      } else {
        PQclear(r);
      }
    } else {
      last.reset(r);
    }
    if (PQstatus(conn_) == CONNECTION_BAD) break;
  }
  if (PQstatus(conn_) == CONNECTION_BAD) {
    std::string msg = error != nullptr ? Trimmed(PQresultErrorMessage(error.get()))
                                       : Trimmed(PQerrorMessage(conn_));
    Drop();
    return absl::UnavailableError(absl::StrCat("PostgreSQL connection lost: ", msg));
  }
  if (error != nullptr) {
    ErrorVerdict v = MapError(error.get());
    if (v.drop_connection) Drop();
    return v.status;
  }
  if (last == nullptr) return absl::InternalError("PostgreSQL returned no result");
  return last;
}

}  // namespace tollgate::postgres
