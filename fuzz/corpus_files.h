// Reads a fuzzer corpus directory for the corpus regression tests (src/*/..._corpus_test.cc), which
// run every committed seed and crash reproducer through the fuzzer's own checks in ordinary builds.

#ifndef TOLLGATE_FUZZ_CORPUS_FILES_H_
#define TOLLGATE_FUZZ_CORPUS_FILES_H_

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

namespace tollgate::fuzz {

struct CorpusFile {
  std::string name;   // file name within the directory
  std::string bytes;  // its whole content
};

// Every regular file directly in `dir`, sorted by name. Empty if `dir` is not a readable
// directory (the caller asserts it is not empty). Never throws.
inline std::vector<CorpusFile> ReadCorpusFiles(const std::string& dir) {
  std::vector<CorpusFile> out;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (!it->is_regular_file(ec)) continue;
    std::ifstream in(it->path(), std::ios::binary);
    if (!in) continue;
    out.push_back({it->path().filename().string(), std::string(std::istreambuf_iterator<char>(in),
                                                               std::istreambuf_iterator<char>())});
  }
  std::sort(out.begin(), out.end(),
            [](const CorpusFile& a, const CorpusFile& b) { return a.name < b.name; });
  return out;
}

}  // namespace tollgate::fuzz

#endif  // TOLLGATE_FUZZ_CORPUS_FILES_H_
