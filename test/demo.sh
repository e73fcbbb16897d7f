#!/bin/bash
# The demo: a throw-away PostgreSQL cluster and the bundled SquadStack API
# double, leads queued from SQL, delivered, and what the double received.
set -euo pipefail
cd "$(dirname "$0")/.."
bash test/setup.sh
exec pg_virtualenv -t -o "listen_addresses=127.0.0.1 " bash test/demo_inner.sh
