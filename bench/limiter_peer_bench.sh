#!/usr/bin/env bash
# Peer figure for the in-process limiter: tollgate's Throttler (bench/limiter_bench.cc,
# BM_Throttle) vs the in-memory token bucket of npm @ws-kit/memory (bench/node/), on the same
# single-thread workload: 1M keys, capacity 30, 10 tokens/s, cost 1, every key warmed once,
# uniform and Zipf(1.0) key streams (bit-identical streams; see memory_limiter_bench.mjs).
# The two benches run one after the other, never concurrently.
#
# Usage: bench/limiter_peer_bench.sh            (BUILD_DIR defaults to <repo>/build)
# Env:   BUILD_DIR, NODE_SECONDS (timed seconds per distribution for node, default 3),
#        NODE_MAX_OLD_SPACE_MB (default 4096; the 1M-key table needs ~300 MB of heap).
# Takes ~45 s on a 2-core VM (C++ ~25 s, node ~15 s).
set -euo pipefail

t_start=$(date +%s)
load_start=$(cut -d" " -f1-3 /proc/loadavg)
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${BUILD_DIR:-$repo/build}
node_dir=$repo/bench/node
bench_bin=$build_dir/bench/limiter_bench
node_seconds=${NODE_SECONDS:-3}
node_heap_mb=${NODE_MAX_OLD_SPACE_MB:-4096}

for tool in cmake node npm; do
  command -v "$tool" >/dev/null || { echo "error: $tool not found" >&2; exit 1; }
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# 1. Build limiter_bench (incremental: a no-op when up to date). Other people edit the tree
#    concurrently; if the build is broken right now, fall back to an existing binary and say so.
build_note="built from current tree"
if ! cmake --build "$build_dir" -j2 --target limiter_bench >"$tmp/build.log" 2>&1; then
  if [[ -x $bench_bin ]]; then
    build_note="BUILD FAILED, used existing binary from $(date -r "$bench_bin" '+%F %T')"
    echo "warning: limiter_bench build failed (tree mid-edit?); using existing $bench_bin" >&2
    tail -n 5 "$tmp/build.log" >&2
  else
    cat "$tmp/build.log" >&2
    echo "error: limiter_bench build failed and no binary at $bench_bin" >&2
    exit 1
  fi
fi

# 2. Node dependencies (pinned by package-lock.json).
if [[ ! -d $node_dir/node_modules ]]; then
  echo "installing node dependencies (npm ci) ..." >&2
  (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error) >&2
fi

# 3. tollgate Throttler.
echo "running limiter_bench --benchmark_filter=BM_Throttle ..." >&2
"$bench_bin" --benchmark_filter=BM_Throttle --benchmark_format=json >"$tmp/cc.json"

# 4. @ws-kit/memory.
echo "running node memory_limiter_bench.mjs ..." >&2
(cd "$node_dir" &&
  node --max-old-space-size="$node_heap_mb" --expose-gc memory_limiter_bench.mjs \
    --dist=both --seconds="$node_seconds") >"$tmp/node.txt"

# 5. Table.
build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$build_dir/CMakeCache.txt" 2>/dev/null || true)
git_rev=$(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown)
elapsed=$(($(date +%s) - t_start))

CC_JSON=$tmp/cc.json NODE_TXT=$tmp/node.txt node --input-type=module - <<'EOF'
import { readFileSync } from "node:fs";

const cc = JSON.parse(readFileSync(process.env.CC_JSON, "utf8"));
const nodeLines = readFileSync(process.env.NODE_TXT, "utf8").split("\n");
const kv = (line) =>
  Object.fromEntries(
    line.split(/\s+/).filter((t) => t.includes("=")).map((t) => t.split("=", 2)),
  );

const rows = [
  ["uniform", "zipf:0"],
  ["Zipf s=1.0", "zipf:1"],
];
const fmtRate = (x) => (x / 1e6).toFixed(2) + " M";
const fmtNs = (x) => `${Math.round(x)} ns`;
console.log(
  "| workload | tollgate Throttler (decisions/s) | @ws-kit/memory (decisions/s) | ratio | tollgate p99 | ws-kit p99 |",
);
console.log("|---|---:|---:|---:|---:|---:|");
for (const [label, arg] of rows) {
  const b = cc.benchmarks.find(
    (x) => x.name.startsWith(`BM_Throttle/${arg}`) && (x.run_type ?? "iteration") === "iteration",
  );
  const nl = nodeLines.find((l) =>
    l.startsWith(`ws-kit/memory ${arg === "zipf:0" ? "uniform" : "zipf"} `),
  );
  if (!b || !nl) throw new Error(`missing result for ${label}`);
  const n = kv(nl);
  const ratio = b.items_per_second / Number(n.decisions_per_sec);
  console.log(
    `| ${label} | ${fmtRate(b.items_per_second)} | ${fmtRate(Number(n.decisions_per_sec))}` +
      ` | ${ratio.toFixed(1)}x | ${fmtNs(b.p99_ns)} | ${fmtNs(Number(n.p99_ns))} |`,
  );
}
console.log();
console.log("Raw:");
for (const b of cc.benchmarks) {
  console.log(
    `  tollgate ${b.name} items_per_second=${Math.round(b.items_per_second)}` +
      ` p50_ns=${b.p50_ns} p99_ns=${b.p99_ns} p999_ns=${b.p999_ns} iterations=${b.iterations}`,
  );
}
for (const l of nodeLines) if (l.trim()) console.log(`  ${l}`);
EOF

cat <<EOF

Single thread, 1M keys, capacity 30, 10 tokens/s, cost 1; ratio = tollgate / ws-kit.
@ws-kit/memory consume() is async: each decision is awaited sequentially (one in flight).
Latency: individually timed decisions (clock read cost included); ws-kit p99 includes the await.
machine: nproc=$(nproc) kernel=$(uname -r) cpu="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)" loadavg_at_start="$load_start" (other load skews both columns)
versions: tollgate=$git_rev (CMAKE_BUILD_TYPE=${build_type:-?}, $build_note) node=$(node --version) @ws-kit/memory=$(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$node_dir/node_modules/@ws-kit/memory/package.json" | head -n 1)
elapsed: ${elapsed}s
EOF
