#!/usr/bin/env bash
# tollgate's network backends used as a library and through `tollgate serve`, against peers, on one
# redis-server / PostgreSQL cluster / etcd (all started here, all throwaway):
#   - Redis: tollgate's Redis backend (bench/backend_bench.cc, THREADS threads, one connection each)
#     versus the npm packages redlock (locks) and rate-limiter-flexible's RateLimiterRedis (rate
#     limiting) on node (bench/node_redis/bench.mjs, THREADS concurrent async loops, one ioredis
#     connection each), against one redis-server (no persistence), FLUSHALL between the two;
#     and the same workloads through the server: `tollgate serve --backend redis://...` (default I/O
#     threads: one per core but one; they never block on the backend) on that redis-server, driven
#     by backend_bench --server (THREADS threads, one hiredis connection each, one command at a
#     time: LOCK.ACQUIRE + LOCK.RELEASE, THROTTLE key 100 10);
#   - PostgreSQL: tollgate's PostgreSQL backend on a throwaway PostgreSQL 15 cluster (fsync off), as
#     a library, then through `tollgate serve --backend postgres://...` on a second throwaway cluster
#     (same settings) with backend_bench --server;
#   - etcd: tollgate's etcd backend as a library (leases only).
# Workloads, SECONDS_PER seconds each: lease acquire+release pairs on random keys of 10,000; one
# throttle decision (cost 1, burst 100) on random keys of 100,000.
#
# Then, on the same redis-server, redis-benchmark (-c RB_CLIENTS, -r RB_KEYSPACE, -P 1 and -P 16)
# with one command at a time, through `tollgate serve --backend redis://` and, side by side, the
# same Lua script tollgate runs for it sent directly to redis-server with EVALSHA:
#   LOCK.ACQUIRE key:__rand_int__ 30000   vs  EVALSHA <acquire> ... (tollgate's KEYS/ARGV)
#   THROTTLE key:__rand_int__ 100 10      vs  EVALSHA <buckets> ... (tollgate's KEYS/ARGV)
# Nothing of the direct calls is written here: the scripts are read from the source tree at run
# time (bench/lib/redis_script.py: a .lua file under src/backends/redis if there is one, else the
# raw string literal in the C++), and the run stops unless Redis already holds them under the same
# SHA1 after tollgate serve has loaded its own (byte for byte what the binary runs); the KEYS/ARGV
# are those of tollgate's own EVALSHAs for one LOCK.ACQUIRE and one THROTTLE, captured with MONITOR,
# with the key made random. Each run is sized by pilot runs to last about RB_SECONDS; FLUSHALL
# before every run; every request must have been exactly one successful EVALSHA (commandstats).
#
#   bench/backend_bench.sh
#   env: THREADS (8), SECONDS_PER (5), BUILD_DIR ($REPO/build), SKIP_BUILD (0; 1 = use the built
#        binaries as they are), RB_CLIENTS (50), RB_KEYSPACE (10000), RB_SECONDS (4),
#        RB_PILOT_REQUESTS (20000), RB_REQUESTS (unset: sized from the pilot; set: fixed -n, no pilot)
#
# Prints two markdown tables, the machine line and versions. Client and servers share this
# machine's cores, so the numbers are end-to-end on one box, not a server's capacity.
set -euo pipefail

BENCH_NAME=backend_bench
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$REPO/build}"
THREADS="${THREADS:-8}"
SECONDS_PER="${SECONDS_PER:-5}"
SKIP_BUILD="${SKIP_BUILD:-0}"
RB_CLIENTS="${RB_CLIENTS:-50}"
RB_KEYSPACE="${RB_KEYSPACE:-10000}"
RB_SECONDS="${RB_SECONDS:-4}"
RB_PILOT_REQUESTS="${RB_PILOT_REQUESTS:-20000}"
RB_REQUESTS="${RB_REQUESTS:-}"
NODE_DIR="$REPO/bench/node_redis"
BIN="$BUILD_DIR/bench/backend_bench"
TOLLGATE_BIN="$BUILD_DIR/tollgate"
TOLLGATE_ARGS=""  # start_tollgate's extra flags; --backend etc. go in TOLLGATE_EXTRA_ARGS below
PG_BIN=/usr/lib/postgresql/15/bin
# run_benchmark (bench/lib/common.sh) reads CLIENTS and KEYSPACE; redis-server runs without
# persistence here, so there are no fsyncs to count.
CLIENTS=$RB_CLIENTS
KEYSPACE=$RB_KEYSPACE
COUNT_FSYNCS=0
# shellcheck source=bench/lib/common.sh
source "$REPO/bench/lib/common.sh"

require_positive_ints THREADS SECONDS_PER RB_CLIENTS RB_KEYSPACE RB_SECONDS RB_PILOT_REQUESTS
[[ -z $RB_REQUESTS ]] || require_positive_ints RB_REQUESTS
[[ $SKIP_BUILD == 0 || $SKIP_BUILD == 1 ]] || die "SKIP_BUILD must be 0 or 1 (got '$SKIP_BUILD')"
for tool in redis-server redis-cli redis-benchmark node npm cmake python3 awk sha1sum; do
  command -v "$tool" >/dev/null || die "$tool not found"
done
[[ -x $PG_BIN/postgres ]] || die "$PG_BIN/postgres not found (apt-get install postgresql-15)"
if [[ $EUID -eq 0 ]]; then  # PostgreSQL refuses to run as root: its commands run as `postgres`
  id postgres >/dev/null 2>&1 || die "no postgres OS user to run PostgreSQL as"
  command -v runuser >/dev/null || die "runuser not found"
fi

# --- build / install (outside the timed part) ------------------------------------------------------
if [[ $SKIP_BUILD == 1 ]]; then
  log "SKIP_BUILD=1: using $TOLLGATE_BIN and $BIN as they are"
else
  [[ -f $BUILD_DIR/CMakeCache.txt ]] ||
    cmake -S "$REPO" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTOLLGATE_BUILD_BENCH=ON >&2
  log "building tollgate and backend_bench in $BUILD_DIR"
  cmake --build "$BUILD_DIR" -j2 --target tollgate backend_bench >&2 ||
    die "could not build tollgate / backend_bench"
fi
[[ -x $BIN ]] || die "$BIN was not built"
[[ -x $TOLLGATE_BIN ]] || die "$TOLLGATE_BIN was not built"
if [[ ! -d $NODE_DIR/node_modules ]]; then
  log "npm ci in $NODE_DIR"
  (cd "$NODE_DIR" && npm ci --no-audit --no-fund >&2) || die "npm ci failed"
fi

# A throwaway PostgreSQL cluster of our own for `tollgate serve --backend postgres://` (backend_bench
# --postgres starts and removes its own); stopped by the EXIT trap (bench_extra_cleanup).
PG_DIR="" PG_PORT="" PG_UP=0 PG_URL=""
pg_run() {  # command...: as the postgres OS user when we are root
  if [[ $EUID -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_pg() {  # sets PG_DIR, PG_PORT, PG_URL (database tollgate, migrated by `tollgate migrate`)
  local attempt
  PG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/backend_bench-pg.XXXXXX")"
  if [[ $EUID -eq 0 ]]; then chown postgres: "$PG_DIR" || die "chown postgres $PG_DIR failed"; fi
  pg_run "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres -A trust -E UTF8 --no-sync \
    >>"$PG_DIR/commands.log" 2>&1 || { cat "$PG_DIR/commands.log" >&2; die "initdb failed"; }
  for attempt in 1 2 3; do  # the free port can be taken between free_port and bind: retry
    PG_PORT="$(free_port)"
    if pg_run "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
      -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=100" \
      start >>"$PG_DIR/commands.log" 2>&1; then
      PG_UP=1
      break
    fi
    log "PostgreSQL did not start (attempt $attempt)"
  done
  [[ $PG_UP == 1 ]] || { tail -n 20 "$PG_DIR/server.log" >&2 || true; die "could not start PostgreSQL"; }
  pg_run "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres tollgate \
    >>"$PG_DIR/commands.log" 2>&1 || { cat "$PG_DIR/commands.log" >&2; die "createdb failed"; }
  PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/tollgate"
  "$TOLLGATE_BIN" migrate --backend "$PG_URL" >&2 || die "tollgate migrate --backend $PG_URL failed"
}

stop_pg() {
  [[ -n $PG_DIR ]] || return 0
  if [[ $PG_UP == 1 || -f $PG_DIR/data/postmaster.pid ]]; then
    pg_run "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w -t 30 stop \
      >>"$PG_DIR/commands.log" 2>&1 || log "warning: pg_ctl stop failed (see $PG_DIR)"
    PG_UP=0
  fi
  rm -rf -- "$PG_DIR" || true
  PG_DIR="" PG_PORT="" PG_URL=""
}

bench_extra_cleanup() { stop_pg; }
bench_setup backend_bench
begin_measurements
collect_versions
# Run copies: a rebuild of the build tree during the run (cmake relinks in place) cannot then swap
# or truncate the binaries under the benchmark.
BUILT_AT="$(date -u -r "$TOLLGATE_BIN" '+%Y-%m-%d %H:%M UTC')"
BIN_PATHS="$BIN, $TOLLGATE_BIN"
mkdir "$WORK/bin"
cp "$BIN" "$TOLLGATE_BIN" "$WORK/bin/" || die "could not copy the binaries to $WORK/bin"
BIN="$WORK/bin/$(basename "$BIN")" TOLLGATE_BIN="$WORK/bin/$(basename "$TOLLGATE_BIN")"

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

flushall() {  # port
  [[ $(cli "$1" FLUSHALL) == OK ]] || die "FLUSHALL failed"
}

# --- Redis: tollgate (library, then through the server), then node, on the same server -------------
IO_THREADS=$(($(nproc) > 1 ? $(nproc) - 1 : 1))  # serve's default, with or without --backend
start_redis "$WORK/redis" mem
log "redis-server on port $RD_PORT; tollgate Redis backend, $THREADS threads, ${SECONDS_PER}s per workload"
run_bg "$WORK/tollgate-redis.out" "$BIN" --redis "redis://127.0.0.1:$RD_PORT" --threads "$THREADS" \
  --seconds "$SECONDS_PER"
check_evalsha_calls "$RD_PORT" 1
flushall "$RD_PORT"
[[ $(cli "$RD_PORT" CONFIG RESETSTAT) == OK ]] || die "CONFIG RESETSTAT failed"
# Forget the library's scripts: what Redis holds afterwards is what tollgate serve loaded.
[[ $(cli "$RD_PORT" SCRIPT FLUSH) == OK ]] || die "SCRIPT FLUSH failed"
TOLLGATE_EXTRA_ARGS=(--backend "redis://127.0.0.1:$RD_PORT")
start_tollgate "$WORK/tollgate"
log "tollgate serve (pid $TG_PID) on port $TG_PORT, --backend redis://127.0.0.1:$RD_PORT (default I/O" \
  "threads: $IO_THREADS); $THREADS client threads, one connection each"
run_bg "$WORK/tollgate-serve.out" "$BIN" --server "127.0.0.1:$TG_PORT" --threads "$THREADS" \
  --seconds "$SECONDS_PER"
check_evalsha_calls "$RD_PORT" 1  # the server's state really went to this redis-server

# --- redis-benchmark: tollgate serve vs the same Lua sent directly, same redis-server ---------------
# The scripts, from the source tree as it is now; they must be exactly what the binary runs.
ACQ_LUA="$WORK/acquire.lua" BKT_LUA="$WORK/buckets.lua"
ACQ_SRC="$(cd "$REPO" && python3 bench/lib/redis_script.py src acquire "$ACQ_LUA")" ||
  die "could not find the acquire script in $REPO/src"
BKT_SRC="$(cd "$REPO" && python3 bench/lib/redis_script.py src buckets "$BKT_LUA")" ||
  die "could not find the bucket script in $REPO/src"
ACQ_SHA="$(sha1sum "$ACQ_LUA" | awk '{ print $1 }')"
BKT_SHA="$(sha1sum "$BKT_LUA" | awk '{ print $1 }')"
log "acquire script: $ACQ_SRC (sha1 $ACQ_SHA); bucket script: $BKT_SRC (sha1 $BKT_SHA)"
for pair in "acquire:$ACQ_SHA:$ACQ_SRC" "buckets:$BKT_SHA:$BKT_SRC"; do
  IFS=: read -r name sha src <<<"$pair"
  [[ $(cli "$RD_PORT" SCRIPT EXISTS "$sha") == 1 ]] ||
    die "the $name script in $src (sha1 $sha) is not what ${BIN_PATHS#*, } loaded into Redis:" \
      "the source and the binary differ (rebuild tollgate, or wait for the edit in progress)"
done
# Load them anyway (a no-op now), byte for byte: -x sends stdin as the last argument, trailing
# newline included ("$(cat file)" would drop it and change the SHA1).
[[ $(redis-cli -h 127.0.0.1 -p "$RD_PORT" -x SCRIPT LOAD <"$ACQ_LUA" | tr -d '\r') == "$ACQ_SHA" ]] ||
  die "SCRIPT LOAD of $ACQ_LUA did not answer $ACQ_SHA"
[[ $(redis-cli -h 127.0.0.1 -p "$RD_PORT" -x SCRIPT LOAD <"$BKT_LUA" | tr -d '\r') == "$BKT_SHA" ]] ||
  die "SCRIPT LOAD of $BKT_LUA did not answer $BKT_SHA"

# The calls tollgate makes, as it makes them: one LOCK.ACQUIRE and one THROTTLE by hand through
# tollgate serve on fresh keys, watched with MONITOR; the direct commands are those EVALSHAs with
# the key made random (and the lease's random lock id replaced by a fixed one of the same length).
flushall "$RD_PORT"
oneline() { tr '\n' ' ' | sed 's/ $//'; }
redis-cli -h 127.0.0.1 -p "$RD_PORT" MONITOR >"$WORK/monitor.out" 2>&1 &
BENCH_PID=$!  # stopped by the EXIT trap if we die before stopping it below
for ((i = 0; i < 100; i++)); do
  grep -q '^OK' "$WORK/monitor.out" && break
  sleep 0.05
done
grep -q '^OK' "$WORK/monitor.out" || die "redis-cli MONITOR did not start: $(head -c 300 "$WORK/monitor.out")"
TG_ACQ1="$(cli "$TG_PORT" LOCK.ACQUIRE key:check 30000 | oneline)"
TG_ACQ2="$(cli "$TG_PORT" LOCK.ACQUIRE key:check 30000 | oneline)"
TG_THR1="$(cli "$TG_PORT" THROTTLE key:check 100 10 | oneline)"
cli "$RD_PORT" PING >/dev/null  # after the EVALSHAs in MONITOR's stream: stop once it is there
for ((i = 0; i < 100; i++)); do
  grep -q '"PING"' "$WORK/monitor.out" && break
  sleep 0.05
done
kill -TERM "$BENCH_PID" 2>/dev/null || true
wait "$BENCH_PID" 2>/dev/null || true
BENCH_PID=""
read -r tg_id tg_fence tg_ttl <<<"$TG_ACQ1"
[[ $tg_id =~ ^[0-9a-f]{32}$ && $tg_fence =~ ^[1-9][0-9]*$ && $tg_ttl == 30000 && -z $TG_ACQ2 ]] ||
  die "tollgate LOCK.ACQUIRE answered [$TG_ACQ1] then [$TG_ACQ2]; expected [<lock id> <fence> 30000] then nil"
LOCK_ID=0123456789abcdef0123456789abcdef
seen() {  # sha from to...: tollgate's EVALSHA of script sha, with the substitutions
  python3 "$REPO/bench/lib/redis_script.py" --seen "$WORK/monitor.out" "$@"
}
mapfile -t ACQ_SEEN < <(seen "$ACQ_SHA" key:check key:check "$tg_id" "$tg_id")
mapfile -t THR_SEEN < <(seen "$BKT_SHA" key:check key:check)
((${#ACQ_SEEN[@]} >= 3 && ${#THR_SEEN[@]} >= 3)) ||
  die "tollgate serve did not run EVALSHA $ACQ_SHA (acquire) and $BKT_SHA (buckets) for" \
    "LOCK.ACQUIRE / THROTTLE on key:check; MONITOR saw: $(grep -v '\[0 lua\]' "$WORK/monitor.out" | head -c 2000)"
mapfile -t ACQ_DIRECT < <(seen "$ACQ_SHA" key:check 'key:__rand_int__' "$tg_id" "$LOCK_ID")
mapfile -t THR_DIRECT < <(seen "$BKT_SHA" key:check 'key:__rand_int__')
ACQ_TG=(LOCK.ACQUIRE 'key:__rand_int__' 30000)
THR_TG=(THROTTLE 'key:__rand_int__' 100 10)
quoted() {  # args...: for the notes, empty arguments as ""
  local out="" a
  for a in "$@"; do
    if [[ -z $a ]]; then a='""'; fi
    out+="${out:+ }$a"
  done
  printf '%s' "$out"
}
log "tollgate sent for LOCK.ACQUIRE key:check 30000: $(quoted "${ACQ_SEEN[@]}")"
log "tollgate sent for THROTTLE key:check 100 10: $(quoted "${THR_SEEN[@]}")"

# By hand, directly: the same calls on other fresh keys must answer the same way.
mapfile -t args < <(seen "$ACQ_SHA" key:check key:direct "$tg_id" "$LOCK_ID")
RD_ACQ1="$(cli "$RD_PORT" "${args[@]}" | oneline)"
RD_ACQ2="$(cli "$RD_PORT" "${args[@]}" | oneline)"
mapfile -t args < <(seen "$BKT_SHA" key:check key:direct)
RD_THR1="$(cli "$RD_PORT" "${args[@]}" | oneline)"
log "by hand: LOCK.ACQUIRE key:check 30000 -> [$TG_ACQ1], again -> [$TG_ACQ2];" \
  "EVALSHA acquire on key:direct -> [$RD_ACQ1], again -> [$RD_ACQ2]"
log "by hand: THROTTLE key:check 100 10 -> [$TG_THR1]; EVALSHA buckets on key:direct -> [$RD_THR1]"
[[ $RD_ACQ1 =~ ^[1-9][0-9]*$ && -z $RD_ACQ2 ]] ||
  die "the acquire script answered [$RD_ACQ1] then [$RD_ACQ2]; expected a fence, as tollgate's [$tg_fence], then nil"
[[ $TG_THR1 == "1 99 0 100" && $RD_THR1 == "1 $TG_THR1" ]] ||
  die "THROTTLE answered [$TG_THR1] and the bucket script [$RD_THR1]; expected [1 99 0 100] and [1 1 99 0 100]"

evalsha_stats() {  # port: "calls rejected_calls failed_calls" of EVALSHA since the last RESETSTAT
  cli "$1" INFO commandstats | awk -F'[:,=]' '$1 == "cmdstat_evalsha" {
    for (i = 2; i < NF; i += 2) v[$i] = $(i + 1)
    c = v["calls"]; r = v["rejected_calls"]; f = v["failed_calls"] }
    END { printf "%d %d %d", c, r, f }'
}

rb_run() {  # name target(direct|tollgate) pipeline command...: sets RPS and RB_N (the requests)
  local name=$1 target=$2 pipeline=$3 port server_pid stats calls rejected failed i
  shift 3
  if [[ $target == direct ]]; then port=$RD_PORT server_pid=$RD_PID; else port=$TG_PORT server_pid=$TG_PID; fi
  RB_N=$RB_REQUESTS
  if [[ -z $RB_N ]]; then
    # Pilot runs size the measured one to last about RB_SECONDS: the first of RB_PILOT_REQUESTS;
    # while a pilot took under half a second, another sized for about one second.
    RB_N=$RB_PILOT_REQUESTS
    for ((i = 1; i <= 3; i++)); do
      flushall "$RD_PORT"
      run_benchmark "$name $target -P $pipeline (pilot $i)" "$port" "$server_pid" "$pipeline" \
        "$RB_N" "$@"
      awk -v n="$RB_N" -v r="$RPS" 'BEGIN { exit !(n / r < 0.5) }' || break
      RB_N="$(awk -v r="$RPS" 'BEGIN { printf "%d", int(r / 1000 + 1) * 1000 }')"
    done
    RB_N="$(awk -v r="$RPS" -v s="$RB_SECONDS" -v m="$RB_PILOT_REQUESTS" \
      'BEGIN { n = int(r * s / 1000 + 0.5) * 1000; if (n < m) n = m; printf "%d", n }')"
  fi
  flushall "$RD_PORT"
  [[ $(cli "$RD_PORT" CONFIG RESETSTAT) == OK ]] || die "CONFIG RESETSTAT failed"
  run_benchmark "$name $target -P $pipeline" "$port" "$server_pid" "$pipeline" "$RB_N" "$@"
  # redis-benchmark does not check replies. Every request, direct or through tollgate, must have
  # been exactly one successful EVALSHA on the redis-server, and left state there. (With -P,
  # redis-benchmark may send a few more than -n: its clients' last pipelines are whole.)
  stats="$(evalsha_stats "$RD_PORT")"
  read -r calls rejected failed <<<"$stats"
  [[ $calls -ge $RB_N && $calls -le $((RB_N + RB_CLIENTS * pipeline)) && $rejected == 0 && $failed == 0 ]] ||
    die "$name $target -P $pipeline: expected $RB_N EVALSHA calls (up to $((RB_CLIENTS * pipeline))" \
      "more with -P $pipeline), none rejected or failed; redis-server counted calls, rejected," \
      "failed = $stats"
  [[ $(cli "$RD_PORT" DBSIZE) -gt 0 ]] || die "$name $target -P $pipeline left no keys on the redis-server"
  log "$name $target -P $pipeline: $RB_N requests in $(awk -v n="$RB_N" -v r="$RPS" \
    'BEGIN { printf "%.1f", n / r }') s; $calls successful EVALSHA calls"
}

declare -A RB_RPS RB_REQ
for pipeline in 1 16; do
  for name in acquire throttle; do
    if [[ $name == acquire ]]; then
      rb_run "$name" direct "$pipeline" "${ACQ_DIRECT[@]}"
      RB_RPS[$name,$pipeline,direct]=$RPS RB_REQ[$name,$pipeline,direct]=$RB_N
      rb_run "$name" tollgate "$pipeline" "${ACQ_TG[@]}"
    else
      rb_run "$name" direct "$pipeline" "${THR_DIRECT[@]}"
      RB_RPS[$name,$pipeline,direct]=$RPS RB_REQ[$name,$pipeline,direct]=$RB_N
      rb_run "$name" tollgate "$pipeline" "${THR_TG[@]}"
    fi
    RB_RPS[$name,$pipeline,tollgate]=$RPS RB_REQ[$name,$pipeline,tollgate]=$RB_N
  done
done
stop_tollgate
check_evalsha_calls "$RD_PORT" 1  # none failed, direct or through tollgate
flushall "$RD_PORT"

log "redlock / rate-limiter-flexible on node, $THREADS concurrent loops"
run_bg "$WORK/node.out" node "$NODE_DIR/bench.mjs" --redis "redis://127.0.0.1:$RD_PORT" \
  --concurrency "$THREADS" --seconds "$SECONDS_PER"
stop_redis

# --- PostgreSQL ----------------------------------------------------------------------------------------
log "tollgate PostgreSQL backend (throwaway cluster), $THREADS threads"
run_bg "$WORK/tollgate-pg.out" "$BIN" --postgres --threads "$THREADS" --seconds "$SECONDS_PER"
log "tollgate serve --backend postgres:// (second throwaway cluster), $THREADS client threads"
start_pg
TOLLGATE_EXTRA_ARGS=(--backend "$PG_URL")
start_tollgate "$WORK/tollgate-pg-serve"
log "tollgate serve (pid $TG_PID) on port $TG_PORT, --backend $PG_URL (default I/O threads: $IO_THREADS)"
run_bg "$WORK/tollgate-pg-serve.out" "$BIN" --server "127.0.0.1:$TG_PORT" --threads "$THREADS" \
  --seconds "$SECONDS_PER"
stop_tollgate
stop_pg

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
PG_SRV_LEASE="$(field "$WORK/tollgate-pg-serve.out" tollgate-serve lease_pairs_per_sec)"
PG_SRV_THR="$(field "$WORK/tollgate-pg-serve.out" tollgate-serve throttle_per_sec)"
NODE_VERSIONS="$(sed -n 's/^node-versions //p' "$WORK/node.out")"
PG_VERSION="$("$PG_BIN/postgres" --version | awk '{ print $3 }')"

echo
echo "### Network backends: $THREADS threads / concurrent loops, ${SECONDS_PER}s per workload"
echo
echo "| workload | tollgate backend (library) | redlock / rate-limiter-flexible (node) | ratio | through tollgate serve |"
echo "|---|---:|---:|---:|---:|"
echo "| Redis: lease acquire+release pairs/s (10k keys) | $(fmt_int "$TG_LEASE") | $(fmt_int "$NODE_LEASE") (redlock) | $(ratio "$TG_LEASE" "$NODE_LEASE") | $(fmt_int "$SRV_LEASE") (ratio $(ratio "$SRV_LEASE" "$NODE_LEASE")) |"
echo "| Redis: throttle decisions/s (100k keys) | $(fmt_int "$TG_THR") | $(fmt_int "$NODE_THR") (RateLimiterRedis) | $(ratio "$TG_THR" "$NODE_THR") | $(fmt_int "$SRV_THR") (ratio $(ratio "$SRV_THR" "$NODE_THR")) |"
echo "| PostgreSQL backend: lease acquire+release pairs/s | $(fmt_int "$PG_LEASE") | — | — | — |"
echo "| PostgreSQL backend: throttle decisions/s | $(fmt_int "$PG_THR") | — | — | — |"
echo "| through tollgate serve --backend postgres://: lease acquire+release pairs/s | — | — | — | $(fmt_int "$PG_SRV_LEASE") ($(ratio "$PG_SRV_LEASE" "$PG_LEASE")× the library) |"
echo "| through tollgate serve --backend postgres://: throttle decisions/s | — | — | — | $(fmt_int "$PG_SRV_THR") ($(ratio "$PG_SRV_THR" "$PG_THR")× the library) |"
echo "| etcd backend: lease acquire+release pairs/s | $(fmt_int "$ETCD_LEASE") | — | — | — |"
echo
echo "- ratio = tollgate / node. tollgate: one Backend (one connection) per thread, synchronous calls;" \
  "node: one process, one ioredis connection per async loop. redlock uses retryCount 0 (a held key is" \
  "\"busy\", not a pair); RateLimiterRedis is a fixed window (points 100 / 10 s), tollgate a token" \
  "bucket (capacity 100, 10/s). Client and server share the machine's cores."
echo "- through tollgate serve: \`tollgate serve --backend redis://127.0.0.1:<port>\` on the same" \
  "redis-server (FLUSHALL before and after), and \`tollgate serve --backend postgres://...\` on a second" \
  "throwaway PostgreSQL cluster (same settings as the library's: fsync off, full_page_writes off;" \
  "schema by \`tollgate migrate\`), both with the default I/O threads ($IO_THREADS here: one per core" \
  "but one; an I/O thread never blocks on the backend, its requests stay in flight while it serves" \
  "other clients). $THREADS client threads (backend_bench --server), one hiredis connection each, one" \
  "command at a time (no pipelining): LOCK.ACQUIRE key 10000 then LOCK.RELEASE key lock_id per pair;" \
  "THROTTLE key 100 10 (cost 1) per decision. The Redis rows' ratio is against node. Benchmark client," \
  "tollgate serve and the backend all share the machine's cores."

echo
echo "### redis-benchmark on the same redis-server: tollgate serve vs the same Lua script sent directly"
echo
echo "| command | pipeline | direct Lua on redis (req/s) | through tollgate serve (req/s) | ratio (tollgate/direct) |"
echo "|---|---:|---:|---:|---:|"
for name in acquire throttle; do
  for pipeline in 1 16; do
    if [[ $name == acquire ]]; then
      label="LOCK.ACQUIRE key:R 30000 / EVALSHA acquire"
    else
      label="THROTTLE key:R 100 10 / EVALSHA buckets"
    fi
    d=${RB_RPS[$name,$pipeline,direct]} t=${RB_RPS[$name,$pipeline,tollgate]}
    echo "| $label | $pipeline | $(fmt_int "$d") | $(fmt_int "$t") | $(ratio "$t" "$d") |"
  done
done
echo
echo "- redis-benchmark -c $RB_CLIENTS -r $RB_KEYSPACE -P 1|16 --csv, one command per run, FLUSHALL" \
  "before each run; $([[ -n $RB_REQUESTS ]] && echo "-n fixed (RB_REQUESTS=$RB_REQUESTS)" ||
    echo "-n sized by pilot runs to last about ${RB_SECONDS}s"); requests (direct / tollgate):" \
  "acquire -P 1 ${RB_REQ[acquire,1,direct]} / ${RB_REQ[acquire,1,tollgate]}," \
  "-P 16 ${RB_REQ[acquire,16,direct]} / ${RB_REQ[acquire,16,tollgate]};" \
  "throttle -P 1 ${RB_REQ[throttle,1,direct]} / ${RB_REQ[throttle,1,tollgate]}," \
  "-P 16 ${RB_REQ[throttle,16,direct]} / ${RB_REQ[throttle,16,tollgate]}. Each request, both ways," \
  "was checked to be exactly one successful EVALSHA on the redis-server (INFO commandstats; with -P" \
  "redis-benchmark may send up to clients × pipeline more than -n)."
echo "- through tollgate serve: \`${ACQ_TG[*]}\` and \`${THR_TG[*]}\` to \`tollgate serve --backend" \
  "redis://...\` (default I/O threads, $IO_THREADS here), which runs each as one EVALSHA on the redis-server."
echo "- direct: the very scripts tollgate runs, read at run time from $ACQ_SRC and $BKT_SRC" \
  "(sha1 ${ACQ_SHA:0:12}…, ${BKT_SHA:0:12}…; checked to be the ones the tollgate binary loaded), sent" \
  "as tollgate sends them: its EVALSHAs for one LOCK.ACQUIRE and one THROTTLE on key:check were" \
  "captured with MONITOR — \`$(quoted "${ACQ_SEEN[@]}")\` and \`$(quoted "${THR_SEEN[@]}")\` — and" \
  "replayed with key:check made key:__rand_int__ (and the acquire's random lock id replaced by" \
  "$LOCK_ID, same length): \`$(quoted "${ACQ_DIRECT[@]}")\` and \`$(quoted "${THR_DIRECT[@]}")\`." \
  "redis-benchmark gives each __rand_int__ its own random number, so where a call names one key" \
  "twice (the acquire's lock and per-key fence keys) the direct call names two random keys of the" \
  "same space: the same Redis work per call, not the same fence sequence. The lock-id index key" \
  "(tollgate:i:<lock id>) carries the fixed id, so every direct call sets that one key."
echo "- replies checked by hand before the runs (fresh keys): LOCK.ACQUIRE -> [${TG_ACQ1// /, }], again ->" \
  "nil; EVALSHA acquire -> \"$RD_ACQ1\" (a fence), again -> nil; THROTTLE -> [${TG_THR1// /, }];" \
  "EVALSHA buckets -> [${RD_THR1// /, }] (the overall verdict, then the bucket's allowed, remaining," \
  "retry_after_ms, reset_after_ms). With 30 s leases on $RB_KEYSPACE keys, most acquires in a run" \
  "answer nil (held), both ways."
print_machine_line
echo "- versions: tollgate checkout at git $GIT_REV ($BIN_PATHS; tollgate built $BUILT_AT)," \
  "redis-server $REDIS_VERSION (--save ''" \
  "--appendonly no), PostgreSQL $PG_VERSION (fsync off), etcd $ETCD_VERSION, $NODE_VERSIONS"
echo "- took $((SECONDS - START)) s"
