#!/bin/bash
# pg_regress suite against the API double.  Runs inside pg_virtualenv (which
# provides a throw-away cluster and the PG* variables); the double runs on
# a free port on 127.0.0.1 for the suite's duration: make installcheck
# starts it (test/with_double.sh).
# REGRESS=... runs a subset.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/pgversion.sh
use_pg_version
export PATH="$PG_BINDIR:$PATH"

status=0
make -s installcheck PG_CONFIG="$PG_CONFIG" ${REGRESS:+REGRESS="$REGRESS"} || status=$?
if [ $status -ne 0 ] && [ -f regression.diffs ]; then
  cat regression.diffs
fi
exit $status
