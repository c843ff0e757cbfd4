// The PostgreSQL harness: a throwaway cluster (tests/support/postgres_server.h) with tollgate's
// schema migrated in; every Connect() is a new client with its own connection.
#include <chrono>
#include <cstdio>

#include "tests/contract/harness.h"
#include "tests/support/postgres_server.h"
#include "tollgate/postgres_backend.h"

namespace tollgate::testing {
namespace {

class PostgresHarness final : public BackendHarness {
 public:
  std::string name() const override { return "postgres"; }
  bool checks_issued_fences() const override { return true; }
  bool global_fences() const override { return true; }
  bool Start() override {
    if (!server_.Start()) {
      std::fprintf(stderr, "postgres harness: %s\n", server_.error().c_str());
      return false;
    }
    absl::Status st = MigratePostgres(server_.conninfo());
    if (!st.ok()) {
      std::fprintf(stderr, "postgres harness: migrate: %s\n", st.ToString().c_str());
      return false;
    }
    return true;
  }
  absl::StatusOr<std::unique_ptr<Backend>> Connect() override {
    return NewPostgresBackend(server_.conninfo(), std::chrono::seconds(2));
  }
  bool can_restart() const override { return true; }
  void StopServer() override { server_.Stop(); }
  bool RestartServer() override { return server_.Restart(); }

 private:
  PostgresServer server_;
};

}  // namespace

std::unique_ptr<BackendHarness> NewPostgresHarness() { return std::make_unique<PostgresHarness>(); }

}  // namespace tollgate::testing
