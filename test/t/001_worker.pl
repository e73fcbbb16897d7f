
# The background worker: starts with the server, waits quietly for CREATE
# EXTENSION, reports itself, sleeps without polling, sends a lead within
# milliseconds of the commit that queued it, and comes back after a restart.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

use SquadstackDouble;

my $double = SquadstackDouble->new;
my $node = $double->new_node('main', no_extension => 1);

# --- before CREATE EXTENSION: running, connected, waiting quietly

ok(wait_for(sub { worker_pid($node) ne '' }, 20),
	'the worker starts with the server');
my $pid = worker_pid($node);
is( $node->safe_psql(
		'postgres',
		"SELECT datname, state, wait_event_type, wait_event, query FROM pg_stat_activity WHERE pid = $pid"
	),
	'postgres|idle|Extension|Extension|waiting for CREATE EXTENSION squadstack',
	'before CREATE EXTENSION it is connected to the database and waits');

my $log_start = -s $node->logfile;
sleep 3;
is(worker_pid($node), $pid, 'it keeps running (no restarts) while it waits');
my $log = substr(slurp_file($node->logfile), $log_start);
my @noise = grep { /squadstack|\[$pid\]/i && !/statement: / } split /\n/, $log;
is(scalar(@noise), 0, 'it logs nothing while it waits')
  or diag(join("\n", @noise));

# --- CREATE EXTENSION: the first lead queued is sent at once

$node->safe_psql('postgres', 'CREATE EXTENSION squadstack');
my $t0 = time();
queue_leads($node, 'camp_first', 'F', 1, 1);
ok(wait_for(sub { scalar $double->requests(campaign => 'camp_first') }, 3),
	'a lead queued after CREATE EXTENSION is sent without waiting for a poll');
my ($first) = $double->requests(campaign => 'camp_first');
is($first->{status}, 201, 'the double accepted it');
note sprintf('first lead after CREATE EXTENSION arrived after %.3f s',
	$first->{received_at} - $t0);
ok( wait_for_sql(
		$node,
		"SELECT count(*) FROM squadstack.outbox WHERE state = 'sent'", '1', 5),
	'its operation is marked sent');

# --- squadstack_worker_status()

ok( wait_for_sql(
		$node,
		"SELECT waiting_for FROM squadstack_worker_status()", 'work', 5),
	'the idle worker waits for work');
is( $node->safe_psql(
		'postgres', qq{
SELECT s.running, s.pid = a.pid, s.database, s.waiting_for, s.wait_until IS NULL,
       s.calls, s.errors, abs(extract(epoch from s.started_at - a.backend_start)) < 1
FROM squadstack_worker_status() s
JOIN pg_stat_activity a ON a.backend_type = 'squadstack worker'}),
	't|t|postgres|work|t|1|0|t',
	'squadstack_worker_status(): running, pid, database, waiting_for, wait_until, calls, errors, started_at'
);

# --- idle means asleep: no transactions, no activity updates

my $activity =
  "SELECT state_change FROM pg_stat_activity WHERE backend_type = 'squadstack worker'";
my $before = $node->safe_psql('postgres', $activity);
sleep 2;
is($node->safe_psql('postgres', $activity),
	$before, 'an idle worker does not wake up by itself (no polling)');

# --- wake-up at commit: commit-to-API latency of single leads

my @latency;
my @upper;
for my $i (1 .. 15)
{
	my $out = $node->safe_psql(
		'postgres', qq{
BEGIN;
SELECT squadstack_create_leads('camp_lat', '{"lead_id": "LAT$i", "phone_number": "9876500000", "contact_name": "Latency"}');
SELECT extract(epoch from clock_timestamp());
COMMIT;
SELECT extract(epoch from clock_timestamp());});
	my (undef, $before_commit, $after_commit) = split /\n/, $out;
	my $r;
	wait_for(
		sub {
			($r) = grep { $_->{lead_ids}[0] eq "LAT$i" }
			  $double->requests(campaign => 'camp_lat');
			return $r;
		},
		5);
	if (!$r)
	{
		fail("lead LAT$i was not sent within 5 s");
		next;
	}
	# before the commit is an upper bound, after it a lower one
	push @upper, $r->{received_at} - $before_commit;
	push @latency, $r->{received_at} - $after_commit;
	sleep 0.1;
}
my @sorted = sort { $a <=> $b } @upper;
my $median = $sorted[ int(@sorted / 2) ];
note sprintf('commit-to-API latency (upper bound), ms: %s',
	join(' ', map { sprintf '%.1f', 1000 * $_ } @upper));
note sprintf('after-commit-to-API, ms: %s',
	join(' ', map { sprintf '%.1f', 1000 * $_ } @latency));
is(scalar(@upper), 15, 'every lead was sent');
cmp_ok($sorted[-1], '<', 0.5, 'every lead arrived well within any polling period');
cmp_ok($median, '<', 0.1, 'median commit-to-API latency under 100 ms');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM squadstack.outbox WHERE campaign_id = 'camp_lat' AND state = 'sent'"
	),
	'15',
	'all marked sent');

# --- an aborted transaction queues nothing and sends nothing

$node->safe_psql('postgres',
	'BEGIN; ' . queue_leads($node, 'camp_abort', 'AB', 1, 3, 1) . '; ROLLBACK;');
sleep 0.5;
is(scalar($double->requests(campaign => 'camp_abort')), 0,
	'nothing of a rolled back transaction is sent');

# --- stop and start: a new worker, same behaviour

$node->stop('fast');
$node->start;
ok(wait_for(sub { my $p = worker_pid($node); $p ne '' && $p ne $pid }, 20),
	'after a restart a new worker runs');
ok( wait_for_sql(
		$node,
		"SELECT running AND calls = 0 AND waiting_for = 'work' FROM squadstack_worker_status()",
		't', 10),
	'its counters start from zero');
queue_leads($node, 'camp_after', 'AF', 1, 2);
ok( wait_for(sub { scalar $double->requests(campaign => 'camp_after') }, 3),
	'it delivers after the restart');
is(scalar(grep { $_->{status} != 201 } $double->requests), 0,
	'the double answered every call with 201');
unlike(slurp_file($node->logfile), qr/invalid configuration parameter name "squadstack/,
	'the server accepted every squadstack setting');

# --- squadstack.database_name: the worker delivers from the database named

my $app = $double->new_node(
	'appdb',
	no_extension => 1,
	conf => "squadstack.database_name = 'appdb'\n");
$app->safe_psql('postgres', 'CREATE DATABASE appdb');
$app->safe_psql('appdb', 'CREATE EXTENSION squadstack');
my $worker_db =
  "SELECT datname FROM pg_stat_activity WHERE backend_type = 'squadstack worker'";
ok(wait_for(sub { $app->safe_psql('postgres', $worker_db) eq 'appdb' }, 15),
	'the worker connects to the database squadstack.database_name names')
  or diag('it is connected to: ' . $app->safe_psql('postgres', $worker_db));
$app->safe_psql('appdb', queue_leads($app, 'camp_appdb', 'APP', 1, 1, 1));
ok( wait_for(sub { scalar $double->requests(campaign => 'camp_appdb') }, 5),
	'and delivers from there');
is($app->safe_psql('appdb', 'SELECT database FROM squadstack_worker_status()'),
	'appdb', 'squadstack_worker_status() names it');
unlike(slurp_file($app->logfile), qr/invalid configuration parameter name "squadstack/,
	'the server accepted squadstack.database_name');

done_testing();
