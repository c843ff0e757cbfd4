// Recovery: turning the records found in the store into RecoveredState. Separate from
// DurableStore so that it can be tested (and fuzzed) record by record without a database.
#ifndef TOLLGATE_STORAGE_RECOVERY_H_
#define TOLLGATE_STORAGE_RECOVERY_H_

#include <string_view>

#include "absl/status/status.h"
#include "tollgate/clock.h"
#include "tollgate/store.h"

namespace tollgate::storage {

// Largest fence a lease or the fence counter may hold: fences are reported to clients as signed
// 64-bit integers, and the counter must never wrap.
inline constexpr uint64_t kMaxStoredFence = 9'223'372'036'854'775'807ull;  // 2^63 - 1

// Applies one stored record (key and value as found in the store) to *state:
//   "M:fence"  raises max_fence;
//   "L" + key  adds a lease and raises max_fence to its fence;
//   "P" + ...  adds a semaphore permit and raises max_fence to its fence;
//   "R" + name adds a register;
//   "B" + ...  adds a bucket checkpoint, its debt reduced by what refilled between the
//              checkpoint's wall time and `now` (a checkpoint from the future refills nothing).
// Keys with any other first byte are not tollgate records and are ignored (OK).
// DataLoss if the record does not decode, or holds a value no running tollgate writes: a fence
// counter above kMaxStoredFence, a lease fence outside [1, kMaxStoredFence], a lease expiry before
// 1970, a permit whose semaphore key is not 1..kMaxKeyBytes bytes or whose permit id is not 1..255
// bytes, a permit fence outside [1, kMaxStoredFence], a permit limit outside
// [1, kMaxSemaphoreLimit] or slot outside [0, limit), a permit expiry before 1970, a register
// fence 0, a bucket rate above kMaxRate or debt above the burst window of
// kMaxCapacity (each would overflow later arithmetic or wrap the fence counter). The message is
// "corrupt record at key \"<the key C-escaped, at most 64 bytes shown>\": <what is wrong>".
// *state is unchanged on error.
[[nodiscard]] absl::Status RecoverRecord(std::string_view key, std::string_view value, WallTime now,
                                         RecoveredState* state);

}  // namespace tollgate::storage

#endif  // TOLLGATE_STORAGE_RECOVERY_H_
