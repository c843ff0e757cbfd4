// The trailing options of the acquiring commands (LOCK.ACQUIRE, LOCK.MACQUIRE, SEM.ACQUIRE):
// `[WAIT ms] [OWNER label]`, plus `[WITHTIMES]` for LOCK.ACQUIRE only, in any order, each at most
// once. One parser for all three.
#ifndef TOLLGATE_SERVER_ACQUIRE_OPTIONS_H_
#define TOLLGATE_SERVER_ACQUIRE_OPTIONS_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "tollgate/clock.h"

namespace tollgate::server {

// Longest ttl_ms and WAIT of any command (kMaxTtl, kMaxWait).
inline constexpr int64_t kMaxMs = 86'400'000;
// Longest OWNER label.
inline constexpr size_t kMaxOwnerBytes = 512;

struct AcquireOptions {
  Duration wait{0};
  std::optional<std::string> owner;
  // WITHTIMES: the grant reply also carries acquired_at_ms and expires_at_ms.
  bool with_times = false;
};

// Which options a command accepts besides WAIT and OWNER.
enum class AcquireOptionSet {
  kWaitOwner,           // LOCK.MACQUIRE, SEM.ACQUIRE
  kWaitOwnerWithTimes,  // LOCK.ACQUIRE: also the WITHTIMES flag (no value)
};

// Parses `opts` (the arguments after the command's fixed ones) for `command` (lowercase, as in
// error messages). nullopt with *error set to the "ERR ..." reply naming the option and its
// accepted values on: an unknown option (WITHTIMES is unknown outside kWaitOwnerWithTimes), a
// missing value, a repeated option, WAIT outside [0, 86400000], an OWNER label outside 1..512
// bytes.
std::optional<AcquireOptions> ParseAcquireOptions(
    std::span<const std::string> opts, std::string_view command, std::string* error,
    AcquireOptionSet accepted = AcquireOptionSet::kWaitOwner);

}  // namespace tollgate::server

#endif  // TOLLGATE_SERVER_ACQUIRE_OPTIONS_H_
