// Shared by every fuzzer and its corpus regression test (src/*/..._corpus_test.cc, which runs every
// committed seed and crash reproducer through the fuzzer's own checks in ordinary builds): reading
// a corpus directory, replaying it, and the fuzz entry point's body.

#ifndef TOLLGATE_FUZZ_CORPUS_FILES_H_
#define TOLLGATE_FUZZ_CORPUS_FILES_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
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

// A fuzzer's check: "" when every invariant holds for the input, else what was violated.
using CheckFn = std::string (*)(const uint8_t* data, size_t size);

// Runs every file of the corpus directory `dir` through `check`. Returns one "file: failure" line
// per failing file, or a single line saying the directory holds no corpus; empty when all pass.
inline std::vector<std::string> CorpusFailures(const std::string& dir, CheckFn check) {
  const std::vector<CorpusFile> files = ReadCorpusFiles(dir);
  if (files.empty()) return {"no corpus in " + dir};
  std::vector<std::string> failures;
  for (const CorpusFile& f : files) {
    std::string failure = check(reinterpret_cast<const uint8_t*>(f.bytes.data()), f.bytes.size());
    if (!failure.empty()) failures.push_back(f.name + ": " + failure);
  }
  return failures;
}

// The body of every LLVMFuzzerTestOneInput: runs `check` and, on a violation, prints it (naming
// the fuzzer `what`) and traps so libFuzzer saves the input.
inline void RunCheckOrTrap(const char* what, CheckFn check, const uint8_t* data, size_t size) {
  const std::string failure = check(data, size);
  if (failure.empty()) return;
  std::fprintf(stderr, "%s invariant violated: %s\n", what, failure.c_str());
  __builtin_trap();
}

}  // namespace tollgate::fuzz

#endif  // TOLLGATE_FUZZ_CORPUS_FILES_H_
