// How the contract suite gets a backend to test: each backend kind provides a harness that starts
// whatever real server it needs (on 127.0.0.1, a free port, data in a temporary directory) and
// makes clients for it.
#ifndef TOLLGATE_TESTS_CONTRACT_HARNESS_H_
#define TOLLGATE_TESTS_CONTRACT_HARNESS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "tollgate/backend.h"

namespace tollgate::testing {

class BackendHarness {
 public:
  virtual ~BackendHarness() = default;
  virtual std::string name() const = 0;
  // Starts the backend's server (if any). Called once per test suite; false if it cannot start.
  virtual bool Start() = 0;
  // A new client of the running backend. Tests use unique key names, so clients may share state.
  virtual absl::StatusOr<std::unique_ptr<Backend>> Connect() = 0;
  // A new client whose leases keep their key blocked for `lock_delay` after expiring unreleased;
  // Unimplemented where the backend has no such option (README, Limits: lock-delay).
  virtual absl::StatusOr<std::unique_ptr<Backend>> ConnectWithLockDelay(Duration lock_delay) {
    (void)lock_delay;
    return absl::UnimplementedError("no lock-delay on this backend");
  }
  // The wall clock of the tollgate process the clients run in: acquired_at is stamped from it.
  virtual Clock* clock() const { return RealClock(); }
  virtual bool rate_limiting() const { return true; }
  // Whether FencedSet refuses a fence above the highest one the backend issued (README, "Fence
  // scope"): the in-process backends know that counter.
  virtual bool checks_issued_fences() const { return false; }
  // Whether fences come from one counter for every key, so a later grant of any key carries a
  // higher fence than an earlier grant of any other (README, "Fence scope").
  virtual bool global_fences() const { return false; }
  // Whether leases can be shorter than a second (etcd leases are whole seconds).
  virtual bool subsecond_ttl() const { return true; }
  // For the outage test: stop the server (clients must then fail with Unavailable, promptly) and
  // start it again on the same port and data (clients must recover). False if not applicable.
  virtual bool can_restart() const { return false; }
  virtual void StopServer() {}
  virtual bool RestartServer() { return false; }
};

std::unique_ptr<BackendHarness> NewMemoryHarness();
std::unique_ptr<BackendHarness> NewEmbeddedHarness();
#ifdef TOLLGATE_HAVE_REDIS_BACKEND
std::unique_ptr<BackendHarness> NewRedisHarness();
#endif
#ifdef TOLLGATE_HAVE_REDIS_CLUSTER_HARNESS
// A 3-master Redis Cluster; the Redis backend seeded at one node.
std::unique_ptr<BackendHarness> NewRedisClusterHarness();
#endif
#ifdef TOLLGATE_HAVE_POSTGRES_BACKEND
std::unique_ptr<BackendHarness> NewPostgresHarness();
#endif
#ifdef TOLLGATE_HAVE_ETCD_BACKEND
std::unique_ptr<BackendHarness> NewEtcdHarness();
#endif

}  // namespace tollgate::testing

#endif  // TOLLGATE_TESTS_CONTRACT_HARNESS_H_
