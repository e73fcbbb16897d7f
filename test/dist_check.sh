#!/bin/bash
# Checks the release tarball: `make dist` in a clone of the committed tree
# makes squadstack-VERSION.tar.gz, VERSION being default_version in
# squadstack.control; it holds the committed files and a META.json that
# test/meta_check.py finds valid under the PGXN Meta Spec; where a
# PostgreSQL with PGXS is installed, the unpacked tarball builds.  As root
# on Debian (installs git, make and python3 if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
. test/pgversion.sh

missing=()
for p in git make python3; do command -v "$p" >/dev/null || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get -o Acquire::Check-Valid-Until=false update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# PGXS where there is one (the dist target itself does not need it)
pgxs=(PGXS=)
if use_pg_version 2>/dev/null && [ -x "$PG_CONFIG" ]; then
  pgxs=(PG_CONFIG="$PG_CONFIG")
fi

work=$(mktemp -d /tmp/squadstack-dist-XXXXXX)
trap 'rm -rf "$work"' EXIT

version=$(sed -n "s/^default_version *= *'\([^']*\)'.*/\1/p" squadstack.control)
git clone -q . "$work/clone"
make -s -C "$work/clone" "${pgxs[@]}" dist
tarball="$work/clone/squadstack-$version.tar.gz"
[ -f "$tarball" ] || { echo "dist: make dist made no squadstack-$version.tar.gz"; exit 1; }
echo "dist: $(basename "$tarball"), $(tar -tzf "$tarball" | wc -l) entries"

mkdir "$work/unpacked"
tar -C "$work/unpacked" -xzf "$tarball"
dir="$work/unpacked/squadstack-$version"
[ -d "$dir" ] || { echo "dist: the tarball has no top directory squadstack-$version"; exit 1; }

# the tarball is the committed tree plus META.json
{ (cd "$work/clone" && git ls-files); echo META.json; } | sort >"$work/expected"
(cd "$dir" && find . -type f -printf '%P\n') | sort >"$work/packed"
if ! diff "$work/expected" "$work/packed"; then
  echo "dist: the tarball's files differ from the committed ones and META.json"
  exit 1
fi

python3 test/meta_check.py "$dir"

# and the check can fail: a META.json whose version is not the control file's
sed -i "s/\"$version\"/\"9.9.9\"/" "$dir/META.json"
if python3 test/meta_check.py "$dir" >/dev/null; then
  echo "dist: meta_check.py accepted a META.json with the wrong version"
  exit 1
fi

if [ "${pgxs[0]}" != PGXS= ]; then
  make -s -C "$dir" PG_CONFIG="$PG_CONFIG" >/dev/null
  echo "dist: the unpacked tarball builds against PostgreSQL $PG_VERSION"
fi
