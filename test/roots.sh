#!/bin/bash
# Debian roots for the PostgreSQL versions this machine's release does not
# ship.  Sourced by test/run.sh and test/package.sh; as a command:
#
#   bash test/roots.sh suite VERSION    the Debian suite that ships VERSION
#   bash test/roots.sh root SUITE       path of the cached test root for SUITE
#                                       (made when missing)
#   bash test/roots.sh shell SUITE      a shell in that root
#   bash test/roots.sh prepare [--minbase] VERSION...
#                                       makes the test roots of those
#                                       versions that are tested in a root
#                                       and installs their packages
#                                       (test/setup.sh --packages-only);
#                                       --minbase: also the minbase
#                                       tarballs of the other versions
#
# Everything is cached under $SQUADSTACK_CACHE (default
# /var/cache/squadstack):
#   minbase/SUITE.vN.tar  a pristine debootstrap --variant=minbase of SUITE,
#                       unpacked for every fresh root (a package install test
#                       wants a root without build tools, and unpacking is
#                       far cheaper than running debootstrap again)
#   roots/SUITE.vN/     a root made from it once, in which the test suite
#                       installs its build and test dependencies; kept
#                       between runs, made again when missing
# Both are made again when missing or incomplete (a stamp is written last).
# The mirror is the one this machine's apt uses.

SQUADSTACK_CACHE=${SQUADSTACK_CACHE:-/var/cache/squadstack}
# changed whenever what a root is made of changes; the cache names carry it,
# so that runs of older and newer checkouts on one machine do not undo each
# other's roots
ROOTS_FORMAT=3

. "$(dirname "${BASH_SOURCE[0]}")/pgversion.sh"

debian_mirror() {
  local m
  m=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null)
  [ -n "$m" ] || m=$(awk '/^deb / { print $2; exit }' /etc/apt/sources.list 2>/dev/null)
  echo "${m:-http://deb.debian.org/debian}"
}

# The security mirror beside it (the URIs of a -security suite).
security_mirror() {
  local m
  m=$(awk '/^URIs:/ { uri = $2 } /^Suites:.*-security/ { print uri; exit }' \
    /etc/apt/sources.list.d/debian.sources 2>/dev/null)
  echo "${m:-$(dirname "$(debian_mirror)")/debian-security}"
}

# apt's sources for a root of SUITE: this machine's own for its own suite;
# a release's updates and security suites too, as a server of it has them
# (packages built there may depend on their versions); unstable alone.
root_sources() {
  local suite=$1 mirror
  if [ "$suite" = "$(this_suite)" ] && [ -f /etc/apt/sources.list.d/debian.sources ]; then
    cat /etc/apt/sources.list.d/debian.sources
    return
  fi
  mirror=$(debian_mirror)
  if [ "$suite" = sid ]; then
    printf 'Types: deb\nURIs: %s\nSuites: sid\nComponents: main\nSigned-By: %s\n' \
      "$mirror" /usr/share/keyrings/debian-archive-keyring.gpg
  else
    printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\nSigned-By: %s\n\n' \
      "$mirror" "$suite" "$suite" /usr/share/keyrings/debian-archive-keyring.gpg
    printf 'Types: deb\nURIs: %s\nSuites: %s-security\nComponents: main\nSigned-By: %s\n' \
      "$(security_mirror)" "$suite" /usr/share/keyrings/debian-archive-keyring.gpg
  fi
}

# The cached minbase tarball of SUITE (made when missing); prints its path.
minbase_tarball() {
  local suite=$1 dir="$SQUADSTACK_CACHE/minbase"
  local tarball="$dir/$suite.v$ROOTS_FORMAT.tar"
  mkdir -p "$dir"
  (
    flock 9
    [ -s "$tarball" ] && exit 0
    if ! command -v debootstrap >/dev/null; then
      echo "== installing debootstrap" >&2
      apt-get -o Acquire::Check-Valid-Until=false update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    fi
    local tmp mirror
    # what a run stopped half-way left behind
    find "$dir" -maxdepth 1 -type d -name "$suite.??????" -exec rm -rf --one-file-system {} +
    tmp=$(mktemp -d "$dir/$suite.XXXXXX")
    trap 'rm -rf --one-file-system "$tmp"' EXIT
    trap 'exit 143' TERM
    trap 'exit 130' INT
    trap 'exit 129' HUP
    mirror=$(debian_mirror)
    echo "== debootstrap --variant=minbase $suite ($mirror)" >&2
    if ! debootstrap --variant=minbase "$suite" "$tmp/root" "$mirror" >"$tmp/log" 2>&1; then
      tail -n 30 "$tmp/log" >&2
      exit 1
    fi
    rm -f "$tmp/root/etc/apt/sources.list"
    root_sources "$suite" >"$tmp/root/etc/apt/sources.list.d/debian.sources"
    # debootstrap's package lists are of the main suite alone: a root
    # starts without lists, so that apt-get update reads all its suites
    find "$tmp/root/var/lib/apt/lists" -maxdepth 1 -type f ! -name lock -delete
    # a mirror's copy of sid can be older than its Release file's
    # Valid-Until; no recommends, as in test/setup.sh
    cat >"$tmp/root/etc/apt/apt.conf.d/90squadstack" <<'EOF'
Acquire::Check-Valid-Until "false";
APT::Install-Recommends "false";
EOF
    # no service starts inside a root (the tests start their own servers)
    printf '#!/bin/sh\nexit 101\n' >"$tmp/root/usr/sbin/policy-rc.d"
    chmod 755 "$tmp/root/usr/sbin/policy-rc.d"
    mkdir -p "$tmp/root/etc/postgresql-common/createcluster.d"
    echo "create_main_cluster = false" >"$tmp/root/etc/postgresql-common/createcluster.d/squadstack-no-main.conf"
    tar -C "$tmp/root" --numeric-owner -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
  ) 9>"$dir/$suite.lock" || return 1
  echo "$tarball"
}

# Refuses to go on while anything is mounted below ROOT.
no_mounts_below() {
  local root
  root=$(realpath -m "$1")
  if awk -v r="$root/" 'index($2 "/", r) == 1 { found = 1 } END { exit !found }' /proc/self/mounts; then
    echo "roots: something is still mounted below $root" >&2
    return 1
  fi
}

# Makes DIR a fresh root of SUITE (DIR must not exist or be empty).
unpack_root() {
  local suite=$1 dir=$2 tarball
  tarball=$(minbase_tarball "$suite") || return 1
  mkdir -p "$dir"
  chmod 755 "$dir"
  tar -C "$dir" --numeric-owner -xf "$tarball"
}

remove_root() {
  local dir=$1
  [ -d "$dir" ] || return 0
  no_mounts_below "$dir" || return 1
  rm -rf --one-file-system "$dir"
}

# The cached test root of SUITE (made when missing); prints its path.
test_root() {
  local suite=$1 root
  root="$SQUADSTACK_CACHE/roots/$suite.v$ROOTS_FORMAT"
  mkdir -p "$SQUADSTACK_CACHE/roots"
  (
    flock 9
    [ "$(cat "$root/.squadstack-root" 2>/dev/null)" = "$ROOTS_FORMAT" ] && exit 0
    remove_root "$root" || exit 1
    echo "== making the $suite test root" >&2
    unpack_root "$suite" "$root" || exit 1
    echo "$ROOTS_FORMAT" >"$root/.squadstack-root"
  ) 9>"$root.create-lock" || return 1
  echo "$root"
}

# Runs a command in ROOT with /proc, /sys, /dev, /dev/pts and /dev/shm bound
# from this machine, as root with a clean environment; VAR=value arguments
# before the command are passed into it.  Whatever was started in the root
# is stopped and everything is unmounted afterwards, whatever happens.  One
# user of a root at a time.
in_root() {
  local root
  root=$(realpath "$1")
  shift
  (
    mounted=()
    leave_root() {
      local p m i
      set +e
      # processes left behind in the root (a test killed half-way)
      for p in /proc/[0-9]*; do
        [ "$(readlink "$p/root" 2>/dev/null)" = "$root" ] && kill -KILL "${p#/proc/}" 2>/dev/null
      done
      for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
        m=${mounted[$i]}
        umount "$root/$m" 2>/dev/null || umount -l "$root/$m"
      done
    }
    trap leave_root EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP
    exec 9>"$root.lock"
    flock 9
    for m in proc sys dev dev/pts dev/shm; do
      [ -d "/$m" ] || continue
      mkdir -p "$root/$m"
      mountpoint -q "$root/$m" && { echo "roots: $root/$m is already mounted" >&2; exit 1; }
      mount --bind "/$m" "$root/$m"
      mounted+=("$m")
    done
    cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
    chroot "$root" /usr/bin/env -i \
      PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" DEBIAN_FRONTEND=noninteractive \
      "$@"
  )
}

# Whether PostgreSQL VERSION is tested in a root: when this machine's
# suite does not ship it, or SQUADSTACK_IN_ROOTS=1.
in_a_root() {
  [ "$(pg_suite "$1" 2>/dev/null)" != "$(this_suite)" ] || [ "${SQUADSTACK_IN_ROOTS:-0}" = 1 ]
}

prepare_roots() {
  local v suite root minbase=0 status=0
  if [ "${1:-}" = --minbase ]; then minbase=1; shift; fi
  for v in "$@"; do
    suite=$(pg_suite "$v") || continue
    if in_a_root "$v"; then
      root=$(test_root "$suite") || { status=1; continue; }
      rm -rf "$root/squadstack-setup"
      mkdir -p "$root/squadstack-setup/test"
      cp "$(dirname "${BASH_SOURCE[0]}")"/{setup.sh,pgversion.sh} "$root/squadstack-setup/test/"
      in_root "$root" PG_VERSION="$v" bash /squadstack-setup/test/setup.sh --packages-only || status=1
    elif [ "$minbase" = 1 ]; then
      minbase_tarball "$suite" >/dev/null || status=1
    fi
  done
  return $status
}

# Copies the working tree (without build products and git) to DIR.
copy_tree() {
  local dir=$1
  rm -rf --one-file-system "$dir"
  mkdir -p "$dir"
  tar -C "$(dirname "${BASH_SOURCE[0]}")/.." --exclude=./.git --exclude='*.o' --exclude='*.so' \
    --exclude='*.bc' --exclude=./results --exclude=./tmp_check --exclude=./log \
    --exclude=./regression.diffs --exclude=./regression.out --exclude=./test/unit/test_units \
    -cf - . | tar -C "$dir" -xf -
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  case ${1:-} in
    suite) pg_suite "$2" ;;
    root) test_root "$2" ;;
    prepare) shift; prepare_roots "$@" ;;
    shell)
      r=$(test_root "$2")
      in_root "$r" /bin/bash
      ;;
    *) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
  esac
fi
