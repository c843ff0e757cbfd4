// `tollgate serve`: the lease core and fenced registers behind the Redis protocol (RESP2, and RESP3
// after HELLO 3), durable on the embedded store.
#ifndef TOLLGATE_SERVER_H_
#define TOLLGATE_SERVER_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "tollgate/clock.h"

namespace tollgate {

inline constexpr int kDefaultPort = 7379;
inline constexpr int kDefaultHttpPort = 7380;
inline constexpr int kHttpOff = -1;  // ServerOptions::http_port: no HTTP server
inline constexpr int kMaxIoThreads = 64;
inline constexpr int kMaxClients = 1'000'000;
inline constexpr int64_t kMaxThrottleBuckets = 1'000'000'000;

struct ServerOptions {
  std::string bind = "127.0.0.1";
  int port = kDefaultPort;                 // 0 = any free port (printed on the ready line)
  std::string data_dir = "tollgate-data";  // the embedded store's directory
  std::string requirepass;                 // empty = no authentication
  Duration lock_delay{0};                  // see LeaseManager::Options::lock_delay
  int io_threads = 0;  // 0 = one per core but one (at least 1); with a backend, 4 per core (4..64)
  int max_clients = 10000;  // connections beyond this are refused with an error
  // A shared backend URL (redis://..., postgres://...): lease, fence and bucket state then live
  // there, several servers can share it, and data_dir is not used. Empty = the embedded store.
  std::string backend_url;
  std::string config_file;                  // policy YAML for RATE.CHECK; empty = no policies
  size_t throttle_max_buckets = 1'000'000;  // live THROTTLE buckets before new keys are denied
  // The HTTP API, /metrics, /healthz, /readyz and the dashboard (README, HTTP API), on `bind`:
  // 0 = any free port (printed as "tollgate http on ADDR:PORT" before the ready line), kHttpOff =
  // none.
  int http_port = kDefaultHttpPort;
  // With requirepass: /metrics and the dashboard need the Bearer token too (/v1 always does).
  bool metrics_auth = false;
};

// InvalidArgument naming the field and its accepted range for any option out of range
// (io_threads [0, kMaxIoThreads], port [0, 65535], http_port [-1, 65535], max_clients
// [1, kMaxClients], lock_delay [0, 86400000] ms, throttle_max_buckets [1, kMaxThrottleBuckets]), and for a lock_delay with a
// backend_url (no shared backend honours lock-delay yet).
[[nodiscard]] absl::Status ValidateServerOptions(const ServerOptions& options);

// Opens the store, recovers, loads --config, listens, and serves until SIGTERM or SIGINT; then
// stops accepting, answers what it already read, checkpoints buckets, syncs the store and returns
// 0. SIGHUP reloads the policy file (so does a change to the file). Prints
// "tollgate ready on ADDR:PORT" to stdout (and flushes) once it accepts connections (after
// "tollgate http on ADDR:PORT" when the HTTP server runs). Returns a non-zero exit code, after
// logging why, if it cannot start (2 for options ValidateServerOptions refuses).
// REQUIRES: called once per process, from the main thread, before other threads exist.
int RunServer(const ServerOptions& options);

// `tollgate migrate --backend URL`: installs or upgrades the schema on a PostgreSQL backend
// (idempotent). Returns 0, or 1 after printing why.
int RunMigrate(const std::string& backend_url);

}  // namespace tollgate

#endif  // TOLLGATE_SERVER_H_
