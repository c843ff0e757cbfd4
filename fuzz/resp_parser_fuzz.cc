// libFuzzer target for tollgate::protocol::RequestParser. See resp_parser_check.h for the input
// layout and the invariants checked; any violation traps.

#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz/corpus_files.h"
#include "fuzz/resp_parser_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tollgate::fuzz::RunCheckOrTrap("resp_parser", &tollgate::fuzz::CheckRespParser, data, size);
  return 0;
}
