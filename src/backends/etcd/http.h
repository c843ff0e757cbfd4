// Non-blocking HTTP POSTs to one server with libcurl's multi interface, driven by an EventLoop:
// curl's sockets are watched on the loop (CURLMOPT_SOCKETFUNCTION → Watch/Unwatch) and its timer is
// a loop timer (CURLMOPT_TIMERFUNCTION → RunAt/CancelTimer), so any number of requests are in
// flight at once on the loop's thread. Connections are kept alive (HTTP/1.1) and shared by the
// requests of one client, at most `max_connections` at a time; requests beyond wait in curl for a
// free connection, still within their own deadline. Internal to the etcd backend.
#ifndef TOLLGATE_BACKENDS_ETCD_HTTP_H_
#define TOLLGATE_BACKENDS_ETCD_HTTP_H_

#include <curl/curl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "tollgate/async_backend.h"

namespace tollgate::etcd {

class HttpClient {
 public:
  // How a request ended: curl's code (CURLE_OK when a response was received), the HTTP status (0
  // without one) and the body (what was received; empty when a sink took the data).
  struct Response {
    CURLcode code = CURLE_OK;
    long status = 0;
    std::string body;
  };
  // Takes a chunk of a streamed response body; returns false to stop the transfer (it then ends
  // with CURLE_WRITE_ERROR). Called inside curl: it must not call into this client.
  using Sink = absl::AnyInvocable<bool(std::string_view)>;
  using Done = absl::AnyInvocable<void(Response)>;

  // `base` is "http://host:port"; `connect_timeout` bounds connecting. `loop` must outlive this
  // object, which must be used and destroyed on the loop's thread. Requests pending at destruction
  // are dropped without their completions being called. `max_connections` 0: no limit.
  HttpClient(EventLoop& loop, std::string base, Duration connect_timeout, long max_connections);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // POSTs `payload` to base + `path`; `done` runs on the loop exactly once (never before Post
  // returns) unless the request is aborted or the client destroyed. The whole request is bounded by
  // `timeout` (at least 1 ms): then it ends with CURLE_OPERATION_TIMEDOUT. Without a sink the body
  // is collected into the Response. Returns an id for Abort (never 0).
  uint64_t Post(std::string_view path, std::string payload, Duration timeout, Done done,
                Sink sink = nullptr);
  // Stops a request without calling its completion. No effect for one already completed.
  void Abort(uint64_t id);

  const std::string& base() const { return base_; }
  // Requests started and not yet completed or aborted, and the most there ever were at once.
  size_t in_flight() const { return transfers_.size(); }
  size_t max_in_flight() const { return max_in_flight_; }
  uint64_t requests() const { return requests_; }

 private:
  struct Transfer;
  static int OnSocket(CURL* easy, curl_socket_t fd, int what, void* user, void* socket_data);
  static int OnTimer(CURLM* multi, long timeout_ms, void* user);
  static size_t OnData(char* data, size_t size, size_t n, void* user);
  // Runs curl for `fd` (or its timeouts), then completes the transfers that ended.
  void Act(curl_socket_t fd, int events);
  void Finish(CURL* easy, CURLcode code);
  void Remove(CURL* easy);

  EventLoop& loop_;
  const std::string base_;
  const Duration connect_timeout_;
  CURLM* multi_ = nullptr;
  uint64_t curl_timer_ = 0;
  uint64_t next_id_ = 1;
  size_t max_in_flight_ = 0;
  uint64_t requests_ = 0;
  bool destroying_ = false;
  absl::flat_hash_map<CURL*, std::unique_ptr<Transfer>> transfers_;
  absl::flat_hash_map<uint64_t, CURL*> ids_;
  std::vector<CURL*> idle_;  // easy handles for reuse
  curl_slist* headers_ = nullptr;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace tollgate::etcd

#endif  // TOLLGATE_BACKENDS_ETCD_HTTP_H_
