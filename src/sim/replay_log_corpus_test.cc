// Runs every file of fuzz/corpus/replay_log through the same checks as the libFuzzer target
// (fuzz/replay_log_check.h), so builds without clang/libFuzzer still exercise the corpus and any
// crash reproducers in it.

#include <string>
#include <vector>

#include "fuzz/corpus_files.h"
#include "fuzz/replay_log_check.h"
#include "gtest/gtest.h"

namespace {

TEST(ReplayLogCorpusTest, EveryCorpusFilePassesFuzzChecks) {
  EXPECT_EQ(tollgate::fuzz::CorpusFailures(TOLLGATE_REPLAY_LOG_CORPUS_DIR,
                                           &tollgate::fuzz::CheckReplayLog),
            std::vector<std::string>{});
}

}  // namespace
