#include "backends/async/wait_queue.h"

#include <utility>

#include "absl/strings/str_cat.h"

#include "core/absl_compat.h"

namespace tollgate {

void WaitOrder::Join(const std::string& key, const void* queue, uint64_t ticket) {
  absl::MutexLock l(&mu_);
  keys_[key].emplace_back(queue, ticket);
}

void WaitOrder::JoinAll(std::span<const std::string> keys, const void* queue, uint64_t ticket) {
  absl::MutexLock l(&mu_);
  for (const std::string& key : keys) keys_[key].emplace_back(queue, ticket);
}

void WaitOrder::Leave(const std::string& key, const void* queue, uint64_t ticket) {
  absl::MutexLock l(&mu_);
  auto it = keys_.find(key);
  if (it == keys_.end()) return;
  auto& q = it->second;
  for (auto e = q.begin(); e != q.end(); ++e) {
    if (e->first == queue && e->second == ticket) {
      q.erase(e);
      break;
    }
  }
  if (q.empty()) keys_.erase(it);
}

bool WaitOrder::IsFirst(const std::string& key, const void* queue, uint64_t ticket) const {
  absl::MutexLock l(&mu_);
  auto it = keys_.find(key);
  return it != keys_.end() && it->second.front() == std::make_pair(queue, ticket);
}

size_t WaitOrder::Count(const std::string& key) const {
  absl::MutexLock l(&mu_);
  auto it = keys_.find(key);
  return it == keys_.end() ? 0 : it->second.size();
}

// One queued request, whatever it acquires. The typed part (what to try, what to hand back) lives
// in TypedWaiter; the queue only sees attempts and their outcome.
struct WaitQueue::Waiter {
  virtual ~Waiter() = default;
  enum class Outcome { kGranted, kNotGranted, kFailed };
  // Sends the backend's non-waiting attempt; `then(outcome, status)` runs once, on the loop. A grant
  // is kept inside the waiter for Deliver or Abandon.
  virtual void Try(WaitQueue& q, absl::AnyInvocable<void(Outcome, absl::Status)> then) = 0;
  // Completes the request with the kept grant.
  virtual void DeliverGrant() = 0;
  // Completes it with "not acquired" (nullopt), or with `error`.
  virtual void DeliverNone() = 0;
  virtual void DeliverError(absl::Status error) = 0;
  // Gives the kept grant back (nobody will take it).
  virtual void Abandon(WaitQueue& q) = 0;
  // Drops the completion without calling it (cancelled).
  virtual void Forget() = 0;

  uint64_t ticket = 0;
  std::vector<std::string> qkeys;
  bool semaphore = false;  // a grant leaves other slots possibly free: the next tries at once
  uint64_t deadline_timer = 0;
  int attempts = 0;
  bool attempting = false;
  // The error of every attempt since the last clean answer, if the last attempt failed.
  std::optional<absl::Status> trouble;
  bool answered = false;  // completed or cancelled; dropped from the queues lazily
};

template <class Grant>
struct WaitQueue::TypedWaiter : WaitQueue::Waiter {
  using TryFn = absl::AnyInvocable<void(WaitQueue&, Completion<std::optional<Grant>>)>;
  using AbandonFn = absl::AnyInvocable<void(WaitQueue&, const Grant&)>;
  TypedWaiter(TryFn try_fn, AbandonFn abandon_fn, Completion<std::optional<Grant>> done)
      : try_fn(std::move(try_fn)), abandon_fn(std::move(abandon_fn)), done(std::move(done)) {}

  void Try(WaitQueue& q, absl::AnyInvocable<void(Outcome, absl::Status)> then) override {
    try_fn(q, [this, then = std::move(then)](absl::StatusOr<std::optional<Grant>> r) mutable {
      if (!r.ok()) return then(Outcome::kFailed, r.status());
      if (!r->has_value()) return then(Outcome::kNotGranted, absl::OkStatus());
      grant = std::move(**r);
      then(Outcome::kGranted, absl::OkStatus());
    });
  }
  void DeliverGrant() override { Complete(std::move(grant)); }
  void DeliverNone() override { Complete(std::optional<Grant>()); }
  void DeliverError(absl::Status error) override { Complete(std::move(error)); }
  void Abandon(WaitQueue& q) override {
    if (grant) abandon_fn(q, *grant);
    grant.reset();
  }
  void Forget() override { done = nullptr; }
  void Complete(absl::StatusOr<std::optional<Grant>> r) {
    if (!done) return;
    auto d = std::move(done);
    done = nullptr;
    d(std::move(r));
  }

  TryFn try_fn;
  AbandonFn abandon_fn;
  Completion<std::optional<Grant>> done;
  std::optional<Grant> grant;
};

struct WaitQueue::Key {
  std::deque<std::shared_ptr<Waiter>> waiters;
  uint64_t poll_timer = 0;
};

std::string WaitQueue::LeaseQKey(std::string_view key) { return absl::StrCat("L", AV(key)); }
std::string WaitQueue::SemQKey(std::string_view key) { return absl::StrCat("S", AV(key)); }

WaitQueue::WaitQueue(EventLoop& loop, Ops ops, Options options)
    : loop_(loop), ops_(std::move(ops)), options_(options) {}

WaitQueue::~WaitQueue() {
  Shutdown();
  *alive_ = false;
}

uint64_t WaitQueue::Acquire(const AcquireRequest& req, Completion<std::optional<LeaseGrant>> done) {
  auto w = std::make_shared<TypedWaiter<LeaseGrant>>(
      [req](WaitQueue& q, Completion<std::optional<LeaseGrant>> cb) {
        q.ops_.acquire(req, std::move(cb));
      },
      [key = req.key](WaitQueue& q, const LeaseGrant& g) { q.ops_.release(key, g.lock_id); },
      std::move(done));
  w->qkeys.push_back(LeaseQKey(req.key));
  return Enqueue(std::move(w), req.wait);
}

uint64_t WaitQueue::SemAcquire(const SemAcquireRequest& req,
                               Completion<std::optional<PermitGrant>> done) {
  if (!ops_.sem_acquire || !ops_.sem_release) {
    done(absl::UnimplementedError("this backend offers no semaphores"));
    return 0;
  }
  auto w = std::make_shared<TypedWaiter<PermitGrant>>(
      [req](WaitQueue& q, Completion<std::optional<PermitGrant>> cb) {
        q.ops_.sem_acquire(req, std::move(cb));
      },
      [key = req.key](WaitQueue& q, const PermitGrant& g) { q.ops_.sem_release(key, g.permit_id); },
      std::move(done));
  w->qkeys.push_back(SemQKey(req.key));
  w->semaphore = true;
  return Enqueue(std::move(w), req.wait);
}

uint64_t WaitQueue::MultiAcquire(const MultiAcquireRequest& req,
                                 Completion<std::optional<LeaseGrant>> done) {
  if (!ops_.multi_acquire || !ops_.multi_release) {
    done(absl::UnimplementedError("this backend offers no multi-key locks"));
    return 0;
  }
  auto w = std::make_shared<TypedWaiter<LeaseGrant>>(
      [req](WaitQueue& q, Completion<std::optional<LeaseGrant>> cb) {
        q.ops_.multi_acquire(req, std::move(cb));
      },
      [keys = req.keys](WaitQueue& q, const LeaseGrant& g) { q.ops_.multi_release(keys, g.lock_id); },
      std::move(done));
  for (const std::string& key : req.keys) w->qkeys.push_back(LeaseQKey(key));
  return Enqueue(std::move(w), req.wait);
}

uint64_t WaitQueue::Enqueue(std::shared_ptr<Waiter> w, Duration wait) {
  bool others = false;
  for (const std::string& qk : w->qkeys) others = others || CountQ(qk) > 0;
  if (wait <= Duration(0) || shut_down_) {
    if (others || shut_down_) {
      w->DeliverNone();
    } else {
      // Nobody waits for these keys: one attempt, answered as the backend answers it.
      Waiter* raw = w.get();
      raw->Try(*this, [w = std::move(w)](Waiter::Outcome outcome, absl::Status st) {
        if (outcome == Waiter::Outcome::kGranted) return w->DeliverGrant();
        if (outcome == Waiter::Outcome::kFailed) return w->DeliverError(std::move(st));
        w->DeliverNone();
      });
    }
    return 0;
  }
  w->ticket = next_ticket_++;
  const uint64_t ticket = w->ticket;
  w->deadline_timer =
      loop_.RunAt(loop_.clock()->SteadyNow() + wait, [this, ticket] { Expire(ticket); });
  tickets_.emplace(ticket, w);
  if (order_ != nullptr) order_->JoinAll(w->qkeys, this, ticket);
  for (const std::string& qk : w->qkeys) {
    std::unique_ptr<Key>& k = keys_[qk];
    if (k == nullptr) k = std::make_unique<Key>();
    k->waiters.push_back(w);
  }
  // Where it is first, it starts trying now (Attempt checks it is first on all of its keys);
  // behind others, their attempts and polls serve it in turn.
  for (const std::string& qk : w->qkeys) {
    Key& k = *keys_[qk];
    PruneHead(k);
    if (k.waiters.front() == w) {
      Attempt(qk);
      break;
    }
  }
  return w->answered ? 0 : ticket;  // 0: it completed before returning
}

void WaitQueue::Cancel(uint64_t ticket) {
  auto t = tickets_.find(ticket);
  if (t == tickets_.end()) return;
  std::shared_ptr<Waiter> w = t->second;
  MarkAnswered(*w);
  loop_.CancelTimer(w->deadline_timer);
  w->Forget();
  AfterLeaving(*w, /*at_once=*/false);
}

size_t WaitQueue::Count(std::string_view key) const { return CountQ(LeaseQKey(key)); }
size_t WaitQueue::SemCount(std::string_view key) const { return CountQ(SemQKey(key)); }

size_t WaitQueue::CountQ(const std::string& qkey) const {
  if (order_ != nullptr) return order_->Count(qkey);
  return LocalCount(qkey);
}

size_t WaitQueue::LocalCount(std::string_view qkey) const {
  auto it = keys_.find(AV(qkey));
  if (it == keys_.end()) return 0;
  size_t n = 0;
  for (const auto& w : it->second->waiters) n += w->answered ? 0 : 1;
  return n;
}

void WaitQueue::Poke(const std::string& key) {
  const std::string qk = LeaseQKey(key);
  auto it = keys_.find(qk);
  if (it == keys_.end()) return;
  loop_.CancelTimer(it->second->poll_timer);
  it->second->poll_timer = 0;
  Attempt(qk);
}

void WaitQueue::PokeSemaphore(const std::string& key) {
  const std::string qk = SemQKey(key);
  auto it = keys_.find(qk);
  if (it == keys_.end()) return;
  loop_.CancelTimer(it->second->poll_timer);
  it->second->poll_timer = 0;
  Attempt(qk);
}

std::vector<std::string> WaitQueue::WaitingKeys() const {
  std::vector<std::string> out;
  for (const auto& [qk, k] : keys_) {
    if (qk[0] == 'L' && LocalCount(qk) > 0) out.push_back(qk.substr(1));
  }
  return out;
}

std::vector<std::string> WaitQueue::WaitingSemaphores() const {
  std::vector<std::string> out;
  for (const auto& [qk, k] : keys_) {
    if (qk[0] == 'S' && LocalCount(qk) > 0) out.push_back(qk.substr(1));
  }
  return out;
}

void WaitQueue::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  std::vector<std::shared_ptr<Waiter>> answers;
  for (auto& [ticket, w] : tickets_) answers.push_back(w);
  for (auto& w : answers) {
    MarkAnswered(*w);
    loop_.CancelTimer(w->deadline_timer);
  }
  for (auto& [qk, k] : keys_) {
    loop_.CancelTimer(k->poll_timer);
    k->poll_timer = 0;
    k->waiters.clear();
  }
  // An attempt in flight keeps its waiter alive (its grant, if any, is then released).
  keys_.clear();
  for (auto& w : answers) w->DeliverNone();
}

void WaitQueue::MarkAnswered(Waiter& w) {
  if (w.answered) return;
  w.answered = true;
  tickets_.erase(w.ticket);
  if (order_ != nullptr) {
    for (const std::string& qk : w.qkeys) order_->Leave(qk, this, w.ticket);
  }
}

void WaitQueue::AfterLeaving(const Waiter& w, bool at_once) {
  for (const std::string& qk : w.qkeys) {
    if (at_once) {
      Attempt(qk);
    } else {
      Schedule(qk);
    }
  }
}

void WaitQueue::PruneHead(Key& k) {
  while (!k.waiters.empty() && k.waiters.front()->answered) k.waiters.pop_front();
}

bool WaitQueue::FirstEverywhere(const Waiter& w) const {
  for (const std::string& qk : w.qkeys) {
    auto it = keys_.find(qk);
    if (it == keys_.end()) return false;
    const auto& q = it->second->waiters;
    // Skip answered waiters ahead of it (pruned lazily).
    bool first = false;
    for (const auto& other : q) {
      if (other->answered) continue;
      first = other.get() == &w;
      break;
    }
    if (!first) return false;
    if (order_ != nullptr && !order_->IsFirst(qk, this, w.ticket)) return false;
  }
  return true;
}

void WaitQueue::Attempt(const std::string& qkey) {
  auto it = keys_.find(qkey);
  if (it == keys_.end()) return;
  Key& k = *it->second;
  loop_.CancelTimer(k.poll_timer);
  k.poll_timer = 0;
  PruneHead(k);
  if (k.waiters.empty()) {
    keys_.erase(it);
    return;
  }
  std::shared_ptr<Waiter> head = k.waiters.front();
  if (head->attempting) return;
  if (!FirstEverywhere(*head)) {
    // Someone earlier waits for another of its keys (here or on another I/O thread): it goes
    // first; this key polls until then.
    Schedule(qkey);
    return;
  }
  ++head->attempts;
  head->attempting = true;
  std::weak_ptr<bool> alive = alive_;
  head->Try(*this, [this, alive, head](Waiter::Outcome outcome, absl::Status st) {
    auto a = alive.lock();
    if (!a || !*a) return;  // the queue is gone (and its ops with it): the grant expires
    head->attempting = false;
    if (head->answered) {
      // Cancelled, expired or shut down while the attempt was in flight: nobody takes the grant.
      if (outcome == Waiter::Outcome::kGranted) head->Abandon(*this);
      AfterLeaving(*head, /*at_once=*/true);
      return;
    }
    if (outcome == Waiter::Outcome::kGranted) {
      MarkAnswered(*head);
      loop_.CancelTimer(head->deadline_timer);
      head->DeliverGrant();
      if (*a) AfterLeaving(*head, /*at_once=*/head->semaphore);
      return;
    }
    if (outcome == Waiter::Outcome::kFailed && head->attempts == 1 &&
        st.code() != absl::StatusCode::kUnavailable) {
      // A request the backend refuses outright (bad input) fails at once.
      MarkAnswered(*head);
      loop_.CancelTimer(head->deadline_timer);
      AfterLeaving(*head, /*at_once=*/false);
      head->DeliverError(std::move(st));
      return;
    }
    if (outcome == Waiter::Outcome::kFailed) {
      head->trouble = std::move(st);
    } else {
      head->trouble.reset();
    }
    for (const std::string& qk : head->qkeys) Schedule(qk);
  });
}

void WaitQueue::Schedule(const std::string& qkey) {
  auto it = keys_.find(qkey);
  if (it == keys_.end()) return;
  Key& k = *it->second;
  PruneHead(k);
  if (k.waiters.empty()) {
    loop_.CancelTimer(k.poll_timer);
    keys_.erase(it);
    return;
  }
  if (k.waiters.front()->attempting || k.poll_timer != 0) return;
  k.poll_timer =
      loop_.RunAt(loop_.clock()->SteadyNow() + options_.poll, [this, qkey] { Attempt(qkey); });
}

void WaitQueue::Expire(uint64_t ticket) {
  auto t = tickets_.find(ticket);
  if (t == tickets_.end()) return;
  std::shared_ptr<Waiter> w = t->second;
  MarkAnswered(*w);
  std::optional<absl::Status> trouble = w->trouble;
  AfterLeaving(*w, /*at_once=*/false);
  if (trouble) {
    w->DeliverError(*trouble);
  } else {
    w->DeliverNone();
  }
}

}  // namespace tollgate
