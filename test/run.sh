#!/bin/bash
# Runs the whole test suite on Debian as root, for each PostgreSQL version
# in PG_VERSIONS (default "15 17 18"), one version after another (the tests
# measure timing and rate limits, so versions never run side by side).
#
#   bash test/run.sh                    every version
#   PG_VERSIONS=17 bash test/run.sh     one version
#
# The version this machine's Debian release ships (15 on Debian 12) is
# tested here; the others in a Debian root of the suite that ships them
# (17: Debian 13 "trixie", 18: Debian unstable "sid"), made and cached by
# test/roots.sh, into which a copy of the working tree goes.  For every
# version: test/setup.sh installs what is needed and builds, then the unit
# tests, the API double's own test, the pg_regress suite in a throw-away
# cluster, the TAP tests of the background worker (crashes, restarts,
# failover, pg_cron), and the pg_regress suite again under AddressSanitizer
# and UBSan.  Then, once per version, the Debian package is built,
# installed into a fresh root without build tools, and runs the demo
# (test/package.sh; SQUADSTACK_PACKAGES=0 skips it), and once in all, the
# release tarball and its META.json are checked.
#
# To keep a run of every version within half an hour on two cores, the two
# suites that repeat pg_regress run for fewer versions: the ASan suite for
# the oldest and the newest version in PG_VERSIONS, the package's
# autopkgtest for the newest.  SQUADSTACK_ASAN_VERSIONS and
# SQUADSTACK_AUTOPKGTEST_VERSIONS name others ("15 17 18": all).
#
# SQUADSTACK_IN_ROOTS=1 tests this machine's own version in a root too,
# leaving the machine's PostgreSQL alone.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/roots.sh

versions=${PG_VERSIONS:-15 17 18}
packages=${SQUADSTACK_PACKAGES:-1}
native_suite=$(this_suite)
read -ra listed <<<"$versions"
# (a run in a root is told the oldest version of the whole run)
oldest=${SQUADSTACK_OLDEST:-${listed[0]}}
newest=${listed[${#listed[@]} - 1]}
asan_versions=${SQUADSTACK_ASAN_VERSIONS:-$oldest $newest}
autopkgtest_versions=${SQUADSTACK_AUTOPKGTEST_VERSIONS:-$newest}

passed=0
failed=0
run() {
  local name=$1 start=$SECONDS; shift
  echo "== $name"
  if "$@"; then
    passed=$((passed + 1))
    echo "== ok: $name ($((SECONDS - start)) s)"
  else
    failed=$((failed + 1))
    echo "== FAILED: $name ($((SECONDS - start)) s)"
  fi
}

# The roots, and the packages in them, are made in the background at the
# lowest priority while the first version's tests run: making them costs
# minutes, mostly waiting for the mirror.  A root's lock makes its tests
# wait for it.
prepare_log=$(mktemp /tmp/squadstack-prepare-XXXXXX)
prepare_pid=
stop_preparing() {
  if [ -n "$prepare_pid" ] && kill -0 "$prepare_pid" 2>/dev/null; then
    kill -TERM -- "-$prepare_pid" 2>/dev/null
    wait "$prepare_pid" 2>/dev/null
  fi
  rm -f "$prepare_log"
}
trap stop_preparing EXIT
need_roots=0
for v in $versions; do in_a_root "$v" && need_roots=1; done
[ "$packages" = 1 ] && need_roots=1
if [ "$need_roots" = 1 ] && ! command -v debootstrap >/dev/null; then
  # here, before anything else uses apt on this machine
  echo "== installing debootstrap"
  apt-get -o Acquire::Check-Valid-Until=false update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi
if [ "${SQUADSTACK_PREPARE:-1}" = 1 ] && [ "$need_roots" = 1 ]; then
  prepare=(prepare)
  [ "$packages" = 1 ] && prepare=(prepare --minbase)
  # shellcheck disable=SC2086
  setsid nice -n 19 ionice -c 3 bash test/roots.sh "${prepare[@]}" $versions >"$prepare_log" 2>&1 &
  prepare_pid=$!
fi

preparing() {
  [ -n "$prepare_pid" ] && kill -0 "$prepare_pid" 2>/dev/null
}
deferred_asan=()

# Every suite of one version, here.
native() {
  local v=$1
  export PG_VERSION=$v
  unset PG_CONFIG
  local before=$failed
  run "PostgreSQL $v: install what is needed and build" bash test/setup.sh
  # nothing to test without a build
  [ "$failed" -eq "$before" ] || return 0
  run "PostgreSQL $v: unit tests (phone, backoff)" make -s -C test/unit clean run
  # the double and the expected files are the same for every version
  if [ "$v" = "$oldest" ]; then
    run "API double self-test" python3 test/test_api_double.py
    run "alternative expected files agree with the main ones" python3 test/expected_variants.py
  fi
  run "PostgreSQL $v: pg_regress against the API double" \
    env PGPORT="$(free_port)" pg_virtualenv -v "$v" -t -o "listen_addresses=127.0.0.1 " -o "max_worker_processes=16" \
    bash test/regress.sh
  run "PostgreSQL $v: TAP tests (background worker, crashes, standby, pg_cron)" bash test/tap.sh
  if [[ " $asan_versions " == *" $v "* ]]; then
    if preparing; then
      # the ASan suite's timing checks are the most easily upset by the
      # roots being made beside it: it runs after the other versions
      echo "== PostgreSQL $v: the ASan suite runs after the other versions"
      deferred_asan+=("$v")
    else
      asan "$v"
    fi
  fi
}

asan() {
  run "PostgreSQL $1: pg_regress under AddressSanitizer and UBSan" env PG_VERSION="$1" bash test/asan.sh
}

# Every suite of one version, in the test root of the suite that ships it:
# the counts come back on the last line the run in the root prints.
in_suite_root() {
  local v=$1 suite root log line status=0
  suite=$(pg_suite "$v") || { failed=$((failed + 1)); return; }
  echo "== PostgreSQL $v: in a Debian $suite root"
  if ! root=$(test_root "$suite"); then
    failed=$((failed + 1))
    echo "== FAILED: PostgreSQL $v: making the $suite root"
    return
  fi
  copy_tree "$root/squadstack"
  log=$(mktemp /tmp/squadstack-run-XXXXXX)
  in_root "$root" PG_VERSIONS="$v" SQUADSTACK_PACKAGES=0 SQUADSTACK_IN_ROOTS=0 SQUADSTACK_PREPARE=0 \
    SQUADSTACK_ASAN_VERSIONS="$asan_versions" SQUADSTACK_OLDEST="$oldest" \
    TAP_VERBOSE="${TAP_VERBOSE:-0}" CI="${CI:-}" \
    bash /squadstack/test/run.sh 2>&1 | tee "$log" || status=$?
  line=$(tail -n 1 "$log")
  rm -f "$log"
  if [[ "$line" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
    passed=$((passed + BASH_REMATCH[1]))
    failed=$((failed + BASH_REMATCH[2]))
    if [ "$status" -ne 0 ] && [ "${BASH_REMATCH[2]}" -eq 0 ]; then
      failed=$((failed + 1))
    fi
  else
    failed=$((failed + 1))
    echo "== FAILED: PostgreSQL $v: the run in the $suite root ended early"
  fi
  return 0
}

for v in $versions; do
  start=$SECONDS
  if in_a_root "$v"; then
    in_suite_root "$v"
  else
    native "$v"
  fi
  echo "== PostgreSQL $v: suites done in $((SECONDS - start)) s"
done

for v in ${deferred_asan[@]+"${deferred_asan[@]}"}; do
  if preparing; then
    echo "== waiting for the roots to be made"
    wait "$prepare_pid" || true
  fi
  asan "$v"
done

if [ "$packages" = 1 ]; then
  for v in $versions; do
    run "PostgreSQL $v: Debian package (build, install into a fresh root, demo)" \
      env PG_VERSIONS="$v" SQUADSTACK_AUTOPKGTEST_VERSIONS="$autopkgtest_versions" bash test/package.sh
  done
  run "release tarball (make dist) and its META.json" bash test/dist_check.sh
fi

echo "== PostgreSQL ${versions// /, }: $((SECONDS / 60)) min $((SECONDS % 60)) s in all"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
