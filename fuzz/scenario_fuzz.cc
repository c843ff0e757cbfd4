// libFuzzer target for the simulator's scenario YAML parser (ParseScenarioYaml,
// include/tollgate/simulate.h). See scenario_check.h for the input layout and the invariants
// checked; any violation traps.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "fuzz/scenario_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string failure = tollgate::fuzz::CheckScenario(data, size);
  if (!failure.empty()) {
    std::fprintf(stderr, "scenario invariant violated: %s\n", failure.c_str());
    __builtin_trap();
  }
  return 0;
}
