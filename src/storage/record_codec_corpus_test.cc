// Runs every file of fuzz/corpus/record_codec through the same checks as the libFuzzer target
// (fuzz/record_codec_check.h), so builds without clang/libFuzzer still exercise the corpus and any
// crash reproducers in it.

#include <string>
#include <vector>

#include "fuzz/corpus_files.h"
#include "fuzz/record_codec_check.h"
#include "gtest/gtest.h"

namespace {

TEST(RecordCodecCorpusTest, EveryCorpusFilePassesFuzzChecks) {
  EXPECT_EQ(tollgate::fuzz::CorpusFailures(TOLLGATE_RECORD_CODEC_CORPUS_DIR,
                                           &tollgate::fuzz::CheckRecordCodec),
            std::vector<std::string>{});
}

}  // namespace
