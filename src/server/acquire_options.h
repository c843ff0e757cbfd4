// The trailing options of the acquiring commands (LOCK.ACQUIRE, LOCK.MACQUIRE, SEM.ACQUIRE):
// `[WAIT ms] [OWNER label]`, in any order, each at most once. One parser for all three.
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
};

// Parses `opts` (the arguments after the command's fixed ones) for `command` (lowercase, as in
// error messages). nullopt with *error set to the "ERR ..." reply naming the option and its
// accepted values on: an unknown option, a missing value, a repeated option, WAIT outside
// [0, 86400000], an OWNER label outside 1..512 bytes.
std::optional<AcquireOptions> ParseAcquireOptions(std::span<const std::string> opts,
                                                  std::string_view command, std::string* error);

}  // namespace tollgate::server

#endif  // TOLLGATE_SERVER_ACQUIRE_OPTIONS_H_
