#include "server/checkpointer.h"

#include "spdlog/spdlog.h"

namespace tollgate::server {

Checkpointer::Checkpointer(Throttler& throttler, PolicyEngine& policies, Writer write,
                           Options options)
    : throttler_(throttler), policies_(policies), write_(std::move(write)), options_(options) {
  if (options_.start_thread) thread_ = std::thread([this] { Loop(); });
}

Checkpointer::~Checkpointer() {
  {
    std::lock_guard<std::mutex> l(stop_mu_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  (void)RunOnce();
  const size_t lost = pending();
  if (lost > 0) {
    spdlog::error("last bucket checkpoint failed; {} bucket changes were not written", lost);
  }
}

void Checkpointer::Loop() {
  std::unique_lock<std::mutex> l(stop_mu_);
  while (!stop_cv_.wait_for(l, options_.interval, [this] { return stop_; })) {
    l.unlock();
    (void)RunOnce();
    l.lock();
  }
}

absl::Status Checkpointer::RunOnce() {
  throttler_.Sweep();
  policies_.Sweep();
  std::vector<BucketSnapshot> changed;
  std::vector<TableKey> dropped;
  auto on_changed = [&](const BucketSnapshot& s) { changed.push_back(s); };
  auto on_dropped = [&](std::string_view table, std::string_view key) {
    dropped.emplace_back(std::string(table), std::string(key));
  };
  absl::MutexLock l(&mu_);
  // Collected under mu_, so two concurrent runs cannot write one bucket's snapshots out of order.
  throttler_.CollectChanges(on_changed, on_dropped);
  policies_.CollectChanges(on_changed, on_dropped);
  if (!pending_.empty()) {
    // Earlier writes failed: this one carries their buckets too, each in its latest state.
    Merge(changed, dropped);
    changed.clear();
    dropped.clear();
    for (const auto& [tk, p] : pending_) {
      if (p.dropped) {
        dropped.push_back(tk);
      } else {
        changed.push_back({tk.first, tk.second, p.debt_hi, p.debt_lo, p.rate});
      }
    }
  }
  if (changed.empty() && dropped.empty()) return absl::OkStatus();
  absl::Status st = write_(changed, dropped);
  if (st.ok()) {
    pending_.clear();
    pending_drops_ = 0;
    return st;
  }
  if (pending_.empty()) Merge(changed, dropped);  // else pending_ already holds all of it
  spdlog::warn("bucket checkpoint failed ({} buckets kept for the next attempt): {}",
               pending_.size(), std::string(st.message()));
  return st;
}

void Checkpointer::Merge(std::vector<BucketSnapshot>& changed, std::vector<TableKey>& dropped) {
  for (TableKey& tk : dropped) {
    auto it = pending_.find(tk);
    if (it != pending_.end() && it->second.dropped) continue;
    if (pending_drops_ >= options_.max_pending_drops) {
      // Over the cap: forget this bucket entirely (see the class comment).
      if (it != pending_.end()) pending_.erase(it);
      ++discarded_drops_;
      continue;
    }
    ++pending_drops_;
    if (it == pending_.end()) {
      pending_.emplace(std::move(tk), Pending{.dropped = true});
    } else {
      it->second = Pending{.dropped = true};
    }
  }
  for (BucketSnapshot& s : changed) {
    Pending p{.dropped = false, .debt_hi = s.debt_hi, .debt_lo = s.debt_lo, .rate = s.rate};
    auto [it, inserted] = pending_.try_emplace(TableKey(std::move(s.table), std::move(s.key)), p);
    if (inserted) continue;
    if (it->second.dropped) --pending_drops_;
    it->second = p;
  }
}

size_t Checkpointer::pending() const {
  absl::MutexLock l(&mu_);
  return pending_.size();
}

uint64_t Checkpointer::discarded_drops() const {
  absl::MutexLock l(&mu_);
  return discarded_drops_;
}

}  // namespace tollgate::server
