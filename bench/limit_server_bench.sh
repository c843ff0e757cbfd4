#!/usr/bin/env bash
# Server benchmark for the rate limiter: tollgate THROTTLE and a 3-layer RATE.CHECK against the usual
# Redis 7 token bucket (bench/lua/token_bucket.lua via EVALSHA: server TIME, HMGET, HSET, PEXPIRE),
# all driven by redis-benchmark with the same settings, side by side.
#
#   tollgate:  `tollgate serve --config bench/policies/bench.yaml` on its embedded store. THROTTLE
#              and RATE.CHECK buckets live in memory and are checkpointed about once a second
#              (unsynced): a reply is NOT preceded by an fsync, unlike the lease commands.
#   Redis AOF: redis-server --appendonly yes --appendfsync always --save '' (as bench/server_bench.sh:
#              every write a script makes is fsynced before the reply is sent).
#   Redis mem: redis-server --appendonly no --save '' (no persistence at all: pure in-memory).
# Both Redis figures are reported, so that the comparison is honest either way.
#
# Workloads (random keys over KEYSPACE, the same keys on every server):
#   THROTTLE    tollgate: THROTTLE tb:__rand_int__ <cap> <rate>
#               Redis:    EVALSHA <sha> 1 tb:__rand_int__ <cap> <rate> 1
#   RATE.CHECK  tollgate: RATE.CHECK bench ip __rand_int__ user __rand_int__  (keys global,
#                         ip:<n>, user:<n>: redis-benchmark draws each __rand_int__ on its own)
#               Redis:    EVALSHA <sha> 3 global ip:__rand_int__ user:__rand_int__ <3 x cap rate 1>
#                         global ip user  (checks all three buckets, then charges all or none)
# `global` is one key shared by every request on both sides: that is the point of a global layer.
# The Redis capacities and rates are read from the policy file, so both sides run the same limits.
#
# For each workload, pipeline depth (-P 1, -P 16) and round, each of the three servers starts empty
# (fresh data directory), replies are checked before the timed run (shapes, a denial, cost >
# capacity) and the work is checked after it (tollgate INFO ratelimit counts, Redis commandstats
# with no failed call); the order of the servers is reversed every other round. The table shows
# the median of ROUNDS rounds.
#
# Environment (defaults in brackets):
#   TOLLGATE_BIN  [<repo>/build/tollgate]  TOLLGATE_ARGS: extra `serve` flags
#   REQUESTS [500000] (-P 16)  REQUESTS_P1 [100000] (-P 1)  CLIENTS [50]  KEYSPACE [100000] (-r)
#   ROUNDS [3]  POLICY_FILE [<repo>/bench/policies/bench.yaml] (must define policy `bench` with
#     layers global, ip, user, keys "global", "ip:{ip}", "user:{user}")
#   THROTTLE_CAPACITY [10]  THROTTLE_RATE [0.1]: THROTTLE's bucket. The default refills one token per
#     10 s, so no bucket expires during a run and both servers end with the same number of buckets.
#   ENFORCE_TARGETS [0]: 1 = exit 2 when a target is missed (against either Redis figure)
#   COUNT_FSYNCS [1]: count each server's fdatasync/fsync calls with `perf stat` (skipped when perf is
#     missing or not permitted); a Redis AOF run with zero fsyncs fails.
# Needs redis-server, redis-cli, redis-benchmark (Debian: redis-server, redis-tools) and python3.
# Progress goes to stderr; the table goes to stdout.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOLLGATE_BIN="${TOLLGATE_BIN:-$REPO/build/tollgate}"
REQUESTS="${REQUESTS:-500000}"
REQUESTS_P1="${REQUESTS_P1:-100000}"
CLIENTS="${CLIENTS:-50}"
KEYSPACE="${KEYSPACE:-100000}"
ROUNDS="${ROUNDS:-3}"
TOLLGATE_ARGS="${TOLLGATE_ARGS:-}"
ENFORCE_TARGETS="${ENFORCE_TARGETS:-0}"
THROTTLE_CAPACITY="${THROTTLE_CAPACITY:-10}"
THROTTLE_RATE="${THROTTLE_RATE:-0.1}"
POLICY_FILE="${POLICY_FILE:-$REPO/bench/policies/bench.yaml}"
LUA_FILE="$REPO/bench/lua/token_bucket.lua"
SANITY_TB="bench:sanity"  # outside the benchmark's keyspace (tb:000000000000..)
SANITY_ID="sanity"        # RATE.CHECK ip/user value: keys ip:sanity, user:sanity

BENCH_NAME=limit_server_bench
BENCH_LOG_FSYNCS=1  # run_benchmark's log line gives the fsync count too
TOLLGATE_EXTRA_ARGS=(--config "$POLICY_FILE")  # start_tollgate: before $TOLLGATE_ARGS
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$REPO/bench/lib/common.sh"

require_positive_ints REQUESTS REQUESTS_P1 CLIENTS KEYSPACE ROUNDS
for v in THROTTLE_CAPACITY THROTTLE_RATE; do
  [[ ${!v} =~ ^[0-9]+(\.[0-9]+)?$ && ! ${!v} =~ ^0+(\.0*)?$ ]] ||
    die "$v must be a positive decimal (got '${!v}')"
done
require_tools
require_readable "$LUA_FILE" "$POLICY_FILE"

# The Redis script gets the same limits as the policy: read capacity and rate of each layer from the
# flow-style layer lines ({ name: ip, key: "ip:{ip}", capacity: 100, rate: 100 }).
declare -A LAYER_CAP LAYER_RATE
for layer in global ip user; do
  line="$(grep -E "name:[[:space:]]*${layer}[[:space:]]*," "$POLICY_FILE" | head -n 1)" ||
    die "$POLICY_FILE: no layer named '$layer'"
  LAYER_CAP[$layer]="$(sed -n 's/.*capacity:[[:space:]]*\([0-9.]*\).*/\1/p' <<<"$line")"
  LAYER_RATE[$layer]="$(sed -n 's/.*rate:[[:space:]]*\([0-9.]*\).*/\1/p' <<<"$line")"
  [[ ${LAYER_CAP[$layer]} =~ ^[0-9.]+$ && ${LAYER_RATE[$layer]} =~ ^[0-9.]+$ ]] ||
    die "$POLICY_FILE: cannot read capacity and rate of layer '$layer': $line"
  [[ $line == *"shadow: true"* ]] && die "$POLICY_FILE: layer '$layer' is shadow; the Lua side enforces all"
done
unset line layer
[[ ${LAYER_CAP[user]} =~ ^[0-9]+$ && ${LAYER_CAP[user]} -lt 1000 &&
  ${LAYER_CAP[user]} -lt ${LAYER_CAP[ip]%%.*} ]] ||
  die "the sanity check needs an integer user capacity below 1000 and below the ip capacity"
LUA_RATE_ARGS=(
  "${LAYER_CAP[global]}" "${LAYER_RATE[global]}" 1
  "${LAYER_CAP[ip]}" "${LAYER_RATE[ip]}" 1
  "${LAYER_CAP[user]}" "${LAYER_RATE[user]}" 1
  global ip user
)

# --- process and temp-dir management, redis-benchmark runs: bench/lib/common.sh ---------------------
bench_setup tollgate-limit-bench

# --- reply checks (the same for both servers: the Lua script answers in the commands' shapes) ------
words() { tr '\n' ' ' | sed 's/ *$//'; }  # raw multi-line reply -> one line

# Sample calls. call_* port impl(tollgate|sha) args: prints the raw reply on one line.
call_throttle() {  # port impl key capacity rate [cost]
  local port=$1 impl=$2 key=$3 cap=$4 rate=$5 cost=${6:-}
  if [[ $impl == tollgate ]]; then
    cli "$port" THROTTLE "$key" "$cap" "$rate" ${cost:+COST "$cost"} | words
  else
    cli "$port" EVALSHA "$impl" 1 "$key" "$cap" "$rate" "${cost:-1}" | words
  fi
}

ratecheck_line() {  # impl ip user: one RATE.CHECK (or its Lua equivalent) as a redis-cli input line
  if [[ $1 == tollgate ]]; then
    printf 'RATE.CHECK bench ip %s user %s\n' "$2" "$3"
  else
    printf 'EVALSHA %s 3 global ip:%s user:%s %s\n' "$1" "$2" "$3" "${LUA_RATE_ARGS[*]}"
  fi
}

check_replies() {  # label port impl: THROTTLE and RATE.CHECK replies, before the timed run
  local label=$1 port=$2 impl=$3 r cap=${LAYER_CAP[user]} n denied last
  # THROTTLE: capacity 2, rate 1/s: two grants, then a denial with a wait; cost 5 > 2 never fits.
  r="$(call_throttle "$port" "$impl" "$SANITY_TB" 2 1)"
  [[ $r =~ ^1\ 1\ 0\ [1-9][0-9]*$ ]] || die "$label: 1st THROTTLE should be [1, 1, 0, reset], got [$r]"
  r="$(call_throttle "$port" "$impl" "$SANITY_TB" 2 1)"
  [[ $r =~ ^1\ 0\ 0\ [1-9][0-9]*$ ]] || die "$label: 2nd THROTTLE should be [1, 0, 0, reset], got [$r]"
  r="$(call_throttle "$port" "$impl" "$SANITY_TB" 2 1)"
  [[ $r =~ ^0\ 0\ [1-9][0-9]*\ [1-9][0-9]*$ ]] ||
    die "$label: 3rd THROTTLE should be denied [0, 0, retry > 0, reset], got [$r]"
  r="$(call_throttle "$port" "$impl" "$SANITY_TB:cost" 2 1 5)"
  [[ $r =~ ^0\ 2\ -1\ [0-9]+$ ]] || die "$label: THROTTLE with cost > capacity should be [0, 2, -1, reset], got [$r]"
  # RATE.CHECK: [allowed, denied_layer (nil), remaining (least over the layers), retry_after_ms].
  r="$(ratecheck_line "$impl" "$SANITY_ID" "$SANITY_ID" | redis-cli -h 127.0.0.1 -p "$port" --no-raw |
    tr -d '\r')"
  [[ $r == $'1) (integer) 1\n2) (nil)\n3) (integer) '"$((cap - 1))"$'\n4) (integer) 0' ]] ||
    die "$label: RATE.CHECK reply is not [1, nil, $((cap - 1)), 0]: $r"
  # cap + 10 more for the same user within a few milliseconds: the user layer must deny.
  n=$((cap + 10))
  r="$(for ((i = 0; i < n; i++)); do ratecheck_line "$impl" "$SANITY_ID" "$SANITY_ID"; done |
    redis-cli -h 127.0.0.1 -p "$port" | tr -d '\r')"
  denied="$(grep -cx user <<<"$r" || true)"
  last="$(tail -n 4 <<<"$r" | words)"
  [[ $denied -ge 5 && $denied -le 11 && $last =~ ^0\ user\ 0\ [1-9][0-9]*$ ]] ||
    die "$label: $n RATE.CHECKs of one user: expected 5-11 denied by layer user, the last" \
      "[0, user, 0, retry > 0]; got $denied denied, last [$last]"
}

# --- one run: a workload at one pipeline depth on one server ----------------------------------------
declare -A RESULT  # key "<workload>,<P>,<round>,<server>,<field>", server tg | aof | mem

bench_tollgate() {  # workload pipeline requests round
  local w=$1 p=$2 n=$3 r=$4 k="$1,$2,$4,tg" dir="$WORK/tollgate-$1-P$2-round$4" info layer a d line
  start_tollgate "$dir"
  log "tollgate (pid $TG_PID) on 127.0.0.1:$TG_PORT, data dir $dir/data"
  TG_VERSION="$(info_field "$TG_PORT" server tollgate_version)"
  info="$(cli "$TG_PORT" INFO ratelimit)"
  for layer in global ip user; do
    grep -q "^policy_bench_layer_$layer:" <<<"$info" ||
      die "tollgate: INFO ratelimit has no policy_bench_layer_$layer: --config $POLICY_FILE not loaded?"
  done
  check_replies "tollgate" "$TG_PORT" tollgate

  if [[ $w == throttle ]]; then
    run_benchmark "tollgate $w -P $p (round $r)" "$TG_PORT" "$TG_PID" "$p" "$n" \
      THROTTLE "tb:__rand_int__" "$THROTTLE_CAPACITY" "$THROTTLE_RATE"
  else
    run_benchmark "tollgate $w -P $p (round $r)" "$TG_PORT" "$TG_PID" "$p" "$n" \
      RATE.CHECK bench ip __rand_int__ user __rand_int__
  fi
  RESULT[$k,rps]=$RPS RESULT[$k,fsyncs]=$FSYNCS

  [[ $(info_field "$TG_PORT" stats total_commands_processed) -ge $n ]] ||
    die "tollgate: total_commands_processed is below $n after the run"
  info="$(cli "$TG_PORT" INFO ratelimit)"
  if [[ $w == throttle ]]; then
    # Buckets left by the run (minus the two sanity buckets).
    RESULT[$k,buckets]=$(($(sed -n 's/^throttle_buckets://p' <<<"$info") - 2))
    [[ ${RESULT[$k,buckets]} -gt 0 ]] || die "tollgate: INFO ratelimit shows no THROTTLE bucket after the run"
    # allowed/denied counters for THROTTLE, when the server reports them
    a="$(sed -n 's/^throttle_allowed://p' <<<"$info")" d="$(sed -n 's/^throttle_denied://p' <<<"$info")"
    if [[ $a =~ ^[0-9]+$ && $d =~ ^[0-9]+$ ]]; then
      ((a + d >= n)) || die "tollgate: throttle_allowed + throttle_denied = $((a + d)) < $n"
    fi
  else
    # Every check evaluates every layer: allowed + denied >= requests, on each layer.
    for layer in global ip user; do
      line="$(sed -n "s/^policy_bench_layer_$layer://p" <<<"$info")"
      a="$(sed -n 's/^allowed=\([0-9]*\),.*/\1/p' <<<"$line")"
      d="$(sed -n 's/.*,denied=\([0-9]*\),.*/\1/p' <<<"$line")"
      [[ $a =~ ^[0-9]+$ && $d =~ ^[0-9]+$ ]] || die "tollgate: cannot parse INFO ratelimit: $line"
      ((a + d >= n)) ||
        die "tollgate: layer $layer counted $a allowed + $d denied after $n RATE.CHECKs"
      RESULT[$k,$layer]="$a/$d"
    done
  fi
  stop_tollgate
}

bench_redis() {  # mode(aof|mem) workload pipeline requests round
  local mode=$1 w=$2 p=$3 n=$4 r=$5 k="$2,$3,$5,$1" dir="$WORK/redis-$1-$2-P$3-round$5" sha
  local label="redis ($1)"
  start_redis "$dir" "$mode"
  log "redis-server $mode (pid $RD_PID) on 127.0.0.1:$RD_PORT, dir $dir"
  if [[ $mode == aof ]]; then
    [[ $(info_field "$RD_PORT" persistence aof_enabled) == 1 &&
      $(cli "$RD_PORT" CONFIG GET appendfsync | tail -n 1) == always ]] ||
      die "redis: not running with appendonly yes / appendfsync always"
  else
    [[ $(info_field "$RD_PORT" persistence aof_enabled) == 0 ]] || die "redis: AOF is on in mode $mode"
  fi
  [[ $(cli "$RD_PORT" CONFIG GET save | tail -n 1) == "" ]] || die "redis: RDB snapshots are on"

  sha="$(cli "$RD_PORT" SCRIPT LOAD "$(cat "$LUA_FILE")")"
  [[ $sha =~ ^[0-9a-f]{40}$ ]] || die "redis: SCRIPT LOAD returned '$sha'"
  check_replies "$label" "$RD_PORT" "$sha"

  if [[ $w == throttle ]]; then
    run_benchmark "$label $w -P $p (round $r)" "$RD_PORT" "$RD_PID" "$p" "$n" \
      EVALSHA "$sha" 1 "tb:__rand_int__" "$THROTTLE_CAPACITY" "$THROTTLE_RATE" 1
  else
    run_benchmark "$label $w -P $p (round $r)" "$RD_PORT" "$RD_PID" "$p" "$n" \
      EVALSHA "$sha" 3 global "ip:__rand_int__" "user:__rand_int__" "${LUA_RATE_ARGS[@]}"
  fi
  RESULT[$k,rps]=$RPS RESULT[$k,fsyncs]=$FSYNCS
  if [[ $mode == aof ]]; then
    [[ $FSYNCS != 0 ]] || die "redis: perf counted no fdatasync/fsync during the run: AOF not synced?"
  fi

  check_evalsha_calls "$RD_PORT" "$n"
  [[ $(info_field "$RD_PORT" stats total_error_replies) == 0 ]] ||
    die "redis: error replies during the run: $(cli "$RD_PORT" INFO errorstats | words)"
  if [[ $mode == aof ]]; then
    [[ $(info_field "$RD_PORT" persistence aof_last_write_status) == ok ]] ||
      die "redis: aof_last_write_status is not ok"
  fi
  # Buckets left by the run (THROTTLE: minus the sanity bucket; the cost > capacity one is never written).
  RESULT[$k,buckets]=$(($(cli "$RD_PORT" DBSIZE) - 1))
  if [[ $w == throttle && ${RESULT[$k,buckets]} -le 0 ]]; then
    die "redis: DBSIZE shows no bucket after the run"
  fi
  stop_redis
}

# --- main ----------------------------------------------------------------------------------------------
begin_measurements

WORKLOADS=(throttle ratecheck)
PIPELINES=(1 16)
SERVERS=(tg aof mem)
declare -A REQS=([1]=$REQUESTS_P1 [16]=$REQUESTS)
declare -A CMD_NAME=([throttle]=THROTTLE [ratecheck]="RATE.CHECK (3 layers)")

run_one() {  # server workload pipeline requests round
  if [[ $1 == tg ]]; then bench_tollgate "$2" "$3" "$4" "$5"; else bench_redis "$1" "$2" "$3" "$4" "$5"; fi
}

for ((r = 1; r <= ROUNDS; r++)); do
  for w in "${WORKLOADS[@]}"; do
    for p in "${PIPELINES[@]}"; do
      if ((r % 2)); then order=(tg aof mem); else order=(mem aof tg); fi  # alternate the order
      for s in "${order[@]}"; do run_one "$s" "$w" "$p" "${REQS[$p]}" "$r"; done
      if [[ $w == throttle ]]; then
        # Same keys, same limits, all from empty: the buckets left should agree, as long as none
        # refills completely (and so expires in Redis) during the run.
        for s in aof mem; do
          a=${RESULT[$w,$p,$r,tg,buckets]} b=${RESULT[$w,$p,$r,$s,buckets]}
          if ((a * 100 < b * 97 || b * 100 < a * 97)); then
            log "warning: THROTTLE -P $p round $r: tollgate holds $a buckets, Redis ($s) $b: not the same work?"
          fi
        done
      fi
    done
  done
done

# The load generator's ceiling: PING at -P 16 on a fresh tollgate (redis-benchmark is one thread
# on the same cores; a limiter figure close to this one says more about the client than the server).
start_tollgate "$WORK/tollgate-ping"
run_benchmark "tollgate PING -P 16" "$TG_PORT" "$TG_PID" 16 "$REQUESTS" PING
PING_RPS=$RPS
stop_tollgate

collect_versions

declare -A MED
for w in "${WORKLOADS[@]}"; do
  for p in "${PIPELINES[@]}"; do
    for s in "${SERVERS[@]}"; do
      v=()
      for ((r = 1; r <= ROUNDS; r++)); do v+=("${RESULT[$w,$p,$r,$s,rps]}"); done
      MED[$w,$p,$s]="$(median "${v[@]}")"
    done
  done
done

verdict() {  # ratio target -> met | **missed**
  if awk -v x="$1" -v t="$2" 'BEGIN { exit !(x >= t) }'; then echo met; else echo "**missed**"; fi
}

RV=${REDIS_VERSION%%.*}
TABLE="$(
  echo "| command | pipeline | tollgate (req/s) | Redis $RV + Lua, AOF always (req/s) |" \
    "Redis $RV + Lua, no AOF (req/s) | ratio vs AOF | ratio vs no-AOF | target |"
  echo "|---|---|---:|---:|---:|---:|---:|---|"
  for w in "${WORKLOADS[@]}"; do
    for p in "${PIPELINES[@]}"; do
      m_tg=${MED[$w,$p,tg]} m_aof=${MED[$w,$p,aof]} m_mem=${MED[$w,$p,mem]}
      ra="$(ratio "$m_tg" "$m_aof")" rm="$(ratio "$m_tg" "$m_mem")"
      if [[ $w == throttle ]]; then
        if [[ $p -eq 1 ]]; then t=1.0; else t=4; fi
        target="≥ ${t}×: $(verdict "$ra" "$t") vs AOF, $(verdict "$rm" "$t") vs no-AOF"
      else
        target="— (none set)"
      fi
      printf '| %s | -P %s | %s | %s | %s | %s× | %s× | %s |\n' "${CMD_NAME[$w]}" "$p" \
        "$(fmt_int "$m_tg")" "$(fmt_int "$m_aof")" "$(fmt_int "$m_mem")" "$ra" "$rm" "$target"
    done
  done
)"
MISSED=0
[[ $TABLE != *missed* ]] || MISSED=1

echo
echo "$TABLE"
echo
echo "Medians of $ROUNDS rounds; every run starts a fresh, empty server on 127.0.0.1 (the order of" \
  "the three servers is reversed every other round). redis-benchmark" \
  "$(redis-benchmark --version | awk '{ print $2 }') on the same machine: $CLIENTS clients, random keys" \
  "over $KEYSPACE (-r), ${REQS[1]} requests at -P 1, ${REQS[16]} at -P 16." \
  "THROTTLE tb:<n> $THROTTLE_CAPACITY $THROTTLE_RATE; RATE.CHECK bench ip <n> user <n> with" \
  "$(basename "$POLICY_FILE") (global ${LAYER_CAP[global]}/${LAYER_RATE[global]}/s, ip" \
  "${LAYER_CAP[ip]}/${LAYER_RATE[ip]}/s, user ${LAYER_CAP[user]}/${LAYER_RATE[user]}/s). Redis:" \
  "bench/lua/token_bucket.lua via EVALSHA (TIME, HMGET, HSET, PEXPIRE; 3 keys checked, then" \
  "charged all or none, for RATE.CHECK), --save '' and either --appendonly yes --appendfsync always" \
  "or --appendonly no."
echo
echo "**Durability is not the same:** tollgate does not fsync THROTTLE / RATE.CHECK per request: bucket" \
  "state is in memory and checkpointed about once a second, unsynced (a crash loses up to ~1 s of" \
  "charges; recovery refills by wall clock). Redis with appendfsync always fsyncs the AOF before" \
  "replying to every script that wrote; Redis with appendonly no persists nothing. The no-AOF column" \
  "is the like-for-like comparison of the limiter itself; the AOF column is Redis configured as in" \
  "bench/server_bench.sh."
echo
for w in "${WORKLOADS[@]}"; do
  for p in "${PIPELINES[@]}"; do
    line="- ${CMD_NAME[$w]} -P $p per round (req/s):"
    for s in "${SERVERS[@]}"; do
      v=()
      for ((r = 1; r <= ROUNDS; r++)); do v+=("${RESULT[$w,$p,$r,$s,rps]}"); done
      case $s in tg) name=tollgate ;; aof) name="Redis AOF" ;; mem) name="Redis no-AOF" ;; esac
      line+=" $name $(join_ints "${v[@]}");"
    done
    echo "${line%;}"
    if [[ $w == throttle ]]; then
      b=()
      for s in "${SERVERS[@]}"; do b+=("${RESULT[$w,$p,1,$s,buckets]}"); done
      echo "  - buckets left after round 1 (same keys, none refilled to full during the run):" \
        "tollgate ${b[0]}, Redis AOF ${b[1]}, Redis no-AOF ${b[2]}"
    else
      echo "  - tollgate allowed/denied per layer, round 1: global ${RESULT[$w,$p,1,tg,global]}," \
        "ip ${RESULT[$w,$p,1,tg,ip]}, user ${RESULT[$w,$p,1,tg,user]}"
    fi
    if [[ $COUNT_FSYNCS == 1 ]]; then
      line="  - fdatasync+fsync calls per run (perf):"
      for s in "${SERVERS[@]}"; do
        v=()
        for ((r = 1; r <= ROUNDS; r++)); do v+=("${RESULT[$w,$p,$r,$s,fsyncs]:-?}"); done
        case $s in tg) name=tollgate ;; aof) name="Redis AOF" ;; mem) name="Redis no-AOF" ;; esac
        line+=" $name ${v[*]};"
      done
      echo "${line%;}"
    fi
  done
done
print_machine_line ", after:" "$(cut -d' ' -f1-3 /proc/loadavg)" \
  "(other work on these 2 cores shows up as spread between rounds)." \
  "redis-benchmark (one thread) shares the cores with the server under test; its ceiling here," \
  "PING -P 16 on tollgate: $(fmt_int "$PING_RPS") req/s."
print_versions_line
exit_if_missed
