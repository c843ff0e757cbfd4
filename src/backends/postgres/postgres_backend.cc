#include "tollgate/postgres_backend.h"

#include <libpq-fe.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "absl/strings/str_cat.h"
#include "backends/postgres/pg_ops.h"
#include "backends/postgres/schema_sql.h"
#include "core/absl_compat.h"

namespace tollgate {
namespace {

using postgres::Connection;
using postgres::Op;
using postgres::Result;

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
    return Run(postgres::AcquireOp(key, ttl, std::move(owner)));
  }

  absl::Status Release(std::string_view key, std::string_view lock_id) override {
    return Run(postgres::ReleaseOp(key, lock_id)).status();
  }

  absl::StatusOr<Duration> Extend(std::string_view key, std::string_view lock_id,
                                  Duration ttl) override {
    return Run(postgres::ExtendOp(key, lock_id, ttl));
  }

  absl::StatusOr<std::optional<LeaseInfo>> Info(std::string_view key) override {
    return Run(postgres::InfoOp(key));
  }

  absl::StatusOr<std::optional<LeaseById>> LookupById(std::string_view lock_id) override {
    return Run(postgres::LookupOp(lock_id));
  }

  absl::StatusOr<std::optional<PermitGrant>> SemAcquire(const SemAcquireRequest& req) override {
    return Run(postgres::SemAcquireOp(req));
  }

  absl::Status SemRelease(std::string_view key, std::string_view permit_id) override {
    return Run(postgres::SemReleaseOp(key, permit_id)).status();
  }

  absl::StatusOr<Duration> SemExtend(std::string_view key, std::string_view permit_id,
                                     Duration ttl) override {
    return Run(postgres::SemExtendOp(key, permit_id, ttl));
  }

  absl::StatusOr<std::optional<SemaphoreInfo>> SemInfo(std::string_view key) override {
    return Run(postgres::SemInfoOp(key));
  }

  absl::StatusOr<std::optional<LeaseGrant>> MultiAcquire(const MultiAcquireRequest& req) override {
    return Run(postgres::MultiAcquireOp(req));
  }

  absl::StatusOr<size_t> MultiRelease(std::span<const std::string> keys,
                                      std::string_view lock_id) override {
    return Run(postgres::MultiReleaseOp(keys, lock_id));
  }

  absl::StatusOr<Duration> MultiExtend(std::span<const std::string> keys, std::string_view lock_id,
                                       Duration ttl) override {
    return Run(postgres::MultiExtendOp(keys, lock_id, ttl));
  }

  absl::Status FencedSet(std::string_view resource, uint64_t fence,
                         std::string_view value) override {
    return Run(postgres::FencedSetOp(resource, fence, value)).status();
  }

  absl::StatusOr<std::optional<FencedValue>> FencedGet(std::string_view resource) override {
    return Run(postgres::FencedGetOp(resource));
  }

  absl::StatusOr<Decision> Throttle(std::string_view key, const BucketParams& params,
                                    Decimal cost) override {
    return Run(postgres::ThrottleOp(key, params, cost));
  }

  absl::StatusOr<PolicyDecision> CheckLayers(std::span<const LayerCheck> layers,
                                             Decimal cost) override {
    return Run(postgres::CheckLayersOp(layers, cost));
  }

 private:
  // One round trip for `op` (none when its answer is known already).
  template <class T>
  absl::StatusOr<T> Run(Op<T> op) {
    if (op.immediate.has_value()) return *std::move(op.immediate);
    absl::StatusOr<Result> r;
    {
      std::lock_guard<std::mutex> l(mu_);
      r = conn_.Exec(postgres::StatementSql(op.statement), op.params);
    }
    if (!r.ok()) return postgres::SchemaHint(r.status());
    return op.decode(r->get());
  }

  std::mutex mu_;
  Connection conn_;  // guarded by mu_
};

}  // namespace

absl::StatusOr<std::unique_ptr<Backend>> NewPostgresBackend(const std::string& conninfo,
                                                            Duration timeout) {
  if (absl::Status st = postgres::CheckConninfo(conninfo); !st.ok()) return st;
  if (timeout <= Duration(0)) return absl::InvalidArgumentError("timeout must be positive");
  auto b = std::make_unique<PostgresBackend>(conninfo, timeout);
  if (absl::Status st = b->Start(); !st.ok()) return st;
  return std::unique_ptr<Backend>(std::move(b));
}

absl::Status MigratePostgres(const std::string& conninfo) {
  if (absl::Status st = postgres::CheckConninfo(conninfo); !st.ok()) return st;
  Connection conn(conninfo, std::chrono::seconds(60), /*check_schema=*/false);
  const std::string script = absl::StrCat(
      AV(postgres::kMigrationSql), "INSERT INTO tollgate_schema (id, version) VALUES (true, ",
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
