#include "tollgate/postgres_backend.h"

#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <limits>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "backends/postgres/schema.h"
#include "core/absl_compat.h"
#include "core/lock_id.h"

namespace tollgate {
namespace {

using SteadyClock = std::chrono::steady_clock;

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
Param Text(std::string v) { return {std::move(v), false, false}; }
Param Bytes(std::string_view v) { return {std::string(v), true, false}; }
Param Null() { return {std::string(), false, true}; }

std::string Trimmed(const char* msg) {
  std::string s = msg == nullptr ? "" : msg;
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// Errors that mean "the server is not there (now)": connection failures, shutdown, too many
// connections, statement timeout / cancel.
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

// A libpq connection used with the asynchronous API, so every wait has a deadline. Not
// thread-safe: the owner serializes calls.
class Connection {
 public:
  Connection(std::string conninfo, Duration timeout, bool check_schema)
      : conninfo_(std::move(conninfo)), timeout_(timeout), check_schema_(check_schema) {}
  ~Connection() { Drop(); }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Runs one parameterised statement (connecting first if needed). Text results.
  absl::StatusOr<Result> Exec(const char* sql, const std::vector<Param>& params) {
    const SteadyClock::time_point deadline = SteadyClock::now() + timeout_;
    if (conn_ == nullptr) {
      if (absl::Status st = Connect(deadline); !st.ok()) return st;
    }
    return RoundTrip(deadline, [&](PGconn* c) {
      std::vector<const char*> values(params.size());
      std::vector<int> lengths(params.size()), formats(params.size());
      for (size_t i = 0; i < params.size(); ++i) {
        values[i] = params[i].null ? nullptr : params[i].value.data();
        lengths[i] = static_cast<int>(params[i].value.size());
        formats[i] = params[i].binary ? 1 : 0;
      }
      return PQsendQueryParams(c, sql, static_cast<int>(params.size()), nullptr, values.data(),
                               lengths.data(), formats.data(), 0);
    });
  }

  // Runs a script of several statements (simple query protocol).
  absl::StatusOr<Result> ExecScript(const std::string& sql) {
    const SteadyClock::time_point deadline = SteadyClock::now() + timeout_;
    if (conn_ == nullptr) {
      if (absl::Status st = Connect(deadline); !st.ok()) return st;
    }
    return RoundTrip(deadline, [&](PGconn* c) { return PQsendQuery(c, sql.c_str()); });
  }

  absl::Status Connect() { return Connect(SteadyClock::now() + timeout_); }

 private:
  void Drop() {
    if (conn_ != nullptr) PQfinish(conn_);
    conn_ = nullptr;
  }

  absl::Status Lost(std::string_view what) {
    std::string msg = conn_ != nullptr ? Trimmed(PQerrorMessage(conn_)) : "";
    Drop();
    return absl::UnavailableError(absl::StrCat("PostgreSQL ", AV(what), ": ", msg));
  }

  // Waits until fd is ready for `events` or the deadline passes. False on timeout.
  static bool Wait(int fd, short events, SteadyClock::time_point deadline) {
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

  absl::Status Connect(SteadyClock::time_point deadline) {
    Drop();
    const int64_t ms = std::max<int64_t>(
        1, std::chrono::duration_cast<std::chrono::milliseconds>(timeout_).count());
    // Later keywords override what the conninfo (expanded from dbname) says. statement_timeout
    // makes the server abandon work the client has given up on.
    const std::string connect_timeout = std::to_string(std::max<int64_t>(2, (ms + 999) / 1000));
    const std::string options = absl::StrCat("-c statement_timeout=", ms);
    const char* keys[] = {"dbname", "connect_timeout", "options", "application_name", nullptr};
    const char* vals[] = {conninfo_.c_str(), connect_timeout.c_str(), options.c_str(), "tollgate",
                          nullptr};
    conn_ = PQconnectStartParams(keys, vals, /*expand_dbname=*/1);
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
    // Values are read back as hex (Unhex): make that the session's format whatever the server,
    // database or role default says (bytea_output = escape would otherwise garble them).
    absl::StatusOr<Result> set =
        RoundTrip(deadline, [](PGconn* c) { return PQsendQuery(c, "SET bytea_output = hex"); });
    if (!set.ok()) {
      Drop();
      return set.status();
    }
    if (!check_schema_) return absl::OkStatus();
    absl::StatusOr<Result> r = RoundTrip(
        deadline, [](PGconn* c) { return PQsendQuery(c, "SELECT version FROM tollgate_schema"); });
    if (!r.ok()) {
      Drop();
      if (r.status().code() == absl::StatusCode::kNotFound) {
        return absl::FailedPreconditionError(
            "the tollgate schema is not installed in this database; run tollgate migrate");
      }
      return r.status();
    }
    const int have = PQntuples(r->get()) == 1 ? std::atoi(PQgetvalue(r->get(), 0, 0)) : 0;
    if (have < kPostgresSchemaVersion) {
      Drop();
      return absl::FailedPreconditionError(
          absl::StrCat("the tollgate schema in this database is version ", have,
                       ", this build needs ", kPostgresSchemaVersion, "; run tollgate migrate"));
    }
    return absl::OkStatus();
  }

  // Sends with `send`, then collects every result until the deadline. Returns the last result, or
  // the first error: Unavailable for connection trouble or a timeout (the connection is dropped),
  // NotFound for an undefined table or function (42P01/42883: schema missing), Internal for other
  // SQL errors.
  template <class Send>
  absl::StatusOr<Result> RoundTrip(SteadyClock::time_point deadline, Send send) {
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
      const char* st = PQresultErrorField(error.get(), PG_DIAG_SQLSTATE);
      const std::string state = st == nullptr ? "" : st;
      const char* primary = PQresultErrorField(error.get(), PG_DIAG_MESSAGE_PRIMARY);
      const std::string msg =
          Trimmed(primary != nullptr ? primary : PQresultErrorMessage(error.get()));
      if (IsUnavailableState(state)) {
        Drop();
        return absl::UnavailableError(absl::StrCat("PostgreSQL: ", msg, " (", state, ")"));
      }
      if (IsTransientState(state)) {
        return absl::UnavailableError(absl::StrCat("PostgreSQL: ", msg, " (", state, ")"));
      }
      if (state == "TGF02") {
        // tollgate_fenced_set: a fence no lease carried (InvalidArgument, as on the embedded
        // store).
        return absl::InvalidArgumentError(
            absl::StrCat(msg, " (use the fence of a lease you hold)"));
      }
      if (state == "42P01" || state == "42883") {
        return absl::NotFoundError(absl::StrCat("PostgreSQL: ", msg, " (", state, ")"));
      }
      return absl::InternalError(absl::StrCat("PostgreSQL: ", msg, " (", state, ")"));
    }
    if (last == nullptr) return absl::InternalError("PostgreSQL returned no result");
    return last;
  }

  const std::string conninfo_;
  const Duration timeout_;
  const bool check_schema_;
  PGconn* conn_ = nullptr;
};

// Schema objects missing after connecting (dropped behind our back): tell the operator what to do.
absl::Status SchemaHint(absl::Status st) {
  if (st.code() != absl::StatusCode::kNotFound) return st;
  return absl::FailedPreconditionError(absl::StrCat(st.message(), "; run tollgate migrate"));
}

bool IsNull(const Result& r, int row, int col) { return PQgetisnull(r.get(), row, col) != 0; }
std::string_view Value(const Result& r, int row, int col) {
  return std::string_view(PQgetvalue(r.get(), row, col),
                          static_cast<size_t>(PQgetlength(r.get(), row, col)));
}

// A non-negative integer column, saturating at `max`.
uint64_t U64(const Result& r, int row, int col, uint64_t max) {
  std::string_view v = Value(r, row, col);
  if (!v.empty() && v[0] == '-') return 0;
  uint64_t out = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec == std::errc::result_out_of_range) return max;
  return std::min(out, max);
}
Duration Nanos(const Result& r, int row, int col) {
  return Duration(static_cast<int64_t>(
      U64(r, row, col, static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))));
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
bool LooksLikeLockId(std::string_view id) {
  if (id.size() != 32) return false;
  return std::all_of(id.begin(), id.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

absl::Status NotHeld() {
  return absl::FailedPreconditionError("the key is not held by that lock_id");
}

constexpr char kCheckLayersSql[] =
    "SELECT ord, allowed, remaining, retry_ns, reset_ns FROM "
    "tollgate_check_layers($1::bytea[], $2::bytea[], $3::numeric[], $4::numeric[], "
    "$5::boolean[], $6::numeric)";

class PostgresBackend final : public Backend {
 public:
  PostgresBackend(std::string conninfo, Duration timeout)
      : conn_(std::move(conninfo), timeout, /*check_schema=*/true) {}

  absl::Status Start() {
    std::lock_guard<std::mutex> l(mu_);
    return conn_.Connect();
  }

  std::string_view kind() const override { return "postgres"; }

  absl::StatusOr<std::optional<LeaseGrant>> Acquire(std::string_view key, Duration ttl,
                                                    std::optional<std::string> owner) override {
    if (absl::Status st = ValidateKey(key); !st.ok()) return st;
    if (absl::Status st = ValidateTtl(ttl); !st.ok()) return st;
    std::string lock_id = core::NewLockId();
    auto r = Exec("SELECT tollgate_acquire($1, $2, $3, $4)",
                  {Bytes(key), Text(lock_id), Text(std::to_string(ttl.count())),
                   owner ? Bytes(*owner) : Null()});
    if (!r.ok()) return r.status();
    if (PQntuples(r->get()) != 1 || IsNull(*r, 0, 0)) return std::optional<LeaseGrant>();
    LeaseGrant g;
    g.lock_id = std::move(lock_id);
    g.fence = U64(*r, 0, 0, UINT64_MAX);
    g.ttl = ttl;
    return std::optional<LeaseGrant>(std::move(g));
  }

  absl::Status Release(std::string_view key, std::string_view lock_id) override {
    if (absl::Status st = ValidateKey(key); !st.ok()) return st;
    if (!LooksLikeLockId(lock_id)) return NotHeld();
    auto r = Exec("SELECT tollgate_release($1, $2)", {Bytes(key), Text(std::string(lock_id))});
    if (!r.ok()) return r.status();
    if (PQntuples(r->get()) != 1 || Value(*r, 0, 0) != "t") return NotHeld();
    return absl::OkStatus();
  }

  absl::StatusOr<Duration> Extend(std::string_view key, std::string_view lock_id,
                                  Duration ttl) override {
    if (absl::Status st = ValidateKey(key); !st.ok()) return st;
    if (absl::Status st = ValidateTtl(ttl); !st.ok()) return st;
    if (!LooksLikeLockId(lock_id)) return NotHeld();
    auto r = Exec("SELECT tollgate_extend($1, $2, $3)",
                  {Bytes(key), Text(std::string(lock_id)), Text(std::to_string(ttl.count()))});
    if (!r.ok()) return r.status();
    if (PQntuples(r->get()) != 1 || Value(*r, 0, 0) != "t") return NotHeld();
    return ttl;
  }

  absl::StatusOr<std::optional<LeaseInfo>> Info(std::string_view key) override {
    if (absl::Status st = ValidateKey(key); !st.ok()) return st;
    auto r = Exec("SELECT * FROM tollgate_info($1)", {Bytes(key)});
    if (!r.ok()) return r.status();
    if (PQntuples(r->get()) != 1 || IsNull(*r, 0, 0)) return std::optional<LeaseInfo>();
    LeaseInfo info;
    info.fence = U64(*r, 0, 0, UINT64_MAX);
    info.ttl_remaining = Nanos(*r, 0, 1);
    if (!IsNull(*r, 0, 2)) info.owner = Unhex(Value(*r, 0, 2));
    return std::optional<LeaseInfo>(std::move(info));
  }

  absl::Status FencedSet(std::string_view resource, uint64_t fence,
                         std::string_view value) override {
    if (absl::Status st = ValidateKey(resource, "resource"); !st.ok()) return st;
    if (fence == 0) return absl::InvalidArgumentError("fence must be a positive integer");
    auto r = Exec("SELECT tollgate_fenced_set($1, $2, $3)",
                  {Bytes(resource), Text(std::to_string(fence)), Bytes(value)});
    if (!r.ok()) return r.status();
    if (PQntuples(r->get()) == 1 && !IsNull(*r, 0, 0)) {
      return absl::AbortedError(
          absl::StrCat("fence ", fence, " is older than ", AV(Value(*r, 0, 0))));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::optional<FencedValue>> FencedGet(std::string_view resource) override {
    if (absl::Status st = ValidateKey(resource, "resource"); !st.ok()) return st;
    auto r =
        Exec("SELECT fence, value FROM tollgate_registers WHERE resource = $1", {Bytes(resource)});
    if (!r.ok()) return r.status();
    if (PQntuples(r->get()) != 1) return std::optional<FencedValue>();
    FencedValue v;
    v.fence = U64(*r, 0, 0, UINT64_MAX);
    v.value = Unhex(Value(*r, 0, 1));
    return std::optional<FencedValue>(std::move(v));
  }

  absl::StatusOr<Decision> Throttle(std::string_view key, const BucketParams& params,
                                    Decimal cost) override {
    if (absl::Status st = ValidateKey(key); !st.ok()) return st;
    if (absl::Status st = ValidateBucketParams(params); !st.ok()) return st;
    if (absl::Status st = ValidateCost(cost); !st.ok()) return st;
    LayerCheck one{"", std::string(key), params, false};
    auto rows = Run(std::span<const LayerCheck>(&one, 1), cost);
    if (!rows.ok()) return rows.status();
    return (*rows)[0];
  }

  absl::StatusOr<PolicyDecision> CheckLayers(std::span<const LayerCheck> layers,
                                             Decimal cost) override {
    if (absl::Status st = ValidateLayerChecks(layers, cost); !st.ok()) return st;
    auto rows = Run(layers, cost);
    if (!rows.ok()) return rows.status();
    return CombineLayerDecisions(layers, *rows);
  }

 private:
  absl::StatusOr<Result> Exec(const char* sql, const std::vector<Param>& params) {
    std::lock_guard<std::mutex> l(mu_);
    absl::StatusOr<Result> r = conn_.Exec(sql, params);
    if (!r.ok()) return SchemaHint(r.status());
    return r;
  }

  // One tollgate_check_layers call; one Decision per layer, in order. Inputs already validated.
  absl::StatusOr<std::vector<Decision>> Run(std::span<const LayerCheck> layers, Decimal cost) {
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
    auto r = Exec(kCheckLayersSql, {Text(std::move(names)), Text(std::move(keys)),
                                    Text(std::move(caps)), Text(std::move(rates)),
                                    Text(std::move(shadows)), Text(std::to_string(cost.nanos))});
    if (!r.ok()) return r.status();
    const int n = PQntuples(r->get());
    if (n != static_cast<int>(layers.size())) {
      return absl::InternalError(absl::StrCat("tollgate_check_layers returned ", n, " rows for ",
                                              layers.size(), " layers"));
    }
    std::vector<Decision> out(layers.size());
    for (int row = 0; row < n; ++row) {
      const uint64_t ord = U64(*r, row, 0, layers.size());
      if (ord < 1 || ord > layers.size()) return absl::InternalError("bad ord from PostgreSQL");
      Decision& d = out[ord - 1];
      d.allowed = Value(*r, row, 1) == "t";
      d.remaining = U64(*r, row, 2, UINT64_MAX);
      if (IsNull(*r, row, 3)) {
        d.retry_after = std::nullopt;
      } else {
        d.retry_after = Nanos(*r, row, 3);
      }
      d.reset_after = Nanos(*r, row, 4);
    }
    return out;
  }

  std::mutex mu_;
  Connection conn_;  // guarded by mu_
};

}  // namespace

absl::StatusOr<std::unique_ptr<Backend>> NewPostgresBackend(const std::string& conninfo,
                                                            Duration timeout) {
  if (absl::Status st = CheckConninfo(conninfo); !st.ok()) return st;
  if (timeout <= Duration(0)) return absl::InvalidArgumentError("timeout must be positive");
  auto b = std::make_unique<PostgresBackend>(conninfo, timeout);
  if (absl::Status st = b->Start(); !st.ok()) return st;
  return std::unique_ptr<Backend>(std::move(b));
}

absl::Status MigratePostgres(const std::string& conninfo) {
  if (absl::Status st = CheckConninfo(conninfo); !st.ok()) return st;
  Connection conn(conninfo, std::chrono::seconds(60), /*check_schema=*/false);
  const std::string script = absl::StrCat(
      postgres::kMigrationSql, "INSERT INTO tollgate_schema (id, version) VALUES (true, ",
      kPostgresSchemaVersion,
      ") ON CONFLICT (id) DO UPDATE SET version = greatest(tollgate_schema.version, "
      "excluded.version);\nCOMMIT;\n");
  absl::StatusOr<Result> r = conn.ExecScript(script);
  if (!r.ok()) {
    if (r.status().code() == absl::StatusCode::kNotFound) {
      return absl::InternalError(r.status().message());
    }
    return r.status();
  }
  return absl::OkStatus();
}

}  // namespace tollgate
