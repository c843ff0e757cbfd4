// The Redis harness: a private redis-server (tests/support/redis_server.h) on a free port; every
// Connect() is a new backend with its own connection.
#include <chrono>

#include "tests/contract/harness.h"
#include "tests/support/redis_server.h"
#include "tollgate/redis_backend.h"

namespace tollgate::testing {
namespace {

class RedisHarness final : public BackendHarness {
 public:
  std::string name() const override { return "redis"; }
  bool Start() override { return server_.Start(); }
  absl::StatusOr<std::unique_ptr<Backend>> Connect() override {
    return NewRedisBackend(server_.url(), std::chrono::seconds(2));
  }
  // Standalone Redis: one fence counter (a cluster keeps one per key).
  bool checks_issued_fences() const override { return true; }
  bool global_fences() const override { return true; }
  absl::StatusOr<std::unique_ptr<Backend>> ConnectWithLockDelay(Duration lock_delay) override {
    return NewRedisBackend(server_.url(), std::chrono::seconds(2), lock_delay);
  }
  bool can_restart() const override { return true; }
  void StopServer() override { server_.Stop(); }
  bool RestartServer() override { return server_.Restart(); }

 private:
  RedisServer server_;
};

}  // namespace

std::unique_ptr<BackendHarness> NewRedisHarness() { return std::make_unique<RedisHarness>(); }

}  // namespace tollgate::testing
