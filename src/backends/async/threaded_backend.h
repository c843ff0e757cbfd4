// An AsyncBackend over a synchronous Backend: each operation runs on one of a few worker threads,
// each with its own connection, and completes on the loop (EventLoop::Post). The loop never blocks
// on the backend. For backends whose client library has no pipelined mode here (etcd through
// curl-easy, and PostgreSQL until its pipelined client is used).
//
// Order: operations on the same key (the first layer's key for CheckLayers) go to the same worker,
// so they run and complete in submission order; operations on different keys may overlap.
// Limits: at most `max_queued` operations waiting per worker; beyond it an operation completes at
// once with Unavailable "backend queue full (N operations waiting)". Each operation is bounded by
// the synchronous backend's own timeout; an Unavailable is never retried here.
#ifndef TOLLGATE_BACKENDS_ASYNC_THREADED_BACKEND_H_
#define TOLLGATE_BACKENDS_ASYNC_THREADED_BACKEND_H_

#include <functional>
#include <memory>

#include "absl/status/statusor.h"
#include "tollgate/async_backend.h"

namespace tollgate {

struct ThreadedBackendOptions {
  int workers = 8;           // threads = connections, [1, 256]
  size_t max_queued = 4096;  // per worker
};

// Opens `options.workers` connections with `connect` now (its first error is returned) and starts
// the workers. `loop` must outlive the result. InvalidArgument for options out of range.
[[nodiscard]] absl::StatusOr<std::unique_ptr<AsyncBackend>> NewThreadedAsyncBackend(
    std::function<absl::StatusOr<std::unique_ptr<Backend>>()> connect, EventLoop& loop,
    ThreadedBackendOptions options = {});

}  // namespace tollgate

#endif  // TOLLGATE_BACKENDS_ASYNC_THREADED_BACKEND_H_
