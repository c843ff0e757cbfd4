// Named numeric model parameters: one table per model struct drives YAML parsing, validation and
// the documentation's list, so the three cannot disagree.
#ifndef TOLLGATE_SIM_PARAMS_H_
#define TOLLGATE_SIM_PARAMS_H_

#include <span>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace tollgate::sim {

template <class T>
struct ParamDesc {
  const char* name;
  double T::*field;
  double lo, hi;         // accepted range, inclusive
  bool integer = false;  // must be a whole number
};

// InvalidArgument "NAME must be ..." if `v` is outside the parameter's range.
template <class T>
absl::Status CheckParam(const ParamDesc<T>& d, double v) {
  if (!(v >= d.lo && v <= d.hi) || (d.integer && v != static_cast<double>(static_cast<long>(v)))) {
    return absl::InvalidArgumentError(absl::StrCat(d.name, " must be ",
                                                   d.integer ? "an integer" : "a number", " in [",
                                                   d.lo, ", ", d.hi, "], got ", v));
  }
  return absl::OkStatus();
}

template <class T>
absl::Status CheckParams(std::span<const ParamDesc<T>> table, const T& p) {
  for (const ParamDesc<T>& d : table) {
    if (absl::Status st = CheckParam(d, p.*(d.field)); !st.ok()) return st;
  }
  return absl::OkStatus();
}

}  // namespace tollgate::sim

#endif  // TOLLGATE_SIM_PARAMS_H_
