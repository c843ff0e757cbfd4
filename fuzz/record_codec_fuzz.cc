// libFuzzer target for the journal record codec and recovery (src/storage/record_codec.h,
// src/storage/recovery.h). See record_codec_check.h for the input layout and the invariants
// checked; any violation traps.

#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz/corpus_files.h"
#include "fuzz/record_codec_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tollgate::fuzz::RunCheckOrTrap("record_codec", &tollgate::fuzz::CheckRecordCodec, data, size);
  return 0;
}
