#!/bin/bash
# Runs a command with the API double listening on a free port on 127.0.0.1
# and always stops it afterwards:
#
#   bash test/with_double.sh COMMAND [ARG...]
#
# The command finds the double through SQUADSTACK_DOUBLE_PORT,
# SQUADSTACK_DOUBLE_LOG (its request log, readable by the server) and
# SQUADSTACK_API_URL, which the pg_regress tests read.  Run from the
# repository root (test/regress.sh) or the source package's root
# (debian/tests/installcheck).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

work=$(mktemp -d /tmp/squadstack-double-XXXXXX)
chmod 755 "$work"
double_pid=
cleanup() {
  [ -n "$double_pid" ] && kill "$double_pid" 2>/dev/null && wait "$double_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

python3 "$here/api_double.py" --port 0 --port-file "$work/port" --log "$work/requests.jsonl" \
  --token test-token --rate-limit 1000 --rate-window 1 \
  --max-lifetime 1200 --parent-pid $$ &
double_pid=$!
for _ in $(seq 1 100); do [ -s "$work/port" ] && break; sleep 0.1; done
[ -s "$work/port" ] || { echo "the API double did not start"; exit 1; }

export SQUADSTACK_DOUBLE_PORT=$(cat "$work/port")
export SQUADSTACK_DOUBLE_LOG="$work/requests.jsonl"
export SQUADSTACK_API_URL="http://127.0.0.1:$SQUADSTACK_DOUBLE_PORT/api/v4"

status=0
"$@" || status=$?
exit $status
