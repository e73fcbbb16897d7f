#!/bin/bash
# Runs inside a fresh Debian root made by test/package.sh, with the source
# tree in the root's /squadstack and the built packages in /squadstack-debs:
# installs postgresql-NN-squadstack with apt, as a DBA would, checks that no
# build tool came with it, creates the extension and runs the demo against
# the API double.
set -euo pipefail
cd "$(dirname "$0")/.."
v=$1
export DEBIAN_FRONTEND=noninteractive

echo "== apt-get install ./postgresql-$v-squadstack_*.deb"
ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1 || apt-get update -qq
# the demo also uses pg_cron (the package suggests it) and curl
apt-get install -y -qq /squadstack-debs/postgresql-"$v"-squadstack_*.deb python3 \
  "postgresql-$v-cron" curl >/dev/null
dpkg-query -W "postgresql-$v-squadstack"
for tool in cc gcc clang make; do
  if command -v "$tool" >/dev/null; then
    echo "package: $tool was installed with the package"
    exit 1
  fi
done

echo "== the demo against the installed package"
# a free port: a server outside this root may hold 5432
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
out=$(mktemp)
PGPORT=$port pg_virtualenv -v "$v" -t -o "listen_addresses=127.0.0.1 " \
  -o "shared_preload_libraries=squadstack,pg_cron" \
  -o "squadstack.database_name=postgres" -o "cron.database_name=postgres" \
  bash test/demo_inner.sh 2>&1 | tee "$out"
for want in 'leads/create/camp_1/ +201' 'leads/update/camp_1/ +200' 'C1 +delivered 201' 'C1 +\| Asha R\. Rao +\| Connected'; do
  if ! grep -Eq "$want" "$out"; then
    echo "package: the demo's output lacks /$want/"
    exit 1
  fi
done
rm -f "$out"
