// Exact decimal quantities (token counts, rates, costs) with nine fractional digits.
#ifndef TOLLGATE_DECIMAL_H_
#define TOLLGATE_DECIMAL_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace tollgate {

// A non-negative decimal stored as an integer count of 1e-9 units: "0.1" is exactly 100000000
// nanos. No floating point is involved anywhere, so 0.1 + 0.2 == 0.3.
struct Decimal {
  static constexpr uint64_t kScale = 1'000'000'000;  // nanos per unit

  uint64_t nanos = 0;

  static constexpr Decimal Units(uint64_t units) { return Decimal{units * kScale}; }

  // Parses "12", "0.5", "95000", "1.000000001", ".5" and "5." (digits with at most one '.', at
  // most 9 fractional digits, no sign, no exponent, no spaces). The value must be > 0 and <= max.
  // InvalidArgument otherwise, naming `what`, e.g. "rate must be a positive decimal number with at
  // most 9 decimal places, at most 1000000000, got 'nan'". NaN, infinities, negatives and zero are
  // rejected by construction.
  [[nodiscard]] static absl::StatusOr<Decimal> ParsePositive(std::string_view text,
                                                             std::string_view what, Decimal max);

  // Shortest exact text: "0.5", "95000", "0.000000001".
  std::string ToString() const;

  friend bool operator==(Decimal a, Decimal b) { return a.nanos == b.nanos; }
  friend bool operator<(Decimal a, Decimal b) { return a.nanos < b.nanos; }
  friend bool operator<=(Decimal a, Decimal b) { return a.nanos <= b.nanos; }
};

}  // namespace tollgate

#endif  // TOLLGATE_DECIMAL_H_
