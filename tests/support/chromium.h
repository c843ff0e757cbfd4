// For the tests that drive headless Chromium (the simulator report, the dashboard): finding the
// browser and quoting shell arguments for the command line that runs it.
#ifndef TOLLGATE_TESTS_SUPPORT_CHROMIUM_H_
#define TOLLGATE_TESTS_SUPPORT_CHROMIUM_H_

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>

namespace tollgate::testing {

// `s` as one single-quoted POSIX shell word.
inline std::string Quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// $TOLLGATE_CHROMIUM, else chromium (or chromium-browser) on the PATH; "" if none.
inline std::string FindChromium() {
  if (const char* env = std::getenv("TOLLGATE_CHROMIUM"); env != nullptr && *env != '\0') {
    return env;
  }
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path != nullptr ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    for (const char* name : {"chromium", "chromium-browser"}) {
      std::filesystem::path p = std::filesystem::path(dir) / name;
      if (access(p.c_str(), X_OK) == 0) return p.string();
    }
  }
  return "";
}

}  // namespace tollgate::testing

#endif  // TOLLGATE_TESTS_SUPPORT_CHROMIUM_H_
