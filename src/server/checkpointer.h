// Periodic checkpoints of token buckets (THROTTLE and policy layers) to the embedded store, so a
// restart does not hand every key a full bucket.
#ifndef TOLLGATE_SERVER_CHECKPOINTER_H_
#define TOLLGATE_SERVER_CHECKPOINTER_H_

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "tollgate/clock.h"
#include "tollgate/limiter.h"

namespace tollgate::server {

// Every interval: sweeps refilled buckets, collects the buckets changed and dropped since the last
// collection (Throttler/PolicyEngine::CollectChanges, which clears their marks), and writes them.
//
// A failed write loses nothing: what it carried is kept and written with the next attempt, merged
// with what changed since. Per bucket only the latest outcome is kept: a newer snapshot replaces an
// older one, a drop replaces a snapshot and a snapshot replaces a drop. So the pending snapshots
// are at most the live buckets (one per bucket; a bucket that is gone has a drop instead), and
// pending drops are capped at Options::max_pending_drops; a drop beyond the cap is discarded,
// which leaves an older checkpoint of that bucket in the store: a restart restores it, a tighter
// limit for at most that bucket's refill time (never a looser one), and drops it again once it has
// refilled. A carried snapshot is written as it was collected, and the store stamps it with the
// time of the write that succeeds: after a restart that bucket owes up to the outage's worth of
// refill more than it did (tighter, never looser) until it is used or refills. Thread-safe.
class Checkpointer {
 public:
  // Writes one checkpoint (DurableStore::WriteBucketCheckpoint): puts every snapshot in `changed`
  // and deletes every (table, key) in `dropped`, deletions first; no key is in both.
  using Writer =
      std::function<absl::Status(const std::vector<BucketSnapshot>& changed,
                                 const std::vector<std::pair<std::string, std::string>>& dropped)>;

  struct Options {
    Duration interval = std::chrono::seconds(1);
    // False: no thread; the owner calls RunOnce (tests).
    bool start_thread = true;
    // Most dropped buckets kept for the next attempt while writes fail (see above).
    size_t max_pending_drops = 1'000'000;
  };

  // `throttler`, `policies` and whatever `write` uses must outlive this object.
  Checkpointer(Throttler& throttler, PolicyEngine& policies, Writer write, Options options);
  // Stops the thread, then runs one last checkpoint.
  ~Checkpointer();
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

  // One checkpoint: sweeps, collects, writes what was collected together with whatever earlier
  // failed writes carried. Returns the write's status (OK when there was nothing to write); on
  // failure everything it carried is kept for the next call.
  absl::Status RunOnce();

  // Buckets (snapshots and drops) carried over from failed writes, waiting for the next attempt.
  size_t pending() const;
  // Drops discarded because max_pending_drops was reached.
  uint64_t discarded_drops() const;

 private:
  // The latest outcome of one bucket not yet written: its snapshot, or that it was dropped.
  struct Pending {
    bool dropped = false;
    uint64_t debt_hi = 0, debt_lo = 0, rate = 0;
  };
  using TableKey = std::pair<std::string, std::string>;  // (table, key)

  void Loop();
  // Folds one collection into pending_: its drops first, then its snapshots (a key in both was
  // dropped and then used again, so the snapshot is the newer).
  void Merge(std::vector<BucketSnapshot>& changed, std::vector<TableKey>& dropped)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Throttler& throttler_;
  PolicyEngine& policies_;
  const Writer write_;
  const Options options_;

  mutable absl::Mutex mu_;  // serializes RunOnce
  absl::flat_hash_map<TableKey, Pending> pending_ ABSL_GUARDED_BY(mu_);
  size_t pending_drops_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t discarded_drops_ ABSL_GUARDED_BY(mu_) = 0;

  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stop_ = false;  // guarded by stop_mu_
  std::thread thread_;
};

}  // namespace tollgate::server

#endif  // TOLLGATE_SERVER_CHECKPOINTER_H_
