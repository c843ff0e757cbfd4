// libFuzzer target for the simulator's scenario YAML parser (ParseScenarioYaml,
// include/tollgate/simulate.h). See scenario_check.h for the input layout and the invariants
// checked; any violation traps.

#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz/corpus_files.h"
#include "fuzz/scenario_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tollgate::fuzz::RunCheckOrTrap("scenario", &tollgate::fuzz::CheckScenario, data, size);
  return 0;
}
