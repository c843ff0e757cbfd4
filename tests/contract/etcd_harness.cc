// The etcd harness: a private single-member etcd (tests/support/etcd_server.h) on free ports; every
// Connect() is a new backend with its own HTTP connection. No rate limiting on etcd, and leases are
// whole seconds (so the sub-second expiry case is skipped).
#include <chrono>

#include "tests/contract/harness.h"
#include "tests/support/etcd_server.h"
#include "tollgate/etcd_backend.h"

namespace tollgate::testing {
namespace {

class EtcdHarness final : public BackendHarness {
 public:
  std::string name() const override { return "etcd"; }
  bool Start() override { return server_.Start(); }
  absl::StatusOr<std::unique_ptr<Backend>> Connect() override {
    return NewEtcdBackend(server_.url(), std::chrono::seconds(2));
  }
  bool rate_limiting() const override { return false; }
  bool subsecond_ttl() const override { return false; }
  bool checks_issued_fences() const override { return true; }
  bool global_fences() const override { return true; }
  bool can_restart() const override { return true; }
  void StopServer() override { server_.Stop(); }
  bool RestartServer() override { return server_.Restart(); }

 private:
  EtcdServer server_;
};

}  // namespace

std::unique_ptr<BackendHarness> NewEtcdHarness() { return std::make_unique<EtcdHarness>(); }

}  // namespace tollgate::testing
