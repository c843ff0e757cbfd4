// Runs every file of fuzz/corpus/policy_yaml through the same checks as the libFuzzer target
// (fuzz/policy_yaml_check.h), so builds without clang/libFuzzer still exercise the corpus and any
// crash reproducers in it.

#include <cstdint>
#include <string>

#include "fuzz/corpus_files.h"
#include "fuzz/policy_yaml_check.h"
#include "gtest/gtest.h"

namespace {

TEST(PolicyYamlCorpusTest, EveryCorpusFilePassesFuzzChecks) {
  const auto files = tollgate::fuzz::ReadCorpusFiles(TOLLGATE_POLICY_YAML_CORPUS_DIR);
  ASSERT_FALSE(files.empty()) << "no corpus in " << TOLLGATE_POLICY_YAML_CORPUS_DIR;
  for (const tollgate::fuzz::CorpusFile& f : files) {
    EXPECT_EQ(tollgate::fuzz::CheckPolicyYaml(reinterpret_cast<const uint8_t*>(f.bytes.data()),
                                              f.bytes.size()),
              "")
        << f.name;
  }
}

}  // namespace
