// The etcd AsyncBackend: the one implementation of the etcd operations (request JSON, reply
// decoding, error mapping, validation, the optimistic loops), as chains of HTTP requests on a
// non-blocking HttpClient (http.h). Made by NewAsyncEtcdBackend; the synchronous NewEtcdBackend
// wraps it. Internal to the etcd backend.
//
// Order: operations on one key (a lock key, or a register) form a FIFO: the next starts when the
// previous completed; operations on different keys run at once. Waiting: LOCK.ACQUIRE with WAIT
// waits in a WaitQueue; for each key with waiters (up to kMaxKeyWatches) a watch stream on the lock
// key pokes the queue at each DELETE, so the head waiter tries at once rather than at its next
// poll.
#ifndef TOLLGATE_BACKENDS_ETCD_ASYNC_ETCD_H_
#define TOLLGATE_BACKENDS_ETCD_ASYNC_ETCD_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "backends/async/wait_queue.h"
#include "backends/etcd/http.h"
#include "nlohmann/json.hpp"
#include "tollgate/async_backend.h"

namespace tollgate::etcd {

// The most keys with waiters that get a watch stream each (each holds an HTTP connection); waiters
// on further keys rely on the WaitQueue's polling alone.
inline constexpr size_t kMaxKeyWatches = 64;
// HTTP connections shared by the requests of one backend object (watches have their own).
inline constexpr long kMaxConnections = 16;

// NewAsyncEtcdBackend's argument checks: the server's base URL ("http://host:port") for `url`, or
// InvalidArgument naming the url (or the timeout) as NewEtcdBackend documents.
[[nodiscard]] absl::StatusOr<std::string> CheckArgs(const std::string& url, Duration timeout);

class AsyncEtcdBackend final : public AsyncBackend {
 public:
  // `base` is "http://host:port" (validated by NewAsyncEtcdBackend), `timeout` > 0. `loop` must
  // outlive this object, which must be destroyed on the loop's thread (or while no thread runs the
  // loop); operations still pending then are dropped without completing.
  AsyncEtcdBackend(std::string base, Duration timeout, EventLoop& loop);
  ~AsyncEtcdBackend() override;

  std::string_view kind() const override { return "etcd"; }
  uint64_t Acquire(const AcquireRequest& req, Completion<std::optional<LeaseGrant>> done) override;
  void CancelWait(uint64_t ticket) override;
  size_t LocalWaiters(std::string_view key) const override;
  void ShareWaitOrder(WaitOrder* order) override { waits_.set_order(order); }
  void Release(std::string_view key, std::string_view lock_id, StatusCompletion done) override;
  void Extend(std::string_view key, std::string_view lock_id, Duration ttl,
              Completion<Duration> done) override;
  void Info(std::string_view key, Completion<std::optional<LeaseInfo>> done) override;
  void FencedSet(std::string_view resource, uint64_t fence, std::string_view value,
                 StatusCompletion done) override;
  void FencedGet(std::string_view resource, Completion<std::optional<FencedValue>> done) override;
  // Unimplemented: no rate limiting on etcd.
  void Throttle(std::string_view key, const BucketParams& params, Decimal cost,
                Completion<Decision> done) override;
  void CheckLayers(std::span<const LayerCheck> layers, Decimal cost,
                   Completion<PolicyDecision> done) override;
  void Shutdown() override;

  // The non-waiting acquire (req.wait ignored): Backend::Acquire's contract. The WaitQueue's
  // attempts and the synchronous wrapper use it.
  void AcquireNow(const AcquireRequest& req, Completion<std::optional<LeaseGrant>> done);
  // AcquireNow for the WaitQueue's attempts: a read first, and nullopt without writing anything
  // while the lock is held.
  void AcquireIfFree(const AcquireRequest& req, Completion<std::optional<LeaseGrant>> done);
  // WaitForRelease's first half: the cluster revision at which the lock on `key` was read held, or
  // 0 if it is free. InvalidArgument for a bad key; Unavailable as any request.
  void HeldAt(std::string_view key, Completion<int64_t> done);
  // Watches the lock on `key` for a DELETE at a revision > `after_revision` until `deadline`:
  // true when one came (or etcd cancelled the watch), false at the deadline; Unavailable when the
  // stream fails (see etcd_internal::WatchForRelease). Its own connection: requests go on
  // meanwhile. Returns an id for StopWatch.
  uint64_t WatchForDelete(std::string_view key, int64_t after_revision, SteadyTime deadline,
                          Completion<bool> done);
  // Stops a watch without calling its completion.
  void StopWatch(uint64_t id) { watch_http_.Abort(id); }

  // A quick request (a range on an unused key): OK if etcd answers.
  void Probe(StatusCompletion done);

  Duration timeout() const { return timeout_; }
  // For tests and monitoring: HTTP requests in flight now and at most so far (watches excluded),
  // operations submitted and not completed, and keys being watched for waiters.
  size_t http_in_flight() const { return http_.in_flight(); }
  size_t max_http_in_flight() const { return http_.max_in_flight(); }
  size_t pending_operations() const { return pending_ops_; }
  size_t key_watches() const { return key_watches_.size(); }

 private:
  using json = nlohmann::json;
  struct Kv;
  struct WatchResult;
  using Next = absl::AnyInvocable<void()>;

  // After Shutdown: completes `done` with Unavailable and returns true.
  template <class Done>
  bool Refused(Done& done);
  // Starts `start` when the operations queued before it on `seq` have completed; `start` gets the
  // completion to call (wrapping `done`: it starts the next operation of `seq`). Completes `done`
  // at once with Unavailable when kEtcdMaxInFlight operations are pending.
  template <class T>
  void Sequence(std::string seq, absl::AnyInvocable<void(T)> done,
                absl::AnyInvocable<void(absl::AnyInvocable<void(T)>)> start);
  void Finished(const std::string& seq);

  // One request: POSTs `body` to `path`; `k` gets the parsed reply or the mapped error.
  void Call(std::string_view path, const json& body,
            absl::AnyInvocable<void(absl::StatusOr<json>)> k);
  // {lease id, granted seconds}.
  void Grant(int64_t seconds,
             absl::AnyInvocable<void(absl::StatusOr<std::pair<int64_t, int64_t>>)> k);
  // Best effort (the lease expires anyway); `k` runs when etcd answered or the request failed.
  void Revoke(int64_t lease, Next k);
  // Reads one key; with the store's revision at the read (checked positive when `want_revision`).
  void Get(const std::string& key, bool want_revision,
           absl::AnyInvocable<void(absl::StatusOr<std::optional<Kv>>, int64_t revision)> k);
  void Watch(std::string_view lock_key, int64_t after_revision, SteadyTime deadline,
             absl::AnyInvocable<void(absl::StatusOr<WatchResult>)> k, uint64_t* id);

  void DoAcquire(AcquireRequest req, Completion<std::optional<LeaseGrant>> done);
  void DoRelease(std::string key, std::string lock_id, int attempt, StatusCompletion done);
  void DoExtend(std::string key, std::string lock_id, Duration ttl, int attempt,
                Completion<Duration> done);
  void DoInfo(std::string key, Completion<std::optional<LeaseInfo>> done);
  void DoFencedSet(std::string resource, uint64_t fence, std::string value, int attempt,
                   StatusCompletion done);
  void DoFencedGet(std::string resource, Completion<std::optional<FencedValue>> done);

  // Keeps one watch per key with waiters (up to kMaxKeyWatches), none for others; at the end of
  // the pass.
  void SyncWatchesSoon();
  void SyncWatches();
  void StartKeyWatch(const std::string& key, int64_t after_revision);

  EventLoop& loop_;
  const Duration timeout_;
  HttpClient http_;
  HttpClient watch_http_;
  bool shut_down_ = false;
  size_t pending_ops_ = 0;
  absl::flat_hash_map<std::string, std::deque<Next>> seqs_;  // front: the running operation
  struct KeyWatch {
    uint64_t id = 0;           // the watch request, if one runs
    uint64_t retry_timer = 0;  // after a failed watch: when to start the next
    int64_t after_revision = 0;
  };
  absl::flat_hash_map<std::string, KeyWatch> key_watches_;
  bool sync_scheduled_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  WaitQueue waits_;  // destroyed first: its waiters complete while the rest is whole
};

}  // namespace tollgate::etcd

#endif  // TOLLGATE_BACKENDS_ETCD_ASYNC_ETCD_H_
