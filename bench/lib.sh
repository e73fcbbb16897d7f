# bench/lib.sh: what the bench scripts share (sourced, not run).
#
# The PostgreSQL installation is the one PG_CONFIG names (default: the
# pg_config on PATH); BENCH_PGBIN, if set, names its bin directory instead
# (PG_CONFIG then defaults to BENCH_PGBIN/pg_config).  A relocated copy of
# an installation works: its pg_config reports its own directories.
#
# A script calls bench_init NAME first: it checks that it runs as root,
# makes a scratch directory $work owned by the postgres user and sets a
# trap that stops whatever was started here (the cluster, the API double,
# background samplers) and removes $work on every way out.

bench_init() {
	bench_name=$1
	if [ "$(id -u)" -ne 0 ]; then
		echo "bench/$bench_name: run as root (the cluster runs as user postgres)" >&2
		exit 2
	fi
	if [ -n "${BENCH_PGBIN:-}" ]; then
		PG_CONFIG=${PG_CONFIG:-$BENCH_PGBIN/pg_config}
	fi
	PG_CONFIG=${PG_CONFIG:-pg_config}
	if ! pgbin=$("$PG_CONFIG" --bindir 2>/dev/null); then
		echo "bench/$bench_name: cannot run $PG_CONFIG (set PG_CONFIG)" >&2
		exit 2
	fi
	pgshare=$("$PG_CONFIG" --sharedir)
	pgpkglib=$("$PG_CONFIG" --pkglibdir)
	# .../pgxs/src/makefiles/pgxs.mk -> .../pgxs
	pgxs=$(dirname "$(dirname "$(dirname "$("$PG_CONFIG" --pgxs)")")")
	pgversion=$("$PG_CONFIG" --version)
	export PATH="$pgbin:$PATH"
	export PGOPTIONS="-c client_min_messages=warning"
	if [ ! -f "$pgshare/extension/squadstack.control" ] || [ ! -f "$pgpkglib/squadstack.so" ]; then
		echo "bench/$bench_name: squadstack is not installed in $pgshare and $pgpkglib; run make install" >&2
		exit 2
	fi

	repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
	work=$(mktemp -d "/tmp/squadstack-$bench_name-XXXXXX")
	chown postgres "$work"
	chmod 700 "$work"
	cluster_started=
	double_pid=
	bench_pids=()
	trap bench_cleanup EXIT
	trap 'exit 130' INT TERM
}

bench_cleanup() {
	local rc=$? pid i
	for pid in "${bench_pids[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	if [ -n "$cluster_started" ]; then
		runuser -u postgres -- "$pgbin/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
	fi
	if [ -n "$double_pid" ]; then
		kill "$double_pid" 2>/dev/null || true
		for i in $(seq 50); do
			kill -0 "$double_pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "$double_pid" 2>/dev/null || true
	fi
	if [ $rc -ne 0 ] && [ -f "$work/server.log" ] && [ -z "${BENCH_QUIET_FAILURE:-}" ]; then
		echo "bench/$bench_name: failed ($rc); the server log ends:" >&2
		tail -n 20 "$work/server.log" >&2 || true
	fi
	rm -rf "$work"
	exit $rc
}

as_pg() { runuser -u postgres -- "$@"; }
sql() { as_pg "$pgbin/psql" -X -q -v ON_ERROR_STOP=1 -h "$work" -d postgres "$@"; }
sql_value() { as_pg "$pgbin/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$work" -d postgres -c "$1"; }

# bench_start_double LIMIT WINDOW_SECONDS: the API double on 127.0.0.1 at a
# free port ($double_port), requests logged to $work/requests.jsonl; it
# exits by itself when this script is gone
bench_start_double() {
	local i
	python3 "$repo/test/api_double.py" --port 0 --port-file "$work/double.port" \
		--log "$work/requests.jsonl" --token bench-token \
		--rate-limit "$1" --rate-window "$2" \
		--parent-pid $$ --max-lifetime 3600 >"$work/double.out" 2>&1 &
	double_pid=$!
	for i in $(seq 150); do
		[ -s "$work/double.port" ] && break
		kill -0 "$double_pid" 2>/dev/null || { cat "$work/double.out" >&2; return 1; }
		sleep 0.1
	done
	double_port=$(cat "$work/double.port")
	double_ctl wait-ready --timeout 10
}

double_ctl() { python3 "$repo/test/double_ctl.py" --port "$double_port" "$@"; }

# bench_start_cluster [CONF]: a throw-away cluster in $work/data with
# default durability (fsync and synchronous_commit on), listening on a
# socket in $work only, the extension created in database postgres; once
# the double runs, with the library preloaded and the worker delivering
# database postgres to the double.  CONF is appended to postgresql.conf.
bench_start_cluster() {
	as_pg "$pgbin/initdb" -D "$work/data" -A trust -U postgres >/dev/null
	cat >>"$work/data/postgresql.conf" <<EOF
listen_addresses = ''
unix_socket_directories = '$work'
max_connections = 50
EOF
	if [ -n "${double_port:-}" ]; then
		cat >>"$work/data/postgresql.conf" <<EOF
shared_preload_libraries = 'squadstack'
squadstack.database_name = 'postgres'
squadstack.api_url = 'http://127.0.0.1:$double_port/api/v4'
squadstack.token = 'bench-token'
EOF
	fi
	echo "${1:-}" >>"$work/data/postgresql.conf"
	cluster_started=1
	as_pg "$pgbin/pg_ctl" -D "$work/data" -l "$work/server.log" -w start >/dev/null
	sql -c 'CREATE EXTENSION squadstack'
}

# the worker's pid, waiting for it up to 20 s
bench_worker_pid() {
	local i pid
	for i in $(seq 100); do
		pid=$(sql_value "SELECT pid FROM pg_stat_activity WHERE backend_type = 'squadstack worker'")
		if [ -n "$pid" ]; then
			echo "$pid"
			return 0
		fi
		sleep 0.2
	done
	echo "bench/$bench_name: the worker did not start" >&2
	return 1
}

# utime + stime of a process, in clock ticks
proc_ticks() {
	local stat
	if ! stat=$(cat "/proc/$1/stat" 2>/dev/null); then
		echo "bench/$bench_name: process $1 is gone" >&2
		return 1
	fi
	echo "$stat" | sed 's/.*) //' | awk '{print $12 + $13}'
}
clk_tck=$(getconf CLK_TCK)

# bench_wait_sql SQL SECONDS: until SQL returns t, at most SECONDS
bench_wait_sql() {
	local deadline=$((SECONDS + $2))
	while [ "$(sql_value "$1")" != t ]; do
		[ $SECONDS -lt $deadline ] || return 1
		sleep 0.2
	done
}

median() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
