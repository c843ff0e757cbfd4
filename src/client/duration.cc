#include "client/duration.h"

#include <chrono>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "core/absl_compat.h"

namespace tollgate::client {

absl::StatusOr<Duration> ParseDuration(std::string_view text, std::string_view what) {
  auto bad = [&] {
    return absl::InvalidArgumentError(
        absl::StrCat(AV(what), ": \"", AV(text.substr(0, 64)),
                     "\" is not a duration; use an integer with ms, s, m or h, e.g. 500ms, 30s, "
                     "5m (at most 24h)"));
  };
  if (text == "0") return Duration(0);
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0 || digits > 9) return bad();
  int64_t n = 0;
  for (size_t i = 0; i < digits; ++i) n = n * 10 + (text[i] - '0');
  std::string_view unit = text.substr(digits);
  Duration d;
  if (unit == "ms") {
    d = std::chrono::milliseconds(n);
  } else if (unit == "s") {
    d = std::chrono::seconds(n);
  } else if (unit == "m") {
    d = std::chrono::minutes(n);
  } else if (unit == "h") {
    d = std::chrono::hours(n);
  } else {
    return bad();
  }
  if (d > std::chrono::hours(24)) return bad();
  return d;
}

}  // namespace tollgate::client
