#!/usr/bin/env bash
# `tollgate policy check` as a CI pipeline sees it: exit codes 0/1/2 and a parseable JSON report.
# Usage: policy_check_cli_test.sh TOLLGATE_BINARY EXAMPLES_DIR
set -uo pipefail
bin="$1"
ex="$2"
fail=0
expect() {  # expect CODE ARGS...
  local want="$1"
  shift
  "$bin" policy check "$@" >/tmp/policy_check_cli.$$ 2>&1
  local got=$?
  if [ "$got" != "$want" ]; then
    echo "FAIL: policy check $* exited $got, want $want"
    cat /tmp/policy_check_cli.$$
    fail=1
  fi
}
expect 0 "$ex/chat.yaml"
expect 0 "$ex/repaired/no-headroom.yaml"
expect 1 "$ex/failures/attack-window.yaml"
expect 1 "$ex/failures/no-headroom.yaml"
expect 2 "$ex/failures/aggregate-flood.yaml"
expect 2 /nonexistent/policies.yaml
expect 2 "$ex/chat.yaml" --max-recovery-s 0
expect 2 "$ex/chat.yaml" --format xml
# JSON: one document naming the rule, with the same exit code.
out=$("$bin" policy check --format json "$ex/failures/aggregate-flood.yaml")
code=$?
if [ "$code" != 2 ]; then echo "FAIL: json exit $code, want 2"; fail=1; fi
if ! printf '%s' "$out" | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["exit_code"] == 2, d
assert any(f["rule"] == "aggregate-flood" and f["severity"] == "error" for f in d["findings"]), d
'; then
  echo "FAIL: JSON report"
  printf '%s\n' "$out"
  fail=1
fi
rm -f /tmp/policy_check_cli.$$
[ "$fail" = 0 ] && echo "policy check CLI: all exit codes and the JSON report as expected"
exit "$fail"
