#!/usr/bin/env bash
# Installs dependencies, builds, and runs the whole test suite:
#   1. every test (unit, end-to-end against the real server, the kill -9 crash loop);
#   2. the same tests built with AddressSanitizer and UndefinedBehaviorSanitizer;
#   3. a short libFuzzer run of every parser (clang-14): TOLLGATE_FUZZ_SECONDS each (default 12);
#   4. the Release build a packager runs (-O3: the libraries and the binary, warning-free).
# Step 1 also runs the TypeScript packages' tests (clients/typescript, node --test) against the
# tollgate just built, and installs their `npm pack` tarballs into a scratch project.
# Step 1 includes the install checks: install_consumer_test (cmake --install, then
# examples/consumer built with find_package(tollgate) and run) and deb_package_test (cpack -G DEB,
# unpacked into a throwaway root, its `tollgate --version` and `tollgate serve`).
# TOLLGATE_SKIP_SANITIZERS=1 skips 2, TOLLGATE_FUZZ_SECONDS=0 skips 3, TOLLGATE_SKIP_RELEASE=1
# skips 4.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh

echo "== build and test (RelWithDebInfo)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTOLLGATE_BUILD_BENCH=ON -DTOLLGATE_WERROR=ON
cmake --build build -j2
(cd build && ctest --output-on-failure -j2 --timeout 300)

echo "== TypeScript packages: @tollgate/syncguard and @tollgate/ws-kit against build/tollgate"
(cd clients/typescript && npm ci --no-audit --no-fund &&
   TOLLGATE_BIN="$PWD/../../build/tollgate" npm test && ./scripts/pack-check.sh)

if [ "${TOLLGATE_SKIP_SANITIZERS:-0}" != "1" ]; then
  echo "== build and test under ASan + UBSan"
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DTOLLGATE_SANITIZE=ON -DTOLLGATE_BUILD_BENCH=OFF \
    -DTOLLGATE_WERROR=ON
  cmake --build build-asan -j2
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
     UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
     ctest --output-on-failure -j2 --timeout 600)
fi

# Every fuzzer in fuzz/ (one per parser: its seeds are fuzz/corpus/<name>/, its dictionary
# fuzz/dict/<name>.dict if there is one) runs for FUZZ_SECONDS on a copy of its seeds.
FUZZ_SECONDS="${TOLLGATE_FUZZ_SECONDS:-12}"
if [ "$FUZZ_SECONDS" != "0" ]; then
  echo "== fuzz every parser for ${FUZZ_SECONDS}s each"
  cmake -S . -B build-fuzz -DCMAKE_CXX_COMPILER=clang++-14 -DTOLLGATE_BUILD_FUZZ=ON \
    -DTOLLGATE_BUILD_BENCH=OFF -DTOLLGATE_WERROR=ON >/dev/null
  cmake --build build-fuzz -j2 --target fuzzers
  artifacts=build-fuzz/fuzz/artifacts
  mkdir -p "$artifacts"
  for seeds in fuzz/corpus/*/; do
    name=$(basename "$seeds")
    corpus=$(mktemp -d)
    log=$(mktemp)
    cp "$seeds"* "$corpus"/
    dict=()
    if [ -f "fuzz/dict/$name.dict" ]; then dict=(-dict="fuzz/dict/$name.dict"); fi
    echo "-- $name"
    if ./build-fuzz/fuzz/"${name}_fuzz" -max_total_time="$FUZZ_SECONDS" -timeout=10 "${dict[@]}" \
        -artifact_prefix="$artifacts/$name-" "$corpus" >"$log" 2>&1; then
      grep -E '^#[0-9]+[[:space:]]+DONE|^Done ' "$log" || tail -n 3 "$log"
      rm -rf "$corpus" "$log"
    else
      tail -n 40 "$log"
      echo "== the $name fuzzer failed; its input is in $artifacts/ (fix the parser, then add the"
      echo "   input to fuzz/corpus/$name/ so that the corpus test replays it)"
      exit 1
    fi
  done
fi
# What `cmake -DCMAKE_BUILD_TYPE=Release && cmake --build` gives a packager, minus the tests (built
# and run above): the libraries and the binary at -O3, where GCC warns about things -O2 does not;
# -Werror keeps them warning-free (a plain build has -Werror off, so it cannot fail on a warning).
if [ "${TOLLGATE_SKIP_RELEASE:-0}" != "1" ]; then
  echo "== Release build (libraries and binary, -O3, -Werror)"
  cmake -S . -B build-release-check -DCMAKE_BUILD_TYPE=Release -DTOLLGATE_BUILD_TESTS=OFF \
    -DTOLLGATE_BUILD_BENCH=OFF -DTOLLGATE_WERROR=ON >/dev/null
  cmake --build build-release-check -j2
  ./build-release-check/tollgate --version
fi
echo "== all tests passed"
