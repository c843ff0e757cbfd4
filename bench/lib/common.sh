# shellcheck shell=bash
# Shared helpers for the redis-benchmark driven server benchmarks (bench/server_bench.sh,
# bench/limit_server_bench.sh). Sourced, not run: `source "$REPO/bench/lib/common.sh"`. Defining
# the functions has no side effects; bench_setup creates the work dir and installs the traps.
#
# Provides:
#   log, die                        progress / fatal error on stderr, prefixed with "$BENCH_NAME: "
#   require_positive_ints VAR...    die unless each named variable is a positive integer
#   require_tools                   redis-server, redis-cli, redis-benchmark, python3, awk and an
#                                   executable $TOLLGATE_BIN
#   require_readable FILE...        die unless each file is readable
#   bench_setup NAME                make $WORK (mktemp -d .../NAME.XXXXXX), reset the process
#                                   variables, trap EXIT/INT/TERM (cleanup: stop perf, redis-benchmark,
#                                   tollgate, redis-server, then bench_extra_cleanup if the script
#                                   defines it; remove $WORK), decide COUNT_FSYNCS
#   alive PID, stop_pid PID NAME (sets STOP_RC), stop_tollgate, stop_redis, free_port
#   start_tollgate DIR              `tollgate serve` on a free port (data in DIR/data); sets TG_PID,
#                                   TG_PORT. Flags: "${TOLLGATE_EXTRA_ARGS[@]}" then $TOLLGATE_ARGS
#   start_redis DIR [aof|mem]       redis-server on a free port, --save '' and either appendfsync
#                                   always (aof, the default) or --appendonly no; sets RD_PID, RD_PORT
#   cli PORT ARGS..., info_field PORT SECTION FIELD
#   check_evalsha_calls PORT N      die unless INFO commandstats shows >= N EVALSHA calls, none failed
#   start_fsync_count PID, stop_fsync_count (sets FSYNCS): perf stat on fdatasync/fsync
#   run_benchmark LABEL PORT SERVER_PID PIPELINE REQUESTS COMMAND...: sets RPS and FSYNCS
#   fmt_int X, median X..., join_ints X..., ratio A B
#   begin_measurements              sets START, LOAD_BEFORE, FSYNC_MS (fdatasync probe in $WORK)
#   collect_versions                sets GIT_REV, REDIS_VERSION, CPU, OS, FS
#   print_machine_line [WORDS...]   "- machine: ... load average before: $LOAD_BEFORE" + WORDS
#   print_versions_line             "- versions: ..." and "- took N s"
#   exit_if_missed                  exit 2 (after a log line) when MISSED=1 and ENFORCE_TARGETS=1
#
# Expects (set by the sourcing script): BENCH_NAME (log prefix), REPO, TOLLGATE_BIN, TOLLGATE_ARGS
# (a string of extra `serve` flags), CLIENTS, KEYSPACE; optional: TOLLGATE_EXTRA_ARGS (array of
# flags placed before $TOLLGATE_ARGS), BENCH_LOG_FSYNCS (1 = run_benchmark's log line also gives
# the fsync count), COUNT_FSYNCS (default 1), for exit_if_missed MISSED and ENFORCE_TARGETS.
# Sets: WORK, TG_PID, TG_PORT, RD_PID, RD_PORT, TG_VERSION (left for the script to fill), BENCH_PID,
# PERF_PID, STOP_RC, COUNT_FSYNCS, FSYNC_EVENTS, RPS, FSYNCS and the variables named above.

log() { printf '%s: %s\n' "$BENCH_NAME" "$*" >&2; }
die() { printf '%s: FAILED: %s\n' "$BENCH_NAME" "$*" >&2; exit 1; }

# --- checks ------------------------------------------------------------------------------------------
require_positive_ints() {  # variable names...
  local v
  for v in "$@"; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
  done
}

require_tools() {
  local tool
  for tool in redis-server redis-cli redis-benchmark python3 awk; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install redis-server redis-tools python3)"
  done
  [[ -x $TOLLGATE_BIN ]] ||
    die "$TOLLGATE_BIN is not executable; build it: cmake --build $REPO/build -j2 --target tollgate"
}

require_readable() {  # files...
  local f
  for f in "$@"; do
    [[ -r $f ]] || die "$f not found"
  done
}

# --- process and temp-dir management ---------------------------------------------------------------
bench_setup() {  # work-dir name
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")"
  TG_PID="" TG_PORT="" RD_PID="" RD_PORT="" TG_VERSION="" BENCH_PID="" PERF_PID=""
  RPS="" FSYNCS=""
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  # fsync counting: `perf stat` on the server's fdatasync/fsync syscall tracepoints (in-kernel
  # counters, no measurable overhead), when perf is installed and allowed; COUNT_FSYNCS=0 turns it off.
  COUNT_FSYNCS="${COUNT_FSYNCS:-1}"
  FSYNC_EVENTS="syscalls:sys_enter_fdatasync,syscalls:sys_enter_fsync"
  if [[ $COUNT_FSYNCS == 1 ]] && ! { command -v perf >/dev/null &&
    perf stat -e "$FSYNC_EVENTS" -o /dev/null true >/dev/null 2>&1; }; then
    COUNT_FSYNCS=0
  fi
}

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
  # A script's own extra cleanup (e.g. a PostgreSQL cluster it started), when it defines one.
  if declare -F bench_extra_cleanup >/dev/null; then bench_extra_cleanup || true; fi
  rm -rf -- "$WORK" || true
  exit "$rc"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_tollgate() {  # dir
  local dir=$1 i
  mkdir -p "$dir"
  : >"$dir/stdout"  # exists before the server opens it: the ready-line poll below reads it at once
  # shellcheck disable=SC2086 # TOLLGATE_ARGS is a list of flags
  "$TOLLGATE_BIN" serve --port 0 --bind 127.0.0.1 --data-dir "$dir/data" \
    ${TOLLGATE_EXTRA_ARGS[@]+"${TOLLGATE_EXTRA_ARGS[@]}"} $TOLLGATE_ARGS >"$dir/stdout" 2>"$dir/stderr" &
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

start_redis() {  # dir [mode: aof (default) | mem]
  local dir=$1 mode=${2:-aof} attempt i persist
  mkdir -p "$dir"
  if [[ $mode == aof ]]; then
    persist=(--appendonly yes --appendfsync always --auto-aof-rewrite-percentage 0)
  else
    persist=(--appendonly no)
  fi
  for attempt in 1 2 3; do  # the free port can be taken between free_port and bind: retry
    RD_PORT="$(free_port)"
    redis-server --bind 127.0.0.1 --port "$RD_PORT" --protected-mode yes --daemonize no \
      --dir "$dir" --save '' "${persist[@]}" --logfile "$dir/redis.log" &
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

check_evalsha_calls() {  # port min_calls: after a run, die unless EVALSHA ran >= min_calls, none failed
  local port=$1 n=$2 stats calls failed
  stats="$(cli "$port" INFO commandstats | grep '^cmdstat_evalsha:')" ||
    die "redis: no EVALSHA in INFO commandstats"
  calls="$(sed -n 's/.*calls=\([0-9]*\),usec=.*/\1/p' <<<"$stats")"
  failed="$(sed -n 's/.*rejected_calls=\([0-9]*\),failed_calls=\([0-9]*\).*/\1,\2/p' <<<"$stats")"
  [[ $calls =~ ^[0-9]+$ && $calls -ge $n && $failed == 0,0 ]] ||
    die "redis: EVALSHA calls failed or missing after the run: $stats"
}

# --- redis-benchmark ---------------------------------------------------------------------------------
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

run_benchmark() {  # label port server_pid pipeline requests command...: sets RPS, FSYNCS
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
  if [[ ${BENCH_LOG_FSYNCS:-0} == 1 ]]; then
    log "$label: $RPS requests/s${FSYNCS:+, $FSYNCS fsyncs}"
  else
    log "$label: $RPS requests/s"
  fi
}

# --- numbers -----------------------------------------------------------------------------------------
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

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# --- run context: machine, versions, timing ----------------------------------------------------------
begin_measurements() {  # sets START, LOAD_BEFORE, FSYNC_MS
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
}

collect_versions() {  # sets GIT_REV, REDIS_VERSION, CPU, OS, FS
  GIT_REV="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  if [[ -n $(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null) ]]; then
    GIT_REV="$GIT_REV + uncommitted changes"
  fi
  REDIS_VERSION="$(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p')"
  CPU="$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n 1)"
  OS="$(sed -n 's/^PRETTY_NAME="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' /etc/os-release 2>/dev/null || true)"
  FS="$(df -T "$WORK" | awk 'NR == 2 { print $2 " (" $1 ")" }')"
}

# shellcheck disable=SC2120 # the words are optional
print_machine_line() {  # [words...]: appended right after the load average (joined by spaces)
  echo "- machine: $(nproc) cores ($CPU), Linux $(uname -r), ${OS:-unknown OS}; data on $FS," \
    "fdatasync of a 100-byte append: $FSYNC_MS ms; load average before: $LOAD_BEFORE$*"
}

print_versions_line() {  # and the elapsed time
  echo "- versions: tollgate ${TG_VERSION:-unknown} ($TOLLGATE_BIN built" \
    "$(date -u -r "$TOLLGATE_BIN" '+%Y-%m-%d %H:%M UTC'); checkout at git $GIT_REV), redis-server $REDIS_VERSION"
  echo "- took $((SECONDS - START)) s"
}

exit_if_missed() {
  if [[ $MISSED -eq 1 && $ENFORCE_TARGETS == 1 ]]; then
    log "a target was missed"
    exit 2
  fi
}
