#!/bin/bash
# Builds the Debian package postgresql-NN-squadstack from the working tree,
# the way Debian builds PostgreSQL extensions (pg_buildext, debian/), for
# the version PG_VERSION names (see test/pgversion.sh), and copies the .deb
# files to OUTDIR.  As root on Debian; installs the build dependencies.
#
#   PG_VERSION=17 bash test/package_build.sh OUTDIR
set -euo pipefail
cd "$(dirname "$0")/.."
. test/pgversion.sh
use_pg_version
out=$(realpath -m "$1")
mkdir -p "$out"

# one version in this build, whatever else the release supports
export PG_SUPPORTED_VERSIONS=$PG_VERSION
export DEBIAN_FRONTEND=noninteractive

need=(dpkg-dev debhelper postgresql-server-dev-all)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing: ${missing[*]}"
  apt-get -o Acquire::Check-Valid-Until=false update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

version=$(sed -n "s/^default_version *= *'\([^']*\)'.*/\1/p" squadstack.control)
debversion=$(dpkg-parsechangelog -S Version)
if [ "${debversion%-*}" != "$version" ]; then
  echo "package: debian/changelog is at $debversion, squadstack.control at $version;"
  echo "package: add a debian/changelog entry for $version (dch -v $version-1)"
  exit 1
fi

work=$(mktemp -d /tmp/squadstack-deb-XXXXXX)
trap 'rm -rf "$work"' EXIT
src="$work/squadstack-$version"
mkdir "$src"
tar --exclude=./.git --exclude='*.o' --exclude='*.so' --exclude='*.bc' \
  --exclude=./results --exclude=./tmp_check --exclude=./log \
  --exclude=./regression.diffs --exclude=./regression.out --exclude=./test/unit/test_units \
  -cf - . | tar -C "$src" -xf -

cd "$src"
pg_buildext updatecontrol
apt-get install -y -qq --no-install-recommends build-essential >/dev/null
apt-get build-dep -y -qq ./ >/dev/null
echo "== dpkg-buildpackage for PostgreSQL $PG_VERSION"
dpkg-buildpackage -us -uc -b >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
grep -E '^dpkg-deb: building package' "$work/build.log" || true
cp "$work"/postgresql-"$PG_VERSION"-squadstack_*.deb "$out/"
