// The storage seam of the lease core: every state change is appended to a Journal, and a reply that
// depends on it is released only once the journal says it is durable. DurableStore (store.h) is the
// RocksDB implementation; tests may use an in-memory one.
#ifndef TOLLGATE_JOURNAL_H_
#define TOLLGATE_JOURNAL_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "tollgate/clock.h"

namespace tollgate {

// A lease as it is written to storage. Expiry is wall-clock time because a steady clock does not
// survive a restart; on recovery the remaining lifetime is re-based onto the steady clock.
struct StoredLease {
  std::string lock_id;
  uint64_t fence = 0;
  WallTime expiry;
  std::optional<std::string> owner;
  // The granting process's wall clock at the grant (LeaseGrant::acquired_at); nullopt for a lease
  // recorded by a tollgate that did not keep it (a version 1 record).
  std::optional<WallTime> acquired_at;
  // Granted by a single-key acquire, so LookupById finds it by lock_id; false for the keys of a
  // multi-key group (and for version 1 records, which predate the index).
  bool indexed = false;
};

// A semaphore permit as it is written to storage (keyed by semaphore key and permit id). Expiry is
// wall-clock time, as for StoredLease.
struct StoredPermit {
  int64_t slot = 0;   // [0, limit)
  int64_t limit = 0;  // [1, kMaxSemaphoreLimit]: the semaphore's limit when it was granted
  uint64_t fence = 0;
  WallTime expiry;
  std::optional<std::string> owner;
};

class Journal {
 public:
  virtual ~Journal() = default;

  // Each Append* records one state change and returns its sequence number (strictly increasing).
  // Callers append under the lock that orders changes to the same key, so per-key order in the
  // journal equals the order in memory. Must be cheap: no I/O on the caller's thread.
  virtual uint64_t AppendLeasePut(std::string_view key, const StoredLease& lease) = 0;
  virtual uint64_t AppendLeaseDelete(std::string_view key) = 0;
  // A semaphore permit granted or extended (put), or released or expired (delete).
  virtual uint64_t AppendPermitPut(std::string_view key, std::string_view permit_id,
                                   const StoredPermit& permit) = 0;
  virtual uint64_t AppendPermitDelete(std::string_view key, std::string_view permit_id) = 0;
  virtual uint64_t AppendRegisterPut(std::string_view resource, uint64_t fence,
                                     std::string_view value) = 0;

  // Largest sequence number handed out so far (0 if none).
  virtual uint64_t LastAppended() const = 0;
  // Largest sequence number known durable.
  virtual uint64_t LastDurable() const = 0;
  // Blocks until every record with sequence <= seq is durable. Returns Unavailable if the journal
  // has failed or is closed.
  [[nodiscard]] virtual absl::Status WaitDurable(uint64_t seq) = 0;
};

}  // namespace tollgate

#endif  // TOLLGATE_JOURNAL_H_
