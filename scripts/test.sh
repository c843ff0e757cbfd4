#!/usr/bin/env bash
# Installs dependencies, builds, and runs the whole test suite:
#   1. every test (unit, end-to-end against the real server, the kill -9 crash loop);
#   2. the same tests built with AddressSanitizer and UndefinedBehaviorSanitizer;
#   3. a short libFuzzer run of the RESP parser (clang-14).
# TOLLGATE_SKIP_SANITIZERS=1 skips 2, TOLLGATE_FUZZ_SECONDS=0 skips 3.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh

echo "== build and test (RelWithDebInfo)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTOLLGATE_BUILD_BENCH=ON
cmake --build build -j2
(cd build && ctest --output-on-failure -j2 --timeout 300)

if [ "${TOLLGATE_SKIP_SANITIZERS:-0}" != "1" ]; then
  echo "== build and test under ASan + UBSan"
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DTOLLGATE_SANITIZE=ON -DTOLLGATE_BUILD_BENCH=OFF
  cmake --build build-asan -j2
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
     UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
     ctest --output-on-failure -j2 --timeout 600)
fi

FUZZ_SECONDS="${TOLLGATE_FUZZ_SECONDS:-20}"
if [ "$FUZZ_SECONDS" != "0" ]; then
  echo "== fuzz the RESP parser for ${FUZZ_SECONDS}s"
  cmake -S . -B build-fuzz -DCMAKE_CXX_COMPILER=clang++-14 -DTOLLGATE_BUILD_FUZZ=ON \
    -DTOLLGATE_BUILD_BENCH=OFF >/dev/null
  cmake --build build-fuzz -j2 --target resp_parser_fuzz
  corpus=$(mktemp -d)
  cp fuzz/corpus/resp_parser/* "$corpus"/
  ./build-fuzz/fuzz/resp_parser_fuzz -max_total_time="$FUZZ_SECONDS" -dict=fuzz/dict/resp.dict \
    "$corpus" 2>&1 | tail -n 3
  rm -rf "$corpus"
fi
echo "== all tests passed"
