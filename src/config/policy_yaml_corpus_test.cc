// Runs every file of fuzz/corpus/policy_yaml through the same checks as the libFuzzer target
// (fuzz/policy_yaml_check.h), so builds without clang/libFuzzer still exercise the corpus and any
// crash reproducers in it.

#include <string>
#include <vector>

#include "fuzz/corpus_files.h"
#include "fuzz/policy_yaml_check.h"
#include "gtest/gtest.h"

namespace {

TEST(PolicyYamlCorpusTest, EveryCorpusFilePassesFuzzChecks) {
  EXPECT_EQ(tollgate::fuzz::CorpusFailures(TOLLGATE_POLICY_YAML_CORPUS_DIR,
                                           &tollgate::fuzz::CheckPolicyYaml),
            std::vector<std::string>{});
}

}  // namespace
