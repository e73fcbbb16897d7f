#!/bin/bash
# The demo: a throw-away PostgreSQL cluster with the background worker and
# pg_cron preloaded, the bundled SquadStack API double, and the webhook
# receiver: CRM rows go out through the sync trigger, the double processes
# them and posts their outcomes back, and they land in the CRM table.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/pgversion.sh
use_pg_version
bash test/setup.sh
export PGPORT=${PGPORT:-$(free_port)}
exec pg_virtualenv -v "$PG_VERSION" -t -o "listen_addresses=127.0.0.1 " \
  -o "shared_preload_libraries=squadstack,pg_cron" \
  -o "squadstack.database_name=postgres" -o "cron.database_name=postgres" \
  bash test/demo_inner.sh
