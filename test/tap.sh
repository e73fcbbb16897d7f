#!/bin/bash
# TAP tests of the background worker (test/t/*.pl), against the API double.
#
#   bash test/tap.sh [TEST...]        (as root, from the repository root)
#
# Tests the squadstack extension as installed (make && make install) into
# the PostgreSQL that PG_CONFIG or PG_VERSION names (see test/pgversion.sh).
# The tests use PostgreSQL's TAP framework (PostgreSQL::Test::Cluster) from
# postgresql-server-dev-NN and run with prove.  PostgreSQL refuses to run
# as root, so the tests, api_double.py and double_ctl.py are copied into a
# fresh directory owned by postgres and prove runs there as postgres.  The
# logs (regress_log_* of each test and the log of each node) are printed
# when a test fails; the directory is always removed.  TEST names files
# under test/t (default: all of them).
#
# Where the framework puts its files differs between versions: up to
# PostgreSQL 16 under $TESTDIR/tmp_check, the logs in tmp_check/log; from
# 17 on, data under $TESTDATADIR and logs under $TESTLOGDIR, or else
# tmp_check and log in the current directory.  All three are set, so that
# every version writes to tmp_check and its logs to tmp_check/log.
#
# TAP_PGBIN may name another bin directory of the same major version (for
# example a private copy of the installation with a build of the extension
# in it); TAP_VERBOSE=1 shows every test and the measurements the tests
# note.
set -euo pipefail
cd "$(dirname "$0")/.."

. test/pgversion.sh
use_pg_version
pgbin=${TAP_PGBIN:-$PG_BINDIR}
# the directory of PGXS: lib/pgxs, with src/makefiles/pgxs.mk in it
pgxs=$(dirname "$(dirname "$(dirname "$("$PG_CONFIG" --pgxs)")")")
perl_lib=$pgxs/src/test/perl

if [ "$(id -u)" -ne 0 ]; then
  echo "tap.sh: run as root (it runs the tests as the postgres user)" >&2
  exit 2
fi
for f in "$perl_lib/PostgreSQL/Test/Cluster.pm" "$pgxs/src/test/regress/pg_regress" "$pgbin/postgres"; do
  [ -e "$f" ] || { echo "tap.sh: missing $f (install postgresql-$PG_VERSION and postgresql-server-dev-$PG_VERSION)" >&2; exit 2; }
done

work=$(mktemp -d /tmp/squadstack-tap-XXXXXX)
cleanup() { rm -rf "$work"; }
trap cleanup EXIT

cp -r test/t "$work/t"
cp test/api_double.py test/double_ctl.py test/connect_proxy.py "$work/"
chown -R postgres:postgres "$work"
chmod 700 "$work"

verbose=()
[ "${TAP_VERBOSE:-0}" = 1 ] && verbose=(-v)

tests=()
for t in "$@"; do tests+=("t/$(basename "$t")"); done
if [ ${#tests[@]} -eq 0 ]; then
  for t in test/t/*.pl; do tests+=("t/$(basename "$t")"); done
fi

status=0
runuser -u postgres -- env -i \
  PATH="$pgbin:/usr/bin:/bin" \
  HOME="$work" LANG=C.UTF-8 PGTZ=UTC \
  TESTDIR="$work" TESTDATADIR="$work/tmp_check" TESTLOGDIR="$work/tmp_check/log" \
  PG_REGRESS="$pgxs/src/test/regress/pg_regress" \
  PG_TEST_TIMEOUT_DEFAULT=60 \
  bash -c 'cd "$TESTDIR" && exec prove --timer -I "$1" -I t "${@:2}"' \
  prove "$perl_lib" ${verbose[@]+"${verbose[@]}"} "${tests[@]}" || status=$?

if [ $status -ne 0 ]; then
  echo "== tap.sh: tests failed; logs follow"
  for f in "$work"/tmp_check/log/*; do
    [ -f "$f" ] || continue
    echo "======== $f"
    cat "$f"
  done
fi
exit $status
