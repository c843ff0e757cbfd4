// The Redis Cluster harness: a private 3-master Redis Cluster (tests/support/redis_cluster.h);
// every Connect() is a new backend seeded at one node (rotating over the three, so every node
// serves as a seed), which follows the cluster's slot map and redirects to the others. No outage
// test: the nodes keep no data across a restart.
#include <atomic>
#include <chrono>

#include "tests/contract/harness.h"
#include "tests/support/redis_cluster.h"
#include "tollgate/redis_backend.h"

namespace tollgate::testing {
namespace {

class RedisClusterHarness final : public BackendHarness {
 public:
  std::string name() const override { return "redis_cluster"; }
  bool Start() override { return cluster_.Start(); }
  absl::StatusOr<std::unique_ptr<Backend>> Connect() override {
    const int seed = next_seed_.fetch_add(1) % RedisCluster::kNodes;
    return NewRedisBackend(cluster_.url(seed), std::chrono::seconds(2));
  }
  absl::StatusOr<std::unique_ptr<Backend>> ConnectWithLockDelay(Duration lock_delay) override {
    return NewRedisBackend(cluster_.url(0), std::chrono::seconds(2), lock_delay);
  }

 private:
  RedisCluster cluster_;
  std::atomic<int> next_seed_{0};
};

}  // namespace

std::unique_ptr<BackendHarness> NewRedisClusterHarness() {
  return std::make_unique<RedisClusterHarness>();
}

}  // namespace tollgate::testing
