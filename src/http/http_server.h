// `tollgate serve`'s HTTP side channel (--http-port): health, readiness, Prometheus metrics, the
// dashboard and the /v1 JSON API, beside RESP.
//
// Built on cpp-httplib (Debian libcpp-httplib-dev): a small, packaged library whose blocking
// thread-per-connection model suits a side channel. Its worker threads only parse HTTP and wait;
// every operation is posted to an I/O thread's loop and runs on that thread's State, exactly as a
// RESP command (state_call.h), so the RESP I/O threads never block on HTTP and the two protocols
// share one truth. Boost.Beast would mean writing the connection handling ourselves on Asio, a
// second event-loop model beside the server's own epoll loops, for no gain on a side channel.
#ifndef TOLLGATE_HTTP_HTTP_SERVER_H_
#define TOLLGATE_HTTP_HTTP_SERVER_H_

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "http/state_call.h"
#include "server/services.h"

namespace tollgate::http {

// The abuse limits (README, HTTP API). cpp-httplib's own fixed limits also apply: 8 KiB per
// request line and per header line.
struct HttpLimits {
  size_t max_body_bytes = 64 * 1024;      // larger bodies: 413
  size_t workers = 16;                    // connections served at once
  size_t max_queued = 64;                 // connections waiting for a worker; beyond: 503
  std::chrono::seconds read_timeout{5};   // a request not read in this time: connection closed
  std::chrono::seconds write_timeout{5};  // a response not taken in this time: connection closed
  std::chrono::seconds keep_alive_timeout{2};
  size_t keep_alive_max_requests = 100;
  int max_json_depth = 8;  // deeper bodies: 400
  size_t max_fields = 64;  // rate/check fields: more gives 400
  // Added to wait_ms for how long a handler waits for the I/O thread's answer.
  std::chrono::milliseconds answer_slack{5000};
};

struct HttpConfig {
  std::string bind;
  int port = 0;  // 0: any free port (port() tells which)
  HttpLimits limits;
};

class HttpServer {
 public:
  // Binds and starts serving. `services` (its options give requirepass and metrics_auth; its
  // metrics, store and stats are used), and whatever `post` reaches, must outlive the result.
  // `io_threads` >= 1: how many I/O threads `post` spreads calls over.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const HttpConfig& config,
                                                                         server::Services& services,
                                                                         size_t io_threads,
                                                                         PostToState post);
  // Stop()s.
  ~HttpServer();

  int port() const { return port_; }
  // Stops accepting, wakes handlers waiting for a lock (they answer 503 after cancelling their
  // wait), and joins every HTTP thread. Call before the I/O threads stop. Idempotent.
  void Stop();

  class Impl;

 private:
  explicit HttpServer(std::unique_ptr<Impl> impl, int port);
  std::unique_ptr<Impl> impl_;
  int port_;
};

}  // namespace tollgate::http

#endif  // TOLLGATE_HTTP_HTTP_SERVER_H_
