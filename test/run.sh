#!/bin/bash
# Runs the whole test suite on Debian 12 as root: installs and builds what
# is needed (test/setup.sh), then the unit tests, the API double's own test,
# the pg_regress suite in a throw-away cluster, the TAP tests of the
# background worker (crashes, restarts, failover, pg_cron), and the
# pg_regress suite again under AddressSanitizer and UBSan.
set -euo pipefail
cd "$(dirname "$0")/.."

bash test/setup.sh

passed=0
failed=0
run() {
  local name=$1; shift
  echo "== $name"
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "== FAILED: $name"; fi
}

run "unit tests (phone, backoff)" make -s -C test/unit run
run "API double self-test" python3 test/test_api_double.py
run "pg_regress against the API double" \
  pg_virtualenv -t -o "listen_addresses=127.0.0.1 " -o "max_worker_processes=16" bash test/regress.sh
run "TAP tests (background worker, crashes, standby, pg_cron)" bash test/tap.sh
run "pg_regress under AddressSanitizer and UBSan" bash test/asan.sh

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
