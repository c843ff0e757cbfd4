#!/usr/bin/env bash
# cpack -G DEB of this build tree, then the packages as a system would see them: unpacked into a
# throwaway root (dpkg-deb -x), the root's `tollgate --version`, the systemd unit, the default
# configuration (conffiles, accepted by `tollgate policy check`), the maintainer scripts, and a
# `tollgate serve` from the root on that configuration, stopped cleanly.
# Usage: deb_package_test.sh CPACK BUILD_DIR VERSION
set -euo pipefail
cpack_bin=$1
build=$2
version=$3
tmp=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }

echo "== cpack -G DEB"
(cd "$tmp" && "$cpack_bin" -G DEB --config "$build/CPackConfig.cmake" -B "$tmp/out" >"$tmp/cpack.log" 2>&1) ||
  { cat "$tmp/cpack.log"; fail "cpack"; }
deb=$(find "$tmp/out" -maxdepth 1 -name "tollgate_${version}_*.deb" | head -n1)
dev=$(find "$tmp/out" -maxdepth 1 -name "tollgate-dev_${version}_*.deb" | head -n1)
[ -n "$deb" ] || { ls "$tmp/out"; fail "no tollgate_${version}_*.deb"; }
[ -n "$dev" ] || { ls "$tmp/out"; fail "no tollgate-dev_${version}_*.deb"; }
dpkg-deb -I "$deb"
root=$tmp/root
dpkg-deb -x "$deb" "$root"
dpkg-deb -e "$deb" "$tmp/control"

echo "== the binary"
out=$("$root/usr/bin/tollgate" --version)
echo "$out"
[ "$out" = "tollgate $version" ] || fail "tollgate --version printed '$out'"

echo "== the unit"
unit=$root/usr/lib/systemd/system/tollgate.service
[ -f "$unit" ] || fail "no /usr/lib/systemd/system/tollgate.service"
for want in '^User=tollgate$' '^Group=tollgate$' '^StateDirectory=tollgate$' \
            '^ExecStart=/usr/bin/tollgate serve --data-dir /var/lib/tollgate ' \
            '^EnvironmentFile=-/etc/tollgate/tollgate.env$' '^NoNewPrivileges=yes$' \
            '^ProtectSystem=strict$' '^ReadWritePaths=/var/lib/tollgate$' '^CapabilityBoundingSet=$'; do
  grep -q -- "$want" "$unit" || fail "tollgate.service lacks $want"
done
if command -v systemd-analyze >/dev/null && [ -d /run/systemd/system ]; then
  systemd-analyze verify "$unit" || fail "systemd-analyze verify"
fi

echo "== configuration and maintainer scripts"
for f in tollgate.env policies.yaml; do
  [ -f "$root/etc/tollgate/$f" ] || fail "no /etc/tollgate/$f"
  grep -qx "/etc/tollgate/$f" "$tmp/control/conffiles" || fail "/etc/tollgate/$f is not a conffile"
done
grep -q 'adduser --system' "$tmp/control/postinst" || fail "postinst does not create the user"
grep -q 'chown tollgate:tollgate /var/lib/tollgate' "$tmp/control/postinst" ||
  fail "postinst does not give /var/lib/tollgate to tollgate"
dpkg-deb -f "$deb" Depends | grep -q adduser || fail "Depends lacks adduser"
for s in postinst prerm postrm; do sh -n "$tmp/control/$s" || fail "$s: syntax"; done
"$root/usr/bin/tollgate" policy check "$root/etc/tollgate/policies.yaml" ||
  fail "the default policies.yaml does not pass tollgate policy check"

echo "== tollgate serve from the root, on the packaged configuration"
# TOLLGATE_OPTS of the env file, with free ports and the root's policy file.
# shellcheck disable=SC1091
opts=$(. "$root/etc/tollgate/tollgate.env"; echo "$TOLLGATE_OPTS")
opts=$(sed -E "s#--port [0-9]+#--port 0#; s#--http-port [0-9]+#--http-port 0#;
               s#/etc/tollgate/#$root/etc/tollgate/#" <<<"$opts")
mkdir "$tmp/data"
# shellcheck disable=SC2086
"$root/usr/bin/tollgate" serve --data-dir "$tmp/data" $opts >"$tmp/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do
  grep -q "tollgate ready on" "$tmp/serve.log" && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$tmp/serve.log"; fail "serve exited"; }
  sleep 0.1
done
grep -q "tollgate ready on" "$tmp/serve.log" || { cat "$tmp/serve.log"; fail "serve not ready"; }
grep "tollgate ready on" "$tmp/serve.log"
kill -TERM "$server_pid"
wait "$server_pid" || { cat "$tmp/serve.log"; fail "serve did not exit 0 on SIGTERM"; }
server_pid=""

echo "== tollgate-dev"
dpkg-deb -c "$dev" >"$tmp/dev.list"
dpkg-deb -c "$deb" >"$tmp/deb.list"
grep -q 'usr/include/tollgate/backend.h' "$tmp/dev.list" || fail "tollgate-dev lacks headers"
grep -q 'cmake/tollgate/tollgateConfig.cmake' "$tmp/dev.list" || fail "tollgate-dev lacks the package"
grep -q 'libtollgate_core.a' "$tmp/dev.list" || fail "tollgate-dev lacks the libraries"
if grep -q 'usr/include' "$tmp/deb.list"; then fail "the tollgate package carries headers"; fi
echo "PASS"
