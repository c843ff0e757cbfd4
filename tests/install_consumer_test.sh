#!/usr/bin/env bash
# The installed package, used the way a user does: `cmake --install` this build tree into a
# throwaway prefix, check what was installed (no test-only headers, every quoted include of a
# public header resolves inside the installed include/ or is a dependency's), then configure
# examples/consumer with find_package(tollgate) and CMAKE_PREFIX_PATH=<prefix>, build it and run it.
# Usage: install_consumer_test.sh CMAKE BUILD_DIR CONSUMER_SOURCE_DIR
set -euo pipefail
cmake_bin=$1
build=$2
consumer=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix

echo "== cmake --install $build --prefix $prefix"
"$cmake_bin" --install "$build" --prefix "$prefix" >"$tmp/install.log"
fail() { echo "FAIL: $*"; exit 1; }

[ -x "$prefix/bin/tollgate" ] || fail "bin/tollgate not installed"
"$prefix/bin/tollgate" --version
config=$(find "$prefix" -path '*/cmake/tollgate/tollgateConfig.cmake')
[ -n "$config" ] || fail "no tollgateConfig.cmake"
[ -f "$(dirname "$config")/tollgateConfigVersion.cmake" ] || fail "no tollgateConfigVersion.cmake"
[ -f "$prefix/include/tollgate/version.h" ] || fail "tollgate/version.h not installed"
[ ! -e "$prefix/include/tollgate/testing" ] || fail "test-only headers installed (include/tollgate/testing)"
[ -n "$(find "$prefix" -name libtollgate_core.a)" ] || fail "libtollgate_core.a not installed"
[ -f "$prefix/lib/systemd/system/tollgate.service" ] || fail "no systemd unit"
grep -q "^ExecStart=$prefix/bin/tollgate serve" "$prefix/lib/systemd/system/tollgate.service" ||
  fail "the unit does not start $prefix/bin/tollgate"
[ -f "$prefix/etc/tollgate/tollgate.env" ] || fail "no etc/tollgate/tollgate.env"

# Public headers: a quoted include is either another installed header or a dependency's (absl,
# nlohmann); never a src/ path such as "core/..." or a test helper.
bad=0
while IFS= read -r line; do
  file=${line%%:*}
  inc=$(sed -E 's/.*#include "([^"]+)".*/\1/' <<<"$line")
  case $inc in
    absl/* | nlohmann/*) ;;
    *) if [ ! -f "$prefix/include/$inc" ]; then echo "  $file includes \"$inc\""; bad=1; fi ;;
  esac
done < <(grep -rH '#include "' "$prefix/include/tollgate")
[ $bad = 0 ] || fail "installed headers include files that are not installed"

echo "== configure, build and run examples/consumer against $prefix"
"$cmake_bin" -S "$consumer" -B "$tmp/consumer" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF >"$tmp/configure.log" 2>&1 ||
  { cat "$tmp/configure.log"; fail "consumer configure"; }
grep "tollgate [0-9]" "$tmp/configure.log"
found=$(sed -n 's/^tollgate_DIR:PATH=//p' "$tmp/consumer/CMakeCache.txt")
case $found in
  "$prefix"/*) ;;
  *) fail "find_package(tollgate) found $found, not the installed copy" ;;
esac
"$cmake_bin" --build "$tmp/consumer" -j2 >"$tmp/build.log" 2>&1 ||
  { cat "$tmp/build.log"; fail "consumer build"; }
# The consumer's compile lines name only the installed headers, never the source tree.
if grep -rq -- "-I[^ ]*$(dirname "$consumer" | sed 's#/examples$##')/\(src\|include\)" \
     "$tmp/consumer/CMakeFiles/tollgate_consumer.dir/flags.make"; then
  fail "the consumer compiles against the source tree"
fi
"$tmp/consumer/tollgate_consumer" | tee "$tmp/run.log"
grep -q "^consumer: ok$" "$tmp/run.log" || fail "consumer did not finish"
echo "PASS"
