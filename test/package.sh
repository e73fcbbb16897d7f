#!/bin/bash
# The Debian package, for each version in PG_VERSIONS (default 15 17 18):
# builds postgresql-NN-squadstack (test/package_build.sh) and runs its
# autopkgtest (test/autopkgtest.sh) in the test root of the Debian suite
# that ships NN (on this machine when it is that suite), then unpacks a
# fresh minimal root of the same suite and runs test/package_check.sh in
# it: apt install of the package without build tools, and the demo.  As
# root.
#
#   PG_VERSIONS=17 bash test/package.sh
#
# SQUADSTACK_IN_ROOTS=1 builds in a root even for this machine's own
# version.  SQUADSTACK_AUTOPKGTEST_VERSIONS limits the autopkgtest to the
# versions it names (default: every version).  The packages are left in $SQUADSTACK_CACHE/debs.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/roots.sh

versions=${PG_VERSIONS:-15 17 18}
autopkgtest_versions=${SQUADSTACK_AUTOPKGTEST_VERSIONS:-$versions}
debs="$SQUADSTACK_CACHE/debs"
fresh=
cleanup() {
  if [ -n "$fresh" ]; then
    remove_root "$fresh" && rm -f "$fresh.lock"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

for v in $versions; do
  suite=$(pg_suite "$v")
  rm -rf "$debs/$v"
  mkdir -p "$debs/$v"
  start=$SECONDS
  root=
  if ! in_a_root "$v"; then
    PG_VERSION=$v bash test/package_build.sh "$debs/$v"
    echo "== built in $((SECONDS - start)) s: $(cd "$debs/$v" && echo *.deb)"
    start=$SECONDS
    if [[ " $autopkgtest_versions " == *" $v "* ]]; then
      PG_VERSION=$v bash test/autopkgtest.sh "$debs/$v"
      echo "== autopkgtest passed in $((SECONDS - start)) s"
    fi
  else
    root=$(test_root "$suite")
    copy_tree "$root/squadstack"
    rm -rf "$root/squadstack-debs"
    in_root "$root" PG_VERSION="$v" bash /squadstack/test/package_build.sh /squadstack-debs
    cp "$root"/squadstack-debs/*.deb "$debs/$v/"
    echo "== built in $((SECONDS - start)) s: $(cd "$debs/$v" && echo *.deb)"
    start=$SECONDS
    if [[ " $autopkgtest_versions " == *" $v "* ]]; then
      in_root "$root" PG_VERSION="$v" bash /squadstack/test/autopkgtest.sh /squadstack-debs
      echo "== autopkgtest passed in $((SECONDS - start)) s"
    fi
    rm -rf "$root/squadstack-debs"
  fi

  start=$SECONDS
  mkdir -p "$SQUADSTACK_CACHE/tmp"
  fresh=$(mktemp -d "$SQUADSTACK_CACHE/tmp/fresh-$suite-XXXXXX")
  unpack_root "$suite" "$fresh"
  # The packages the build machine downloaded (PostgreSQL and the rest, the
  # same versions from the same mirror) are offered to apt in the fresh
  # root, which then installs without downloading them again; and the
  # test root's package lists, which are the same suite's.
  cache=${root:-}
  cp -l "$cache"/var/cache/apt/archives/*.deb "$fresh/var/cache/apt/archives/" 2>/dev/null ||
    cp "$cache"/var/cache/apt/archives/*.deb "$fresh/var/cache/apt/archives/" 2>/dev/null || true
  # The build machine's apt sources and lists too: for this machine's own
  # release they include its updates and security suites, where a newer
  # PostgreSQL than the release's first one (the package depends on the
  # version it was built against) comes from.
  cp "$cache"/etc/apt/sources.list "$fresh/etc/apt/" 2>/dev/null || true
  mkdir -p "$fresh/etc/apt/sources.list.d"
  cp "$cache"/etc/apt/sources.list.d/* "$fresh/etc/apt/sources.list.d/" 2>/dev/null || true
  cp "$cache"/var/lib/apt/lists/*_{Release,InRelease,Packages,Packages.lz4,Packages.gz,Packages.xz} \
    "$fresh/var/lib/apt/lists/" 2>/dev/null || true
  copy_tree "$fresh/squadstack"
  mkdir "$fresh/squadstack-debs"
  cp "$debs/$v"/*.deb "$fresh/squadstack-debs/"
  in_root "$fresh" bash /squadstack/test/package_check.sh "$v"
  remove_root "$fresh" && rm -f "$fresh.lock"
  fresh=
  echo "== installed and checked in a fresh $suite root in $((SECONDS - start)) s"
done
