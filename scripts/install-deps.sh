#!/usr/bin/env bash
# Installs every build, test and benchmark dependency of tollgate from Debian 12 packages.
# Idempotent: packages already present are skipped, so running it again is cheap.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config git
  libgtest-dev libgmock-dev libbenchmark-dev
  librocksdb-dev     # embedded durable store (lease and fence state, WAL group commit)
  libcli11-dev       # command-line parsing for the tollgate executable
  libspdlog-dev      # server logging
  libabsl-dev        # Status/StatusOr, flat_hash_map, Mutex with thread-safety annotations
  libhiredis-dev     # Redis-protocol client used by the integration and crash tests
  libyaml-cpp-dev    # policy configuration files (src/config)
  redis-server redis-tools  # redis-cli / redis-benchmark, and the peer in bench/
  clang-14 libclang-rt-14-dev  # libFuzzer for fuzz/
  postgresql libpq-dev  # PostgreSQL backend (libpq) and the throwaway clusters its tests start
  etcd-server libcurl4-openssl-dev nlohmann-json3-dev  # etcd backend: v3 JSON gateway over libcurl
  libcpp-httplib-dev  # the HTTP API, /metrics and the dashboard (src/http)
  prometheus-cpp-dev  # /metrics: Prometheus registry, metric types and text exposition (core only)
  python3-prometheus-client  # tests/metrics_test.cc parses /metrics with the real Prometheus parser
  dpkg-dev file      # cpack -G DEB: dpkg-shlibdeps and file compute the .deb's Depends
  chromium           # headless browser for the simulation report test (tests/report_chromium_test.cc)
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The Debian redis-server package starts a system redis on 6379; tollgate's tests and benchmarks start
# their own instances on free ports and never use it.

# Node.js >= 20 and npm for the TypeScript packages (clients/typescript). Debian 12's nodejs is 18,
# so without a node >= 20 on the machine, Debian's nodejs and npm are installed and npm then
# installs Node.js 22 from the npm registry (the `node` package: official binaries).
node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if [ "$(node_major)" -lt 20 ] || ! command -v npm >/dev/null; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  if ! command -v npm >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends nodejs npm
  fi
  if [ "$(node_major)" -lt 20 ]; then
    $SUDO npm install -g --no-audit --no-fund node@22
    hash -r
  fi
fi
