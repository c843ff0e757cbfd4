// tollgate::Client: the holder API (leases, permits, multi-key leases, WithLock) against a
// `tollgate serve` over RESP, or against any in-process Backend, with the same calls, so code moves
// between the library and a server without change.
//
//   absl::StatusOr<tollgate::Client> client =
//       tollgate::Client::Connect({.host = "10.0.0.5", .password = secret});
//   absl::StatusOr<int> n = client->WithLock("jobs/42", {.ttl = 10s, .wait = 5s},
//                                           [&](const tollgate::Lease& lease) { ... });
//
// Over RESP the client is a Backend (backend()) whose acquires can wait server-side in the key's
// FIFO queue (queues_waiters() is true): LOCK.ACQUIRE / SEM.ACQUIRE / LOCK.MACQUIRE ... WAIT ms,
// one request each, instead of retrying with backoff.
#ifndef TOLLGATE_CLIENT_H_
#define TOLLGATE_CLIENT_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "tollgate/backend.h"
#include "tollgate/lease_holder.h"
#include "tollgate/server.h"

namespace tollgate {

struct ClientOptions {
  std::string host = "127.0.0.1";  // name or address of the `tollgate serve`
  int port = kDefaultPort;         // [1, 65535]
  // AUTH [username] password on every connection when password is non-empty.
  std::optional<std::string> username;
  std::string password;
  // Connections kept open: [1, 1024]. Concurrent calls beyond it wait for a free connection,
  // except calls that wait server-side (WAIT): each of those uses a connection beyond the pool if
  // none is idle (closed afterwards when the pool is full), so waiters never hold up renewals and
  // releases.
  int pool_size = 4;
  // Bound on opening a connection (TCP connect plus AUTH): > 0.
  Duration connect_timeout = std::chrono::seconds(2);
  // Bound on each request's reply: > 0. A request with WAIT ms gets wait + io_timeout.
  Duration io_timeout = std::chrono::seconds(2);
};

class Client {
 public:
  // Connects the first connection of the pool (the others open on demand) and authenticates.
  // InvalidArgument for bad options; Unavailable if the server cannot be reached within
  // connect_timeout; Unauthenticated if it refuses the password (or wants one and none was given).
  //
  // Over RESP every Backend method maps to one command: Acquire/AcquireQueued → LOCK.ACQUIRE,
  // Release → LOCK.RELEASE, Extend → LOCK.EXTEND, Info → LOCK.INFO, SemAcquire..SemInfo →
  // SEM.*, MultiAcquire..MultiExtend → LOCK.M*, FencedSet/Get → FENCE.*, Throttle → THROTTLE.
  // CheckLayers is Unimplemented (a server keeps its own policies: RATE.CHECK). Errors: the
  // server's -UNAVAILABLE → Unavailable, -STALE → Aborted, -ERR → InvalidArgument, a 0 reply to a
  // release or extend → FailedPrecondition, a connection failure or timeout → Unavailable. A broken
  // or timed-out connection is closed and the next call reconnects. A request that failed on the
  // wire is sent again (once, on a new connection) only if it is safe to repeat: reads (LOCK.INFO,
  // SEM.INFO, FENCE.GET) and requests that never left the client; never a write that may have been
  // applied (an acquire that timed out is not retried). Thread-safe: any number of threads may call
  // the backend and the holder API concurrently.
  [[nodiscard]] static absl::StatusOr<Client> Connect(const ClientOptions& options);
  // The same API over an in-process backend (NewMemoryBackend, NewEmbeddedBackend, OpenBackend),
  // which must outlive the Client and every Lease taken through it.
  explicit Client(Backend& backend);

  Client(Client&&) noexcept;
  Client& operator=(Client&&) noexcept;
  // Closes the connections (a Client from Connect). Every Lease taken through it must be gone.
  ~Client();

  // The backend the holder API runs on: the RESP one (owned) or the one given.
  Backend& backend() const { return *backend_; }

  // AcquireLease, AcquirePermit, AcquireAll and WithLock of lease_holder.h on backend().
  [[nodiscard]] absl::StatusOr<std::optional<Lease>> Acquire(std::string key,
                                                             const LeaseOptions& options) const {
    return AcquireLease(*backend_, std::move(key), options);
  }
  [[nodiscard]] absl::StatusOr<std::optional<Lease>> AcquirePermit(
      std::string key, int64_t limit, const LeaseOptions& options) const {
    return tollgate::AcquirePermit(*backend_, std::move(key), limit, options);
  }
  [[nodiscard]] absl::StatusOr<std::optional<Lease>> AcquireAll(std::vector<std::string> keys,
                                                                const LeaseOptions& options) const {
    return tollgate::AcquireAll(*backend_, std::move(keys), options);
  }
  template <class F>
  auto WithLock(std::string key, const LeaseOptions& options, F&& fn) const {
    return tollgate::WithLock(*backend_, std::move(key), options, std::forward<F>(fn));
  }

 private:
  explicit Client(std::unique_ptr<Backend> owned);

  std::unique_ptr<Backend> owned_;  // the RESP backend, for a Client from Connect
  Backend* backend_;                // owned_.get() or the caller's backend; never null
};

}  // namespace tollgate

#endif  // TOLLGATE_CLIENT_H_
