#!/bin/bash
# The pg_regress suite with the extension built with AddressSanitizer and
# UndefinedBehaviorSanitizer.  Debian 12, as root, after test/setup.sh (the
# runtimes, libasan8 and libubsan1, come with gcc-12 from build-essential).
#
# Debian's PostgreSQL is not built with the sanitizers, so the server's
# processes get gcc's runtimes by LD_PRELOAD, set in the environment file of
# the throw-away cluster (pg_createcluster --environment, through
# pg_virtualenv -c).  Any report fails the run.  ASan writes its reports to
# files (log_path).  UBSan cannot: libasan, loaded first, answers its call
# to set the report path, so its reports go to stderr, which is the server
# log; the log is searched for them.
#
# A third preloaded library, built here, works around two things:
#  - libasan starts up on the first malloc, which in postgres happens inside
#    bindtextdomain() in libgpg-error's constructor, with glibc's gettext
#    lock held.  The start-up looks up swift_demangle with dlsym() and calls
#    dlerror(), whose message translation takes the same lock: postgres
#    would hang before main().  Defining swift_demangle (never called:
#    nothing here is Swift) makes the lookup succeed, so there is nothing
#    to translate.
#  - libubsan reads UBSAN_OPTIONS on its first report, from
#    /proc/self/environ, which a backend has overwritten with its process
#    title by then.  __ubsan_default_options() gives the options instead.
#
# After the suite, two probe libraries with a deliberate heap overflow and a
# deliberate signed overflow are loaded into backends, to prove that the
# runtimes are in the server and that their reports are found.
#
# The build is made in a copy of the working tree, so the objects in the
# tree are left alone, and installed under a temporary directory that only
# the throw-away cluster looks in: the installation is never touched.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/pgversion.sh
use_pg_version
export PATH="$PG_BINDIR:$PATH"
SAN_FLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer"
SAN_PATTERN='AddressSanitizer|UndefinedBehaviorSanitizer|LeakSanitizer|runtime error:'
self="$PWD/test/asan.sh"

# ---------------------------------------------------------------------------
# Inside pg_virtualenv: the cluster runs with the runtimes preloaded.
# ---------------------------------------------------------------------------

wait_ready() {
  for _ in $(seq 1 100); do
    psql -XAtq -c "SELECT 1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}

inside() {
  local work=$1 status=0
  local log="${PG_CLUSTER_CONF_ROOT:-}"
  log="${log%/postgresql}/log/postgresql-${PGVERSION:-$PG_VERSION}-regress.log"
  if [ ! -f "$log" ]; then
    echo "asan: cannot find the server log at $log"
    return 1
  fi

  # the runtimes and the sanitizer build (by every name the server uses)
  # are mapped in a backend, and no other squadstack.so
  local maps lib others loads=(-c "LOAD 'squadstack'")
  [ "$PG_VERSION" -lt 18 ] && loads+=(-c "LOAD '\$libdir/squadstack'")
  maps=$(psql -XAtq -v ON_ERROR_STOP=1 "${loads[@]}" \
    -c "SELECT pg_read_file('/proc/' || pg_backend_pid() || '/maps')")
  for lib in libasan.so libubsan.so; do
    if ! grep -q "/$lib" <<<"$maps"; then
      echo "asan: $lib is not mapped in a backend; the sanitizers are not active"
      return 1
    fi
  done
  others=$(grep -vF "$work/destdir/" <<<"$maps" | grep '/squadstack\.so' || true)
  if ! grep -qF "$work/destdir/" <<<"$maps" || [ -n "$others" ]; then
    echo "asan: a backend did not load the sanitizer build of squadstack.so"
    return 1
  fi
  echo "asan: a backend has libasan, libubsan and the sanitizer build of squadstack mapped"

  bash "$work/tree/test/regress.sh" || status=$?

  # UBSan's reports, and anything else a runtime printed to stderr
  if grep -qE "$SAN_PATTERN" "$log"; then
    grep -E -B2 -A40 "$SAN_PATTERN" "$log" >"$work/reports/server-log"
  fi

  # The probes come last: a report ends its backend without the usual
  # clean-up, which the postmaster treats as a crash (it restarts every
  # session).  ASan's report must arrive as asan.<pid of the backend>,
  # UBSan's in the server log.
  local pid lines probe_line='probe\.c:.*runtime error: signed integer overflow'
  wait_ready || { echo "asan: the server did not come back"; return 1; }
  pid=$(psql -XAtq -c "SELECT pg_backend_pid()" \
    -c "LOAD '$work/probe/asan_probe.so'" 2>/dev/null | head -1) || true
  for _ in $(seq 1 50); do
    [ -n "$pid" ] && [ -s "$work/reports/asan.$pid" ] && break
    sleep 0.1
  done
  if [ -z "$pid" ] || ! grep -q 'heap-buffer-overflow' "$work/reports/asan.$pid" 2>/dev/null; then
    echo "asan: the ASan probe left no report; reports from the server would be lost"
    return 1
  fi
  mv "$work/reports/asan.$pid" "$work/probe/"
  echo "asan: the ASan probe's report arrived (heap-buffer-overflow, backend $pid)"

  wait_ready || { echo "asan: the server did not come back"; return 1; }
  lines=$(wc -l <"$log")
  psql -XAtq -c "LOAD '$work/probe/ubsan_probe.so'" >/dev/null 2>&1 || true
  for _ in $(seq 1 50); do
    grep -q "$probe_line" <<<"$(tail -n +"$((lines + 1))" "$log")" && break
    sleep 0.1
  done
  if ! grep -q "$probe_line" <<<"$(tail -n +"$((lines + 1))" "$log")"; then
    echo "asan: the UBSan probe left no report in the server log; reports would be lost"
    return 1
  fi
  echo "asan: the UBSan probe's report arrived (signed integer overflow)"
  return $status
}

if [ "${1:-}" = "--inside" ]; then
  inside "$2"
  exit
fi

# ---------------------------------------------------------------------------
# Outside: build, install, run, check.
# ---------------------------------------------------------------------------
work=
ok=0

finish() {
  local rc=$?
  set +e
  trap - INT TERM HUP
  if [ -n "$work" ] && [ -d "$work" ]; then
    # a cluster left running (pg_virtualenv killed hard): stop it by its pid
    for pidfile in "$work"/pg_virtualenv.*/data/*/regress/postmaster.pid; do
      [ -f "$pidfile" ] || continue
      pid=$(head -1 "$pidfile")
      if [ -n "$pid" ] && [[ "$(ps -o args= -p "$pid" 2>/dev/null)" == *"$work/"* ]]; then
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

# a copy of the working tree without build products
echo "== copying the working tree"
mkdir "$work/tree"
tar -C . --exclude=./.git --exclude='*.o' --exclude='*.so' --exclude='*.bc' \
  --exclude=./results --exclude=./tmp_check --exclude=./log \
  --exclude=./regression.diffs --exclude=./regression.out -cf - . |
  tar -C "$work/tree" -xf -

echo "== building with $SAN_FLAGS"
# COPT is added to CFLAGS and LDFLAGS; PG_CFLAGS (-Wall -Wextra -Werror) stay.
# -Wclobbered (from -Wextra) judges variables around setjmp by how they are
# kept in registers, which the instrumentation changes: here it is shown but
# not fatal (the normal build, test/setup.sh, is held to it).
make -s -j"$(nproc 2>/dev/null || echo 2)" -C "$work/tree" PG_CONFIG="$PG_CONFIG" \
  COPT="$SAN_FLAGS -Wno-error=clobbered"
so="$work/tree/squadstack.so"
syms=$(nm -D "$so")
if ! grep -q __asan_report <<<"$syms" || ! grep -q __ubsan_handle <<<"$syms"; then
  echo "asan: $so is not instrumented"
  exit 1
fi
# Installed under $work only: the cluster finds it there first, and the
# installation everyone else uses is never touched.  Up to PostgreSQL 17,
# Debian's extension_destdir prefixes every extension file's path, and
# dynamic_library_path finds the library by its plain name.  Debian's
# PostgreSQL 18 has no extension_destdir; 18's extension_control_path finds
# the control file (and the scripts beside it), and a module_pathname
# without $libdir lets dynamic_library_path find the library.
if [ "$PG_VERSION" -ge 18 ]; then
  sed -i "s|^module_pathname = .*|module_pathname = 'squadstack'|" "$work/tree/squadstack.control"
fi
make -s -C "$work/tree" PG_CONFIG="$PG_CONFIG" DESTDIR="$work/destdir" install >/dev/null
destlib="$work/destdir$($PG_CONFIG --pkglibdir)"
if [ "$PG_VERSION" -ge 18 ]; then
  extension_opt="extension_control_path=$work/destdir$($PG_CONFIG --sharedir):\$system"
else
  extension_opt="extension_destdir=$work/destdir"
fi

# the runtimes the build links against, for LD_PRELOAD
asan_lib=$(ldd "$so" | awk '$1 ~ /^libasan\.so/ { print $3 }')
ubsan_lib=$(ldd "$so" | awk '$1 ~ /^libubsan\.so/ { print $3 }')
if [ ! -f "$asan_lib" ] || [ ! -f "$ubsan_lib" ]; then
  echo "asan: cannot find the runtimes $so links against:"
  ldd "$so"
  exit 1
fi

# ASan's reports are written by the server's processes, which run as postgres
mkdir "$work/reports" "$work/probe"
chown postgres:postgres "$work/reports"

# see the top of this file
cat >"$work/probe/preload.c" <<'EOF'
#include <stddef.h>

char	   *swift_demangle(const char *name, size_t len, char *out,
						   size_t *outlen, unsigned flags);
const char *__ubsan_default_options(void);

char *
swift_demangle(const char *name, size_t len, char *out, size_t *outlen,
			   unsigned flags)
{
	return NULL;
}

const char *
__ubsan_default_options(void)
{
	return "print_stacktrace=1:halt_on_error=1";
}
EOF
gcc -O2 -fPIC -shared -o "$work/probe/preload.so" "$work/probe/preload.c"

# the probes: a library whose _PG_init does one deliberate wrong thing
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

# libasan must come first; preload.so before libubsan, so that its
# __ubsan_default_options() is the one libubsan finds
cat >"$work/environment" <<EOF
LD_PRELOAD = '$asan_lib $work/probe/preload.so $ubsan_lib'
ASAN_OPTIONS = 'detect_leaks=0:abort_on_error=0:halt_on_error=1:log_path=$work/reports/asan'
EOF

echo "== pg_regress against the API double, server with $(basename "$asan_lib") and $(basename "$ubsan_lib") preloaded"
suite=0
# TMPDIR puts pg_virtualenv's cluster under $work, where finish() finds it;
# the time limit keeps a server that hangs from hanging this script
TMPDIR="$work" PGPORT=$(free_port) timeout --foreground -k 20 300 \
  pg_virtualenv -v "$PG_VERSION" -t -c "--environment=$work/environment" \
  -o "listen_addresses=127.0.0.1 " -o "max_worker_processes=16" \
  -o "$extension_opt" \
  -o "dynamic_library_path=$destlib:$($PG_CONFIG --pkglibdir)" \
  bash "$self" --inside "$work" || suite=$?

reports=0
for f in "$work"/reports/*; do
  [ -s "$f" ] || continue
  reports=$((reports + 1))
  echo "== sanitizer report: $(basename "$f")"
  cat "$f"
done

if [ "$reports" -ne 0 ]; then
  echo "asan: $reports sanitizer report(s)"
elif [ "$suite" -ne 0 ]; then
  echo "asan: the suite failed (status $suite)"
else
  ok=1
fi
