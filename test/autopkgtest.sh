#!/bin/bash
# The package's autopkgtest, as autopkgtest runs it: installs the built
# postgresql-NN-squadstack from DEBDIR and the test's dependencies
# (debian/tests/control), runs debian/tests/installcheck from the source
# tree, and purges the package again.  As root, where the build ran (the
# build dependencies include the test's).  PG_VERSION as in
# test/pgversion.sh.
#
#   PG_VERSION=17 bash test/autopkgtest.sh DEBDIR
set -euo pipefail
cd "$(dirname "$0")/.."
. test/pgversion.sh
use_pg_version
debdir=$(realpath "$1")
pkg="postgresql-$PG_VERSION-squadstack"
export DEBIAN_FRONTEND=noninteractive

purge() { apt-get purge -y -qq "$pkg" >/dev/null 2>&1 || true; }
trap purge EXIT

deps=$(sed -n '/^Depends:/,/^[A-Z]/p' debian/tests/control | grep -v '^[A-Z]' | tr -d ' ,' | grep -v '^@$')
# shellcheck disable=SC2086
apt-get install -y -qq "$debdir/${pkg}"_*.deb $deps >/dev/null
dpkg-query -W "$pkg"
PGPORT=$(free_port) debian/tests/installcheck
