#!/usr/bin/env bash
# Installs dependencies, builds, and starts `tollgate serve` on the embedded durable store.
# Extra arguments go to `tollgate serve` (for example --port 7400 --requirepass s3cret).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j2 --target tollgate
exec ./build/tollgate serve "$@"
