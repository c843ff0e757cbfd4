// What command handlers operate on: the cores, the store and the server's counters. Shared by all
// I/O threads; every member is thread-safe.
#ifndef TOLLGATE_SERVER_SERVICES_H_
#define TOLLGATE_SERVER_SERVICES_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <vector>

#include "tollgate/fenced_register.h"
#include "tollgate/lease_manager.h"
#include "tollgate/limiter.h"
#include "tollgate/policy_config.h"
#include "tollgate/server.h"
#include "tollgate/store.h"

namespace tollgate::metrics {
class Metrics;
}  // namespace tollgate::metrics

namespace tollgate::server {

// Commands processed are counted per command in Metrics (tollgate_commands_total), not here.
struct ServerStats {
  std::atomic<uint64_t> connections_received{0};
  std::atomic<uint64_t> connections_rejected{0};
  std::atomic<int64_t> connected_clients{0};
  std::atomic<uint64_t> protocol_errors{0};
  std::atomic<int64_t> blocked_clients{0};
  std::atomic<uint64_t> auth_failures{0};
  // Grants released because their client was gone before it could get the reply (see
  // ClientControl::ReplyWithGrant).
  std::atomic<uint64_t> grants_withdrawn{0};
  // THROTTLE decisions, counted by the handler whatever state answered.
  std::atomic<uint64_t> throttle_allowed{0};
  std::atomic<uint64_t> throttle_denied{0};
};

struct Services {
  const ServerOptions& options;
  LeaseManager& leases;
  FencedRegisters& registers;
  DurableStore* store;  // null with --backend (the server keeps no state of its own)
  Throttler& throttler;
  PolicyEngine& policies;
  ServerStats& stats;
  Clock* clock;
  SteadyTime started;
  int tcp_port = 0;
  int io_threads = 0;
  const PolicyFileWatcher* watcher = nullptr;  // null without --config
  // Prometheus metrics (src/metrics): set by RunServer before any I/O thread starts.
  metrics::Metrics* metrics = nullptr;
  // Where each I/O thread is in its event loop, so a thread about to sync can let the others finish
  // their passes first and cover them with the same sync (see IoThread::SettlePeers).
  struct PassState {
    std::atomic<uint64_t> passes{0};  // passes completed
    std::atomic<bool> idle{true};     // waiting in epoll_wait
  };
  // One per I/O thread (io_threads entries), sized before any thread starts and never resized.
  std::vector<PassState> pass_state;
};

}  // namespace tollgate::server

#endif  // TOLLGATE_SERVER_SERVICES_H_
