#include "tollgate/postgres_backend.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/postgres_server.h"

namespace tollgate {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::HasSubstr;
using testing::PostgresServer;

Decimal D(uint64_t units) { return Decimal::Units(units); }
Decimal Nanos(uint64_t n) { return Decimal{n}; }

// A plain libpq session, as the user's application would have.
class Session {
 public:
  explicit Session(const std::string& conninfo) : c_(PQconnectdb(conninfo.c_str())) {}
  ~Session() { PQfinish(c_); }
  bool ok() const { return PQstatus(c_) == CONNECTION_OK; }
  // Runs sql; returns "" on success, else "<SQLSTATE>: <message>".
  std::string Run(const std::string& sql) {
    PGresult* r = PQexec(c_, sql.c_str());
    std::string out;
    const ExecStatusType s = PQresultStatus(r);
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
      const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
      const char* msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
      out = std::string(state ? state : "?") + ": " + (msg ? msg : "?");
    }
    PQclear(r);
    return out;
  }
  std::string Value(const std::string& sql) {
    PGresult* r = PQexec(c_, sql.c_str());
    std::string out = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0
                          ? PQgetvalue(r, 0, 0)
                          : "<error: " + std::string(PQresultErrorMessage(r)) + ">";
    PQclear(r);
    return out;
  }

 private:
  PGconn* c_;
};

class PostgresBackendTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new PostgresServer();
    ASSERT_TRUE(server_->Start()) << server_->error();
    ASSERT_TRUE(MigratePostgres(server_->conninfo()).ok());
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    auto b = NewPostgresBackend(server_->url());
    ASSERT_TRUE(b.ok()) << b.status();
    b_ = std::move(*b);
  }
  // Creates database `name` holding testdata/schema_v<version>.sql, as that release installed it,
  // and returns its conninfo ("" after a failure, which is recorded).
  static std::string DatabaseAtSchema(const std::string& name, int version) {
    Session admin(server_->conninfo());
    const std::string created = admin.Run("CREATE DATABASE " + name);
    if (!created.empty()) {
      ADD_FAILURE() << "CREATE DATABASE " << name << ": " << created;
      return "";
    }
    const std::string conninfo =
        "host=127.0.0.1 port=" + std::to_string(server_->port()) + " user=postgres dbname=" + name;
    const std::string path =
        std::string(TOLLGATE_PG_TESTDATA) + "/schema_v" + std::to_string(version) + ".sql";
    std::ifstream file(path);
    std::stringstream sql;
    sql << file.rdbuf();
    Session db(conninfo);
    if (!file.good() || db.Run(sql.str()) != "" ||
        db.Value("SELECT version FROM tollgate_schema") != std::to_string(version)) {
      ADD_FAILURE() << "could not install " << path << " into " << name;
      return "";
    }
    return conninfo;
  }
  // The backend refuses `conninfo` (at schema `version`) naming both versions; MigratePostgres then
  // upgrades it to kPostgresSchemaVersion. Returns the backend opened afterwards (nullptr after a
  // failure, which is recorded).
  static std::unique_ptr<Backend> RefusedThenMigrated(const std::string& conninfo, int version) {
    auto stale = NewPostgresBackend(conninfo);
    EXPECT_EQ(stale.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(std::string(stale.status().message()),
                HasSubstr("version " + std::to_string(version) + ", this build needs " +
                          std::to_string(kPostgresSchemaVersion)));
    const absl::Status migrated = MigratePostgres(conninfo);
    EXPECT_TRUE(migrated.ok()) << migrated;
    EXPECT_EQ(Session(conninfo).Value("SELECT version FROM tollgate_schema"),
              std::to_string(kPostgresSchemaVersion));
    auto b = NewPostgresBackend(conninfo);
    EXPECT_TRUE(b.ok()) << b.status();
    return b.ok() ? std::move(*b) : nullptr;
  }
  static PostgresServer* server_;
  std::unique_ptr<Backend> b_;
};
PostgresServer* PostgresBackendTest::server_ = nullptr;

TEST_F(PostgresBackendTest, MigrateIsIdempotent) {
  EXPECT_TRUE(MigratePostgres(server_->conninfo()).ok());
  EXPECT_TRUE(MigratePostgres(server_->url()).ok());
  Session s(server_->conninfo());
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s.Value("SELECT version FROM tollgate_schema"), std::to_string(kPostgresSchemaVersion));
  EXPECT_EQ(s.Value("SELECT count(*) FROM tollgate_schema"), "1");
  // Concurrent migrations serialize on the advisory lock.
  std::vector<std::thread> ts;
  std::vector<absl::Status> results(3);
  for (int i = 0; i < 3; ++i) {
    ts.emplace_back([&, i] { results[i] = MigratePostgres(server_->conninfo()); });
  }
  for (auto& t : ts) t.join();
  for (const auto& st : results) EXPECT_TRUE(st.ok()) << st;
}

TEST_F(PostgresBackendTest, SchemaIsCheckedOnConnect) {
  Session admin(server_->conninfo());
  ASSERT_EQ(admin.Run("CREATE DATABASE nomigrate"), "");
  ASSERT_EQ(admin.Run("CREATE DATABASE oldschema"), "");
  const std::string base =
      "host=127.0.0.1 port=" + std::to_string(server_->port()) + " user=postgres dbname=";
  auto missing = NewPostgresBackend(base + "nomigrate");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("run tollgate migrate"));

  ASSERT_TRUE(MigratePostgres(base + "oldschema").ok());
  {
    Session old(base + "oldschema");
    ASSERT_EQ(old.Run("UPDATE tollgate_schema SET version = 0"), "");
  }
  auto stale = NewPostgresBackend(base + "oldschema");
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(stale.status().message()), HasSubstr("run tollgate migrate"));
  ASSERT_TRUE(MigratePostgres(base + "oldschema").ok());
  EXPECT_TRUE(NewPostgresBackend(base + "oldschema").ok());

  EXPECT_EQ(NewPostgresBackend("host=127.0.0.1 bogus_option=1").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MigratePostgres("postgres://[nope").code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(PostgresBackendTest, ValidationHappensBeforeAnyRoundTrip) {
  EXPECT_EQ(b_->Acquire("", seconds(1), std::nullopt).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b_->Acquire("k", Duration(0), std::nullopt).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b_->FencedSet("r", 0, "v").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b_->Throttle("k", {D(0), D(1)}, D(1)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b_->Throttle("k", {D(1), D(1)}, D(0)).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<LayerCheck> shadow_only = {{"a", "k", {D(1), D(1)}, true}};
  EXPECT_EQ(b_->CheckLayers(shadow_only, D(1)).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b_->Release("k", "not-a-lock-id").code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(PostgresBackendTest, LeaseLifecycleWithBinaryKeys) {
  const std::string key("lease\0\xff\x01", 8);
  const std::string owner("own\0er", 6);
  auto g = b_->Acquire(key, seconds(30), owner);
  ASSERT_TRUE(g.ok()) << g.status();
  ASSERT_TRUE(g->has_value());
  EXPECT_EQ((*g)->lock_id.size(), 32u);
  auto taken = b_->Acquire(key, seconds(30), std::nullopt);
  ASSERT_TRUE(taken.ok());
  EXPECT_FALSE(taken->has_value());
  // A different key differing only after the NUL byte is a different lease.
  auto other = b_->Acquire(std::string("lease\0\xff\x02", 8), seconds(30), std::nullopt);
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE(other->has_value());
  EXPECT_GT((*other)->fence, (*g)->fence);

  auto info = b_->Info(key);
  ASSERT_TRUE(info.ok()) << info.status();
  ASSERT_TRUE(info->has_value());
  EXPECT_EQ((*info)->fence, (*g)->fence);
  EXPECT_EQ((*info)->owner, owner);
  EXPECT_GT((*info)->ttl_remaining, seconds(25));
  EXPECT_LE((*info)->ttl_remaining, seconds(30));

  auto ext = b_->Extend(key, (*g)->lock_id, seconds(60));
  ASSERT_TRUE(ext.ok()) << ext.status();
  EXPECT_EQ(*ext, seconds(60));
  EXPECT_EQ(b_->Release(key, std::string(32, 'a')).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(b_->Release(key, (*g)->lock_id).ok());
  EXPECT_EQ(b_->Release(key, (*g)->lock_id).code(), absl::StatusCode::kFailedPrecondition);
  auto none = b_->Info(key);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());

  auto again = b_->Acquire(key, seconds(30), std::nullopt);
  ASSERT_TRUE(again.ok());
  ASSERT_TRUE(again->has_value());
  EXPECT_GT((*again)->fence, (*other)->fence);
}

TEST_F(PostgresBackendTest, ExpiredLeaseIsNeverRevivedAndIsRegranted) {
  auto g = b_->Acquire("expiring", milliseconds(50), std::nullopt);
  ASSERT_TRUE(g.ok() && g->has_value());
  std::this_thread::sleep_for(milliseconds(120));
  EXPECT_EQ(b_->Extend("expiring", (*g)->lock_id, seconds(10)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(b_->Release("expiring", (*g)->lock_id).code(), absl::StatusCode::kFailedPrecondition);
  auto info = b_->Info("expiring");
  ASSERT_TRUE(info.ok());
  EXPECT_FALSE(info->has_value());
  auto next = b_->Acquire("expiring", seconds(10), std::nullopt);
  ASSERT_TRUE(next.ok() && next->has_value());
  EXPECT_GT((*next)->fence, (*g)->fence);
}

TEST_F(PostgresBackendTest, FencedRegisters) {
  const std::string res("reg\0ister", 9);
  const std::string value("va\0lue\xff", 7);
  auto a = b_->Acquire("fence-source-a", seconds(30), std::nullopt);
  auto b = b_->Acquire("fence-source-b", seconds(30), std::nullopt);
  ASSERT_TRUE(a.ok() && a->has_value() && b.ok() && b->has_value());
  const uint64_t older = (*a)->fence, newer = (*b)->fence;
  EXPECT_TRUE(b_->FencedSet(res, newer, value).ok());
  EXPECT_TRUE(b_->FencedSet(res, newer, value).ok());  // equal fence: same holder writing again
  absl::Status stale = b_->FencedSet(res, older, "old");
  EXPECT_EQ(stale.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(stale.message(),
            "fence " + std::to_string(older) + " is older than " + std::to_string(newer));
  auto got = b_->FencedGet(res);
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->value, value);
  EXPECT_EQ((*got)->fence, newer);
  // Fences the sequence never handed out are refused, up to 2^64-1 (numeric column), and change
  // nothing.
  for (uint64_t made_up : {newer + 1000, uint64_t{9223372036854775807u}, UINT64_MAX}) {
    absl::Status st = b_->FencedSet(res, made_up, "poison");
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
    EXPECT_THAT(std::string(st.message()),
                ::testing::HasSubstr("fence " + std::to_string(made_up) + " was never issued"));
  }
  got = b_->FencedGet(res);
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->fence, newer);
  auto none = b_->FencedGet("never-written");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
}

// Issue 10: values are read back correctly whatever the database's bytea_output.
TEST_F(PostgresBackendTest, ValuesReadBackWithAnEscapeByteaOutputDefault) {
  Session admin(server_->conninfo());
  ASSERT_EQ(admin.Run("CREATE DATABASE escapedb"), "");
  ASSERT_EQ(admin.Run("ALTER DATABASE escapedb SET bytea_output = 'escape'"), "");
  const std::string conninfo =
      "host=127.0.0.1 port=" + std::to_string(server_->port()) + " user=postgres dbname=escapedb";
  ASSERT_TRUE(MigratePostgres(conninfo).ok());
  auto b = NewPostgresBackend(conninfo);
  ASSERT_TRUE(b.ok()) << b.status();
  auto g = (*b)->Acquire("k", seconds(30), std::nullopt);
  ASSERT_TRUE(g.ok() && g->has_value());
  const std::string value("bin\0\\ary\xff\x01", 10);
  ASSERT_TRUE((*b)->FencedSet("r", (*g)->fence, value).ok());
  auto got = (*b)->FencedGet("r");
  ASSERT_TRUE(got.ok() && got->has_value()) << got.status();
  EXPECT_EQ((*got)->value, value);
}

// Issue 10: every transient state the server can be in answers Unavailable (retry), never -ERR.
// Each SQLSTATE is raised for real, by a trigger on the leases table, inside the backend's call.
TEST_F(PostgresBackendTest, EachTransientSqlstateIsUnavailable) {
  Session admin(server_->conninfo());
  ASSERT_EQ(admin.Run("CREATE DATABASE sqlstatedb"), "");
  const std::string conninfo =
      "host=127.0.0.1 port=" + std::to_string(server_->port()) + " user=postgres dbname=sqlstatedb";
  ASSERT_TRUE(MigratePostgres(conninfo).ok());
  Session db(conninfo);
  auto b = NewPostgresBackend(conninfo);
  ASSERT_TRUE(b.ok()) << b.status();
  int n = 0;
  for (const char* code : {"40001", "40P01", "55P03", "53100", "53200", "25006", "57P01"}) {
    ASSERT_EQ(db.Run(std::string("CREATE OR REPLACE FUNCTION fail_with() RETURNS trigger ") +
                     "LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'provoked' USING ERRCODE = '" +
                     code + "'; END $$"),
              "");
    ASSERT_EQ(db.Run("CREATE OR REPLACE TRIGGER fail BEFORE INSERT ON tollgate_leases "
                     "FOR EACH ROW EXECUTE FUNCTION fail_with()"),
              "");
    auto g = (*b)->Acquire("k" + std::to_string(n++), seconds(30), std::nullopt);
    EXPECT_EQ(g.status().code(), absl::StatusCode::kUnavailable) << code << ": " << g.status();
    EXPECT_THAT(std::string(g.status().message()), HasSubstr(code));
  }
  ASSERT_EQ(db.Run("DROP TRIGGER fail ON tollgate_leases"), "");
  // The backend recovers (reconnecting where it dropped its session).
  absl::StatusOr<std::optional<LeaseGrant>> ok = absl::UnavailableError("not tried");
  for (int i = 0; i < 20 && !ok.ok(); ++i) ok = (*b)->Acquire("after", seconds(30), std::nullopt);
  ASSERT_TRUE(ok.ok() && ok->has_value()) << ok.status();
}

// Issue 10: states of a demoted primary, a lock timeout (and the other transient conflicts) are
// Unavailable (retry), never InvalidArgument/Internal (-ERR: bad input).
TEST_F(PostgresBackendTest, ReadOnlyAndLockTimeoutAreUnavailable) {
  Session admin(server_->conninfo());
  ASSERT_EQ(admin.Run("CREATE DATABASE readonlydb"), "");
  const std::string base =
      "host=127.0.0.1 port=" + std::to_string(server_->port()) + " user=postgres dbname=";
  ASSERT_TRUE(MigratePostgres(base + "readonlydb").ok());
  ASSERT_EQ(admin.Run("ALTER DATABASE readonlydb SET default_transaction_read_only = on"), "");
  auto ro = NewPostgresBackend(base + "readonlydb");
  ASSERT_TRUE(ro.ok()) << ro.status();
  auto g = (*ro)->Acquire("k", seconds(30), std::nullopt);
  EXPECT_EQ(g.status().code(), absl::StatusCode::kUnavailable) << g.status();
  EXPECT_THAT(std::string(g.status().message()), HasSubstr("25006"));

  ASSERT_EQ(admin.Run("CREATE DATABASE lockdb"), "");
  ASSERT_TRUE(MigratePostgres(base + "lockdb").ok());
  ASSERT_EQ(admin.Run("ALTER DATABASE lockdb SET lock_timeout = '100ms'"), "");
  Session locker(base + "lockdb");
  ASSERT_EQ(locker.Run("BEGIN"), "");
  ASSERT_EQ(locker.Run("LOCK TABLE tollgate_leases IN ACCESS EXCLUSIVE MODE"), "");
  auto lb = NewPostgresBackend(base + "lockdb");
  ASSERT_TRUE(lb.ok()) << lb.status();
  auto lg = (*lb)->Acquire("k", seconds(30), std::nullopt);
  EXPECT_EQ(lg.status().code(), absl::StatusCode::kUnavailable) << lg.status();
  EXPECT_THAT(std::string(lg.status().message()), HasSubstr("55P03"));
  ASSERT_EQ(locker.Run("ROLLBACK"), "");
  // The connection was kept and works once the lock is gone.
  auto after = (*lb)->Acquire("k", seconds(30), std::nullopt);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_TRUE(after->has_value());
}

TEST_F(PostgresBackendTest, FenceCheckGuardsTheUsersOwnTable) {
  Session app(server_->conninfo());
  ASSERT_TRUE(app.ok());
  ASSERT_EQ(app.Run("CREATE TABLE accounts (id text PRIMARY KEY, balance int NOT NULL)"), "");
  ASSERT_EQ(app.Run("INSERT INTO accounts VALUES ('acct-1', 0)"), "");
  auto write = [&](int fence, int balance) {
    const std::string f = std::to_string(fence);
    std::string err = app.Run("BEGIN");
    if (err.empty()) err = app.Run("SELECT tollgate_fence_check('acct-1', " + f + ")");
    if (err.empty()) {
      err = app.Run("UPDATE accounts SET balance = " + std::to_string(balance) +
                    " WHERE id = 'acct-1'");
    }
    if (err.empty()) return app.Run("COMMIT");
    app.Run("ROLLBACK");
    return err;
  };
  EXPECT_EQ(write(5, 100), "");
  EXPECT_EQ(write(5, 150), "");  // equal fence accepted
  EXPECT_EQ(write(4, 999), "TGF01: fence 4 is older than 5");
  EXPECT_EQ(app.Value("SELECT balance FROM accounts WHERE id = 'acct-1'"), "150");
  EXPECT_EQ(write(9, 200), "");
  EXPECT_EQ(write(5, 999), "TGF01: fence 5 is older than 9");
  EXPECT_EQ(app.Value("SELECT balance FROM accounts WHERE id = 'acct-1'"), "200");
  EXPECT_THAT(app.Run("SELECT tollgate_fence_check('acct-1', 0)"), HasSubstr("22023"));

  // Writers of one resource are serialized: an older fence waiting behind a newer one's open
  // transaction is rejected once the newer commits.
  Session newer(server_->conninfo());
  ASSERT_EQ(newer.Run("BEGIN"), "");
  ASSERT_EQ(newer.Run("SELECT tollgate_fence_check('acct-1', 12)"), "");
  std::string older_result;
  std::thread older([&] { older_result = write(10, 999); });
  std::this_thread::sleep_for(milliseconds(200));
  ASSERT_EQ(newer.Run("UPDATE accounts SET balance = 300 WHERE id = 'acct-1'"), "");
  ASSERT_EQ(newer.Run("COMMIT"), "");
  older.join();
  EXPECT_EQ(older_result, "TGF01: fence 10 is older than 12");
  EXPECT_EQ(app.Value("SELECT balance FROM accounts WHERE id = 'acct-1'"), "300");
}

TEST_F(PostgresBackendTest, ThrottleIsExact) {
  // A rate of one nano-token per second: no refill during the test.
  const BucketParams p{Nanos(300'000'000), Nanos(1)};  // capacity 0.3
  const Decimal tenth = Nanos(100'000'000);
  for (int i = 0; i < 3; ++i) {
    auto d = b_->Throttle("exact", p, tenth);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_TRUE(d->allowed) << i;
    EXPECT_EQ(d->retry_after, Duration(0));
    EXPECT_EQ(d->remaining, 0u);
  }
  auto denied = b_->Throttle("exact", p, tenth);
  ASSERT_TRUE(denied.ok());
  EXPECT_FALSE(denied->allowed);
  ASSERT_TRUE(denied->retry_after.has_value());
  // 0.1 token at 1e-9 tokens/s is 1e8 s, minus the microseconds that passed.
  EXPECT_GT(*denied->retry_after, seconds(99'999'990));
  EXPECT_LE(*denied->retry_after, seconds(100'000'000));

  const BucketParams ten{D(10), D(1)};
  auto first = b_->Throttle("whole", ten, D(4));
  ASSERT_TRUE(first.ok() && first->allowed);
  EXPECT_EQ(first->remaining, 6u);
  EXPECT_GT(first->reset_after, milliseconds(3'900));
  EXPECT_LE(first->reset_after, seconds(4));
  auto never = b_->Throttle("whole", ten, D(11));
  ASSERT_TRUE(never.ok());
  EXPECT_FALSE(never->allowed);
  EXPECT_FALSE(never->retry_after.has_value());
  auto too_much = b_->Throttle("whole", ten, D(7));
  ASSERT_TRUE(too_much.ok());
  EXPECT_FALSE(too_much->allowed);
  ASSERT_TRUE(too_much->retry_after.has_value());
  EXPECT_GT(*too_much->retry_after, milliseconds(900));
  EXPECT_LE(*too_much->retry_after, seconds(1));
  // Denials consumed nothing.
  auto six = b_->Throttle("whole", ten, D(6));
  ASSERT_TRUE(six.ok());
  EXPECT_TRUE(six->allowed);
}

TEST_F(PostgresBackendTest, CheckLayersIsAllOrNothing) {
  std::vector<LayerCheck> layers = {
      {"global", "g", {D(5), Nanos(1)}, false},
      {"user", "u1", {D(2), Nanos(1)}, false},
      {"audit", "a", {D(1), Nanos(1)}, true},
  };
  auto one = b_->CheckLayers(layers, D(1));
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_TRUE(one->allowed);
  EXPECT_EQ(one->remaining, 1u);
  auto two = b_->CheckLayers(layers, D(1));  // the shadow layer is empty now: still allowed
  ASSERT_TRUE(two.ok());
  EXPECT_TRUE(two->allowed);
  EXPECT_EQ(two->remaining, 0u);
  auto three = b_->CheckLayers(layers, D(1));
  ASSERT_TRUE(three.ok());
  EXPECT_FALSE(three->allowed);
  EXPECT_EQ(three->denied_layer, "user");
  ASSERT_TRUE(three->retry_after.has_value());
  EXPECT_GT(*three->retry_after, Duration(0));
  // The global layer was charged twice, not three times.
  std::vector<LayerCheck> global = {layers[0]};
  auto g = b_->CheckLayers(global, D(3));
  ASSERT_TRUE(g.ok());
  EXPECT_TRUE(g->allowed);
  EXPECT_EQ(g->remaining, 0u);
  // Same key in another layer is another bucket; and a layer name never collides with Throttle.
  std::vector<LayerCheck> other = {{"other", "g", {D(5), Nanos(1)}, false}};
  auto o = b_->CheckLayers(other, D(5));
  ASSERT_TRUE(o.ok());
  EXPECT_TRUE(o->allowed);
}

TEST_F(PostgresBackendTest, ConcurrentLayerChecksDoNotDeadlockOrOvercharge) {
  std::vector<std::thread> ts;
  std::atomic<int> allowed{0}, errors{0};
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&, t] {
      auto b = NewPostgresBackend(server_->conninfo());
      if (!b.ok()) {
        errors++;
        return;
      }
      // Opposite layer orders from different threads.
      std::vector<LayerCheck> l = {{"x", "shared-1", {D(40), Nanos(1)}, false},
                                   {"y", "shared-2", {D(1000), Nanos(1)}, false}};
      if (t % 2 == 1) std::swap(l[0], l[1]);
      for (int i = 0; i < 25; ++i) {
        auto d = (*b)->CheckLayers(l, D(1));
        if (!d.ok()) {
          errors++;
        } else if (d->allowed) {
          allowed++;
        }
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(allowed.load(), 40);
}

TEST_F(PostgresBackendTest, ABlockedCallTimesOutAsUnavailableAndTheNextCallWorks) {
  auto b = NewPostgresBackend(server_->conninfo(), milliseconds(300));
  ASSERT_TRUE(b.ok()) << b.status();
  auto g = (*b)->Acquire("blocked", seconds(30), std::nullopt);
  ASSERT_TRUE(g.ok() && g->has_value());
  Session blocker(server_->conninfo());
  ASSERT_EQ(blocker.Run("BEGIN"), "");
  ASSERT_EQ(blocker.Run("SELECT * FROM tollgate_leases WHERE key = 'blocked'::bytea FOR UPDATE"),
            "");
  const auto start = std::chrono::steady_clock::now();
  auto ext = (*b)->Extend("blocked", (*g)->lock_id, seconds(30));
  EXPECT_EQ(ext.status().code(), absl::StatusCode::kUnavailable) << ext.status();
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(2));
  ASSERT_EQ(blocker.Run("ROLLBACK"), "");
  auto again = (*b)->Extend("blocked", (*g)->lock_id, seconds(30));
  EXPECT_TRUE(again.ok()) << again.status();
}

// Semaphores and multi-key locks (issue 11).

SemAcquireRequest Sem(const std::string& key, int64_t limit, Duration ttl,
                      std::optional<std::string> owner = std::nullopt) {
  SemAcquireRequest req;
  req.key = key;
  req.limit = limit;
  req.ttl = ttl;
  req.owner = std::move(owner);
  return req;
}

MultiAcquireRequest Multi(std::vector<std::string> keys, Duration ttl) {
  MultiAcquireRequest req;
  req.keys = std::move(keys);
  req.ttl = ttl;
  return req;
}

TEST_F(PostgresBackendTest, SemaphoreGrantsTheLowestFreeSlot) {
  const std::string key("sem\0slots", 9);
  std::vector<PermitGrant> permits;
  for (int i = 0; i < 3; ++i) {
    auto p = b_->SemAcquire(Sem(key, 3, seconds(30), "worker"));
    ASSERT_TRUE(p.ok()) << p.status();
    ASSERT_TRUE(p->has_value()) << i;
    EXPECT_EQ((*p)->slot, i);
    EXPECT_EQ((*p)->ttl, seconds(30));
    EXPECT_EQ((*p)->permit_id.size(), 32u);
    if (!permits.empty()) {
      EXPECT_GT((*p)->fence, permits.back().fence);
      EXPECT_NE((*p)->permit_id, permits.back().permit_id);
    }
    permits.push_back(**p);
  }
  auto full = b_->SemAcquire(Sem(key, 3, seconds(30)));
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_FALSE(full->has_value());
  // Freeing slot 1 then slot 0: the next grants take 0, then 1.
  ASSERT_TRUE(b_->SemRelease(key, permits[1].permit_id).ok());
  ASSERT_TRUE(b_->SemRelease(key, permits[0].permit_id).ok());
  auto a = b_->SemAcquire(Sem(key, 3, seconds(30)));
  auto b = b_->SemAcquire(Sem(key, 3, seconds(30)));
  ASSERT_TRUE(a.ok() && a->has_value() && b.ok() && b->has_value());
  EXPECT_EQ((*a)->slot, 0);
  EXPECT_EQ((*b)->slot, 1);
  EXPECT_GT((*a)->fence, permits[2].fence);
  EXPECT_GT((*b)->fence, (*a)->fence);
}

TEST_F(PostgresBackendTest, SemaphoreLimitMismatchNamesBothLimitsAndChangesNothing) {
  auto p = b_->SemAcquire(Sem("sem-mismatch", 2, seconds(30)));
  ASSERT_TRUE(p.ok() && p->has_value()) << p.status();
  auto bad = b_->SemAcquire(Sem("sem-mismatch", 5, seconds(30)));
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message(),
            "limit 5 differs from the limit 2 of the current holders of semaphore "
            "\"sem-mismatch\"");
  auto info = b_->SemInfo("sem-mismatch");
  ASSERT_TRUE(info.ok() && info->has_value()) << info.status();
  EXPECT_EQ((*info)->limit, 2);
  EXPECT_EQ((*info)->holders, 1);
  EXPECT_EQ((*info)->fence, (*p)->fence);
  // A long binary key is cut to 64 bytes in the message.
  const std::string long_key = std::string(70, 'k') + std::string("\0z", 2);
  ASSERT_TRUE(b_->SemAcquire(Sem(long_key, 1, seconds(30))).ok());
  auto bad_long = b_->SemAcquire(Sem(long_key, 7, seconds(30)));
  EXPECT_EQ(bad_long.status().message(),
            "limit 7 differs from the limit 1 of the current holders of semaphore \"" +
                std::string(64, 'k') + "\"");
  // Invalid requests never reach the database.
  EXPECT_EQ(b_->SemAcquire(Sem("sem-mismatch", 0, seconds(30))).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      b_->SemAcquire(Sem("sem-mismatch", kMaxSemaphoreLimit + 1, seconds(30))).status().code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b_->SemAcquire(Sem("", 1, seconds(30))).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b_->SemAcquire(Sem("s", 1, Duration(0))).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(PostgresBackendTest, ExpiredPermitFreesItsSlotAndIsNeverRevived) {
  auto p = b_->SemAcquire(Sem("sem-expiry", 1, milliseconds(50)));
  ASSERT_TRUE(p.ok() && p->has_value()) << p.status();
  auto full = b_->SemAcquire(Sem("sem-expiry", 1, seconds(30)));
  ASSERT_TRUE(full.ok());
  EXPECT_FALSE(full->has_value());
  std::this_thread::sleep_for(milliseconds(120));
  EXPECT_EQ(b_->SemExtend("sem-expiry", (*p)->permit_id, seconds(30)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(b_->SemRelease("sem-expiry", (*p)->permit_id).code(),
            absl::StatusCode::kFailedPrecondition);
  auto none = b_->SemInfo("sem-expiry");
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->has_value());
  // The slot is free again, and with no unexpired holder any limit is accepted.
  auto next = b_->SemAcquire(Sem("sem-expiry", 4, seconds(30)));
  ASSERT_TRUE(next.ok() && next->has_value()) << next.status();
  EXPECT_EQ((*next)->slot, 0);
  EXPECT_GT((*next)->fence, (*p)->fence);
  // The old permit does not come back with its slot.
  EXPECT_EQ(b_->SemRelease("sem-expiry", (*p)->permit_id).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(PostgresBackendTest, SemaphoreReleaseExtendAndInfo) {
  auto none = b_->SemInfo("sem-info");
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->has_value());
  auto a = b_->SemAcquire(Sem("sem-info", 3, milliseconds(300)));
  auto b = b_->SemAcquire(Sem("sem-info", 3, seconds(30)));
  ASSERT_TRUE(a.ok() && a->has_value() && b.ok() && b->has_value());
  auto info = b_->SemInfo("sem-info");
  ASSERT_TRUE(info.ok() && info->has_value()) << info.status();
  EXPECT_EQ((*info)->limit, 3);
  EXPECT_EQ((*info)->holders, 2);
  EXPECT_EQ((*info)->waiters, 0u);
  EXPECT_EQ((*info)->fence, (*b)->fence);

  // Extending keeps `a` alive past its first expiry.
  auto ext = b_->SemExtend("sem-info", (*a)->permit_id, seconds(30));
  ASSERT_TRUE(ext.ok()) << ext.status();
  EXPECT_EQ(*ext, seconds(30));
  std::this_thread::sleep_for(milliseconds(400));
  info = b_->SemInfo("sem-info");
  ASSERT_TRUE(info.ok() && info->has_value());
  EXPECT_EQ((*info)->holders, 2);

  // Releasing the newest permit: Info shows the fence of the newest remaining one.
  ASSERT_TRUE(b_->SemRelease("sem-info", (*b)->permit_id).ok());
  EXPECT_EQ(b_->SemRelease("sem-info", (*b)->permit_id).code(),
            absl::StatusCode::kFailedPrecondition);
  info = b_->SemInfo("sem-info");
  ASSERT_TRUE(info.ok() && info->has_value());
  EXPECT_EQ((*info)->holders, 1);
  EXPECT_EQ((*info)->fence, (*a)->fence);
  // Wrong key, unknown or malformed ids hold nothing.
  EXPECT_EQ(b_->SemRelease("sem-other", (*a)->permit_id).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(b_->SemRelease("sem-info", std::string(32, 'a')).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(b_->SemRelease("sem-info", "not-a-permit").code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(b_->SemExtend("sem-info", "not-a-permit", seconds(1)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(b_->SemExtend("sem-info", (*a)->permit_id, Duration(0)).status().code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(b_->SemRelease("sem-info", (*a)->permit_id).ok());
  none = b_->SemInfo("sem-info");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
}

TEST_F(PostgresBackendTest, SemaphoreKeysAreTheirOwnNamespace) {
  auto lease = b_->Acquire("jobs-ns", seconds(30), std::nullopt);
  ASSERT_TRUE(lease.ok() && lease->has_value());
  auto permit = b_->SemAcquire(Sem("jobs-ns", 1, seconds(30)));
  ASSERT_TRUE(permit.ok() && permit->has_value()) << permit.status();
  EXPECT_EQ(b_->Release("jobs-ns", (*permit)->permit_id).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(b_->SemRelease("jobs-ns", (*lease)->lock_id).code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(b_->Release("jobs-ns", (*lease)->lock_id).ok());
  auto info = b_->SemInfo("jobs-ns");
  ASSERT_TRUE(info.ok() && info->has_value());
  EXPECT_EQ((*info)->holders, 1);
}

TEST_F(PostgresBackendTest, FencesStrictlyIncreaseAcrossLeasesPermitsAndMultiKeyGrants) {
  uint64_t last = 0;
  for (int i = 0; i < 5; ++i) {
    const std::string n = std::to_string(i);
    auto lease = b_->Acquire("order-lease-" + n, seconds(30), std::nullopt);
    ASSERT_TRUE(lease.ok() && lease->has_value());
    EXPECT_GT((*lease)->fence, last);
    last = (*lease)->fence;
    auto permit = b_->SemAcquire(Sem("order-sem", 10, seconds(30)));
    ASSERT_TRUE(permit.ok() && permit->has_value()) << permit.status();
    EXPECT_GT((*permit)->fence, last);
    last = (*permit)->fence;
    auto multi = b_->MultiAcquire(Multi({"order-m1-" + n, "order-m2-" + n}, seconds(30)));
    ASSERT_TRUE(multi.ok() && multi->has_value()) << multi.status();
    EXPECT_GT((*multi)->fence, last);
    last = (*multi)->fence;
  }
}

TEST_F(PostgresBackendTest, MultiAcquireIsAllOrNothing) {
  auto b = b_->Acquire("m-b", seconds(30), std::nullopt);
  ASSERT_TRUE(b.ok() && b->has_value());
  auto refused = b_->MultiAcquire(Multi({"m-a", "m-b", "m-c"}, seconds(30)));
  ASSERT_TRUE(refused.ok()) << refused.status();
  EXPECT_FALSE(refused->has_value());
  for (const char* k : {"m-a", "m-c"}) {
    auto info = b_->Info(k);
    ASSERT_TRUE(info.ok());
    EXPECT_FALSE(info->has_value()) << k;  // nothing was taken
  }
  ASSERT_TRUE(b_->Release("m-b", (*b)->lock_id).ok());
  MultiAcquireRequest req = Multi({"m-c", "m-a", std::string("m-\0b", 4), "m-b"}, seconds(30));
  req.owner = "batch";
  auto g = b_->MultiAcquire(req);
  ASSERT_TRUE(g.ok() && g->has_value()) << g.status();
  EXPECT_EQ((*g)->lock_id.size(), 32u);
  EXPECT_GT((*g)->fence, (*b)->fence);
  EXPECT_EQ((*g)->ttl, seconds(30));
  for (const std::string& k : req.keys) {
    auto info = b_->Info(k);
    ASSERT_TRUE(info.ok() && info->has_value());
    EXPECT_EQ((*info)->fence, (*g)->fence);
    EXPECT_EQ((*info)->owner, "batch");
    auto taken = b_->Acquire(k, seconds(1), std::nullopt);
    ASSERT_TRUE(taken.ok());
    EXPECT_FALSE(taken->has_value());
  }
  // Each key is an ordinary lease: released or extended alone.
  ASSERT_TRUE(b_->Release("m-a", (*g)->lock_id).ok());
  auto ext = b_->Extend("m-c", (*g)->lock_id, seconds(60));
  ASSERT_TRUE(ext.ok()) << ext.status();
  auto again = b_->MultiAcquire(Multi({"m-a", "m-c"}, seconds(30)));
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->has_value());
  // Expired keys count as free.
  auto short_lived = b_->MultiAcquire(Multi({"m-x", "m-y"}, milliseconds(50)));
  ASSERT_TRUE(short_lived.ok() && short_lived->has_value());
  std::this_thread::sleep_for(milliseconds(120));
  auto after = b_->MultiAcquire(Multi({"m-y", "m-x", "m-z"}, seconds(30)));
  ASSERT_TRUE(after.ok() && after->has_value()) << after.status();
  EXPECT_GT((*after)->fence, (*short_lived)->fence);
  // Bad requests never reach the database.
  EXPECT_EQ(b_->MultiAcquire(Multi({}, seconds(1))).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto dup = b_->MultiAcquire(Multi({"d", "d"}, seconds(1)));
  EXPECT_EQ(dup.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(dup.status().message()), HasSubstr("given twice"));
  std::vector<std::string> too_many;
  for (size_t i = 0; i <= kMaxMultiKeys; ++i) too_many.push_back("many-" + std::to_string(i));
  EXPECT_EQ(b_->MultiAcquire(Multi(too_many, seconds(1))).status().code(),
            absl::StatusCode::kInvalidArgument);
  too_many.pop_back();  // exactly kMaxMultiKeys: fine
  auto max = b_->MultiAcquire(Multi(too_many, seconds(30)));
  ASSERT_TRUE(max.ok() && max->has_value()) << max.status();
}

TEST_F(PostgresBackendTest, MultiReleaseCountsTheKeysItReleased) {
  const std::vector<std::string> keys = {"mr-a", "mr-b", "mr-c"};
  auto g = b_->MultiAcquire(Multi(keys, seconds(30)));
  ASSERT_TRUE(g.ok() && g->has_value()) << g.status();
  ASSERT_TRUE(b_->Release("mr-b", (*g)->lock_id).ok());
  auto other = b_->Acquire("mr-b", seconds(30), std::nullopt);
  ASSERT_TRUE(other.ok() && other->has_value());
  auto n = b_->MultiRelease(keys, (*g)->lock_id);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 2u);
  auto held = b_->Info("mr-b");  // another holder's key is untouched
  ASSERT_TRUE(held.ok() && held->has_value());
  EXPECT_EQ((*held)->fence, (*other)->fence);
  n = b_->MultiRelease(keys, (*g)->lock_id);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 0u);
  n = b_->MultiRelease(keys, "not-a-lock-id");
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 0u);
  EXPECT_EQ(b_->MultiRelease(std::vector<std::string>{"x", "x"}, (*g)->lock_id).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(PostgresBackendTest, MultiExtendIsAllOrNone) {
  const std::vector<std::string> keys = {"me-a", "me-b"};
  auto g = b_->MultiAcquire(Multi(keys, seconds(5)));
  ASSERT_TRUE(g.ok() && g->has_value()) << g.status();
  auto ext = b_->MultiExtend(keys, (*g)->lock_id, seconds(60));
  ASSERT_TRUE(ext.ok()) << ext.status();
  EXPECT_EQ(*ext, seconds(60));
  for (const std::string& k : keys) {
    auto info = b_->Info(k);
    ASSERT_TRUE(info.ok() && info->has_value());
    EXPECT_GT((*info)->ttl_remaining, seconds(55));
  }
  // One key lost: nothing is extended.
  ASSERT_TRUE(b_->Release("me-a", (*g)->lock_id).ok());
  auto partial = b_->MultiExtend(keys, (*g)->lock_id, seconds(600));
  EXPECT_EQ(partial.status().code(), absl::StatusCode::kFailedPrecondition);
  auto b = b_->Info("me-b");
  ASSERT_TRUE(b.ok() && b->has_value());
  EXPECT_LE((*b)->ttl_remaining, seconds(60));
  // The remaining key alone extends fine.
  auto one = b_->MultiExtend(std::vector<std::string>{"me-b"}, (*g)->lock_id, seconds(600));
  EXPECT_TRUE(one.ok()) << one.status();
  // Expired keys are never revived.
  auto short_lived = b_->MultiAcquire(Multi({"me-x", "me-y"}, milliseconds(50)));
  ASSERT_TRUE(short_lived.ok() && short_lived->has_value());
  std::this_thread::sleep_for(milliseconds(120));
  EXPECT_EQ(b_->MultiExtend(std::vector<std::string>{"me-x", "me-y"}, (*short_lived)->lock_id,
                            seconds(30))
                .status()
                .code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(b_->MultiExtend(keys, "not-a-lock-id", seconds(1)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(b_->MultiExtend(keys, (*g)->lock_id, Duration(0)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Several connections hammer one semaphore: never more than `limit` permits at once, never two in
// one slot, and no call fails (no deadlock, no serialization error).
TEST_F(PostgresBackendTest, ConcurrentSemAcquireNeverExceedsTheLimit) {
  constexpr int kLimit = 3, kThreads = 6, kRounds = 40;
  std::atomic<int> holding{0}, max_holding{0}, granted{0}, errors{0}, collisions{0};
  std::vector<std::atomic<bool>> slots(kLimit);
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&] {
      auto b = NewPostgresBackend(server_->conninfo());
      if (!b.ok()) {
        errors++;
        return;
      }
      for (int i = 0; i < kRounds; ++i) {
        auto p = (*b)->SemAcquire(Sem("sem-race", kLimit, seconds(30)));
        if (!p.ok() || (p->has_value() && ((*p)->slot < 0 || (*p)->slot >= kLimit))) {
          errors++;
          continue;
        }
        if (!p->has_value()) continue;
        granted++;
        if (slots[static_cast<size_t>((*p)->slot)].exchange(true)) collisions++;
        const int now = ++holding;
        int seen = max_holding.load();
        while (now > seen && !max_holding.compare_exchange_weak(seen, now)) {
        }
        std::this_thread::sleep_for(milliseconds(1));
        holding--;
        slots[static_cast<size_t>((*p)->slot)] = false;
        if (!(*b)->SemRelease("sem-race", (*p)->permit_id).ok()) errors++;
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(collisions.load(), 0);
  EXPECT_LE(max_holding.load(), kLimit);
  EXPECT_GT(granted.load(), kLimit);
}

// Multi-key acquirers taking overlapping keys in opposite orders, with single-key acquirers in
// between: no deadlock (every call answers), and no key is ever held twice.
TEST_F(PostgresBackendTest, ConcurrentMultiAcquireDoesNotDeadlock) {
  std::atomic<int> errors{0}, granted{0}, overlaps{0};
  std::vector<std::atomic<int>> holders(3);
  std::vector<std::thread> ts;
  for (int t = 0; t < 6; ++t) {
    ts.emplace_back([&, t] {
      auto b = NewPostgresBackend(server_->conninfo());
      if (!b.ok()) {
        errors++;
        return;
      }
      std::vector<int> mine = t % 3 == 0   ? std::vector<int>{0, 1, 2}
                              : t % 3 == 1 ? std::vector<int>{2, 1, 0}
                                           : std::vector<int>{1};
      std::vector<std::string> keys;
      for (int k : mine) keys.push_back("mdl-" + std::to_string(k));
      for (int i = 0; i < 30; ++i) {
        absl::StatusOr<std::optional<LeaseGrant>> g =
            keys.size() == 1 ? (*b)->Acquire(keys[0], seconds(30), std::nullopt)
                             : (*b)->MultiAcquire(Multi(keys, seconds(30)));
        if (!g.ok()) {
          errors++;
          continue;
        }
        if (!g->has_value()) continue;
        granted++;
        for (int k : mine) {
          if (++holders[static_cast<size_t>(k)] != 1) overlaps++;
        }
        std::this_thread::sleep_for(milliseconds(1));
        for (int k : mine) holders[static_cast<size_t>(k)]--;
        auto n = (*b)->MultiRelease(keys, (*g)->lock_id);
        if (!n.ok() || *n != keys.size()) errors++;
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_GT(granted.load(), 0);
}

// A database at schema version 2 (as the previous release installed it, with a lease held): the
// backend refuses it naming both versions; `tollgate migrate` upgrades it in place, keeping the
// lease, and semaphores and multi-key locks then work.
TEST_F(PostgresBackendTest, MigrateUpgradesThePreviousSchemaVersion) {
  const std::string conninfo = DatabaseAtSchema("schemav2", 2);
  ASSERT_FALSE(conninfo.empty());
  Session db(conninfo);
  const std::string old_fence = db.Value(
      "SELECT tollgate_acquire('\\x6f6c64'::bytea, '0123456789abcdef0123456789abcdef', "
      "30000000000, NULL)");
  ASSERT_EQ(old_fence, "1");

  std::unique_ptr<Backend> b = RefusedThenMigrated(conninfo, 2);
  ASSERT_NE(b, nullptr);
  auto old = b->Info("old");
  ASSERT_TRUE(old.ok() && old->has_value()) << old.status();
  EXPECT_EQ((*old)->fence, 1u);
  auto taken = b->MultiAcquire(Multi({"new", "old"}, seconds(30)));
  ASSERT_TRUE(taken.ok()) << taken.status();
  EXPECT_FALSE(taken->has_value());
  auto multi = b->MultiAcquire(Multi({"new", "other"}, seconds(30)));
  ASSERT_TRUE(multi.ok() && multi->has_value()) << multi.status();
  EXPECT_GT((*multi)->fence, 1u);
  auto permit = b->SemAcquire(Sem("old", 2, seconds(30)));
  ASSERT_TRUE(permit.ok() && permit->has_value()) << permit.status();
  EXPECT_GT((*permit)->fence, (*multi)->fence);
  EXPECT_TRUE(MigratePostgres(conninfo).ok());  // and again: idempotent
}

// Schema version 4: acquisition times (the tollgate process's wall clock, kept by Extend) and the
// reverse index lock_id -> key, which finds only live single-key leases held by that lock_id.
TEST_F(PostgresBackendTest, AcquiredAtAndLookupById) {
  const WallTime before = std::chrono::system_clock::now();
  auto g = b_->Acquire(std::string("lookup\0key", 10), seconds(30), "worker-7");
  const WallTime after = std::chrono::system_clock::now();
  ASSERT_TRUE(g.ok() && g->has_value()) << g.status();
  EXPECT_GE((*g)->acquired_at, before);
  EXPECT_LE((*g)->acquired_at, after);

  auto info = b_->Info(std::string("lookup\0key", 10));
  ASSERT_TRUE(info.ok() && info->has_value()) << info.status();
  EXPECT_EQ((*info)->lock_id, (*g)->lock_id);
  EXPECT_EQ((*info)->acquired_at, (*g)->acquired_at);

  auto found = b_->LookupById((*g)->lock_id);
  ASSERT_TRUE(found.ok() && found->has_value()) << found.status();
  EXPECT_EQ((*found)->key, std::string("lookup\0key", 10));
  EXPECT_EQ((*found)->info.fence, (*g)->fence);
  EXPECT_EQ((*found)->info.owner, "worker-7");
  EXPECT_EQ((*found)->info.lock_id, (*g)->lock_id);
  EXPECT_EQ((*found)->info.acquired_at, (*g)->acquired_at);
  EXPECT_GT((*found)->info.ttl_remaining, seconds(29));
  EXPECT_EQ((*found)->info.waiters, 0u);

  std::this_thread::sleep_for(milliseconds(5));
  ASSERT_TRUE(b_->Extend(std::string("lookup\0key", 10), (*g)->lock_id, seconds(60)).ok());
  found = b_->LookupById((*g)->lock_id);
  ASSERT_TRUE(found.ok() && found->has_value()) << found.status();
  EXPECT_EQ((*found)->info.acquired_at, (*g)->acquired_at);
  EXPECT_GT((*found)->info.ttl_remaining, seconds(59));

  ASSERT_TRUE(b_->Release(std::string("lookup\0key", 10), (*g)->lock_id).ok());
  found = b_->LookupById((*g)->lock_id);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_FALSE(found->has_value());

  // Unknown and malformed ids.
  found = b_->LookupById("0123456789abcdef0123456789abcdef");
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_FALSE(found->has_value());
  for (const char* bad : {"", "0123456789ABCDEF0123456789ABCDEF", "0123456789abcdef",
                          "0123456789abcdef0123456789abcdeg", "x' OR true --"}) {
    auto r = b_->LookupById(bad);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(r.status().message(), "lock_id must be 32 lowercase hex characters");
  }

  // A multi-key grant records acquired_at on every key but is not found by its lock_id.
  auto multi = b_->MultiAcquire(Multi({"lookup-m1", "lookup-m2"}, seconds(30)));
  ASSERT_TRUE(multi.ok() && multi->has_value()) << multi.status();
  EXPECT_GE((*multi)->acquired_at, before);
  auto m1 = b_->Info("lookup-m1");
  ASSERT_TRUE(m1.ok() && m1->has_value());
  EXPECT_EQ((*m1)->acquired_at, (*multi)->acquired_at);
  EXPECT_EQ((*m1)->lock_id, (*multi)->lock_id);
  found = b_->LookupById((*multi)->lock_id);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_FALSE(found->has_value());
  auto one = b_->MultiAcquire(Multi({"lookup-m3"}, seconds(30)));  // a group of one key
  ASSERT_TRUE(one.ok() && one->has_value()) << one.status();
  found = b_->LookupById((*one)->lock_id);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_FALSE(found->has_value());
  // A key once held by a group and then granted alone is found again.
  ASSERT_TRUE(b_->Release("lookup-m3", (*one)->lock_id).ok());
  auto single = b_->Acquire("lookup-m3", seconds(30), std::nullopt);
  ASSERT_TRUE(single.ok() && single->has_value());
  found = b_->LookupById((*single)->lock_id);
  ASSERT_TRUE(found.ok() && found->has_value()) << found.status();
  EXPECT_EQ((*found)->key, "lookup-m3");
}

TEST_F(PostgresBackendTest, LookupByIdFindsNothingOnceTheLeaseExpiredOrWasRegranted) {
  auto g = b_->Acquire("lookup-exp", milliseconds(50), std::nullopt);
  ASSERT_TRUE(g.ok() && g->has_value());
  auto found = b_->LookupById((*g)->lock_id);
  ASSERT_TRUE(found.ok() && found->has_value());
  std::this_thread::sleep_for(milliseconds(80));
  found = b_->LookupById((*g)->lock_id);  // expired: the row is still there, not live
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_FALSE(found->has_value());
  auto next = b_->Acquire("lookup-exp", seconds(30), std::nullopt);  // reuses the row
  ASSERT_TRUE(next.ok() && next->has_value());
  found = b_->LookupById((*g)->lock_id);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_FALSE(found->has_value());
  found = b_->LookupById((*next)->lock_id);
  ASSERT_TRUE(found.ok() && found->has_value()) << found.status();
  EXPECT_EQ((*found)->info.fence, (*next)->fence);
  EXPECT_EQ((*found)->info.acquired_at, (*next)->acquired_at);
}

// A database at schema version 3 (the previous release), with a single-key lease and a multi-key
// grant held: the backend refuses it; `tollgate migrate` upgrades it in place; the old leases have
// no acquisition time, the single one is found by its lock_id and the group's keys are not.
TEST_F(PostgresBackendTest, MigrateUpgradesSchemaVersion3) {
  const std::string conninfo = DatabaseAtSchema("schemav3", 3);
  ASSERT_FALSE(conninfo.empty());
  Session db(conninfo);
  const std::string old_id = "0123456789abcdef0123456789abcdef";
  const std::string group_id = "fedcba9876543210fedcba9876543210";
  ASSERT_EQ(
      db.Value("SELECT tollgate_acquire('\\x6f6c64'::bytea, '" + old_id + "', 30000000000, NULL)"),
      "1");
  ASSERT_EQ(db.Value("SELECT tollgate_multi_acquire(ARRAY['\\x6731'::bytea, '\\x6732'::bytea], '" +
                     group_id + "', 30000000000, NULL)"),
            "2");

  std::unique_ptr<Backend> b = RefusedThenMigrated(conninfo, 3);
  ASSERT_NE(b, nullptr);
  auto old = b->Info("old");
  ASSERT_TRUE(old.ok() && old->has_value()) << old.status();
  EXPECT_EQ((*old)->fence, 1u);
  EXPECT_EQ((*old)->lock_id, old_id);
  EXPECT_EQ((*old)->acquired_at, std::nullopt);
  auto found = b->LookupById(old_id);
  ASSERT_TRUE(found.ok() && found->has_value()) << found.status();
  EXPECT_EQ((*found)->key, "old");
  EXPECT_EQ((*found)->info.acquired_at, std::nullopt);
  found = b->LookupById(group_id);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_FALSE(found->has_value());
  auto g1 = b->Info("g1");
  ASSERT_TRUE(g1.ok() && g1->has_value());
  EXPECT_EQ((*g1)->lock_id, group_id);
  ASSERT_TRUE(b->Extend("old", old_id, seconds(40)).ok());

  // An older tollgate still running calls the functions with the version 3 arguments.
  EXPECT_EQ(db.Value("SELECT tollgate_acquire('\\x6f6c6432'::bytea, '" + old_id.substr(0, 31) +
                     "1', 30000000000, NULL) IS NOT NULL"),
            "t");
  EXPECT_EQ(db.Value("SELECT count(*) FROM tollgate_info('\\x6f6c6432'::bytea)"), "1");

  auto fresh = b->Acquire("new", seconds(30), std::nullopt);
  ASSERT_TRUE(fresh.ok() && fresh->has_value()) << fresh.status();
  EXPECT_GT((*fresh)->fence, 2u);
  EXPECT_NE((*fresh)->acquired_at, WallTime());
  found = b->LookupById((*fresh)->lock_id);
  ASSERT_TRUE(found.ok() && found->has_value()) << found.status();
  EXPECT_EQ((*found)->info.acquired_at, (*fresh)->acquired_at);
  EXPECT_TRUE(MigratePostgres(conninfo).ok());  // and again: idempotent
  found = b->LookupById(group_id);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_FALSE(found->has_value());
  found = b->LookupById(old_id);
  ASSERT_TRUE(found.ok() && found->has_value()) << found.status();
}

TEST(PostgresOutageTest, UnavailablePromptlyAndRecovers) {
  PostgresServer server;
  ASSERT_TRUE(server.Start()) << server.error();
  ASSERT_TRUE(MigratePostgres(server.conninfo()).ok());
  auto b = NewPostgresBackend(server.conninfo(), seconds(2));
  ASSERT_TRUE(b.ok()) << b.status();
  auto before = (*b)->Acquire("held", seconds(60), std::nullopt);
  ASSERT_TRUE(before.ok() && before->has_value());

  server.Stop();
  for (int i = 0; i < 2; ++i) {  // the broken connection, then a refused reconnect
    const auto start = std::chrono::steady_clock::now();
    auto down = (*b)->Acquire("other", seconds(1), std::nullopt);
    EXPECT_EQ(down.status().code(), absl::StatusCode::kUnavailable) << down.status();
    EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(3));
  }
  EXPECT_EQ(NewPostgresBackend(server.conninfo()).status().code(), absl::StatusCode::kUnavailable);

  ASSERT_TRUE(server.Restart()) << server.error();
  auto after = (*b)->Acquire("other", seconds(30), std::nullopt);
  ASSERT_TRUE(after.ok()) << after.status();
  ASSERT_TRUE(after->has_value());
  EXPECT_GT((*after)->fence, (*before)->fence);  // the sequence survived the restart
  auto held = (*b)->Acquire("held", seconds(30), std::nullopt);
  ASSERT_TRUE(held.ok());
  EXPECT_FALSE(held->has_value());
}

}  // namespace
}  // namespace tollgate
