// libFuzzer target for the policy YAML parser (include/tollgate/policy_config.h). See
// policy_yaml_check.h for the input layout and the invariants checked; any violation traps.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "fuzz/policy_yaml_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string failure = tollgate::fuzz::CheckPolicyYaml(data, size);
  if (!failure.empty()) {
    std::fprintf(stderr, "policy_yaml invariant violated: %s\n", failure.c_str());
    __builtin_trap();
  }
  return 0;
}
