#include "backends/async/wait_queue.h"

#include <utility>

#include "core/absl_compat.h"

namespace tollgate {

void WaitOrder::Join(const std::string& key, const void* queue, uint64_t ticket) {
  absl::MutexLock l(&mu_);
  keys_[key].emplace_back(queue, ticket);
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

struct WaitQueue::Waiter {
  uint64_t ticket = 0;
  AcquireRequest req;
  Completion<std::optional<LeaseGrant>> done;
  uint64_t deadline_timer = 0;
  int attempts = 0;
  // The error of every attempt since the last clean answer, if the last attempt failed.
  std::optional<absl::Status> trouble;
  bool answered = false;  // completed or cancelled; dropped from the queue lazily
};

struct WaitQueue::Key {
  std::deque<std::shared_ptr<Waiter>> waiters;
  bool attempting = false;  // an acquire for the head is in flight
  uint64_t poll_timer = 0;
};

WaitQueue::WaitQueue(EventLoop& loop, TryAcquire try_acquire, ReleaseAbandoned release,
                     Options options)
    : loop_(loop),
      try_acquire_(std::move(try_acquire)),
      release_(std::move(release)),
      options_(options) {}

WaitQueue::~WaitQueue() {
  Shutdown();
  *alive_ = false;
}

uint64_t WaitQueue::Acquire(const AcquireRequest& req, Completion<std::optional<LeaseGrant>> done) {
  auto it = keys_.find(req.key);
  const bool local_others = it != keys_.end() && LocalCount(req.key) > 0;
  const bool others = local_others || (order_ != nullptr && order_->Count(req.key) > 0);
  if (req.wait <= Duration(0) || shut_down_) {
    if (others || shut_down_) {
      done(std::optional<LeaseGrant>());
    } else {
      try_acquire_(req, std::move(done));
    }
    return 0;
  }
  auto w = std::make_shared<Waiter>();
  w->ticket = next_ticket_++;
  w->req = req;
  w->done = std::move(done);
  const uint64_t ticket = w->ticket;
  w->deadline_timer =
      loop_.RunAt(loop_.clock()->SteadyNow() + req.wait, [this, ticket] { Expire(ticket); });
  ticket_keys_.emplace(ticket, req.key);
  if (order_ != nullptr) order_->Join(req.key, this, ticket);
  std::unique_ptr<Key>& k = keys_[req.key];
  if (k == nullptr) k = std::make_unique<Key>();
  std::shared_ptr<Waiter> mine = w;
  k->waiters.push_back(std::move(w));
  // The head of this queue for the key starts polling (it tries the backend only once it is first
  // in the shared order, if any); behind a local waiter, that head's polling serves it in turn.
  if (!local_others) Attempt(req.key);
  return mine->answered ? 0 : ticket;  // 0: it completed before returning
}

void WaitQueue::Cancel(uint64_t ticket) {
  auto t = ticket_keys_.find(ticket);
  if (t == ticket_keys_.end()) return;
  const std::string key = std::move(t->second);
  ticket_keys_.erase(t);
  auto it = keys_.find(key);
  if (it == keys_.end()) return;
  for (auto& w : it->second->waiters) {
    if (w->ticket != ticket || w->answered) continue;
    MarkAnswered(*w, key);
    loop_.CancelTimer(w->deadline_timer);
    w->done = nullptr;
  }
  PruneHead(*it->second);
  if (it->second->waiters.empty() && !it->second->attempting) {
    loop_.CancelTimer(it->second->poll_timer);
    keys_.erase(it);
  }
}

size_t WaitQueue::Count(std::string_view key) const {
  if (order_ != nullptr) return order_->Count(std::string(key));
  return LocalCount(key);
}

size_t WaitQueue::LocalCount(std::string_view key) const {
  auto it = keys_.find(AV(key));
  if (it == keys_.end()) return 0;
  size_t n = 0;
  for (const auto& w : it->second->waiters) n += w->answered ? 0 : 1;
  return n;
}

void WaitQueue::Poke(const std::string& key) {
  auto it = keys_.find(key);
  if (it == keys_.end() || it->second->attempting) return;
  loop_.CancelTimer(it->second->poll_timer);
  Attempt(key);
}

std::vector<std::string> WaitQueue::WaitingKeys() const {
  std::vector<std::string> out;
  for (const auto& [key, k] : keys_) {
    if (LocalCount(key) > 0) out.push_back(key);
  }
  return out;
}

void WaitQueue::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  std::vector<Completion<std::optional<LeaseGrant>>> answers;
  for (auto& [key, k] : keys_) {
    loop_.CancelTimer(k->poll_timer);
    k->poll_timer = 0;
    for (auto& w : k->waiters) {
      if (w->answered) continue;
      MarkAnswered(*w, key);
      loop_.CancelTimer(w->deadline_timer);
      answers.push_back(std::move(w->done));
    }
    k->waiters.clear();
  }
  ticket_keys_.clear();
  // Keys with an attempt in flight stay until it completes (its grant, if any, is released).
  for (auto it = keys_.begin(); it != keys_.end();) {
    if (!it->second->attempting) {
      keys_.erase(it++);
    } else {
      ++it;
    }
  }
  for (auto& done : answers) done(std::optional<LeaseGrant>());
}

void WaitQueue::MarkAnswered(Waiter& w, const std::string& key) {
  w.answered = true;
  if (order_ != nullptr) order_->Leave(key, this, w.ticket);
}

void WaitQueue::PruneHead(Key& k) {
  while (!k.waiters.empty() && k.waiters.front()->answered) k.waiters.pop_front();
}

void WaitQueue::Attempt(const std::string& key) {
  auto it = keys_.find(key);
  if (it == keys_.end()) return;
  Key& k = *it->second;
  k.poll_timer = 0;
  if (k.attempting) return;
  PruneHead(k);
  if (k.waiters.empty()) {
    keys_.erase(it);
    return;
  }
  std::shared_ptr<Waiter> head = k.waiters.front();
  if (order_ != nullptr && !order_->IsFirst(key, this, head->ticket)) {
    // A waiter of another queue (another I/O thread) came first: it goes before this one.
    Schedule(key);
    return;
  }
  ++head->attempts;
  k.attempting = true;
  std::weak_ptr<bool> alive = alive_;
  try_acquire_(head->req, [this, alive, key, head](absl::StatusOr<std::optional<LeaseGrant>> r) {
    auto a = alive.lock();
    if (!a || !*a) return;  // the queue is gone (and its release_ with it): the lease expires
    auto kit = keys_.find(key);
    if (kit != keys_.end()) kit->second->attempting = false;
    if (head->answered) {
      // Cancelled, expired or shut down while the attempt was in flight: nobody takes the grant.
      if (r.ok() && r->has_value()) release_(key, (*r)->lock_id);
      if (kit != keys_.end()) Attempt(key);  // the next waiter, if any, goes on at once
      return;
    }
    if (r.ok() && r->has_value()) {
      MarkAnswered(*head, key);
      loop_.CancelTimer(head->deadline_timer);
      ticket_keys_.erase(head->ticket);
      auto done = std::move(head->done);
      Schedule(key);  // the next waiter polls
      done(std::move(r));
      return;
    }
    if (!r.ok() && head->attempts == 1 && r.status().code() != absl::StatusCode::kUnavailable) {
      // A request the backend refuses outright (bad input) fails at once.
      MarkAnswered(*head, key);
      loop_.CancelTimer(head->deadline_timer);
      ticket_keys_.erase(head->ticket);
      auto done = std::move(head->done);
      Schedule(key);
      done(r.status());
      return;
    }
    if (r.ok()) {
      head->trouble.reset();
    } else {
      head->trouble = r.status();
    }
    Schedule(key);
  });
}

void WaitQueue::Schedule(const std::string& key) {
  auto it = keys_.find(key);
  if (it == keys_.end()) return;
  Key& k = *it->second;
  PruneHead(k);
  if (k.waiters.empty()) {
    if (!k.attempting) {
      loop_.CancelTimer(k.poll_timer);
      keys_.erase(it);
    }
    return;
  }
  if (k.attempting || k.poll_timer != 0) return;
  k.poll_timer =
      loop_.RunAt(loop_.clock()->SteadyNow() + options_.poll, [this, key] { Attempt(key); });
}

void WaitQueue::Expire(uint64_t ticket) {
  auto t = ticket_keys_.find(ticket);
  if (t == ticket_keys_.end()) return;
  const std::string key = std::move(t->second);
  ticket_keys_.erase(t);
  auto it = keys_.find(key);
  if (it == keys_.end()) return;
  Completion<std::optional<LeaseGrant>> done;
  std::optional<absl::Status> trouble;
  for (auto& w : it->second->waiters) {
    if (w->ticket != ticket || w->answered) continue;
    MarkAnswered(*w, key);
    done = std::move(w->done);
    trouble = w->trouble;
  }
  Schedule(key);
  if (!done) return;
  if (trouble) {
    done(*trouble);
  } else {
    done(std::optional<LeaseGrant>());
  }
}

}  // namespace tollgate
