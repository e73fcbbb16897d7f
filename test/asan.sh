#!/bin/bash
# The pg_regress suite with the extension built with AddressSanitizer and
# UndefinedBehaviorSanitizer.  Debian 12, as root, after test/setup.sh (the
# runtimes, libasan8 and libubsan1, come with gcc-12 from build-essential).
#
# Debian's PostgreSQL is not built with the sanitizers, so the server's
# processes get gcc's runtimes by LD_PRELOAD, set in the environment file of
# the throw-away cluster (pg_createcluster --environment, through
# pg_virtualenv -c).  The runtimes write their reports to files; a report of
# any kind fails the run.  Before the suite, two probe libraries with a
# deliberate heap overflow and a deliberate signed overflow are loaded into a
# backend, to prove that the runtimes are in the server and that their
# reports reach those files.
#
# Both builds are made in a copy of the working tree, so the objects in the
# tree are left alone.  The sanitizer build is installed for the suite only:
# the normal build of the same copy is installed again on every way out.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/lib/postgresql/15/bin:$PATH"
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
SAN_FLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer"
self="$PWD/test/asan.sh"

# ---------------------------------------------------------------------------
# Inside pg_virtualenv: the cluster runs with the runtimes preloaded.
# ---------------------------------------------------------------------------
inside() {
  local work=$1 f found

  # the runtimes and the sanitizer build are mapped in a backend
  local maps
  maps=$(psql -XAtq -v ON_ERROR_STOP=1 -c "LOAD 'squadstack'" \
    -c "SELECT pg_read_file('/proc/' || pg_backend_pid() || '/maps')")
  for lib in libasan.so libubsan.so squadstack.so; do
    if ! grep -q "/$lib" <<<"$maps"; then
      echo "asan: $lib is not mapped in a backend; the sanitizers are not active"
      return 1
    fi
  done
  echo "asan: a backend has libasan, libubsan and the sanitizer build of squadstack mapped"

  # each probe's report must arrive in the report directory
  for probe in asan:heap-buffer-overflow ubsan:"signed integer overflow"; do
    local name=${probe%%:*} expect=${probe#*:}
    psql -Xq -c "LOAD '$work/probe/${name}_probe.so'" >/dev/null 2>&1 || true
    found=
    for _ in $(seq 1 50); do
      for f in "$work"/reports/*; do
        [ -f "$f" ] && grep -qF "$expect" "$f" && { found=$f; break; }
      done
      [ -n "$found" ] && break
      sleep 0.1
    done
    if [ -z "$found" ]; then
      echo "asan: the $name probe left no report; reports from the server would be lost"
      return 1
    fi
    mv "$found" "$work/probe/"
    echo "asan: the $name probe's report arrived ($expect)"
  done

  local status=0
  bash "$work/asan/test/regress.sh" || status=$?

  # anything a runtime printed to stderr instead lands in the server log
  local log="${PG_CLUSTER_CONF_ROOT:-}"; log="${log%/postgresql}/log/postgresql-${PGVERSION:-15}-regress.log"
  if [ -f "$log" ] && grep -qE 'AddressSanitizer|UndefinedBehaviorSanitizer|LeakSanitizer|runtime error:' "$log"; then
    grep -E -A40 'AddressSanitizer|UndefinedBehaviorSanitizer|LeakSanitizer|runtime error:' "$log" \
      >"$work/reports/server-log"
  fi
  return $status
}

if [ "${1:-}" = "--inside" ]; then
  inside "$2"
  exit
fi

# ---------------------------------------------------------------------------
# Outside: build, install, run, check, restore.
# ---------------------------------------------------------------------------
work=
ok=0
asan_installed=0

finish() {
  local rc=$?
  set +e
  trap - INT TERM HUP
  if [ "$asan_installed" = 1 ]; then
    echo "== installing the normal build again"
    if ! make -s -C "$work/normal" PG_CONFIG="$PG_CONFIG" install >/dev/null; then
      echo "asan: COULD NOT REINSTALL THE NORMAL BUILD; run: make install"
      ok=0
    fi
  fi
  if [ -n "$work" ] && [ -d "$work" ]; then
    # a cluster left running (pg_virtualenv killed hard): stop it by its pid
    for pidfile in "$work"/pg_virtualenv.*/data/*/regress/postmaster.pid; do
      [ -f "$pidfile" ] || continue
      pid=$(head -1 "$pidfile")
      if [ -n "$pid" ] && ps -o args= -p "$pid" 2>/dev/null | grep -qF "$work/"; then
        kill -QUIT "$pid" 2>/dev/null
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      fi
    done
    rm -rf "$work"
  fi
  if [ "$ok" = 1 ] && [ "$rc" = 0 ]; then
    echo "1 passed, 0 failed"
    exit 0
  fi
  echo "0 passed, 1 failed"
  exit 1
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

asan_dev=$(gcc -print-file-name=libasan.so)
ubsan_dev=$(gcc -print-file-name=libubsan.so)
if [ ! -e "$asan_dev" ] || [ ! -e "$ubsan_dev" ]; then
  echo "asan: gcc has no libasan/libubsan; install build-essential (gcc-12 brings libasan8 and libubsan1)"
  exit 1
fi

work=$(mktemp -d /tmp/squadstack-asan-XXXXXX)
chmod 755 "$work"

# one copy of the working tree, without build products, for each build
echo "== copying the working tree"
mkdir "$work/normal"
tar -C . --exclude=./.git --exclude='*.o' --exclude='*.so' --exclude='*.bc' \
  --exclude=./results --exclude=./tmp_check --exclude=./log \
  --exclude=./regression.diffs --exclude=./regression.out -cf - . |
  tar -C "$work/normal" -xf -
cp -a "$work/normal" "$work/asan"

jobs=$(nproc 2>/dev/null || echo 2)
echo "== building the normal build (restored at the end)"
make -s -j"$jobs" -C "$work/normal" PG_CONFIG="$PG_CONFIG"
echo "== building with $SAN_FLAGS"
# COPT goes to CFLAGS and LDFLAGS after PG_CFLAGS, so -Wall -Wextra -Werror stay
make -s -j"$jobs" -C "$work/asan" PG_CONFIG="$PG_CONFIG" COPT="$SAN_FLAGS"
so="$work/asan/squadstack.so"
syms=$(nm -D "$so")
if ! grep -q __asan_report <<<"$syms" || ! grep -q __ubsan_handle <<<"$syms"; then
  echo "asan: $so is not instrumented"
  exit 1
fi

# the runtimes the build links against, for LD_PRELOAD (libasan first)
asan_lib=$(ldd "$so" | awk '$1 ~ /^libasan\.so/ { print $3 }')
ubsan_lib=$(ldd "$so" | awk '$1 ~ /^libubsan\.so/ { print $3 }')
if [ ! -f "$asan_lib" ] || [ ! -f "$ubsan_lib" ]; then
  echo "asan: cannot find the runtimes $so links against:"
  ldd "$so"
  exit 1
fi

# reports are written by the server's processes, which run as postgres
mkdir "$work/reports" "$work/probe"
chown postgres:postgres "$work/reports"

# probes: a shared library whose _PG_init does one deliberate wrong thing
cat >"$work/probe/probe.c" <<'EOF'
#include "postgres.h"
#include "fmgr.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
#ifdef PROBE_ASAN
	char	   *volatile p = malloc(8);

	p[8] = 'x';					/* one byte past a malloc'd block */
	free(p);
#else
	volatile int big = PG_INT32_MAX;

	elog(LOG, "squadstack sanitizer probe: %d", big + 1);	/* signed overflow */
#endif
}
EOF
for probe in asan ubsan; do
  define=PROBE_$(tr a-z A-Z <<<"$probe")
  gcc -O0 -g -fPIC -shared $SAN_FLAGS -D"$define" \
    -isystem "$($PG_CONFIG --includedir-server)" \
    -o "$work/probe/${probe}_probe.so" "$work/probe/probe.c"
done
chmod 644 "$work"/probe/*.so

cat >"$work/environment" <<EOF
LD_PRELOAD = '$asan_lib $ubsan_lib'
ASAN_OPTIONS = 'detect_leaks=0:abort_on_error=0:halt_on_error=1:log_path=$work/reports/asan'
UBSAN_OPTIONS = 'print_stacktrace=1:halt_on_error=1:log_path=$work/reports/ubsan'
EOF

echo "== installing the sanitizer build"
asan_installed=1
make -s -C "$work/asan" PG_CONFIG="$PG_CONFIG" install >/dev/null

echo "== pg_regress against the API double, server with $(basename "$asan_lib") and $(basename "$ubsan_lib") preloaded"
suite=0
# TMPDIR puts pg_virtualenv's cluster under $work, where finish() finds it
TMPDIR="$work" pg_virtualenv -t -c "--environment=$work/environment" \
  -o "listen_addresses=127.0.0.1 " -o "max_worker_processes=16" \
  bash "$self" --inside "$work" || suite=$?

reports=0
for f in "$work"/reports/*; do
  [ -s "$f" ] || continue
  reports=$((reports + 1))
  echo "== sanitizer report: $(basename "$f")"
  cat "$f"
done

if [ "$suite" -ne 0 ]; then
  echo "asan: the suite failed (status $suite)"
elif [ "$reports" -ne 0 ]; then
  echo "asan: $reports sanitizer report(s)"
else
  ok=1
fi
