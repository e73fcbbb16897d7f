#!/bin/bash
# Sourced by the test scripts: which PostgreSQL they build and test against.
#
# One variable chooses it: PG_CONFIG, if set, names the pg_config of the
# installation to use; otherwise PG_VERSION (a major version: 15, 17, 18)
# names a Debian installation under /usr/lib/postgresql; otherwise the
# version this Debian release ships is used.  use_pg_version sets and
# exports PG_VERSION, PG_CONFIG and PG_BINDIR accordingly.

# The Debian suite that ships PostgreSQL VERSION as its default.  16 has no
# Debian release of its own: it is kept compiling, not tested.
pg_suite() {
  case $1 in
    15) echo bookworm ;;
    17) echo trixie ;;
    18) echo sid ;;
    *) echo "no Debian suite ships PostgreSQL $1 (tested: 15 17 18)" >&2; return 1 ;;
  esac
}

# This machine's suite: sid calls itself by the next release's name in
# os-release, so /etc/debian_version tells it apart.
this_suite() {
  if grep -q '/sid' /etc/debian_version 2>/dev/null; then
    echo sid
  else
    (. /etc/os-release && echo "${VERSION_CODENAME:-unknown}")
  fi
}

# The PostgreSQL version this machine's Debian release ships.
native_pg_version() {
  local v suite
  suite=$(this_suite)
  for v in 15 17 18; do
    [ "$(pg_suite "$v")" = "$suite" ] && { echo "$v"; return 0; }
  done
  echo "this machine's release ($suite) ships none of PostgreSQL 15, 17, 18" >&2
  return 1
}

use_pg_version() {
  if [ -n "${PG_CONFIG:-}" ] && command -v "$PG_CONFIG" >/dev/null; then
    PG_VERSION=$("$PG_CONFIG" --version | sed -n 's/^PostgreSQL \([0-9]*\).*/\1/p')
  elif [ -n "${PG_CONFIG:-}" ] && [ -z "${PG_VERSION:-}" ]; then
    echo "PG_CONFIG=$PG_CONFIG: no such program" >&2
    return 1
  else
    # PG_CONFIG may name a pg_config that test/setup.sh has yet to
    # install: PG_VERSION says which
    PG_VERSION=${PG_VERSION:-$(native_pg_version)}
    PG_CONFIG=/usr/lib/postgresql/$PG_VERSION/bin/pg_config
  fi
  PG_BINDIR=/usr/lib/postgresql/$PG_VERSION/bin
  if command -v "$PG_CONFIG" >/dev/null; then PG_BINDIR=$("$PG_CONFIG" --bindir); fi
  export PG_VERSION PG_CONFIG PG_BINDIR
}

# A free TCP port on 127.0.0.1 for a throw-away cluster: pg_virtualenv
# would take 5432 when it sees no other cluster, but a server outside its
# view (on the machine, or outside a root) may hold that port.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
