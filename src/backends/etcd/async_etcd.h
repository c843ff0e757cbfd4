// The etcd AsyncBackend: the one implementation of the etcd operations (request JSON, reply
// decoding, error mapping, validation, the optimistic loops), as chains of HTTP requests on a
// non-blocking HttpClient (http.h). Made by NewAsyncEtcdBackend; the synchronous NewEtcdBackend
// wraps it. Internal to the etcd backend.
//
// Order: operations on one key (a lock key, or a register) form a FIFO: the next starts when the
// previous completed; operations on different keys run at once. A semaphore's operations form one
// FIFO of their own; a multi-key operation starts when it is first in the FIFO of each of its
// keys. Waiting: LOCK.ACQUIRE, SEM.ACQUIRE and LOCK.MACQUIRE with WAIT wait in a WaitQueue; for
// each lease key and each semaphore with waiters (up to kMaxKeyWatches in all) a watch stream on
// the lock key (on the semaphore's permit keys) pokes the queue at each DELETE, so the head waiter
// tries at once rather than at its next poll. Multi-key waiters are counted among the waiters of
// each of their keys, so the lease key watches cover them.
#ifndef TOLLGATE_BACKENDS_ETCD_ASYNC_ETCD_H_
#define TOLLGATE_BACKENDS_ETCD_ASYNC_ETCD_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "backends/async/wait_queue.h"
#include "backends/etcd/etcd_codec.h"
#include "backends/etcd/http.h"
#include "core/absl_compat.h"
#include "nlohmann/json.hpp"
#include "tollgate/async_backend.h"
#include "tollgate/etcd_backend.h"

namespace tollgate::etcd {

// The most keys (lease keys and semaphores together) with waiters that get a watch stream each
// (each holds an HTTP connection); waiters on further keys rely on the WaitQueue's polling alone.
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
  // Two reads: the index key tollgate/i/<lock_id>, then the lock it names, checked to be held by
  // lock_id (see etcd_codec.h). `waiters` is 0.
  void LookupById(std::string_view lock_id, Completion<std::optional<LeaseById>> done) override;
  uint64_t SemAcquire(const SemAcquireRequest& req,
                      Completion<std::optional<PermitGrant>> done) override;
  void SemRelease(std::string_view key, std::string_view permit_id, StatusCompletion done) override;
  void SemExtend(std::string_view key, std::string_view permit_id, Duration ttl,
                 Completion<Duration> done) override;
  void SemInfo(std::string_view key, Completion<std::optional<SemaphoreInfo>> done) override;
  uint64_t MultiAcquire(const MultiAcquireRequest& req,
                        Completion<std::optional<LeaseGrant>> done) override;
  void MultiRelease(std::span<const std::string> keys, std::string_view lock_id,
                    Completion<size_t> done) override;
  void MultiExtend(std::span<const std::string> keys, std::string_view lock_id, Duration ttl,
                   Completion<Duration> done) override;
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
  // The non-waiting semaphore acquire (req.wait ignored): Backend::SemAcquire's contract. It reads
  // the permits first, so a full semaphore costs one read (the WaitQueue's attempts use it too).
  void SemAcquireNow(const SemAcquireRequest& req, Completion<std::optional<PermitGrant>> done);
  // The non-waiting multi-key acquire (req.wait ignored): Backend::MultiAcquire's contract.
  void MultiAcquireNow(const MultiAcquireRequest& req, Completion<std::optional<LeaseGrant>> done);
  // MultiAcquireNow for the WaitQueue's attempts: a read first, and nullopt without writing
  // anything while any key is held.
  void MultiAcquireIfFree(const MultiAcquireRequest& req,
                          Completion<std::optional<LeaseGrant>> done);
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
  // operations submitted and not completed, and lease keys and semaphores being watched for
  // waiters.
  size_t http_in_flight() const { return http_.in_flight(); }
  size_t max_http_in_flight() const { return http_.max_in_flight(); }
  size_t pending_operations() const { return pending_ops_; }
  size_t key_watches() const { return key_watches_.size(); }

 private:
  using json = nlohmann::json;
  struct WatchResult;
  using Next = absl::AnyInvocable<void()>;
  // An operation waiting in the FIFOs of its keys; it starts when first in all of them.
  struct Queued {
    Next run;
    size_t fronts_missing = 0;  // FIFOs where it is not first yet
  };
  // The FIFO names: a lease key, a register, a semaphore.
  static std::string LockSeq(std::string_view key) { return absl::StrCat("l", AV(key)); }
  static std::string SemSeq(std::string_view key) { return absl::StrCat("s", AV(key)); }

  // After Shutdown: completes `done` with Unavailable and returns true.
  template <class Done>
  bool Refused(Done& done);
  // Starts `start` when the operations queued before it on `seq` have completed; `start` gets the
  // completion to call (wrapping `done`: it starts the next operation of `seq`). Completes `done`
  // at once with Unavailable when kEtcdMaxInFlight operations are pending.
  template <class T>
  void Sequence(std::string seq, absl::AnyInvocable<void(T)> done,
                absl::AnyInvocable<void(absl::AnyInvocable<void(T)>)> start) {
    SequenceAll<T>({std::move(seq)}, std::move(done), std::move(start));
  }
  // Sequence in several FIFOs at once (distinct names): `start` runs when the operation is first in
  // every one of them. Operations are appended to all their FIFOs at once, so the FIFOs agree on
  // their order and none waits for another in a cycle.
  template <class T>
  void SequenceAll(std::vector<std::string> seqs, absl::AnyInvocable<void(T)> done,
                   absl::AnyInvocable<void(absl::AnyInvocable<void(T)>)> start);
  void Finished(const std::vector<std::string>& seqs);

  // One request: POSTs `body` to `path`; `k` gets the parsed reply or the mapped error.
  void Call(std::string_view path, const json& body,
            absl::AnyInvocable<void(absl::StatusOr<json>)> k);
  // {lease id, granted seconds}.
  void Grant(int64_t seconds,
             absl::AnyInvocable<void(absl::StatusOr<std::pair<int64_t, int64_t>>)> k);
  // Best effort (the lease expires anyway); `k` runs when etcd answered or the request failed.
  void Revoke(int64_t lease, Next k);
  // Revoke for a lease that other lock keys may share (LockValue::shared): revokes it only when no
  // key is attached to it any more. Best effort, as Revoke.
  void RevokeIfUnused(int64_t lease, Next k);
  // After lock keys were deleted or moved to a new lease: gives back their old leases
  // ({lease, shared}; duplicates and 0 ignored), then `k`.
  void ReleaseLeases(std::vector<std::pair<int64_t, bool>> leases, Next k);
  // Reads one key; with the store's revision at the read (checked positive when `want_revision`).
  void Get(const std::string& key, bool want_revision,
           absl::AnyInvocable<void(absl::StatusOr<std::optional<Kv>>, int64_t revision)> k);
  // Reads every key of `keys` (etcd keys) in one read-only txn: each absent or its Kv.
  void GetAll(std::vector<std::string> keys,
              absl::AnyInvocable<void(absl::StatusOr<std::vector<std::optional<Kv>>>)> k);
  // Reads the permits of semaphore `key` (in slot order) with the store's revision at the read.
  void GetPermits(const std::string& key,
                  absl::AnyInvocable<void(absl::StatusOr<std::vector<Kv>>, int64_t revision)> k);
  // A watch for DELETEs of `watch_key` (of every key in [watch_key, range_end) when range_end is
  // not empty).
  void Watch(std::string_view watch_key, std::string_view range_end, int64_t after_revision,
             SteadyTime deadline, absl::AnyInvocable<void(absl::StatusOr<WatchResult>)> k,
             uint64_t* id);

  void DoAcquire(AcquireRequest req, Completion<std::optional<LeaseGrant>> done);
  void DoRelease(std::string key, std::string lock_id, int attempt, StatusCompletion done);
  void DoExtend(std::string key, std::string lock_id, Duration ttl, int attempt,
                Completion<Duration> done);
  void DoInfo(std::string key, Completion<std::optional<LeaseInfo>> done);
  void DoLookup(std::string key, std::string lock_id, Completion<std::optional<LeaseById>> done);
  // Completes `done` with `info` and the remaining ttl of etcd lease `lease` (nullopt when it has
  // expired; `info` as it is when `lease` is 0).
  void WithTtl(int64_t lease, LeaseInfo info, Completion<std::optional<LeaseInfo>> done);
  void DoFencedSet(std::string resource, uint64_t fence, std::string value, int attempt,
                   StatusCompletion done);
  void DoFencedGet(std::string resource, Completion<std::optional<FencedValue>> done);
  // `lease`: {id, granted seconds} once granted (kept across retries), else {0, 0}.
  void DoSemAcquire(SemAcquireRequest req, int attempt, std::pair<int64_t, int64_t> lease,
                    Completion<std::optional<PermitGrant>> done);
  void DoSemRelease(std::string key, std::string permit_id, int attempt, StatusCompletion done);
  void DoSemExtend(std::string key, std::string permit_id, Duration ttl, int attempt,
                   Completion<Duration> done);
  void DoSemInfo(std::string key, Completion<std::optional<SemaphoreInfo>> done);
  void DoMultiAcquire(MultiAcquireRequest req, Completion<std::optional<LeaseGrant>> done);
  void DoMultiRelease(std::vector<std::string> keys, std::string lock_id, int attempt,
                      Completion<size_t> done);
  void DoMultiExtend(std::vector<std::string> keys, std::string lock_id, Duration ttl, int attempt,
                     Completion<Duration> done);
  // The WaitQueue's hooks (WaitQueue::Ops).
  WaitQueue::Ops WaitOps();
  // After a waiting request was queued or completed: the watches may need to change.
  template <class T>
  Completion<T> ThenSyncWatches(Completion<T> done);

  // Keeps one watch per lease key and per semaphore with waiters (up to kMaxKeyWatches), none for
  // others; at the end of the pass. Watches are named by their FIFO name (LockSeq / SemSeq).
  void SyncWatchesSoon();
  void SyncWatches();
  void StartKeyWatch(const std::string& name, int64_t after_revision);
  // Waiters for the key or semaphore of a watch name.
  size_t WatchWaiters(const std::string& name) const;

  EventLoop& loop_;
  const Duration timeout_;
  HttpClient http_;
  HttpClient watch_http_;
  bool shut_down_ = false;
  size_t pending_ops_ = 0;
  // Front: the running operation (or one waiting for the front of another FIFO).
  absl::flat_hash_map<std::string, std::deque<std::shared_ptr<Queued>>> seqs_;
  struct KeyWatch {
    uint64_t id = 0;           // the watch request, if one runs
    uint64_t retry_timer = 0;  // after a failed watch: when to start the next
    int64_t after_revision = 0;
  };
  absl::flat_hash_map<std::string, KeyWatch> key_watches_;  // by watch name
  bool sync_scheduled_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  WaitQueue waits_;  // destroyed first: its waiters complete while the rest is whole
};

template <class Done>
bool AsyncEtcdBackend::Refused(Done& done) {
  if (!shut_down_) return false;
  done(absl::UnavailableError("the etcd backend is shut down"));
  return true;
}

template <class T>
void AsyncEtcdBackend::SequenceAll(std::vector<std::string> seqs, absl::AnyInvocable<void(T)> done,
                                   absl::AnyInvocable<void(absl::AnyInvocable<void(T)>)> start) {
  if (pending_ops_ >= kEtcdMaxInFlight) {
    done(absl::UnavailableError(
        absl::StrCat("backend pipeline full (", kEtcdMaxInFlight, " requests in flight)")));
    return;
  }
  ++pending_ops_;
  auto op = std::make_shared<Queued>();
  op->fronts_missing = seqs.size();
  for (const std::string& seq : seqs) {
    std::deque<std::shared_ptr<Queued>>& q = seqs_[seq];
    q.push_back(op);
    if (q.size() == 1) --op->fronts_missing;
  }
  absl::AnyInvocable<void(T)> finish = [this, alive = alive_, seqs = std::move(seqs),
                                        done = std::move(done)](T r) mutable {
    --pending_ops_;
    done(std::move(r));
    if (*alive) Finished(seqs);
  };
  op->run = [start = std::move(start), finish = std::move(finish)]() mutable {
    start(std::move(finish));
  };
  // Otherwise it starts when the operations before it in its FIFOs completed.
  if (op->fronts_missing == 0) {
    Next run = std::move(op->run);  // the entries stay as the running operation's placeholder
    run();
  }
}

template <class T>
Completion<T> AsyncEtcdBackend::ThenSyncWatches(Completion<T> done) {
  return [this, alive = alive_, done = std::move(done)](absl::StatusOr<T> r) mutable {
    done(std::move(r));
    if (*alive) SyncWatchesSoon();
  };
}

}  // namespace tollgate::etcd

#endif  // TOLLGATE_BACKENDS_ETCD_ASYNC_ETCD_H_
