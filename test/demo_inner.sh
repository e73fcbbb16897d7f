#!/bin/bash
# Runs inside pg_virtualenv: starts the API double, then the demo SQL.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/squadstack-demo-XXXXXX)
double_pid=
cleanup() {
  [ -n "$double_pid" ] && kill "$double_pid" 2>/dev/null && wait "$double_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

python3 test/api_double.py --port 0 --port-file "$work/port" --token demo-token \
  --max-lifetime 600 --parent-pid $$ &
double_pid=$!
python3 test/double_ctl.py --port-file "$work/port" wait-ready --timeout 10
port=$(cat "$work/port")
echo "== API double listening on 127.0.0.1:$port"

psql -X -v ON_ERROR_STOP=1 -v api_url="http://127.0.0.1:$port/api/v4" -f test/demo.sql
echo "== what the API double received"
python3 test/double_ctl.py --port "$port" requests | python3 test/show_requests.py
