#!/bin/bash
# The demo: a throw-away PostgreSQL cluster and the bundled SquadStack API
# double, leads queued from SQL, delivered, and what the double received.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/pgversion.sh
use_pg_version
bash test/setup.sh
export PGPORT=${PGPORT:-$(free_port)}
exec pg_virtualenv -v "$PG_VERSION" -t -o "listen_addresses=127.0.0.1 " bash test/demo_inner.sh
