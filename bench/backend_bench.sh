#!/usr/bin/env bash
# tollgate's network backends used as a library, against peers on the same server:
#   - Redis: tollgate's Redis backend (bench/backend_bench.cc, THREADS threads, one connection each)
#     versus the npm packages redlock (locks) and rate-limiter-flexible's RateLimiterRedis (rate
#     limiting) on node (bench/node_redis/bench.mjs, THREADS concurrent async loops, one ioredis
#     connection each), against one redis-server (no persistence), FLUSHALL between the two;
#     and the same workloads through the server: `tollgate serve --backend redis://...` (default I/O threads: 4 per core)
#     on that redis-server, driven by backend_bench --server (THREADS threads, one hiredis
#     connection each, one command at a time: LOCK.ACQUIRE + LOCK.RELEASE, THROTTLE key 100 10);
#   - PostgreSQL: tollgate's PostgreSQL backend on a throwaway PostgreSQL 15 cluster (fsync off).
# Workloads, SECONDS_PER seconds each: lease acquire+release pairs on random keys of 10,000; one
# throttle decision (cost 1, burst 100) on random keys of 100,000.
#
#   bench/backend_bench.sh        # env: THREADS (8), SECONDS_PER (5), BUILD_DIR ($REPO/build)
#
# Prints a markdown table, the machine line and versions. Client and servers share this machine's
# cores, so the numbers are end-to-end on one box, not a server's capacity.
set -euo pipefail

BENCH_NAME=backend_bench
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$REPO/build}"
THREADS="${THREADS:-8}"
SECONDS_PER="${SECONDS_PER:-5}"
NODE_DIR="$REPO/bench/node_redis"
BIN="$BUILD_DIR/bench/backend_bench"
TOLLGATE_BIN="$BUILD_DIR/tollgate"
TOLLGATE_ARGS=""  # start_tollgate's extra flags; --backend etc. go in TOLLGATE_EXTRA_ARGS below
PG_BIN=/usr/lib/postgresql/15/bin
# shellcheck source=bench/lib/common.sh
source "$REPO/bench/lib/common.sh"

require_positive_ints THREADS SECONDS_PER
for tool in redis-server redis-cli node npm cmake python3 awk; do
  command -v "$tool" >/dev/null || die "$tool not found"
done
[[ -x $PG_BIN/postgres ]] || die "$PG_BIN/postgres not found (apt-get install postgresql-15)"

# --- build / install (outside the timed part) ------------------------------------------------------
[[ -f $BUILD_DIR/CMakeCache.txt ]] ||
  cmake -S "$REPO" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTOLLGATE_BUILD_BENCH=ON >&2
log "building tollgate and backend_bench in $BUILD_DIR"
cmake --build "$BUILD_DIR" -j2 --target tollgate backend_bench >&2 ||
  die "could not build tollgate / backend_bench"
[[ -x $BIN ]] || die "$BIN was not built"
[[ -x $TOLLGATE_BIN ]] || die "$TOLLGATE_BIN was not built"
if [[ ! -d $NODE_DIR/node_modules ]]; then
  log "npm ci in $NODE_DIR"
  (cd "$NODE_DIR" && npm ci --no-audit --no-fund >&2) || die "npm ci failed"
fi

bench_setup backend_bench
begin_measurements
collect_versions

run_bg() {  # out-file command...: in the background so that INT/TERM are handled at once
  local out=$1
  shift
  "$@" >"$out" 2>"$out.err" &
  BENCH_PID=$!
  wait "$BENCH_PID" || {
    cat "$out" "$out.err" >&2
    die "failed: $*"
  }
  BENCH_PID=""
  cat "$out" >&2
}

field() {  # file label field: the value of field=... on the line starting with label
  local v
  v="$(awk -v l="$2" -v f="$3" '$1 == l { for (i = 2; i <= NF; i++) if (index($i, f "=") == 1) print substr($i, length(f) + 2) }' "$1")"
  [[ $v =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "no $3 for $2 in $1"
  printf '%s' "$v"
}

# --- Redis: tollgate (library, then through the server), then node, on the same server -------------
start_redis "$WORK/redis" mem
log "redis-server on port $RD_PORT; tollgate Redis backend, $THREADS threads, ${SECONDS_PER}s per workload"
run_bg "$WORK/tollgate-redis.out" "$BIN" --redis "redis://127.0.0.1:$RD_PORT" --threads "$THREADS" \
  --seconds "$SECONDS_PER"
check_evalsha_calls "$RD_PORT" 1
[[ $(cli "$RD_PORT" FLUSHALL) == OK ]] || die "FLUSHALL failed"
[[ $(cli "$RD_PORT" CONFIG RESETSTAT) == OK ]] || die "CONFIG RESETSTAT failed"
TOLLGATE_EXTRA_ARGS=(--backend "redis://127.0.0.1:$RD_PORT")
start_tollgate "$WORK/tollgate"
log "tollgate serve (pid $TG_PID) on port $TG_PORT, --backend redis://127.0.0.1:$RD_PORT (default I/O threads: 4 per core);" \
  "$THREADS client threads, one connection each"
run_bg "$WORK/tollgate-serve.out" "$BIN" --server "127.0.0.1:$TG_PORT" --threads "$THREADS" \
  --seconds "$SECONDS_PER"
stop_tollgate
check_evalsha_calls "$RD_PORT" 1  # the server's state really went to this redis-server
[[ $(cli "$RD_PORT" FLUSHALL) == OK ]] || die "FLUSHALL failed"
log "redlock / rate-limiter-flexible on node, $THREADS concurrent loops"
run_bg "$WORK/node.out" node "$NODE_DIR/bench.mjs" --redis "redis://127.0.0.1:$RD_PORT" \
  --concurrency "$THREADS" --seconds "$SECONDS_PER"
stop_redis

# --- PostgreSQL ----------------------------------------------------------------------------------------
log "tollgate PostgreSQL backend (throwaway cluster), $THREADS threads"
run_bg "$WORK/tollgate-pg.out" "$BIN" --postgres --threads "$THREADS" --seconds "$SECONDS_PER"

# --- etcd (leases only) -------------------------------------------------------------------------------
log "tollgate etcd backend (throwaway etcd), $THREADS threads"
run_bg "$WORK/tollgate-etcd.out" "$BIN" --etcd --threads "$THREADS" --seconds "$SECONDS_PER"
ETCD_LEASE="$(field "$WORK/tollgate-etcd.out" tollgate-etcd lease_pairs_per_sec)"
ETCD_VERSION="$(etcd --version 2>/dev/null | awk '/etcd Version/ { print $3 }')"

TG_LEASE="$(field "$WORK/tollgate-redis.out" tollgate-redis lease_pairs_per_sec)"
TG_THR="$(field "$WORK/tollgate-redis.out" tollgate-redis throttle_per_sec)"
SRV_LEASE="$(field "$WORK/tollgate-serve.out" tollgate-serve lease_pairs_per_sec)"
SRV_THR="$(field "$WORK/tollgate-serve.out" tollgate-serve throttle_per_sec)"
NODE_LEASE="$(field "$WORK/node.out" node-redlock lease_pairs_per_sec)"
NODE_THR="$(field "$WORK/node.out" node-rate-limiter-flexible throttle_per_sec)"
PG_LEASE="$(field "$WORK/tollgate-pg.out" tollgate-postgres lease_pairs_per_sec)"
PG_THR="$(field "$WORK/tollgate-pg.out" tollgate-postgres throttle_per_sec)"
NODE_VERSIONS="$(sed -n 's/^node-versions //p' "$WORK/node.out")"
PG_VERSION="$("$PG_BIN/postgres" --version | awk '{ print $3 }')"

echo
echo "### Network backends: $THREADS threads / concurrent loops, ${SECONDS_PER}s per workload"
echo
echo "| workload | tollgate Redis backend | redlock / rate-limiter-flexible (node) | ratio | through tollgate serve |"
echo "|---|---:|---:|---:|---:|"
echo "| lease acquire+release pairs/s (10k keys) | $(fmt_int "$TG_LEASE") | $(fmt_int "$NODE_LEASE") (redlock) | $(ratio "$TG_LEASE" "$NODE_LEASE") | $(fmt_int "$SRV_LEASE") (ratio $(ratio "$SRV_LEASE" "$NODE_LEASE")) |"
echo "| throttle decisions/s (100k keys) | $(fmt_int "$TG_THR") | $(fmt_int "$NODE_THR") (RateLimiterRedis) | $(ratio "$TG_THR" "$NODE_THR") | $(fmt_int "$SRV_THR") (ratio $(ratio "$SRV_THR" "$NODE_THR")) |"
echo "| PostgreSQL backend: lease acquire+release pairs/s | $(fmt_int "$PG_LEASE") | — | — | — |"
echo "| PostgreSQL backend: throttle decisions/s | $(fmt_int "$PG_THR") | — | — | — |"
echo "| etcd backend: lease acquire+release pairs/s | $(fmt_int "$ETCD_LEASE") | — | — | — |"
echo
echo "- ratio = tollgate / node. tollgate: one Backend (one connection) per thread, synchronous calls;" \
  "node: one process, one ioredis connection per async loop. redlock uses retryCount 0 (a held key is" \
  "\"busy\", not a pair); RateLimiterRedis is a fixed window (points 100 / 10 s), tollgate a token" \
  "bucket (capacity 100, 10/s). Client and server share the machine's cores."
echo "- through tollgate serve: \`tollgate serve --backend redis://127.0.0.1:<port>\` (default I/O threads, 4 per core) on the" \
  "same redis-server (FLUSHALL before and after), $THREADS client threads (backend_bench --server), one" \
  "hiredis connection each, one command at a time (no pipelining): LOCK.ACQUIRE key 10000 then" \
  "LOCK.RELEASE key lock_id per pair; THROTTLE key 100 10 (cost 1) per decision. Its ratio is also" \
  "against node. Benchmark client, tollgate serve and redis-server all share the machine's cores."
print_machine_line
echo "- versions: tollgate checkout at git $GIT_REV ($BIN, $TOLLGATE_BIN), redis-server $REDIS_VERSION (--save ''" \
  "--appendonly no), PostgreSQL $PG_VERSION (fsync off), etcd $ETCD_VERSION, $NODE_VERSIONS"
echo "- took $((SECONDS - START)) s"
