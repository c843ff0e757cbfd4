#!/usr/bin/env bash
# THROTTLE -P 16 throughput with and without a Prometheus-style scraper hitting GET /metrics 10
# times a second (issue 12: within 5%). Usage: bench/metrics_overhead.sh [path/to/tollgate]
# Env: REQUESTS (default 2000000), CLIENTS (50), ROUNDS (3: alternating, best of each).
set -euo pipefail
BIN=${1:-build/tollgate}
REQUESTS=${REQUESTS:-2000000}
CLIENTS=${CLIENTS:-50}
ROUNDS=${ROUNDS:-3}
command -v redis-benchmark >/dev/null || { echo "needs redis-benchmark (redis-tools)"; exit 1; }
command -v curl >/dev/null || { echo "needs curl"; exit 1; }

port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
DIR=$(mktemp -d)
PORT=$(port)
HTTP=$(port)
"$BIN" serve --port "$PORT" --http-port "$HTTP" --data-dir "$DIR/data" >"$DIR/out" 2>"$DIR/err" &
SERVER=$!
SCRAPER=
cleanup() {
  [ -n "$SCRAPER" ] && kill "$SCRAPER" 2>/dev/null || true
  kill "$SERVER" 2>/dev/null || true
  wait "$SERVER" 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT
for _ in $(seq 100); do grep -q ready "$DIR/out" && break; sleep 0.1; done
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$HTTP/metrics" >/dev/null && break; sleep 0.1; done

run() {
  redis-benchmark -p "$PORT" -n "$REQUESTS" -c "$CLIENTS" -P 16 -q \
    THROTTLE "bench:__rand_int__" 1000000 1000000 2>/dev/null |
    tr '\r' '\n' | awk '/requests per second/ {for (i=1;i<=NF;i++) if ($i ~ /^[0-9.]+$/) v=$i} END {print v}'
}
# One long-lived scraper process, as Prometheus is (a curl per scrape would measure process start
# on these 2 cores, not the server): 10 GET /metrics a second over a kept-alive connection.
scrape_loop() {
  exec /usr/bin/python3 - "$HTTP" <<'PY'
import http.client, sys, time
port = int(sys.argv[1])
conn = None
while True:
    start = time.monotonic()
    try:
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/metrics")
        conn.getresponse().read()
    except (OSError, http.client.HTTPException):
        conn = None
    time.sleep(max(0.0, 0.1 - (time.monotonic() - start)))
PY
}

best_without=0
best_with=0
for r in $(seq "$ROUNDS"); do
  w=$(run)
  scrape_loop &
  SCRAPER=$!
  s=$(run)
  kill "$SCRAPER"; wait "$SCRAPER" 2>/dev/null || true; SCRAPER=
  echo "round $r: without scraper $w req/s, with scraper $s req/s"
  best_without=$(python3 -c "print(max($best_without, $w))")
  best_with=$(python3 -c "print(max($best_with, $s))")
done
echo "without scraper: $best_without req/s"
echo "with scraper (10 GET /metrics per s): $best_with req/s"
python3 -c "r=$best_with/$best_without; print(f'ratio with/without: {r:.3f} ({(1-r)*100:+.1f}% slower)'); import sys; sys.exit(0 if r >= 0.95 else 3)"
