// libFuzzer target for exact decimals (include/tollgate/decimal.h). See decimal_check.h for the
// input layout and the invariants checked; any violation traps.

#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz/corpus_files.h"
#include "fuzz/decimal_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tollgate::fuzz::RunCheckOrTrap("decimal", &tollgate::fuzz::CheckDecimal, data, size);
  return 0;
}
