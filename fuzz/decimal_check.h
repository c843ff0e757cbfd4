// Invariant checks for tollgate::Decimal (include/tollgate/decimal.h), shared by the libFuzzer
// target (fuzz/decimal_fuzz.cc) and the corpus regression test (src/core/decimal_corpus_test.cc).
// Every check compares against an independent model: the text is read digit by digit into a
// 128-bit count of nanos, sums are done by schoolbook addition on the decimal digits.
// Header-only.

#ifndef TOLLGATE_FUZZ_DECIMAL_CHECK_H_
#define TOLLGATE_FUZZ_DECIMAL_CHECK_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "core/absl_compat.h"
#include "tollgate/decimal.h"

namespace tollgate::fuzz {
namespace decimal_internal {

__extension__ typedef unsigned __int128 u128;

// The `max` arguments the fuzzer picks from.
inline Decimal MaxFromByte(uint8_t b) {
  static constexpr uint64_t kMax[] = {
      10'000'000'000ull * Decimal::kScale,  // kMaxCapacity, kMaxCost
      1'000'000'000ull * Decimal::kScale,   // kMaxRate
      1'000'000ull * Decimal::kScale,       // decimal_test's
      Decimal::kScale,                      // 1
      1,                                    // 0.000000001
      UINT64_MAX,                           // everything representable
      UINT64_MAX - 1,
      123'456'789'012'345'678ull,
  };
  return Decimal{kMax[b % 8]};
}

// A decimal text split into its whole digits and its fractional digits padded to 9, or nullopt
// if it is not digits with at most one '.', at least one digit, at most 9 fractional digits and
// at most 40 characters: the grammar decimal.h documents.
struct Digits {
  std::string whole;  // may be empty or have leading zeros
  std::string frac;   // exactly 9 digits
};
inline std::optional<Digits> Split(std::string_view text) {
  if (text.empty() || text.size() > 40) return std::nullopt;
  const size_t dot = text.find('.');
  Digits d;
  d.whole = std::string(text.substr(0, dot));
  d.frac = dot == std::string_view::npos ? "" : std::string(text.substr(dot + 1));
  auto all_digits = [](const std::string& s) {
    return std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  if (!all_digits(d.whole) || !all_digits(d.frac)) return std::nullopt;
  if (d.whole.empty() && d.frac.empty()) return std::nullopt;
  if (d.frac.size() > 9) return std::nullopt;
  d.frac.resize(9, '0');
  return d;
}

// The value in nanos, saturated at 2^100 (far above any uint64).
inline u128 Nanos(const Digits& d) {
  const u128 cap = static_cast<u128>(1) << 100;
  u128 v = 0;
  for (char c : d.whole + d.frac) {
    v = v * 10 + static_cast<unsigned>(c - '0');
    if (v > cap) return cap;
  }
  return v;
}

// Schoolbook sum of two digit strings.
inline std::string AddDigits(const std::string& a, const std::string& b) {
  std::string out;
  int carry = 0;
  for (size_t i = 0; i < std::max(a.size(), b.size()) || carry; ++i) {
    int s = carry;
    if (i < a.size()) s += a[a.size() - 1 - i] - '0';
    if (i < b.size()) s += b[b.size() - 1 - i] - '0';
    out.push_back(static_cast<char>('0' + s % 10));
    carry = s / 10;
  }
  std::reverse(out.begin(), out.end());
  return out;
}

// ParsePositive(text) against the model: same verdict, same value, the documented error.
inline std::string CheckParse(std::string_view text, Decimal max, std::optional<Decimal>* out) {
  const absl::StatusOr<Decimal> got = Decimal::ParsePositive(text, "cost", max);
  const std::optional<Digits> digits = Split(text);
  const u128 want = digits ? Nanos(*digits) : 0;
  const bool want_ok = digits && want > 0 && want <= max.nanos;
  if (got.ok() != want_ok) {
    return std::string(got.ok() ? "accepted" : "rejected") + " '" + std::string(text) + "'";
  }
  if (!got.ok()) {
    const std::string msg(got.status().message());
    const std::string prefix =
        "cost must be a positive decimal number with at most 9 decimal places, at most " +
        max.ToString() + ", got '" + std::string(text.substr(0, 40)) + "'";
    if (got.status().code() != absl::StatusCode::kInvalidArgument || msg != prefix) {
      return "unexpected error: " + msg;
    }
    return "";
  }
  if (got->nanos != want) return "wrong value for '" + std::string(text) + "'";
  *out = *got;
  return "";
}

// ToString is the shortest exact text and parses back to the same value, and the value is the
// exact boundary of what `max` admits.
inline std::string CheckFormat(Decimal d) {
  const std::string s = d.ToString();
  const std::string whole = std::to_string(d.nanos / Decimal::kScale);
  std::string frac = std::to_string(d.nanos % Decimal::kScale);
  frac.insert(0, 9 - frac.size(), '0');
  while (!frac.empty() && frac.back() == '0') frac.pop_back();
  if (s != (frac.empty() ? whole : whole + "." + frac)) return "ToString is not shortest: " + s;
  if (d.nanos == 0) return "";
  const absl::StatusOr<Decimal> back = Decimal::ParsePositive(s, "x", d);
  if (!back.ok() || *back != d) return "ToString does not parse back: " + s;
  if (d.nanos > 1 && Decimal::ParsePositive(s, "x", Decimal{d.nanos - 1}).ok()) {
    return "a value above max was accepted: " + s;
  }
  if (!(Decimal{d.nanos - 1} < d) || d < d || !(d <= d) || !(d == d)) return "ordering broken";
  return "";
}

// a + b computed on the decimal digits equals the sum of the nanos (0.1 + 0.2 == 0.3, exactly),
// and the order of the values is the order of the digits.
inline std::string CheckSum(std::string_view a_text, Decimal a, std::string_view b_text,
                            Decimal b) {
  const Digits x = *Split(a_text), y = *Split(b_text);
  std::string sum = AddDigits(x.whole + x.frac, y.whole + y.frac);
  sum.erase(0, std::min(sum.find_first_not_of('0'), sum.size()));  // leading zeros: <= 40 chars
  if (sum.size() < 10) sum.insert(0, 10 - sum.size(), '0');
  const std::string sum_text = sum.substr(0, sum.size() - 9) + "." + sum.substr(sum.size() - 9);
  const u128 exact = static_cast<u128>(a.nanos) + b.nanos;
  const absl::StatusOr<Decimal> parsed = Decimal::ParsePositive(sum_text, "x", Decimal{UINT64_MAX});
  if (exact > UINT64_MAX) {
    if (parsed.ok()) return "a sum above 2^64 nanos parsed: " + sum_text;
  } else if (!parsed.ok() || parsed->nanos != exact) {
    return "digit sum " + sum_text + " differs from the sum of the nanos";
  }
  if ((a < b) != (Nanos(x) < Nanos(y))) return "order differs from the order of the digits";
  return "";
}

}  // namespace decimal_internal

// Runs one fuzzer input and returns a description of the first violated invariant, or "" when all
// hold. Input layout: byte 0 selects `max`; bytes 1..8 are a raw nanos value (little-endian) whose
// ToString is checked; the rest is text. Checked:
//   * ParsePositive(text) accepts exactly the documented grammar with 0 < value <= max, gives the
//     exact value, and otherwise InvalidArgument with the documented message;
//   * for each parsed value and the raw one: ToString is the shortest exact text, parses back to
//     the same value, and with max = value - 1 is rejected;
//   * if text is "A+B" and both parse: the digit-wise sum of A and B parses to the sum of their
//     nanos, and their order is the order of their digits.
inline std::string CheckDecimal(const uint8_t* data, size_t size) {
  using namespace decimal_internal;  // NOLINT(build/namespaces): local to this function
  if (size < 9) return "";
  const Decimal max = MaxFromByte(data[0]);
  uint64_t raw = 0;
  for (int i = 0; i < 8; ++i) raw |= static_cast<uint64_t>(data[1 + i]) << (8 * i);
  const std::string_view text(reinterpret_cast<const char*>(data + 9), size - 9);

  std::string failure = CheckFormat(Decimal{raw});
  if (!failure.empty()) return "raw: " + failure;
  std::optional<Decimal> whole;
  failure = CheckParse(text, max, &whole);
  if (!failure.empty()) return failure;
  if (whole && !(failure = CheckFormat(*whole)).empty()) return failure;

  const size_t plus = text.find('+');
  if (plus == std::string_view::npos) return "";
  const std::string_view a_text = text.substr(0, plus), b_text = text.substr(plus + 1);
  std::optional<Decimal> a, b;
  const Decimal any{UINT64_MAX};
  if (!(failure = CheckParse(a_text, any, &a)).empty()) return "A: " + failure;
  if (!(failure = CheckParse(b_text, any, &b)).empty()) return "B: " + failure;
  if (!a || !b) return "";
  return CheckSum(a_text, *a, b_text, *b);
}

}  // namespace tollgate::fuzz

#endif  // TOLLGATE_FUZZ_DECIMAL_CHECK_H_
