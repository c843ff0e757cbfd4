#!/usr/bin/env bash
# Server benchmark: tollgate LOCK.ACQUIRE against the usual fenced acquire on Redis 7 (a Lua script
# run with EVALSHA), both fully durable, both driven by redis-benchmark with the same settings.
#
#   tollgate:  `tollgate serve` on its embedded RocksDB store (WAL fsynced before every reply).
#   Redis:     redis-server --appendonly yes --appendfsync always --save '' (the AOF is the only
#              persistence; it is fsynced before replies are sent).
#
# For each pipeline depth (-P 1, then -P 16) both servers start empty (fresh data directories), so
# both see the same mix of free and already-held keys; then the script checks that both really did
# the work (fences issued, keys written, no failed calls) and prints a markdown table.
#
# Environment (defaults in brackets):
#   TOLLGATE_BIN  [<repo>/build/tollgate]  REQUESTS [200000] (-P 16)  REQUESTS_P1 [100000] (-P 1)
#   CLIENTS [50]  KEYSPACE [100000] (redis-benchmark -r)  TTL_MS [30000]
#   ROUNDS [5]: each pipeline depth is measured ROUNDS times on fresh servers (alternating which server
#     goes first); the table shows the median of each column. TOLLGATE_ARGS: extra `serve` flags.
#   ENFORCE_TARGETS [0]: 1 = exit 2 when a target is missed
#   COUNT_FSYNCS [1]: count each server's fdatasync/fsync calls with `perf stat` (skipped when perf is
#     missing or not permitted); a run with zero fsyncs fails.
# Needs redis-server, redis-cli, redis-benchmark (Debian: redis-server, redis-tools) and python3.
#
# The Redis side runs bench/lua/fenced_acquire.lua as `EVALSHA <sha> 1 lock:__rand_int__ <ttl> <token>`
# with the fence counter derived from the lock key inside the script: redis-benchmark substitutes
# each __rand_int__ with its own random number, so a second key argument could not match the first.
# Progress goes to stderr; the table goes to stdout.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOLLGATE_BIN="${TOLLGATE_BIN:-$REPO/build/tollgate}"
REQUESTS="${REQUESTS:-200000}"
REQUESTS_P1="${REQUESTS_P1:-100000}"
CLIENTS="${CLIENTS:-50}"
KEYSPACE="${KEYSPACE:-100000}"
TTL_MS="${TTL_MS:-30000}"
ROUNDS="${ROUNDS:-5}"
TOLLGATE_ARGS="${TOLLGATE_ARGS:-}"
ENFORCE_TARGETS="${ENFORCE_TARGETS:-0}"
LUA_FILE="$REPO/bench/lua/fenced_acquire.lua"
SANITY_KEY="bench:sanity"  # outside the benchmark's keyspace (lock:000000000000..)

BENCH_NAME=server_bench
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$REPO/bench/lib/common.sh"

require_positive_ints REQUESTS REQUESTS_P1 CLIENTS KEYSPACE TTL_MS ROUNDS
require_tools
require_readable "$LUA_FILE"

# --- process and temp-dir management, redis-benchmark runs: bench/lib/common.sh ---------------------
bench_setup tollgate-server-bench

# --- one pipeline depth on both servers ---------------------------------------------------------------
declare -A RESULT  # key "<P>,<round>,<field>"

bench_tollgate() {  # pipeline requests round
  local p=$1 n=$2 k="$1,$3" dir="$WORK/tollgate-P$1-round$3" reply fence held procd
  start_tollgate "$dir"
  log "tollgate (pid $TG_PID) on 127.0.0.1:$TG_PORT, data dir $dir/data"

  # The sample reply must be [lock_id, fence, ttl_ms]; a second acquire of the held key must be nil.
  local shape=$'^1\\) "[^"]+"\n2\\) \\(integer\\) [1-9][0-9]*\n3\\) \\(integer\\) '"$TTL_MS"'$'
  reply="$(cli "$TG_PORT" --no-raw LOCK.ACQUIRE "$SANITY_KEY" "$TTL_MS")"
  [[ $reply =~ $shape ]] || die "tollgate: LOCK.ACQUIRE reply is not [lock_id, fence, ttl_ms]: $reply"
  TG_VERSION="$(info_field "$TG_PORT" server tollgate_version)"
  reply="$(cli "$TG_PORT" --no-raw LOCK.ACQUIRE "$SANITY_KEY" "$TTL_MS")"
  [[ $reply == "(nil)" ]] || die "tollgate: LOCK.ACQUIRE of a held key should be nil, got: $reply"

  run_benchmark "tollgate -P $p (round $3)" "$TG_PORT" "$TG_PID" "$p" "$n" \
    LOCK.ACQUIRE "lock:__rand_int__" "$TTL_MS"
  RESULT[$k,tg_rps]=$RPS RESULT[$k,tg_fsyncs]=$FSYNCS
  [[ $FSYNCS != 0 ]] || die "tollgate: perf counted no fdatasync/fsync during the run: not durable?"

  fence="$(info_field "$TG_PORT" leases last_fence)"
  held="$(info_field "$TG_PORT" leases lease_keys)"
  procd="$(info_field "$TG_PORT" stats total_commands_processed)"
  [[ $fence =~ ^[0-9]+$ && $fence -gt 1 ]] ||
    die "tollgate: INFO leases last_fence is '$fence' after the run: no lease was granted"
  [[ $procd =~ ^[0-9]+$ && $procd -ge $n ]] ||
    die "tollgate: total_commands_processed is '$procd', expected at least $n"
  [[ $held =~ ^[0-9]+$ ]] || die "tollgate: cannot read INFO leases lease_keys"
  RESULT[$k,tg_grants]=$((fence - 1))  # minus the sanity acquire
  RESULT[$k,tg_held]=$((held - 1))
  RESULT[$k,tg_commits]="$(info_field "$TG_PORT" persistence group_commits)"
  RESULT[$k,tg_records]="$(info_field "$TG_PORT" persistence records_written)"
  [[ ${RESULT[$k,tg_commits]} =~ ^[1-9][0-9]*$ && ${RESULT[$k,tg_records]} =~ ^[1-9][0-9]*$ ]] ||
    die "tollgate: INFO persistence shows no group commits (${RESULT[$k,tg_commits]})"
  [[ $(info_field "$TG_PORT" persistence last_durable_seq) == \
    "$(info_field "$TG_PORT" persistence last_appended_seq)" ]] ||
    log "warning: tollgate last_durable_seq != last_appended_seq after the run"
  stop_tollgate
  RESULT[$k,tg_bytes]="$(du -sb "$dir/data" | cut -f1)"
}

bench_redis() {  # pipeline requests round
  local p=$1 n=$2 k="$1,$3" dir="$WORK/redis-P$1-round$3" sha reply keyspace keys expires
  start_redis "$dir"
  log "redis-server (pid $RD_PID) on 127.0.0.1:$RD_PORT, dir $dir"
  [[ $(info_field "$RD_PORT" persistence aof_enabled) == 1 &&
    $(cli "$RD_PORT" CONFIG GET appendfsync | tail -n 1) == always &&
    $(cli "$RD_PORT" CONFIG GET save | tail -n 1) == "" ]] ||
    die "redis: not running with appendonly yes / appendfsync always / save ''"

  sha="$(cli "$RD_PORT" SCRIPT LOAD "$(cat "$LUA_FILE")")"
  [[ $sha =~ ^[0-9a-f]{40}$ ]] || die "redis: SCRIPT LOAD returned '$sha'"
  reply="$(cli "$RD_PORT" --no-raw EVALSHA "$sha" 1 "$SANITY_KEY" "$TTL_MS" sanity-token)"
  [[ $reply == $'1) "sanity-token"\n2) (integer) 1\n3) (integer) '"$TTL_MS" ]] ||
    die "redis: EVALSHA reply is not [lock_id, fence, ttl_ms]: $reply"
  reply="$(cli "$RD_PORT" --no-raw EVALSHA "$sha" 1 "$SANITY_KEY" "$TTL_MS" sanity-token)"
  [[ $reply == "(nil)" ]] || die "redis: EVALSHA on a held key should be nil, got: $reply"

  # One key per command: redis-benchmark gives every __rand_int__ its own random value, so the
  # script derives the per-key fence counter from the lock key (KEYS[1] .. ':fence').
  run_benchmark "redis -P $p (round $3)" "$RD_PORT" "$RD_PID" "$p" "$n" \
    EVALSHA "$sha" 1 "lock:__rand_int__" "$TTL_MS" "token:__rand_int__"
  RESULT[$k,rd_rps]=$RPS RESULT[$k,rd_fsyncs]=$FSYNCS
  [[ $FSYNCS != 0 ]] || die "redis: perf counted no fdatasync/fsync during the run: AOF not synced?"

  # db0:keys=K,expires=E: E lock keys (with PX) and K-E fence counters, one per key ever granted.
  keyspace="$(info_field "$RD_PORT" keyspace db0)"
  keys="$(sed -n 's/^keys=\([0-9]*\),.*/\1/p' <<<"$keyspace")"
  expires="$(sed -n 's/.*,expires=\([0-9]*\),.*/\1/p' <<<"$keyspace")"
  [[ -n $keys && -n $expires ]] || die "redis: cannot parse INFO keyspace: '$keyspace'"
  RESULT[$k,rd_dbsize]="$(cli "$RD_PORT" DBSIZE)"
  [[ ${RESULT[$k,rd_dbsize]} -gt 2 ]] ||
    die "redis: DBSIZE is ${RESULT[$k,rd_dbsize]} after the run: the script wrote nothing"
  check_evalsha_calls "$RD_PORT" "$n"
  [[ $(info_field "$RD_PORT" persistence aof_last_write_status) == ok ]] ||
    die "redis: aof_last_write_status is not ok"
  RESULT[$k,rd_grants]=$((keys - expires - 1))
  RESULT[$k,rd_held]=$((expires - 1))
  stop_redis
  RESULT[$k,rd_bytes]="$(du -sb "$dir/appendonlydir" | cut -f1)"
}

per_fsync() {  # requests fsync_counts... -> median requests per fsync ("?" when none counted)
  local n=$1 x v=()
  shift
  for x in "$@"; do
    if [[ $x =~ ^[1-9][0-9]*$ ]]; then v+=("$(awk -v n="$n" -v f="$x" 'BEGIN { print n / f }')"); fi
  done
  if ((${#v[@]})); then awk -v m="$(median "${v[@]}")" 'BEGIN { printf "%.1f", m }'; else echo "?"; fi
}

# --- main ----------------------------------------------------------------------------------------------
begin_measurements

PIPELINES=(1 16)
declare -A REQS=([1]=$REQUESTS_P1 [16]=$REQUESTS)
for ((r = 1; r <= ROUNDS; r++)); do
  for p in "${PIPELINES[@]}"; do
    n=${REQS[$p]}
    if ((r % 2)); then  # alternate which server runs first
      bench_tollgate "$p" "$n" "$r"
      bench_redis "$p" "$n" "$r"
    else
      bench_redis "$p" "$n" "$r"
      bench_tollgate "$p" "$n" "$r"
    fi
    # Same keyspace and request count, both from empty: the number of keys granted should agree
    # (about KEYSPACE * (1 - exp(-n / KEYSPACE)) while no lease expires during the run).
    a=${RESULT[$p,$r,tg_grants]} b=${RESULT[$p,$r,rd_grants]}
    if ((a * 100 < b * 97 || b * 100 < a * 97)); then
      log "warning: -P $p round $r: tollgate granted $a leases, Redis $b: not the same work"
    fi
  done
done

collect_versions
MISSED=0

TABLE="$(
  echo "| pipeline | tollgate LOCK.ACQUIRE (req/s) | Redis ${REDIS_VERSION%%.*} + Lua EVALSHA, appendfsync always (req/s) | ratio | target |"
  echo "|---|---:|---:|---:|---|"
  for p in "${PIPELINES[@]}"; do
    tg=() rd=()
    for ((r = 1; r <= ROUNDS; r++)); do
      tg+=("${RESULT[$p,$r,tg_rps]}") rd+=("${RESULT[$p,$r,rd_rps]}")
    done
    tg_med="$(median "${tg[@]}")" rd_med="$(median "${rd[@]}")"
    if [[ $p -eq 1 ]]; then target=1.0; else target=1.5; fi
    ratio="$(ratio "$tg_med" "$rd_med")"
    if awk -v x="$ratio" -v t="$target" 'BEGIN { exit !(x >= t) }'; then
      verdict="≥ ${target}×: met"
    else
      verdict="≥ ${target}×: **missed**"
    fi
    printf '| -P %s | %s | %s | %s× | %s |\n' "$p" "$(fmt_int "$tg_med")" "$(fmt_int "$rd_med")" \
      "$ratio" "$verdict"
  done
)"
[[ $TABLE != *missed* ]] || MISSED=1

echo
echo "$TABLE"
echo
echo "Medians of $ROUNDS rounds; every run starts a fresh, empty server on 127.0.0.1. redis-benchmark" \
  "$(redis-benchmark --version | awk '{ print $2 }'): $CLIENTS clients, random keys over $KEYSPACE (-r)," \
  "${REQS[1]} requests at -P 1, ${REQS[16]} at -P 16, ttl $TTL_MS ms. tollgate: \`serve\`" \
  "${TOLLGATE_ARGS:+$TOLLGATE_ARGS }on its embedded RocksDB store; Redis: --appendonly yes" \
  "--appendfsync always --save '' and bench/lua/fenced_acquire.lua (EXISTS, INCR fence, SET PX) via EVALSHA."
echo
for p in "${PIPELINES[@]}"; do
  tg=() rd=() ratios=() grants_tg=() grants_rd=() gc=""
  for ((r = 1; r <= ROUNDS; r++)); do
    tg+=("${RESULT[$p,$r,tg_rps]}") rd+=("${RESULT[$p,$r,rd_rps]}")
    ratios+=("$(ratio "${RESULT[$p,$r,tg_rps]}" "${RESULT[$p,$r,rd_rps]}")")
    grants_tg+=("${RESULT[$p,$r,tg_grants]}") grants_rd+=("${RESULT[$p,$r,rd_grants]}")
    gc+="${gc:+, }${RESULT[$p,$r,tg_records]}/${RESULT[$p,$r,tg_commits]}"
  done
  echo "- -P $p per round: tollgate $(join_ints "${tg[@]}") req/s; Redis $(join_ints "${rd[@]}") req/s;" \
    "ratio ${ratios[*]}"
  echo "  - leases granted per run (the rest were nil: key already held): tollgate" \
    "$(join_ints "${grants_tg[@]}"); Redis $(join_ints "${grants_rd[@]}")"
  echo "  - tollgate INFO persistence, records_written/group_commits per run: $gc;" \
    "on disk after round 1: tollgate data dir $((RESULT[$p,1,tg_bytes] / 1024)) KiB," \
    "Redis AOF $((RESULT[$p,1,rd_bytes] / 1024)) KiB"
  if [[ $COUNT_FSYNCS == 1 ]]; then
    fs_tg=() fs_rd=()
    for ((r = 1; r <= ROUNDS; r++)); do
      fs_tg+=("${RESULT[$p,$r,tg_fsyncs]:-?}") fs_rd+=("${RESULT[$p,$r,rd_fsyncs]:-?}")
    done
    echo "  - fdatasync+fsync calls per run (perf): tollgate ${fs_tg[*]}; Redis ${fs_rd[*]} (median" \
      "requests per fsync: tollgate $(per_fsync "${REQS[$p]}" "${fs_tg[@]}")," \
      "Redis $(per_fsync "${REQS[$p]}" "${fs_rd[@]}"))"
  fi
done
print_machine_line
print_versions_line
exit_if_missed
