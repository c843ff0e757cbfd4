// Runs every file of fuzz/corpus/resp_parser through the same checks as the libFuzzer target, so
// builds without clang/libFuzzer still exercise the corpus (and any crash reproducers in it).

#include <cstdint>
#include <string>
#include <vector>

#include "fuzz/corpus_files.h"
#include "fuzz/resp_parser_check.h"
#include "gtest/gtest.h"

namespace {

TEST(RespParserCorpusTest, EveryCorpusFilePassesFuzzChecks) {
  EXPECT_EQ(
      tollgate::fuzz::CorpusFailures(TOLLGATE_RESP_CORPUS_DIR, &tollgate::fuzz::CheckRespParser),
      std::vector<std::string>{});
}

// Each configuration byte pattern also runs against a fixed set of streams, so the chunking and
// limit decoding of the check itself is covered even if the corpus shrinks.
TEST(RespParserCorpusTest, BuiltinStreamsUnderAllConfigurations) {
  const std::string streams[] = {
      std::string("*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n*0\r\n*1\r\n$4\r\nPING\r\n"),
      std::string("SET \"a\\x00b\" 'c d'\r\n\r\n  \nGET x\n"),
      std::string("*1\r\n$3\r\na\r\n\r\n", 14),
      std::string("*3\r\n$1\r\nx\r\n$2\r\nyy\r\n$3\r\nzzz\r\n*2\r\n$0\r\n\r\n$0\r\n\r\n"),
      std::string("*1\r\n:1\r\n"),
      std::string("\"unbalanced\r\n"),
  };
  for (const std::string& s : streams) {
    for (int mode : {0, 1, 6, 0x80, 0xc5}) {
      for (int lim = 0; lim < 256; ++lim) {
        std::string input;
        input.push_back(static_cast<char>(mode));
        input.push_back(static_cast<char>(lim));
        input += s;
        EXPECT_EQ(tollgate::fuzz::CheckRespParser(reinterpret_cast<const uint8_t*>(input.data()),
                                                  input.size()),
                  "")
            << "mode=" << mode << " limits=" << lim << " stream=" << s;
      }
    }
  }
}

}  // namespace
