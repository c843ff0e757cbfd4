// The embedded durable store, tollgate's default: a RocksDB database whose write-ahead log is
// synced before any change is reported durable. Concurrent changes share one write and one fsync
// (group commit): a committer thread takes everything appended since its last write, writes it as
// one batch with sync=true, then advances the durable sequence.
#ifndef TOLLGATE_STORE_H_
#define TOLLGATE_STORE_H_

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tollgate/fenced_register.h"
#include "tollgate/journal.h"
#include "tollgate/lease_manager.h"
#include "tollgate/limiter.h"

namespace tollgate {

// Everything found in the store when it was opened.
struct RecoveredState {
  // Highest fence ever journaled (leases and permits since deleted included).
  uint64_t max_fence = 0;
  std::vector<std::pair<std::string, StoredLease>> leases;
  struct Permit {
    std::string key;  // the semaphore's
    std::string permit_id;
    StoredPermit permit;
  };
  std::vector<Permit> permits;  // semaphore permits (expired ones included)
  struct Register {
    std::string resource;
    uint64_t fence = 0;
    std::string value;
  };
  std::vector<Register> registers;
  // Token-bucket checkpoints, with the debt already reduced by the wall-clock time that passed
  // since they were written (a wall clock that went backwards counts as no time).
  std::vector<BucketSnapshot> buckets;
};

// Reinstates recovered leases, permits, the fence counter and fenced registers into the cores,
// before they serve (the one place recovery is applied: the server and the embedded backend both
// call it). Buckets are left to the caller: which table a checkpoint belongs to depends on its
// limiters.
void ApplyRecovered(const RecoveredState& recovered, LeaseManager& leases,
                    FencedRegisters& registers);

class DurableStore final : public Journal {
 public:
  struct Options {
    std::string dir;             // created if missing
    Clock* clock = RealClock();  // wall time for bucket checkpoints; not owned
    // Called on the committer thread after every group commit with the new durable sequence.
    std::function<void(uint64_t durable_seq)> on_durable;
    // Called once if a write or sync fails. The default logs and exits the process with status 75:
    // nothing unsynced was ever acknowledged, so a restart recovers a consistent state, whereas
    // going on would acknowledge changes a later crash could lose.
    std::function<void(const absl::Status&)> on_failure;
  };
  // Histogram buckets of Stats: fsync_counts[i] = commits whose write+sync took < 2^i us (and
  // >= 2^(i-1) us), the last holding the rest; size_counts[i] likewise for records per commit
  // (< 2^i records). The commit and record totals are the sums of these: counted once.
  static constexpr size_t kStatBuckets = 24;
  struct Stats {
    uint64_t commits = 0;  // group commits (one fsync each)
    uint64_t records = 0;  // records written
    std::array<uint64_t, kStatBuckets> fsync_counts{};
    std::array<uint64_t, kStatBuckets> size_counts{};
    Duration fsync_sum{0};
  };

  // Opens (or creates) the store and reads its contents into *recovered. Unavailable if the
  // directory cannot be opened (for example, another process holds its lock). DataLoss naming the
  // directory and the key if a record is corrupt (storage/recovery.h); nothing is opened then.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<DurableStore>> Open(
      Options options, RecoveredState* recovered);
  // Commits and syncs everything appended, then closes the database.
  ~DurableStore() override;

  uint64_t AppendLeasePut(std::string_view key, const StoredLease& lease) override;
  uint64_t AppendLeaseDelete(std::string_view key) override;
  uint64_t AppendPermitPut(std::string_view key, std::string_view permit_id,
                           const StoredPermit& permit) override;
  uint64_t AppendPermitDelete(std::string_view key, std::string_view permit_id) override;
  uint64_t AppendRegisterPut(std::string_view resource, uint64_t fence,
                             std::string_view value) override;
  uint64_t LastAppended() const override;
  // Writes and syncs everything appended so far on the calling thread (group commit, leader
  // style): if another thread is committing, returns at once and that thread commits this batch
  // right after its own. The server's I/O threads call it at the end of each event-loop pass that
  // left replies waiting (one sync per pass, as Redis does); WaitDurable calls it too. Records
  // nobody asks for are committed by a background thread within 5 ms. `settle`, if given, runs
  // once this thread has claimed the commit and before it takes the batch: a chance to let other
  // producers finish what they are appending.
  void CommitPending(const std::function<void()>& settle = nullptr);
  uint64_t LastDurable() const override;
  [[nodiscard]] absl::Status WaitDurable(uint64_t seq) override;

  // Writes token-bucket checkpoints (changed buckets) and removes dropped ones. Not synced and not
  // part of the journal: losing the last second of bucket state in an OS crash only makes limits
  // that much looser after the restart, and costs no fsync. Unavailable if the write fails.
  [[nodiscard]] absl::Status WriteBucketCheckpoint(
      const std::vector<BucketSnapshot>& changed,
      const std::vector<std::pair<std::string, std::string>>& dropped);
  // Removes one checkpointed bucket (one whose layer no longer exists).
  [[nodiscard]] absl::Status DeleteBucket(std::string_view table, std::string_view key);

  // Commits and syncs everything appended so far, then stops accepting work. Idempotent.
  [[nodiscard]] absl::Status Close();
  Stats stats() const;

  class Impl;

 private:
  explicit DurableStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tollgate

#endif  // TOLLGATE_STORE_H_
