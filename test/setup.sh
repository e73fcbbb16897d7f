#!/bin/bash
# Installs what squadstack needs (as root, on Debian), then builds and
# installs the extension.  Safe to run again.
#
# The PostgreSQL version is the one this Debian release ships (15 on
# Debian 12), or PG_VERSION (see test/pgversion.sh).  --packages-only
# installs the packages and stops there.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/pgversion.sh
use_pg_version

packages=(build-essential pkg-config ca-certificates python3 perl
          libipc-run-perl "postgresql-$PG_VERSION" "postgresql-server-dev-$PG_VERSION"
          libcurl4-openssl-dev libjson-c-dev "postgresql-$PG_VERSION-cron"
          libmicrohttpd-dev libpq-dev curl)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # an install stopped half-way (a test run that was stopped) is completed
  dpkg --configure -a >/dev/null 2>&1 || true
  # a mirror's copy of Debian unstable can be older than its Release
  # file's Valid-Until
  apt-get -o Acquire::Check-Valid-Until=false update -qq
  # no cluster is wanted from the package: tests make their own
  mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/squadstack-no-main.conf
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ "${1:-}" = --packages-only ] && exit 0

export PATH="$PG_BINDIR:$PATH"
echo "== building squadstack for PostgreSQL $PG_VERSION"
make -s clean PG_CONFIG="$PG_CONFIG" >/dev/null
make -s PG_CONFIG="$PG_CONFIG"
make -s PG_CONFIG="$PG_CONFIG" install >/dev/null
