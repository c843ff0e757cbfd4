// Runs every file of fuzz/corpus/decimal through the same checks as the libFuzzer target
// (fuzz/decimal_check.h), so builds without clang/libFuzzer still exercise the corpus and any
// crash reproducers in it.

#include <string>
#include <vector>

#include "fuzz/corpus_files.h"
#include "fuzz/decimal_check.h"
#include "gtest/gtest.h"

namespace {

TEST(DecimalCorpusTest, EveryCorpusFilePassesFuzzChecks) {
  EXPECT_EQ(
      tollgate::fuzz::CorpusFailures(TOLLGATE_DECIMAL_CORPUS_DIR, &tollgate::fuzz::CheckDecimal),
      std::vector<std::string>{});
}

}  // namespace
