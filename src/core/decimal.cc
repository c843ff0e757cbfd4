#include "tollgate/decimal.h"

#include "absl/strings/str_cat.h"
#include "core/absl_compat.h"
#include "core/bucket_table.h"

namespace tollgate {

absl::StatusOr<Decimal> Decimal::ParsePositive(std::string_view text, std::string_view what,
                                               Decimal max) {
  auto fail = [&] {
    std::string shown(text.substr(0, 40));
    return absl::InvalidArgumentError(
        absl::StrCat(AV(what),
                     " must be a positive decimal number with at most 9 decimal places, "
                     "at most ",
                     max.ToString(), ", got '", shown, "'"));
  };
  if (text.empty() || text.size() > 40) return fail();
  core::u128 whole = 0;
  uint64_t frac = 0;
  int frac_digits = 0;
  bool seen_dot = false, seen_digit = false;
  for (char c : text) {
    if (c == '.') {
      if (seen_dot) return fail();
      seen_dot = true;
    } else if (c >= '0' && c <= '9') {
      seen_digit = true;
      if (seen_dot) {
        if (++frac_digits > 9) return fail();
        frac = frac * 10 + static_cast<uint64_t>(c - '0');
      } else {
        whole = whole * 10 + static_cast<unsigned>(c - '0');
        if (whole > core::u128{UINT64_MAX}) return fail();
      }
    } else {
      return fail();
    }
  }
  if (!seen_digit) return fail();
  for (int i = frac_digits; i < 9; ++i) frac *= 10;
  const core::u128 nanos = whole * kScale + frac;
  if (nanos == 0 || nanos > max.nanos) return fail();
  return Decimal{static_cast<uint64_t>(nanos)};
}

std::string Decimal::ToString() const {
  std::string s = std::to_string(nanos / kScale);
  uint64_t frac = nanos % kScale;
  if (frac == 0) return s;
  std::string f = std::to_string(frac);
  f.insert(0, 9 - f.size(), '0');
  while (!f.empty() && f.back() == '0') f.pop_back();
  return s + "." + f;
}

}  // namespace tollgate
