#!/bin/bash
# Runs inside pg_virtualenv (a cluster with squadstack and pg_cron
# preloaded): starts the API double and squadstack-webhookd on free ports
# on 127.0.0.1, runs the demo, and always stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/pgversion.sh
use_pg_version
work=$(mktemp -d /tmp/squadstack-demo-XXXXXX)
chmod 755 "$work"
double_pid=
webhookd_pid=
cleanup() {
  [ -n "$webhookd_pid" ] && kill "$webhookd_pid" 2>/dev/null && wait "$webhookd_pid" 2>/dev/null
  [ -n "$double_pid" ] && kill "$double_pid" 2>/dev/null && wait "$double_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

secret=demo-webhook-secret
hook_port=$(free_port)
python3 test/api_double.py --port 0 --port-file "$work/port" --token demo-token \
  --webhook-url "http://127.0.0.1:$hook_port/squadstack/webhook/{campaign}/$secret" \
  --max-lifetime 600 --parent-pid $$ >"$work/double.log" 2>&1 &
double_pid=$!
python3 test/double_ctl.py --port-file "$work/port" wait-ready --timeout 10
port=$(cat "$work/port")
echo "== the API double listens on 127.0.0.1:$port"

# the webhook receiver, on the database through libpq's PG* variables
"$PG_BINDIR/squadstack-webhookd" --listen "127.0.0.1:$hook_port" \
  --max-connections 2 >"$work/webhookd.log" 2>&1 &
webhookd_pid=$!
for _ in $(seq 1 50); do
  curl -s -o /dev/null "http://127.0.0.1:$hook_port/" && break
  sleep 0.1
done
echo "== squadstack-webhookd listens on 127.0.0.1:$hook_port"

psql -X -q -v ON_ERROR_STOP=1 -v api_url="http://127.0.0.1:$port/api/v4" \
  -v secret="$secret" -f test/demo.sql

echo "== SquadStack processes the leads and posts their outcomes to squadstack-webhookd"
python3 test/double_ctl.py --port "$port" process '{"campaign": "camp_1", "outcome": "Connected : Objective Met", "lead_responses": {"interest": "high"}}' >/dev/null
python3 test/double_ctl.py --port "$port" wait-webhooks --timeout 30
psql -X -q -v ON_ERROR_STOP=1 -f test/demo_outcomes.sql

echo "== what the API double received"
python3 test/double_ctl.py --port "$port" requests | python3 test/show_requests.py
echo "== the webhooks it posted"
python3 test/double_ctl.py --port "$port" webhooks | python3 -c '
import json, sys
for line in sys.stdin:
    w = json.loads(line)
    print("  %-4s %-8s %s  %s" % (w["lead_id"], w["result"], w["status"], w["url"]))'
