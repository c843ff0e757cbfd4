// The live dashboard served at GET / by the HTTP server (src/http).
#ifndef TOLLGATE_DASHBOARD_DASHBOARD_H_
#define TOLLGATE_DASHBOARD_DASHBOARD_H_

#include <string_view>

namespace tollgate::dashboard {

// One self-contained HTML page (inline CSS and scripts, no external resources of any kind), the
// same bytes for the life of the process (static storage): serve it as text/html; charset=utf-8.
// Built at build time from src/dashboard/assets/ (dashboard.html, .css, .js) and the chart
// module's assets (src/charts/assets/). In the browser it polls `metrics` (relative, so
// /metrics when served at /) every second, parses the Prometheus text format, keeps the last two
// minutes and draws: decisions/s allowed and denied per policy and layer, the denying layer's
// share, shadow-layer disagreements, check latency p50/p99, lock waiters and acquisitions/s,
// fenced writes (accepted, stale), store fsync latency p50/p99, and the build, clients and policy
// file with its last reload. A 401/403 from /metrics (--metrics-auth) shows a note asking for the
// Bearer token, which the page then sends (kept in sessionStorage). Never throws.
[[nodiscard]] std::string_view DashboardHtml() noexcept;

}  // namespace tollgate::dashboard

#endif  // TOLLGATE_DASHBOARD_DASHBOARD_H_
