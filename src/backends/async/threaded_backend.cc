#include "backends/async/threaded_backend.h"

#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "backends/async/wait_queue.h"

namespace tollgate {
namespace {

class ThreadedAsyncBackend final : public AsyncBackend {
 public:
  using Job = absl::AnyInvocable<void(Backend&)>;

  ThreadedAsyncBackend(EventLoop& loop, std::vector<std::unique_ptr<Backend>> conns,
                       size_t max_queued)
      : loop_(loop),
        kind_(conns.front()->kind()),
        max_queued_(max_queued),
        waits_(loop, WaitOps()) {
    for (auto& c : conns) {
      auto w = std::make_unique<Worker>();
      w->backend = std::move(c);
      workers_.push_back(std::move(w));
    }
    for (auto& w : workers_) {
      Worker* wp = w.get();
      wp->thread = std::thread([wp] { Work(*wp); });
    }
  }

  ~ThreadedAsyncBackend() override {
    waits_.Shutdown();
    for (auto& w : workers_) {
      std::lock_guard<std::mutex> l(w->mu);
      w->stop = true;
      w->cv.notify_all();
    }
    for (auto& w : workers_) w->thread.join();
  }

  std::string_view kind() const override { return kind_; }

  uint64_t Acquire(const AcquireRequest& req, Completion<std::optional<LeaseGrant>> done) override {
    if (shut_down_) {
      done(Closed());
      return 0;
    }
    return waits_.Acquire(req, std::move(done));
  }
  void CancelWait(uint64_t ticket) override { waits_.Cancel(ticket); }
  size_t LocalWaiters(std::string_view key) const override { return waits_.Count(key); }
  void ShareWaitOrder(WaitOrder* order) override { waits_.set_order(order); }

  void Release(std::string_view key, std::string_view lock_id, StatusCompletion done) override {
    Submit<absl::Status>(
        key, std::move(done),
        [k = std::string(key), id = std::string(lock_id)](Backend& b) { return b.Release(k, id); });
  }
  void Extend(std::string_view key, std::string_view lock_id, Duration ttl,
              Completion<Duration> done) override {
    Submit<absl::StatusOr<Duration>>(
        key, std::move(done), [k = std::string(key), id = std::string(lock_id), ttl](Backend& b) {
          return b.Extend(k, id, ttl);
        });
  }
  void Info(std::string_view key, Completion<std::optional<LeaseInfo>> done) override {
    Submit<absl::StatusOr<std::optional<LeaseInfo>>>(
        key, std::move(done), [k = std::string(key)](Backend& b) { return b.Info(k); });
  }
  // Routed by lock_id (the key is what it finds): it may overlap an operation on the key that
  // another worker runs; the backend's own check of the lock_id makes the answer consistent.
  void LookupById(std::string_view lock_id, Completion<std::optional<LeaseById>> done) override {
    Submit<absl::StatusOr<std::optional<LeaseById>>>(
        lock_id, std::move(done),
        [id = std::string(lock_id)](Backend& b) { return b.LookupById(id); });
  }
  uint64_t SemAcquire(const SemAcquireRequest& req,
                      Completion<std::optional<PermitGrant>> done) override {
    if (shut_down_) {
      done(Closed());
      return 0;
    }
    return waits_.SemAcquire(req, std::move(done));
  }
  void SemRelease(std::string_view key, std::string_view permit_id,
                  StatusCompletion done) override {
    Submit<absl::Status>(key, std::move(done),
                         [k = std::string(key), id = std::string(permit_id)](Backend& b) {
                           return b.SemRelease(k, id);
                         });
  }
  void SemExtend(std::string_view key, std::string_view permit_id, Duration ttl,
                 Completion<Duration> done) override {
    Submit<absl::StatusOr<Duration>>(
        key, std::move(done), [k = std::string(key), id = std::string(permit_id), ttl](Backend& b) {
          return b.SemExtend(k, id, ttl);
        });
  }
  void SemInfo(std::string_view key, Completion<std::optional<SemaphoreInfo>> done) override {
    Submit<absl::StatusOr<std::optional<SemaphoreInfo>>>(
        key,
        [this, k = std::string(key), done = std::move(done)](
            absl::StatusOr<std::optional<SemaphoreInfo>> r) mutable {
          if (r.ok() && r->has_value()) (*r)->waiters = waits_.SemCount(k);
          done(std::move(r));
        },
        [k = std::string(key)](Backend& b) { return b.SemInfo(k); });
  }
  uint64_t MultiAcquire(const MultiAcquireRequest& req,
                        Completion<std::optional<LeaseGrant>> done) override {
    if (shut_down_) {
      done(Closed());
      return 0;
    }
    return waits_.MultiAcquire(req, std::move(done));
  }
  // Operations on a group of keys run on the worker of its first key.
  void MultiRelease(std::span<const std::string> keys, std::string_view lock_id,
                    Completion<size_t> done) override {
    std::vector<std::string> copy(keys.begin(), keys.end());
    const std::string route = copy.empty() ? std::string() : copy.front();
    Submit<absl::StatusOr<size_t>>(
        route, std::move(done),
        [copy = std::move(copy), id = std::string(lock_id)](Backend& b) {
          return b.MultiRelease(copy, id);
        });
  }
  void MultiExtend(std::span<const std::string> keys, std::string_view lock_id, Duration ttl,
                   Completion<Duration> done) override {
    std::vector<std::string> copy(keys.begin(), keys.end());
    const std::string route = copy.empty() ? std::string() : copy.front();
    Submit<absl::StatusOr<Duration>>(
        route, std::move(done),
        [copy = std::move(copy), id = std::string(lock_id), ttl](Backend& b) {
          return b.MultiExtend(copy, id, ttl);
        });
  }
  void FencedSet(std::string_view resource, uint64_t fence, std::string_view value,
                 StatusCompletion done) override {
    Submit<absl::Status>(resource, std::move(done),
                         [r = std::string(resource), fence, v = std::string(value)](Backend& b) {
                           return b.FencedSet(r, fence, v);
                         });
  }
  void FencedGet(std::string_view resource, Completion<std::optional<FencedValue>> done) override {
    Submit<absl::StatusOr<std::optional<FencedValue>>>(
        resource, std::move(done),
        [r = std::string(resource)](Backend& b) { return b.FencedGet(r); });
  }
  void Throttle(std::string_view key, const BucketParams& params, Decimal cost,
                Completion<Decision> done) override {
    Submit<absl::StatusOr<Decision>>(
        key, std::move(done),
        [k = std::string(key), params, cost](Backend& b) { return b.Throttle(k, params, cost); });
  }
  void CheckLayers(std::span<const LayerCheck> layers, Decimal cost,
                   Completion<PolicyDecision> done) override {
    std::vector<LayerCheck> copy(layers.begin(), layers.end());
    const std::string route = copy.empty() ? std::string() : copy.front().key;
    Submit<absl::StatusOr<PolicyDecision>>(
        route, std::move(done),
        [copy = std::move(copy), cost](Backend& b) { return b.CheckLayers(copy, cost); });
  }

  void Shutdown() override {
    shut_down_ = true;
    waits_.Shutdown();
  }

 private:
  struct Worker {
    std::unique_ptr<Backend> backend;
    std::mutex mu;
    std::condition_variable cv;
    std::deque<Job> jobs;  // guarded by mu
    bool stop = false;     // guarded by mu
    std::thread thread;
  };

  static absl::Status Closed() { return absl::UnavailableError("backend is shutting down"); }

  // The WaitQueue's view of the workers: non-waiting attempts and releases of abandoned grants.
  WaitQueue::Ops WaitOps() {
    WaitQueue::Ops ops;
    ops.acquire = [this](const AcquireRequest& req, Completion<std::optional<LeaseGrant>> done) {
      TryAcquire(req, std::move(done));
    };
    ops.release = [this](const std::string& key, const std::string& id) {
      Release(key, id, [](absl::Status) {});
    };
    ops.sem_acquire = [this](const SemAcquireRequest& req,
                             Completion<std::optional<PermitGrant>> done) {
      Submit<absl::StatusOr<std::optional<PermitGrant>>>(
          req.key, std::move(done), [req](Backend& b) { return b.SemAcquire(req); });
    };
    ops.sem_release = [this](const std::string& key, const std::string& id) {
      SemRelease(key, id, [](absl::Status) {});
    };
    ops.multi_acquire = [this](const MultiAcquireRequest& req,
                               Completion<std::optional<LeaseGrant>> done) {
      const std::string route = req.keys.empty() ? std::string() : req.keys.front();
      Submit<absl::StatusOr<std::optional<LeaseGrant>>>(
          route, std::move(done), [req](Backend& b) { return b.MultiAcquire(req); });
    };
    ops.multi_release = [this](const std::vector<std::string>& keys, const std::string& id) {
      MultiRelease(keys, id, [](absl::StatusOr<size_t>) {});
    };
    return ops;
  }

  void TryAcquire(const AcquireRequest& req, Completion<std::optional<LeaseGrant>> done) {
    Submit<absl::StatusOr<std::optional<LeaseGrant>>>(
        req.key, std::move(done), [k = req.key, ttl = req.ttl, owner = req.owner](Backend& b) {
          return b.Acquire(k, ttl, owner);
        });
  }

  // Runs `op` on the key's worker and hands its result to `done` on the loop.
  template <class R, class Done, class Op>
  void Submit(std::string_view route, Done done, Op op) {
    if (shut_down_) {
      done(Closed());
      return;
    }
    Worker& w = *workers_[absl::HashOf(route) % workers_.size()];
    EventLoop* loop = &loop_;
    {
      std::lock_guard<std::mutex> l(w.mu);
      if (w.jobs.size() < max_queued_) {
        w.jobs.push_back([loop, done = std::move(done), op = std::move(op)](Backend& b) mutable {
          R r = op(b);
          loop->Post([done = std::move(done), r = std::move(r)]() mutable { done(std::move(r)); });
        });
        w.cv.notify_one();
        return;
      }
    }
    done(absl::UnavailableError(
        absl::StrCat("backend queue full (", max_queued_, " operations waiting)")));
  }

  static void Work(Worker& w) {
    for (;;) {
      Job job;
      {
        std::unique_lock<std::mutex> l(w.mu);
        w.cv.wait(l, [&] { return w.stop || !w.jobs.empty(); });
        if (w.jobs.empty()) return;  // stopping, nothing left
        job = std::move(w.jobs.front());
        w.jobs.pop_front();
      }
      job(*w.backend);
    }
  }

  EventLoop& loop_;
  const std::string kind_;
  const size_t max_queued_;
  bool shut_down_ = false;
  std::vector<std::unique_ptr<Worker>> workers_;
  WaitQueue waits_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<AsyncBackend>> NewThreadedAsyncBackend(
    std::function<absl::StatusOr<std::unique_ptr<Backend>>()> connect, EventLoop& loop,
    ThreadedBackendOptions options) {
  if (options.workers < 1 || options.workers > 256) {
    return absl::InvalidArgumentError(
        absl::StrCat("workers must be in [1, 256], got ", options.workers));
  }
  if (options.max_queued < 1) return absl::InvalidArgumentError("max_queued must be at least 1");
  std::vector<std::unique_ptr<Backend>> conns;
  for (int i = 0; i < options.workers; ++i) {
    absl::StatusOr<std::unique_ptr<Backend>> b = connect();
    if (!b.ok()) return b.status();
    conns.push_back(std::move(*b));
  }
  return std::unique_ptr<AsyncBackend>(
      new ThreadedAsyncBackend(loop, std::move(conns), options.max_queued));
}

}  // namespace tollgate
