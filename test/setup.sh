#!/bin/bash
# Installs what squadstack needs on Debian 12 (as root), then builds and
# installs the extension.  Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential pkg-config ca-certificates python3 perl
          libipc-run-perl postgresql-15 postgresql-server-dev-15
          libcurl4-openssl-dev libjson-c-dev postgresql-15-cron)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # no cluster is wanted from the package: tests make their own
  mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/squadstack-no-main.conf
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

export PATH="/usr/lib/postgresql/15/bin:$PATH"
echo "== building squadstack"
make -s PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
make -s PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config install >/dev/null
