// libFuzzer target for the policy YAML parser (include/tollgate/policy_config.h). See
// policy_yaml_check.h for the input layout and the invariants checked; any violation traps.

#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz/corpus_files.h"
#include "fuzz/policy_yaml_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tollgate::fuzz::RunCheckOrTrap("policy_yaml", &tollgate::fuzz::CheckPolicyYaml, data, size);
  return 0;
}
