// Command-line durations: "500ms", "30s", "5m", "1h", or "0".
#ifndef TOLLGATE_CLIENT_DURATION_H_
#define TOLLGATE_CLIENT_DURATION_H_

#include <string_view>

#include "absl/status/statusor.h"
#include "tollgate/clock.h"

namespace tollgate::client {

// A non-negative integer followed by ms, s, m or h (no space); "0" alone is 0. At most 24 h.
// InvalidArgument "<what>: ..." otherwise, with the accepted forms.
[[nodiscard]] absl::StatusOr<Duration> ParseDuration(std::string_view text, std::string_view what);

}  // namespace tollgate::client

#endif  // TOLLGATE_CLIENT_DURATION_H_
