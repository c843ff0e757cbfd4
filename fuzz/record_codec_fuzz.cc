// libFuzzer target for the journal record codec and recovery (src/storage/record_codec.h,
// src/storage/recovery.h). See record_codec_check.h for the input layout and the invariants
// checked; any violation traps.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "fuzz/record_codec_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string failure = tollgate::fuzz::CheckRecordCodec(data, size);
  if (!failure.empty()) {
    std::fprintf(stderr, "record_codec invariant violated: %s\n", failure.c_str());
    __builtin_trap();
  }
  return 0;
}
