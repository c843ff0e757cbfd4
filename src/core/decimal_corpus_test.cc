// Runs every file of fuzz/corpus/decimal through the same checks as the libFuzzer target
// (fuzz/decimal_check.h), so builds without clang/libFuzzer still exercise the corpus and any
// crash reproducers in it.

#include <cstdint>
#include <string>

#include "fuzz/corpus_files.h"
#include "fuzz/decimal_check.h"
#include "gtest/gtest.h"

namespace {

TEST(DecimalCorpusTest, EveryCorpusFilePassesFuzzChecks) {
  const auto files = tollgate::fuzz::ReadCorpusFiles(TOLLGATE_DECIMAL_CORPUS_DIR);
  ASSERT_FALSE(files.empty()) << "no corpus in " << TOLLGATE_DECIMAL_CORPUS_DIR;
  for (const tollgate::fuzz::CorpusFile& f : files) {
    EXPECT_EQ(tollgate::fuzz::CheckDecimal(reinterpret_cast<const uint8_t*>(f.bytes.data()),
                                           f.bytes.size()),
              "")
        << f.name;
  }
}

}  // namespace
