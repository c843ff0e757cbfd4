// Runs every file of fuzz/corpus/replay_log through the same checks as the libFuzzer target
// (fuzz/replay_log_check.h), so builds without clang/libFuzzer still exercise the corpus and any
// crash reproducers in it.

#include <cstdint>
#include <string>

#include "fuzz/corpus_files.h"
#include "fuzz/replay_log_check.h"
#include "gtest/gtest.h"

namespace {

TEST(ReplayLogCorpusTest, EveryCorpusFilePassesFuzzChecks) {
  const auto files = tollgate::fuzz::ReadCorpusFiles(TOLLGATE_REPLAY_LOG_CORPUS_DIR);
  ASSERT_FALSE(files.empty()) << "no corpus in " << TOLLGATE_REPLAY_LOG_CORPUS_DIR;
  for (const tollgate::fuzz::CorpusFile& f : files) {
    EXPECT_EQ(tollgate::fuzz::CheckReplayLog(reinterpret_cast<const uint8_t*>(f.bytes.data()),
                                             f.bytes.size()),
              "")
        << f.name;
  }
}

}  // namespace
