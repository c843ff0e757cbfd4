#!/usr/bin/env bash
# The payment story (README, "Holding a lease safely"), scaled down: lease ttl 2 s, pause 3 s.
#
#   run.sh [TOLLGATE_BIN] [PAYMENT_WORKER_BIN]
#
# Starts a throwaway `tollgate serve` on 127.0.0.1 (a free port), then for each of three workers'
# levels of care (unfenced, fenced, checked): worker 1 locks order-42 and is paused with SIGSTOP
# while preparing the charge, for longer than its ttl; worker 2 waits for the lock, gets it when
# worker 1's lease expires, and charges; then worker 1 is resumed. Prints what happened and checks
# it: unfenced -> the customer is charged twice; fenced -> the bank refuses worker 1's stale charge;
# checked -> worker 1 sees its lease is lost and does not even try. Exit 0 when all three came out
# that way.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
tollgate="${1:-$here/../../build/tollgate}"
worker="${2:-$here/../../build/examples/payment/payment_worker}"
work="$(mktemp -d)"
server_pid=""
cleanup() {
  [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

"$tollgate" serve --port 0 --bind 127.0.0.1 --data-dir "$work/data" >"$work/server.log" 2>&1 &
server_pid=$!
port=""
for _ in $(seq 1 200); do
  port="$(sed -n 's/.*tollgate ready on .*:\([0-9][0-9]*\).*/\1/p' "$work/server.log" | head -1)"
  [[ -n "$port" ]] && break
  sleep 0.05
done
[[ -n "$port" ]] || { echo "tollgate did not start:"; cat "$work/server.log"; exit 1; }

failures=0
run_variant() {
  local mode="$1" ledger="$work/ledger-$1"
  : >"$ledger"
  echo "== $mode =="
  "$worker" --port "$port" --name "worker-1" --mode "$mode" --ledger "$ledger" \
    --ttl-ms 2000 --prepare-ms 1000 >"$work/w1.out" 2>&1 &
  local w1=$!
  for _ in $(seq 1 200); do grep -q 'locked' "$work/w1.out" && break; sleep 0.01; done
  kill -STOP "$w1"
  echo "   worker-1 locked order-42, then paused (SIGSTOP) for 3 s; its lease has a 2 s ttl"
  sed 's/^/   /' "$work/w1.out"
  "$worker" --port "$port" --name "worker-2" --mode "$mode" --ledger "$ledger" \
    --ttl-ms 2000 --prepare-ms 0 >"$work/w2.out" 2>&1 || true
  sed 's/^/   /' "$work/w2.out"
  sleep 1  # worker-1 stays stopped 3 s in all (worker-2 waited ~2 s for the lease)
  kill -CONT "$w1"
  local w1_status=0
  wait "$w1" || w1_status=$?
  sed -n '2,$p' "$work/w1.out" | sed 's/^/   /'
  local charges
  charges="$(wc -l <"$ledger")"
  echo "   ledger: $charges charge(s): $(paste -sd';' "$ledger")"
  case "$mode" in
    unfenced) [[ "$charges" == 2 ]] && echo "   => the customer was charged TWICE" ||
                { echo "   !! expected a double charge"; failures=$((failures + 1)); } ;;
    fenced) [[ "$charges" == 1 && "$w1_status" == 3 ]] &&
              echo "   => the bank refused worker-1's stale fence: charged once" ||
              { echo "   !! expected the bank to refuse worker-1"; failures=$((failures + 1)); } ;;
    checked) [[ "$charges" == 1 && "$w1_status" == 4 ]] &&
               echo "   => worker-1 knew its lease was lost and did not try: charged once" ||
               { echo "   !! expected worker-1 not to try"; failures=$((failures + 1)); } ;;
  esac
}

run_variant unfenced
run_variant fenced
run_variant checked
exit "$failures"
