// The server's Metrics: command names from the command table, and render-time collectors reading
// the counters INFO shows (ServerStats, PolicyEngine, DurableStore, PolicyFileWatcher, the lease
// manager), so each number is counted in one place.
#ifndef TOLLGATE_SERVER_METRICS_SOURCES_H_
#define TOLLGATE_SERVER_METRICS_SOURCES_H_

#include <memory>
#include <string>

#include "metrics/metrics.h"
#include "server/services.h"

namespace tollgate::server {

// `backend_kind`: the shared backend's kind ("redis", ...), empty on the embedded store (then the
// store, lease expiry and live bucket metrics are served). `services` must outlive the result.
std::unique_ptr<metrics::Metrics> NewServerMetrics(Services& services, std::string backend_kind);

}  // namespace tollgate::server

#endif  // TOLLGATE_SERVER_METRICS_SOURCES_H_
