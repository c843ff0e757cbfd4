// libFuzzer target for exact decimals (include/tollgate/decimal.h). See decimal_check.h for the
// input layout and the invariants checked; any violation traps.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "fuzz/decimal_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string failure = tollgate::fuzz::CheckDecimal(data, size);
  if (!failure.empty()) {
    std::fprintf(stderr, "decimal invariant violated: %s\n", failure.c_str());
    __builtin_trap();
  }
  return 0;
}
