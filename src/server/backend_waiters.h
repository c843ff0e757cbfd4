// LOCK.ACQUIRE key ttl WAIT ms on a shared backend (`tollgate serve --backend URL`): the queue of
// waiting requests and the threads that serve it, so I/O threads never block on a wait.
//
// Per key, this server's waiters are served in arrival order (FIFO among the waiters on this
// server; across servers sharing the backend, whoever's Acquire lands first wins). A worker thread
// serves one key at a time: it tries Backend::Acquire for the head waiter; when granted, the grant
// goes to that waiter's connection; when not, it calls Backend::WaitForRelease (an etcd watch, or
// polling on Redis/PostgreSQL) for at most min(the head's remaining wait, wait_slice) and tries
// again. A waiter whose wait runs out gets the null reply ("not acquired").
//
// Threads: one worker per key with waiters, up to max_workers at once, each with its own backend
// connection (ConnectBackend, kept in a small idle pool between keys). Chosen over a fixed pool
// multiplexing keys because every Backend call blocks its connection (hiredis, libpq and curl-easy
// are synchronous): a key whose holder keeps the lock for minutes would otherwise stall every key
// behind it on the same thread. curl-multi could multiplex etcd watches on one thread, but Redis
// and PostgreSQL have no such client here, and the number of keys contended at the same moment on
// one server is small. Keys beyond max_workers wait for a free worker (their deadlines still hold).
//
// Bookkeeping rides on the server's (otherwise idle in --backend mode) local LeaseManager, because
// the I/O threads already drive it when a blocked connection goes away: each waiter is a local
// waiter queued behind a private "gate" lease (key "tollgate.wait/<n>") that this component holds.
// The local manager answers the waiter exactly once: on the waiter's deadline (its timer thread →
// the null reply), when the client disconnects or the server stops (the I/O thread's CancelWaiter:
// no reply), or when a worker releases the gate after staging a backend grant (the grant is the
// reply). A staged grant that nobody took (the waiter was cancelled or timed out first) is released
// on the backend at once, so a disconnected waiter never keeps the lock.
//
// Backend errors while waiting: the worker logs them, backs off (50 ms doubling to 1 s) and retries
// until the waiter's deadline. A waiter whose deadline passes while the backend is failing (no good
// call since the last error) is answered with that error (-UNAVAILABLE ...), not with null, so a
// client can tell an outage from contention. Errors of the first, immediate attempt are replied at
// once. A grant that reaches an I/O thread after its client disconnected is released on the
// backend there (IoThread::OnWaiterDone).
#ifndef TOLLGATE_SERVER_BACKEND_WAITERS_H_
#define TOLLGATE_SERVER_BACKEND_WAITERS_H_

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/command_table.h"
#include "server/services.h"
#include "tollgate/backend.h"
#include "tollgate/lease_manager.h"

namespace tollgate::server {

class BackendWaiters {
 public:
  // Opens one more connection to the shared backend (the server passes ConnectBackend(url)).
  using Connect = std::function<absl::StatusOr<std::unique_ptr<Backend>>()>;

  struct Options {
    // Most worker threads (= backend connections) at once.
    int max_workers = 32;
    // Longest single WaitForRelease: bounds how long a worker takes to notice a cancelled waiter or
    // a shutdown (an etcd watch is re-created this often while a key stays held).
    Duration wait_slice = std::chrono::seconds(1);
    // Idle backend connections kept for the next key.
    size_t max_idle_connections = 4;
  };

  // Serves waiters for the handlers running on `services` (registered so that For(&services) finds
  // it until destruction); uses services.leases for the bookkeeping described above, which must
  // outlive this object. Starts no thread until the first waiter.
  BackendWaiters(Services& services, Connect connect, Options options);
  BackendWaiters(Services& services, Connect connect) : BackendWaiters(services, connect, {}) {}
  // BeginShutdown(), then joins the worker threads.
  ~BackendWaiters();
  BackendWaiters(const BackendWaiters&) = delete;
  BackendWaiters& operator=(const BackendWaiters&) = delete;

  // The instance serving `services`, or null (the embedded store has none).
  static BackendWaiters* For(const Services* services);

  // True if this server has waiters queued for `key`: a new LOCK.ACQUIRE on this server then
  // queues behind them instead of trying the backend (FIFO among this server's waiters).
  bool HasWaiters(std::string_view key) const;
  // Waiters queued on this server for `key` (LOCK.INFO's "waiters" on a shared backend).
  size_t CountWaiters(std::string_view key) const;

  // Queues `req` (REQUIRES: req.wait > 0, req validated) for the connection `client`, blocks the
  // connection (client.Block) and answers it later through client.WaiterCallback(req.key): the
  // grant, or null at the deadline. True when queued; false when the server is shutting down (reply
  // null now). Internal if the local bookkeeping refuses (a bug).
  [[nodiscard]] absl::StatusOr<bool> Enqueue(const AcquireRequest& req, ClientControl& client);

  // Stops serving: every queued waiter is answered with null, no further grant is delivered (a
  // grant obtained meanwhile is released on the backend), workers exit after their current backend
  // call (at most wait_slice plus the backend's timeout). Returns without waiting; idempotent.
  void BeginShutdown();
  // Joins the worker threads (after BeginShutdown).
  void Join();

 private:
  struct Waiter;
  struct KeyQueue {
    std::deque<std::shared_ptr<Waiter>> waiters;
    bool has_worker = false;
  };

  void Work(std::string key, uint64_t worker_id);
  // Serves `key` until it has no waiters or the component stops.
  void Serve(const std::string& key, std::unique_ptr<Backend>& backend);
  // Hands `grant` to `w` (the head of `key`'s queue) or, if it can no longer take it, releases it.
  void Deliver(const std::string& key, const std::shared_ptr<Waiter>& w, LeaseGrant grant,
               Backend& backend);
  // Drops answered and cancelled waiters, releasing their gates.
  void PruneLocked(KeyQueue& q) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReleaseGateLocked(Waiter& w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Records the outcome of a backend call made for `key`'s waiters: an error is what they are
  // answered with if their deadline passes before a good call clears it (OK).
  void MarkTrouble(const std::string& key, const absl::Status& st);
  // Logs (at most every 10 s per worker) and sleeps the backoff, or less if stopping.
  void Trouble(const absl::Status& st, Duration& backoff, SteadyTime& last_log);
  // Sleeps up to d; returns early when stopping.
  void Nap(Duration d);
  void ReapFinished();

  Services& services_;
  LeaseManager& leases_;
  const Connect connect_;
  const Options options_;

  mutable absl::Mutex mu_;
  absl::CondVar stop_cv_;  // signalled by BeginShutdown
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_gate_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<std::string, KeyQueue> keys_ ABSL_GUARDED_BY(mu_);
  std::deque<std::string> unserved_ ABSL_GUARDED_BY(mu_);  // keys with waiters, no worker yet
  int active_workers_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_worker_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<uint64_t, std::thread> threads_ ABSL_GUARDED_BY(mu_);
  std::vector<uint64_t> finished_ ABSL_GUARDED_BY(mu_);  // workers that returned, to join
  std::vector<std::unique_ptr<Backend>> idle_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tollgate::server

#endif  // TOLLGATE_SERVER_BACKEND_WAITERS_H_
