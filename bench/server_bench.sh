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

log() { printf 'server_bench: %s\n' "$*" >&2; }
die() { printf 'server_bench: FAILED: %s\n' "$*" >&2; exit 1; }

for v in REQUESTS REQUESTS_P1 CLIENTS KEYSPACE TTL_MS ROUNDS; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
for tool in redis-server redis-cli redis-benchmark python3 awk; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install redis-server redis-tools python3)"
done
[[ -x $TOLLGATE_BIN ]] ||
  die "$TOLLGATE_BIN is not executable; build it: cmake --build $REPO/build -j2 --target tollgate"
[[ -r $LUA_FILE ]] || die "$LUA_FILE not found"

# --- process and temp-dir management ---------------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/tollgate-server-bench.XXXXXX")"
TG_PID="" TG_PORT="" RD_PID="" RD_PORT="" TG_VERSION="" BENCH_PID="" PERF_PID=""

alive() {  # pid: running and not a zombie
  local st
  st="$(ps -o stat= -p "$1" 2>/dev/null)" || return 1
  [[ $st != Z* ]]
}

stop_pid() {  # pid name: SIGTERM, up to 15 s, then SIGKILL; sets STOP_RC
  local pid=$1 name=$2 i
  STOP_RC=0
  if alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
      alive "$pid" || break
      sleep 0.1
    done
    if alive "$pid"; then
      log "$name (pid $pid) still running 15 s after SIGTERM; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || STOP_RC=$?
}

stop_tollgate() {
  [[ -n $TG_PID ]] || return 0
  stop_pid "$TG_PID" tollgate
  TG_PID="" TG_PORT=""
  [[ $STOP_RC -eq 0 ]] || log "warning: tollgate exited with status $STOP_RC on SIGTERM"
}

stop_redis() {
  [[ -n $RD_PID ]] || return 0
  stop_pid "$RD_PID" redis-server
  RD_PID="" RD_PORT=""
  [[ $STOP_RC -eq 0 ]] || log "warning: redis-server exited with status $STOP_RC on SIGTERM"
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n $PERF_PID ]]; then
    kill -INT "$PERF_PID" 2>/dev/null || true
    wait "$PERF_PID" 2>/dev/null || true
  fi
  if [[ -n $BENCH_PID ]]; then
    kill -TERM "$BENCH_PID" 2>/dev/null || true
    wait "$BENCH_PID" 2>/dev/null || true
  fi
  stop_tollgate || true
  stop_redis || true
  rm -rf -- "$WORK" || true
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_tollgate() {  # dir
  local dir=$1 i
  mkdir -p "$dir"
  : >"$dir/stdout"  # exists before the server opens it: the ready-line poll below reads it at once
  # shellcheck disable=SC2086 # TOLLGATE_ARGS is a list of flags
  "$TOLLGATE_BIN" serve --port 0 --bind 127.0.0.1 --data-dir "$dir/data" $TOLLGATE_ARGS \
    >"$dir/stdout" 2>"$dir/stderr" &
  TG_PID=$!
  for ((i = 0; i < 300; i++)); do
    TG_PORT="$(sed -n 's/^tollgate ready on 127\.0\.0\.1:\([0-9][0-9]*\)[[:space:]]*$/\1/p' "$dir/stdout")"
    [[ -n $TG_PORT ]] && return 0
    if ! alive "$TG_PID"; then
      cat "$dir/stderr" >&2
      die "tollgate exited before printing its ready line"
    fi
    sleep 0.05
  done
  die "tollgate printed no ready line within 15 s (stdout: $dir/stdout)"
}

start_redis() {  # dir
  local dir=$1 attempt i
  mkdir -p "$dir"
  for attempt in 1 2 3; do  # the free port can be taken between free_port and bind: retry
    RD_PORT="$(free_port)"
    redis-server --bind 127.0.0.1 --port "$RD_PORT" --protected-mode yes --daemonize no \
      --dir "$dir" --save '' --appendonly yes --appendfsync always \
      --auto-aof-rewrite-percentage 0 --logfile "$dir/redis.log" &
    RD_PID=$!
    for ((i = 0; i < 200; i++)); do
      alive "$RD_PID" || break
      if [[ $(redis-cli -h 127.0.0.1 -p "$RD_PORT" PING 2>/dev/null) == PONG ]]; then return 0; fi
      sleep 0.05
    done
    stop_redis
    log "redis-server did not come up (attempt $attempt); log tail:"
    tail -n 5 "$dir/redis.log" >&2 || true
  done
  die "could not start redis-server"
}

cli() {  # port args...: raw replies, CR stripped
  local port=$1
  shift
  redis-cli -h 127.0.0.1 -p "$port" "$@" | tr -d '\r'
}

info_field() {  # port section field
  cli "$1" INFO "$2" | sed -n "s/^$3://p"
}

# --- redis-benchmark ---------------------------------------------------------------------------------
# fsync counting: `perf stat` on the server's fdatasync/fsync syscall tracepoints (in-kernel counters,
# no measurable overhead), when perf is installed and allowed; COUNT_FSYNCS=0 turns it off.
COUNT_FSYNCS="${COUNT_FSYNCS:-1}"
FSYNC_EVENTS="syscalls:sys_enter_fdatasync,syscalls:sys_enter_fsync"
if [[ $COUNT_FSYNCS == 1 ]] && ! { command -v perf >/dev/null &&
  perf stat -e "$FSYNC_EVENTS" -o /dev/null true >/dev/null 2>&1; }; then
  COUNT_FSYNCS=0
fi

start_fsync_count() {  # pid
  [[ $COUNT_FSYNCS == 1 ]] || return 0
  perf stat -x, -e "$FSYNC_EVENTS" -p "$1" -o "$WORK/perf.out" 2>"$WORK/perf.err" &
  PERF_PID=$!
  sleep 0.3  # let perf attach before the load starts
}

stop_fsync_count() {  # sets FSYNCS (empty when not counted)
  FSYNCS=""
  [[ -n $PERF_PID ]] || return 0
  kill -INT "$PERF_PID" 2>/dev/null || true
  wait "$PERF_PID" 2>/dev/null || true
  PERF_PID=""
  FSYNCS="$(awk -F, '$3 ~ /^syscalls:/ && $1 ~ /^[0-9]+$/ { n += $1; ok = 1 } END { if (ok) print n }' \
    "$WORK/perf.out" 2>/dev/null || true)"
}

RPS="" FSYNCS=""
run_benchmark() {  # label port server_pid pipeline requests command...
  local label=$1 port=$2 server_pid=$3 pipeline=$4 requests=$5 out
  shift 5
  start_fsync_count "$server_pid"
  log "$label: redis-benchmark -c $CLIENTS -n $requests -r $KEYSPACE -P $pipeline $*"
  # In the background, so that a SIGTERM/SIGINT to this script is handled at once (bash runs traps
  # only between foreground commands, but `wait` returns on a trapped signal).
  redis-benchmark -h 127.0.0.1 -p "$port" -c "$CLIENTS" -n "$requests" -r "$KEYSPACE" \
    -P "$pipeline" --csv "$@" >"$WORK/benchmark.out" 2>"$WORK/benchmark.err" &
  BENCH_PID=$!
  wait "$BENCH_PID" || {
    cat "$WORK/benchmark.err" >&2
    die "$label: redis-benchmark failed"
  }
  BENCH_PID=""
  stop_fsync_count
  out="$(<"$WORK/benchmark.out")"
  # --csv prints a header ("test","rps",...) and one row per test: "<command>","<rps>",...
  RPS="$(printf '%s\n' "$out" | tr -d '\r' |
    awk -F'","' '/^"/ && !/^"test","rps"/ { rps = $2 } END { print rps }')"
  if ! [[ $RPS =~ ^[0-9]+(\.[0-9]+)?$ ]] || [[ $RPS =~ ^0+(\.0*)?$ ]]; then
    printf '%s\n' "$out" >&2
    cat "$WORK/benchmark.err" >&2
    die "$label: could not parse requests per second from redis-benchmark --csv"
  fi
  log "$label: $RPS requests/s"
}

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
  local p=$1 n=$2 k="$1,$3" dir="$WORK/redis-P$1-round$3" sha reply keyspace keys expires stats calls failed
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
  stats="$(cli "$RD_PORT" INFO commandstats | grep '^cmdstat_evalsha:')" ||
    die "redis: no EVALSHA in INFO commandstats"
  calls="$(sed -n 's/.*calls=\([0-9]*\),usec=.*/\1/p' <<<"$stats")"
  failed="$(sed -n 's/.*rejected_calls=\([0-9]*\),failed_calls=\([0-9]*\).*/\1,\2/p' <<<"$stats")"
  [[ $calls =~ ^[0-9]+$ && $calls -ge $n && $failed == 0,0 ]] ||
    die "redis: EVALSHA calls failed or missing after the run: $stats"
  [[ $(info_field "$RD_PORT" persistence aof_last_write_status) == ok ]] ||
    die "redis: aof_last_write_status is not ok"
  RESULT[$k,rd_grants]=$((keys - expires - 1))
  RESULT[$k,rd_held]=$((expires - 1))
  stop_redis
  RESULT[$k,rd_bytes]="$(du -sb "$dir/appendonlydir" | cut -f1)"
}

fmt_int() { awk -v x="$1" 'BEGIN { printf "%.0f", x }'; }

median() {  # numbers...
  printf '%s\n' "$@" | sort -g |
    awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

join_ints() {  # numbers... -> "1, 2, 3" (rounded)
  local out="" x
  for x in "$@"; do out+="${out:+, }$(fmt_int "$x")"; done
  printf '%s' "$out"
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
START=$SECONDS
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
FSYNC_MS="$(python3 - "$WORK" <<'PY'
import os, sys, time
path = os.path.join(sys.argv[1], "fsync-probe")
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
n, t = 200, time.perf_counter()
for _ in range(n):
    os.write(fd, b"x" * 100)
    os.fdatasync(fd)
print(f"{(time.perf_counter() - t) / n * 1000:.3f}")
os.close(fd)
os.unlink(path)
PY
)"
log "work dir $WORK (fdatasync of a 100-byte append: $FSYNC_MS ms)"

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

GIT_REV="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n $(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null) ]]; then
  GIT_REV="$GIT_REV + uncommitted changes"
fi
REDIS_VERSION="$(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p')"
CPU="$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n 1)"
OS="$(sed -n 's/^PRETTY_NAME="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' /etc/os-release 2>/dev/null || true)"
FS="$(df -T "$WORK" | awk 'NR == 2 { print $2 " (" $1 ")" }')"
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
    ratio="$(awk -v a="$tg_med" -v b="$rd_med" 'BEGIN { printf "%.2f", a / b }')"
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
    ratios+=("$(awk -v a="${RESULT[$p,$r,tg_rps]}" -v b="${RESULT[$p,$r,rd_rps]}" 'BEGIN { printf "%.2f", a / b }')")
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
echo "- machine: $(nproc) cores ($CPU), Linux $(uname -r), ${OS:-unknown OS}; data on $FS," \
  "fdatasync of a 100-byte append: $FSYNC_MS ms; load average before: $LOAD_BEFORE"
echo "- versions: tollgate ${TG_VERSION:-unknown} ($TOLLGATE_BIN built" \
  "$(date -u -r "$TOLLGATE_BIN" '+%Y-%m-%d %H:%M UTC'); checkout at git $GIT_REV), redis-server $REDIS_VERSION"
echo "- took $((SECONDS - START)) s"

if [[ $MISSED -eq 1 && $ENFORCE_TARGETS == 1 ]]; then
  log "a target was missed"
  exit 2
fi
