// libFuzzer target for the simulator's replay-log parser (ParseReplayLog,
// include/tollgate/simulate.h). See replay_log_check.h for the input layout and the invariants
// checked; any violation traps.

#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz/corpus_files.h"
#include "fuzz/replay_log_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tollgate::fuzz::RunCheckOrTrap("replay_log", &tollgate::fuzz::CheckReplayLog, data, size);
  return 0;
}
