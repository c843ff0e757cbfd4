// Runs every file of fuzz/corpus/scenario through the same checks as the libFuzzer target
// (fuzz/scenario_check.h), so builds without clang/libFuzzer still exercise the corpus and any
// crash reproducers in it.

#include <string>
#include <vector>

#include "fuzz/corpus_files.h"
#include "fuzz/scenario_check.h"
#include "gtest/gtest.h"

namespace {

TEST(ScenarioCorpusTest, EveryCorpusFilePassesFuzzChecks) {
  EXPECT_EQ(
      tollgate::fuzz::CorpusFailures(TOLLGATE_SCENARIO_CORPUS_DIR, &tollgate::fuzz::CheckScenario),
      std::vector<std::string>{});
}

}  // namespace
