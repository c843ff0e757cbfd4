// libFuzzer target for tollgate::protocol::RequestParser. See resp_parser_check.h for the input
// layout and the invariants checked; any violation traps.

#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz/resp_parser_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string failure = tollgate::fuzz::CheckRespParser(data, size);
  if (!failure.empty()) __builtin_trap();
  return 0;
}
