// The asynchronous state interface: the one seam between the server (or an application's own event
// loop) and wherever state lives (the embedded store or a shared backend).
//
// An AsyncBackend is driven by one EventLoop: it registers its sockets and timers there, and every
// completion callback runs on that loop's thread. Operations never block the caller: they validate,
// queue or send, and return; the completion arrives later (or, for in-process state, before the
// call returns). Several operations may be in flight at once; a backend that pipelines them on one
// connection keeps their order, and any backend keeps the order of operations on the same key.
//
// Contracts, status codes and messages are exactly those of the synchronous Backend (backend.h)
// for the same operation. Besides, every operation of a network backend has a deadline (the
// backend's timeout): one not answered by then completes with Unavailable, and a connection that
// fails completes all of its pending operations with Unavailable. Nothing is retried behind the
// caller's back once it may have reached the backend, so no operation is applied twice.
#ifndef TOLLGATE_ASYNC_BACKEND_H_
#define TOLLGATE_ASYNC_BACKEND_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "tollgate/backend.h"
#include "tollgate/clock.h"
#include "tollgate/fenced_register.h"
#include "tollgate/lease_manager.h"
#include "tollgate/limiter.h"

namespace tollgate {

class WaitOrder;

// What an AsyncBackend needs from the event loop that drives it. Every member except Post is called
// on the loop's thread only.
class EventLoop {
 public:
  virtual ~EventLoop() = default;
  enum Events : uint32_t { kReadable = 1, kWritable = 2, kError = 4 };
  // Watches `fd` for `interest` (kReadable | kWritable); `on_ready(events)` runs on the loop each
  // time the fd is ready (kError included on errors and hang-ups). A second Watch of the same fd
  // replaces interest and callback. REQUIRES: fd is open and non-blocking.
  virtual void Watch(int fd, uint32_t interest, absl::AnyInvocable<void(uint32_t)> on_ready) = 0;
  // Stops watching `fd` (before it is closed). No effect for an fd not watched.
  virtual void Unwatch(int fd) = 0;
  // Runs `fn` once, on the loop, at or soon after `at`. Returns an id for CancelTimer (never 0).
  virtual uint64_t RunAt(SteadyTime at, absl::AnyInvocable<void()> fn) = 0;
  // Cancels a timer that has not run yet; no effect otherwise.
  virtual void CancelTimer(uint64_t id) = 0;
  // Runs `fn` once at the end of the loop's current pass, after every request read in this pass
  // was submitted: where a pipelining backend writes its batch. Runs in the next pass when called
  // from such a callback.
  virtual void AtEndOfPass(absl::AnyInvocable<void()> fn) = 0;
  // Runs `fn` on the loop soon. Thread-safe: the only member other threads may call. Dropped if
  // the loop has stopped.
  virtual void Post(absl::AnyInvocable<void()> fn) = 0;
  // The loop's clock (steady time for deadlines and timers).
  virtual Clock* clock() = 0;
};

template <class T>
using Completion = absl::AnyInvocable<void(absl::StatusOr<T>)>;
using StatusCompletion = absl::AnyInvocable<void(absl::Status)>;

class AsyncBackend {
 public:
  virtual ~AsyncBackend() = default;
  // As Backend::kind() and Backend::Warnings().
  virtual std::string_view kind() const = 0;
  virtual std::vector<std::string> Warnings() const { return {}; }

  // LOCK.ACQUIRE: as Backend::Acquire when req.wait is 0. With req.wait > 0 and the key taken, the
  // request waits up to req.wait (FIFO among the waiters of this object, and of the embedded
  // store's whole server) and completes with the grant, or nullopt when the wait ran out or the
  // backend shut down. Returns a ticket for CancelWait (0 if the request completed before
  // returning or cannot wait).
  virtual uint64_t Acquire(const AcquireRequest& req,
                           Completion<std::optional<LeaseGrant>> done) = 0;
  // Withdraws a waiting Acquire (its client is gone): its completion is never called, and a grant
  // obtained for it meanwhile is released. No effect for a ticket already completed.
  virtual void CancelWait(uint64_t ticket) = 0;
  // Requests of this object waiting for `key` (LOCK.INFO's "waiters" for backends that do not
  // count them themselves). 0 for the embedded store, whose Info counts its own.
  virtual size_t LocalWaiters(std::string_view key) const = 0;
  // Serves this object's waiters in one arrival order with every other AsyncBackend sharing
  // `order` (backends/async/wait_queue.h; e.g. one per I/O thread of a server), which must outlive
  // it. Call before the first Acquire. No effect for a backend that does not wait on its own.
  virtual void ShareWaitOrder(WaitOrder* order) { (void)order; }

  virtual void Release(std::string_view key, std::string_view lock_id, StatusCompletion done) = 0;
  virtual void Extend(std::string_view key, std::string_view lock_id, Duration ttl,
                      Completion<Duration> done) = 0;
  virtual void Info(std::string_view key, Completion<std::optional<LeaseInfo>> done) = 0;
  // As Backend::LookupById; `waiters` in the result is 0 (a server counts its own). The default,
  // for an AsyncBackend of your own without it, completes with Unimplemented.
  virtual void LookupById(std::string_view lock_id, Completion<std::optional<LeaseById>> done) {
    (void)lock_id;
    done(NotOffered("lookup by lock_id"));
  }
  // Semaphores, as Backend::SemAcquire etc. SemAcquire with req.wait > 0 and every slot held
  // waits like Acquire (FIFO per semaphore key; a waiter is served when a slot frees) and returns a
  // ticket for CancelWait (a permit granted to a cancelled waiter is released).
  // The defaults, for an AsyncBackend of your own without them, complete with Unimplemented.
  virtual uint64_t SemAcquire(const SemAcquireRequest& req,
                              Completion<std::optional<PermitGrant>> done) {
    (void)req;
    done(NotOffered("semaphores"));
    return 0;
  }
  virtual void SemRelease(std::string_view key, std::string_view permit_id,
                          StatusCompletion done) {
    (void)key, (void)permit_id;
    done(NotOffered("semaphores"));
  }
  virtual void SemExtend(std::string_view key, std::string_view permit_id, Duration ttl,
                         Completion<Duration> done) {
    (void)key, (void)permit_id, (void)ttl;
    done(NotOffered("semaphores"));
  }
  // `waiters` counts this object's waiters (and those sharing its WaitOrder).
  virtual void SemInfo(std::string_view key, Completion<std::optional<SemaphoreInfo>> done) {
    (void)key;
    done(NotOffered("semaphores"));
  }
  // Multi-key locks, as Backend::MultiAcquire etc. With req.wait > 0 it waits until every key can
  // be taken together, holding none meanwhile, queued in each key's FIFO (so single-key acquirers
  // arriving later wait behind it); returns a ticket for CancelWait. `keys` need only live during
  // the call.
  virtual uint64_t MultiAcquire(const MultiAcquireRequest& req,
                                Completion<std::optional<LeaseGrant>> done) {
    (void)req;
    done(NotOffered("multi-key locks"));
    return 0;
  }
  virtual void MultiRelease(std::span<const std::string> keys, std::string_view lock_id,
                            Completion<size_t> done) {
    (void)keys, (void)lock_id;
    done(NotOffered("multi-key locks"));
  }
  virtual void MultiExtend(std::span<const std::string> keys, std::string_view lock_id,
                           Duration ttl, Completion<Duration> done) {
    (void)keys, (void)lock_id, (void)ttl;
    done(NotOffered("multi-key locks"));
  }
  virtual void FencedSet(std::string_view resource, uint64_t fence, std::string_view value,
                         StatusCompletion done) = 0;
  virtual void FencedGet(std::string_view resource,
                         Completion<std::optional<FencedValue>> done) = 0;
  virtual void Throttle(std::string_view key, const BucketParams& params, Decimal cost,
                        Completion<Decision> done) = 0;
  // `layers` need only live during the call.
  virtual void CheckLayers(std::span<const LayerCheck> layers, Decimal cost,
                           Completion<PolicyDecision> done) = 0;

  // Stops accepting work: waiting Acquires complete with nullopt now; operations already sent
  // complete normally (or at their deadline). Later calls complete with Unavailable.
  virtual void Shutdown() = 0;

 protected:
  // Unimplemented: "<kind> backend offers no <what>".
  absl::Status NotOffered(std::string_view what) const {
    return absl::UnimplementedError(absl::StrCat(std::string(kind()), " backend offers no ", std::string(what)));
  }
};

// Opens a synchronous backend from a URL, exactly as `tollgate serve --backend URL` does:
// redis://host:port[/db] → Redis; postgres://..., postgresql://... or a libpq "key=value" string →
// PostgreSQL; etcd://host:port → etcd. InvalidArgument for anything else,
// naming the URL and the accepted forms; Unimplemented for a backend this build lacks; the
// backend's own errors (Unavailable, FailedPrecondition) when it cannot be used.
struct OpenOptions {
  // After a lease expires without release, its key is not granted again for this long (0 to
  // kMaxTtl). Honoured by Redis (standalone and Cluster); other backends refuse a non-zero delay
  // (InvalidArgument naming the option and the backend) rather than ignore it.
  Duration lock_delay{0};
};
// Whether the backend `url` names honours OpenOptions::lock_delay.
bool HonoursLockDelay(const std::string& url);
[[nodiscard]] absl::StatusOr<std::unique_ptr<Backend>> OpenBackend(const std::string& url,
                                                                   const OpenOptions& options = {});

// Opens an asynchronous backend from a URL (as OpenBackend) driven by `loop`, which must outlive
// it. Every backend runs on non-blocking connections owned by the loop: Redis pipelined (one
// connection per node), PostgreSQL in libpq pipeline mode (kAsyncPostgresConnections
// connections), etcd as concurrent HTTP transfers (libcurl multi). For a Backend of your own,
// NewThreadedAsyncBackend (backends/async/threaded_backend.h) runs it on worker threads.
inline constexpr int kAsyncPostgresConnections = 4;
[[nodiscard]] absl::StatusOr<std::unique_ptr<AsyncBackend>> OpenAsyncBackend(
    const std::string& url, EventLoop& loop, const OpenOptions& options = {});

}  // namespace tollgate

#endif  // TOLLGATE_ASYNC_BACKEND_H_
