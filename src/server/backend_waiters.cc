#include "server/backend_waiters.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/absl_compat.h"
#include "spdlog/spdlog.h"

namespace tollgate::server {
namespace {

using std::chrono::milliseconds;

constexpr Duration kFirstBackoff = milliseconds(50);
constexpr Duration kMaxBackoff = std::chrono::seconds(1);
constexpr Duration kLogEvery = std::chrono::seconds(10);
// While the head waiter's deadline has passed but the local manager has not answered it yet.
constexpr Duration kDeadlinePassedNap = milliseconds(2);

ABSL_CONST_INIT absl::Mutex registry_mu(absl::kConstInit);
absl::flat_hash_map<const Services*, BackendWaiters*>& Registry()
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(registry_mu) {
  static auto* m = new absl::flat_hash_map<const Services*, BackendWaiters*>();
  return *m;
}

}  // namespace

struct BackendWaiters::Waiter {
  std::string key;
  Duration ttl{0};
  std::optional<std::string> owner;
  SteadyTime deadline{};
  std::string gate_key;        // the local stand-in key
  std::string gate_lock_id;    // our local lease on it, which the local waiter queues behind
  bool gate_released = false;  // guarded by BackendWaiters::mu_

  absl::Mutex mu;
  // A backend grant for this waiter, put here just before the gate is released; taken by whoever
  // answers the waiter (then it is the reply), or taken back by the worker (then it is released).
  std::optional<LeaseGrant> staged ABSL_GUARDED_BY(mu);
  // The backend's error while it could not be reached for this waiter, cleared by the next good
  // backend call: a waiter whose deadline passes while it is set gets this error, not null.
  absl::Status trouble ABSL_GUARDED_BY(mu);
  bool answered ABSL_GUARDED_BY(mu) = false;
};

BackendWaiters::BackendWaiters(Services& services, Connect connect, Options options)
    : services_(services),
      leases_(services.leases),
      connect_(std::move(connect)),
      options_(options) {
  absl::MutexLock l(&registry_mu);
  Registry()[&services_] = this;
}

BackendWaiters::~BackendWaiters() {
  {
    absl::MutexLock l(&registry_mu);
    Registry().erase(&services_);
  }
  BeginShutdown();
  Join();
}

BackendWaiters* BackendWaiters::For(const Services* services) {
  absl::MutexLock l(&registry_mu);
  auto it = Registry().find(services);
  return it == Registry().end() ? nullptr : it->second;
}

bool BackendWaiters::HasWaiters(std::string_view key) const { return CountWaiters(key) > 0; }

size_t BackendWaiters::CountWaiters(std::string_view key) const {
  absl::MutexLock l(&mu_);
  auto it = keys_.find(AV(key));
  return it == keys_.end() ? 0 : it->second.waiters.size();
}

absl::StatusOr<bool> BackendWaiters::Enqueue(const AcquireRequest& req, ClientControl& client) {
  ReapFinished();
  auto w = std::make_shared<Waiter>();
  w->key = req.key;
  w->ttl = req.ttl;
  w->owner = req.owner;
  w->deadline = std::chrono::steady_clock::now() + req.wait;
  {
    absl::MutexLock l(&mu_);
    if (stopping_) return false;
    w->gate_key = absl::StrCat("tollgate.wait/", ++next_gate_);
  }
  // The gate: held by us for as long as any wait may last, so the local waiter below stays queued.
  absl::StatusOr<std::optional<LeaseGrant>> gate =
      leases_.TryAcquire({w->gate_key, kMaxTtl, Duration(0), std::nullopt});
  if (!gate.ok()) return gate.status();
  if (!gate->has_value()) return absl::InternalError("waiter bookkeeping: gate key is taken");
  w->gate_lock_id = (*gate)->lock_id;

  // Whoever answers the local waiter (a gate release, its deadline, the manager's shutdown) answers
  // the client with the staged backend grant, if any, else null.
  GrantCallback reply = client.WaiterCallback(req.key);
  std::function<void(absl::Status)> reply_error = client.WaiterErrorCallback();
  LeaseManager* leases = &leases_;
  GrantCallback on_local = [w, leases, reply = std::move(reply),
                            reply_error = std::move(reply_error)](std::optional<LeaseGrant> local) {
    std::optional<LeaseGrant> out;
    absl::Status trouble;
    {
      absl::MutexLock l(&w->mu);
      out = std::move(w->staged);
      w->staged.reset();
      trouble = w->trouble;
      w->answered = true;
    }
    if (local) (void)leases->Release(w->gate_key, local->lock_id);  // the stand-in lease
    if (!out && !trouble.ok()) return reply_error(std::move(trouble));
    reply(std::move(out));
  };
  absl::StatusOr<LeaseManager::AsyncStart> start =
      leases_.AcquireAsync({w->gate_key, kMinTtl, req.wait, std::nullopt}, std::move(on_local));
  if (!start.ok() || !start->queued) {
    (void)leases_.Release(w->gate_key, w->gate_lock_id);
    if (!start.ok()) return start.status();
    return absl::InternalError("waiter bookkeeping: the local waiter was not queued");
  }
  // The I/O thread cancels this local waiter if the connection goes away or the server stops.
  client.Block(w->gate_key, start->waiter_id);

  absl::MutexLock l(&mu_);
  if (stopping_) {
    ReleaseGateLocked(*w);  // answers it with null through on_local
    return true;
  }
  KeyQueue& q = keys_[req.key];
  q.waiters.push_back(std::move(w));
  if (!q.has_worker) {
    q.has_worker = true;
    if (active_workers_ < options_.max_workers) {
      ++active_workers_;
      const uint64_t id = ++next_worker_;
      threads_.emplace(id, std::thread(&BackendWaiters::Work, this, req.key, id));
    } else {
      unserved_.push_back(req.key);
    }
  }
  return true;
}

void BackendWaiters::ReleaseGateLocked(Waiter& w) {
  if (w.gate_released) return;
  w.gate_released = true;
  (void)leases_.Release(w.gate_key, w.gate_lock_id);
}

void BackendWaiters::PruneLocked(KeyQueue& q) {
  for (auto it = q.waiters.begin(); it != q.waiters.end();) {
    Waiter& w = **it;
    bool done;
    {
      absl::MutexLock wl(&w.mu);
      done = w.answered;
    }
    if (!done) {
      // No local waiter behind our gate any more: the I/O thread cancelled it (disconnect, stop).
      absl::StatusOr<std::optional<LeaseInfo>> info = leases_.Info(w.gate_key);
      done = !info.ok() || !info->has_value() || (*info)->waiters == 0;
    }
    if (done) {
      ReleaseGateLocked(w);
      it = q.waiters.erase(it);
    } else {
      ++it;
    }
  }
}

void BackendWaiters::Work(std::string key, uint64_t worker_id) {
  std::unique_ptr<Backend> backend;
  {
    absl::MutexLock l(&mu_);
    if (!idle_.empty()) {
      backend = std::move(idle_.back());
      idle_.pop_back();
    }
  }
  for (;;) {
    Serve(key, backend);
    absl::MutexLock l(&mu_);
    if (stopping_ || unserved_.empty()) {
      if (!stopping_ && backend != nullptr && idle_.size() < options_.max_idle_connections) {
        idle_.push_back(std::move(backend));
      }
      --active_workers_;
      finished_.push_back(worker_id);
      break;
    }
    key = std::move(unserved_.front());
    unserved_.pop_front();
  }
  // `backend`, if not pooled, disconnects here.
}

void BackendWaiters::Serve(const std::string& key, std::unique_ptr<Backend>& backend) {
  Duration backoff = kFirstBackoff;
  SteadyTime last_log{};
  for (;;) {
    std::shared_ptr<Waiter> head;
    {
      absl::MutexLock l(&mu_);
      auto it = keys_.find(key);
      if (stopping_ || it == keys_.end()) return;
      PruneLocked(it->second);
      if (it->second.waiters.empty()) {
        keys_.erase(it);
        return;
      }
      head = it->second.waiters.front();
    }
    if (backend == nullptr) {
      absl::StatusOr<std::unique_ptr<Backend>> b = connect_();
      if (!b.ok()) {
        MarkTrouble(key, b.status());
        Trouble(b.status(), backoff, last_log);
        continue;
      }
      backend = std::move(*b);
    }
    const SteadyTime now = std::chrono::steady_clock::now();
    if (now >= head->deadline) {
      // The local manager's timer is about to answer it with null.
      Nap(kDeadlinePassedNap);
      continue;
    }
    absl::StatusOr<std::optional<LeaseGrant>> g = backend->Acquire(key, head->ttl, head->owner);
    if (!g.ok()) {
      MarkTrouble(key, g.status());
      Trouble(g.status(), backoff, last_log);
      continue;
    }
    MarkTrouble(key, absl::OkStatus());
    if (g->has_value()) {
      backoff = kFirstBackoff;
      Deliver(key, head, std::move(**g), *backend);
      continue;
    }
    const Duration wait =
        std::clamp<Duration>(head->deadline - now, milliseconds(1), options_.wait_slice);
    if (absl::Status st = backend->WaitForRelease(key, wait); !st.ok()) {
      MarkTrouble(key, st);
      Trouble(st, backoff, last_log);
      continue;
    }
    backoff = kFirstBackoff;
  }
}

void BackendWaiters::Deliver(const std::string& key, const std::shared_ptr<Waiter>& w,
                             LeaseGrant grant, Backend& backend) {
  bool delivered = false;
  {
    absl::MutexLock l(&mu_);
    if (!stopping_ && !w->gate_released) {
      {
        absl::MutexLock wl(&w->mu);
        w->staged = grant;
      }
      // If the local waiter is still queued, this answers it, on this thread, before returning.
      ReleaseGateLocked(*w);
      absl::MutexLock wl(&w->mu);
      delivered = !w->staged.has_value();
      w->staged.reset();
    }
    auto it = keys_.find(key);
    if (it != keys_.end()) {
      auto& ws = it->second.waiters;
      ws.erase(std::remove(ws.begin(), ws.end(), w), ws.end());
    }
  }
  if (!delivered) {
    // The waiter left (disconnect, deadline, shutdown) before it could take the lock: hand it on.
    absl::Status st = backend.Release(key, grant.lock_id);
    if (!st.ok()) {
      spdlog::warn("releasing a lease nobody waits for any more failed (it expires in {} ms): {}",
                   std::chrono::duration_cast<milliseconds>(grant.ttl).count(),
                   std::string(st.message()));
    }
  }
}

void BackendWaiters::MarkTrouble(const std::string& key, const absl::Status& st) {
  absl::MutexLock l(&mu_);
  auto it = keys_.find(key);
  if (it == keys_.end()) return;
  for (const std::shared_ptr<Waiter>& w : it->second.waiters) {
    absl::MutexLock wl(&w->mu);
    w->trouble = st;
  }
}

void BackendWaiters::Trouble(const absl::Status& st, Duration& backoff, SteadyTime& last_log) {
  const SteadyTime now = std::chrono::steady_clock::now();
  if (last_log == SteadyTime{} || now - last_log >= kLogEvery) {
    last_log = now;
    spdlog::warn(
        "LOCK.ACQUIRE WAIT on the shared backend: {}; retrying until the waiters' deadlines",
        std::string(st.message()));
  }
  Nap(backoff);
  backoff = std::min(backoff * 2, kMaxBackoff);
}

void BackendWaiters::Nap(Duration d) {
  absl::MutexLock l(&mu_);
  const absl::Time until = absl::Now() + absl::FromChrono(d);
  while (!stopping_) {
    if (stop_cv_.WaitWithDeadline(&mu_, until)) return;  // timed out
  }
}

void BackendWaiters::BeginShutdown() {
  absl::MutexLock l(&mu_);
  if (stopping_) return;
  stopping_ = true;
  for (auto& [key, q] : keys_) {
    for (auto& w : q.waiters) ReleaseGateLocked(*w);  // each still queued locally gets null
  }
  keys_.clear();
  unserved_.clear();
  idle_.clear();
  stop_cv_.SignalAll();
}

void BackendWaiters::Join() {
  std::map<uint64_t, std::thread> threads;
  {
    absl::MutexLock l(&mu_);
    threads.swap(threads_);
    finished_.clear();
  }
  for (auto& [id, t] : threads) t.join();
}

void BackendWaiters::ReapFinished() {
  std::vector<std::thread> done;
  {
    absl::MutexLock l(&mu_);
    for (uint64_t id : finished_) {
      auto it = threads_.find(id);
      if (it == threads_.end()) continue;
      done.push_back(std::move(it->second));
      threads_.erase(it);
    }
    finished_.clear();
  }
  for (std::thread& t : done) t.join();
}

}  // namespace tollgate::server
