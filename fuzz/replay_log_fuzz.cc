// libFuzzer target for the simulator's replay-log parser (ParseReplayLog,
// include/tollgate/simulate.h). See replay_log_check.h for the input layout and the invariants
// checked; any violation traps.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "fuzz/replay_log_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string failure = tollgate::fuzz::CheckReplayLog(data, size);
  if (!failure.empty()) {
    std::fprintf(stderr, "replay_log invariant violated: %s\n", failure.c_str());
    __builtin_trap();
  }
  return 0;
}
