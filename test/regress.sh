#!/bin/bash
# pg_regress suite against the API double.  Runs inside pg_virtualenv (which
# provides a throw-away cluster and the PG* variables); starts the double on
# a free port on 127.0.0.1 and always stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
export PATH="$($PG_CONFIG --bindir):$PATH"

work=$(mktemp -d /tmp/squadstack-regress-XXXXXX)
chmod 755 "$work"
double_pid=
cleanup() {
  [ -n "$double_pid" ] && kill "$double_pid" 2>/dev/null && wait "$double_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

python3 test/api_double.py --port 0 --port-file "$work/port" --log "$work/requests.jsonl" \
  --token test-token --rate-limit 1000 --rate-window 1 \
  --max-lifetime 1200 --parent-pid $$ &
double_pid=$!
for _ in $(seq 1 100); do [ -s "$work/port" ] && break; sleep 0.1; done
[ -s "$work/port" ] || { echo "the API double did not start"; exit 1; }

export SQUADSTACK_DOUBLE_PORT=$(cat "$work/port")
export SQUADSTACK_DOUBLE_LOG="$work/requests.jsonl"
export SQUADSTACK_API_URL="http://127.0.0.1:$SQUADSTACK_DOUBLE_PORT/api/v4"

status=0
# REGRESS=... runs a subset
make -s installcheck PG_CONFIG="$PG_CONFIG" ${REGRESS:+REGRESS="$REGRESS"} || status=$?
if [ $status -ne 0 ] && [ -f regression.diffs ]; then
  cat regression.diffs
fi
exit $status
