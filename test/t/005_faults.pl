
# Trouble: the API unreachable for a while, a 401 that pauses the token
# until squadstack.token changes (by SIGHUP), a new api_url by SIGHUP, a
# slow call when the server is told to stop (SIGTERM) or the postmaster
# dies, and retention of old rows.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

use SquadstackDouble;

my $double = SquadstackDouble->new(tokens => [ 'test-token', 'token-2' ]);
my $node = $double->new_node(
	'main', conf => q{
squadstack.batch_size = 5
squadstack.max_attempts = 1000
squadstack.request_timeout = '60s'
});

sub outbox_count
{
	my ($campaign, $cond) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM squadstack.outbox WHERE campaign_id = '$campaign' AND $cond"
	);
}

# --- the API unreachable, then back

$double->stop;
queue_leads($node, 'camp_u', 'U', 1, 20);
ok( wait_for_sql(
		$node,
		"SELECT count(*) >= 8 FROM squadstack.api_calls WHERE campaign_id = 'camp_u' AND http_status IS NULL",
		't', 20),
	'unreachable API: the worker keeps trying');
is( $node->safe_psql(
		'postgres',
		"SELECT errors > 0, waiting_for IN ('a retry', 'nothing: delivering') FROM squadstack_worker_status()"
	),
	't|t',
	'the worker status shows errors and waits for a retry');
is(outbox_count('camp_u', "state IN ('sent', 'failed')"), '0', 'nothing is given up');
like(
	$node->safe_psql(
		'postgres',
		"SELECT error FROM squadstack.api_calls WHERE campaign_id = 'camp_u' AND error IS NOT NULL ORDER BY id DESC LIMIT 1"
	),
	qr/connect/i,
	'the failure is recorded');
$double->start;
ok(wait_for(sub { outbox_count('camp_u', "state = 'sent'") eq '20' }, 20),
	'the API back: everything is delivered');
my $u = count_by_lead(grep { $_->{status} == 201 } $double->requests(campaign => 'camp_u'));
is(scalar(grep { ($u->{$_} // 0) == 1 } lead_ids('U', 1, 20)),
	20, 'each lead reached the API once');
is( $node->safe_psql(
		'postgres', q{
SELECT bool_and(o.attempts >= 1),
       bool_and(o.attempts <= (SELECT count(*) FROM squadstack.api_calls c
                               WHERE c.campaign_id = 'camp_u' AND c.http_status IS NULL))
FROM squadstack.outbox o WHERE o.campaign_id = 'camp_u'}),
	't|t',
	'the failed attempts are counted');

# --- 401: the token is paused until it changes

$double->fault(
	{ kind => 'status', status => 401, campaign => 'camp_p', count => 1 });
queue_leads($node, 'camp_p', 'P', 1, 1);
ok( wait_for_sql(
		$node,
		"SELECT token_paused AND token_paused_until IS NULL AND token_pause_reason LIKE 'HTTP 401%' FROM squadstack.queue_status WHERE campaign_id = 'camp_p'",
		't', 10),
	'401: queue_status shows the token paused until it changes');
my $calls = scalar $double->requests;
queue_leads($node, 'camp_p', 'P', 2, 3);
queue_leads($node, 'camp_q', 'Q', 1, 2);
sleep 1.5;
is(scalar $double->requests, $calls, 'nothing is sent with the paused token');
is( $node->safe_psql(
		'postgres',
		"SELECT waiting_for FROM squadstack_worker_status()"),
	'a token to be changed',
	'the worker says it waits for a token to be changed');
is(outbox_count('camp_p', 'attempts > 0'), '0', 'a pause costs no attempt');
$node->safe_psql('postgres',
	"ALTER SYSTEM SET squadstack.token = 'token-2'; SELECT pg_reload_conf();");
ok( wait_for(
		sub {
			outbox_count('camp_p', "state = 'sent'") eq '3'
			  && outbox_count('camp_q', "state = 'sent'") eq '2';
		},
		10),
	'a new token set by ALTER SYSTEM and reload resumes delivery');
my @resumed = $double->requests(since => 0);
is( scalar(
		grep { $_->{authorization} ne 'Bearer token-2' }
		  @resumed[ $calls .. $#resumed ]),
	0,
	'with the new token');

# --- a new api_url by SIGHUP

my $other = SquadstackDouble->new(tokens => ['token-2']);
my $url = $other->url;
$node->safe_psql('postgres',
	"ALTER SYSTEM SET squadstack.api_url = '$url'; SELECT pg_reload_conf();");
sleep 0.5;
queue_leads($node, 'camp_url', 'L', 1, 1);
ok(wait_for(sub { scalar $other->requests(campaign => 'camp_url') }, 10),
	'a new api_url applies after a reload');
is(scalar $double->requests(campaign => 'camp_url'), 0,
	'the old URL gets nothing');
$other->stop;
$node->safe_psql('postgres',
	"ALTER SYSTEM RESET squadstack.api_url; SELECT pg_reload_conf();");
sleep 0.5;

# --- SIGTERM (pg_ctl stop -m fast) during a slow call

$double->fault(
	{ kind => 'delay', seconds => 30, campaign => 'camp_t', count => 1 });
queue_leads($node, 'camp_t', 'T', 1, 1);
ok(wait_for(sub { outbox_count('camp_t', "state = 'sending'") eq '1' }, 10),
	'a slow call is in progress');
my $t0 = time();
$node->stop('fast');
my $took = time() - $t0;
note sprintf('pg_ctl stop -m fast took %.2f s', $took);
cmp_ok($took, '<', 5, 'pg_ctl stop -m fast does not wait for the slow call');
$node->start;
ok(wait_for(sub { outbox_count('camp_t', "state = 'sent'") eq '1' }, 10),
	'after the restart the lead is sent again');
is(outbox_count('camp_t', 'batch_limit = 1'), '1', '... as a call in flight');

# --- postmaster death during a slow call

$double->fault(
	{ kind => 'delay', seconds => 30, campaign => 'camp_d', count => 1 });
queue_leads($node, 'camp_d', 'D', 1, 50);
ok(wait_for(sub { outbox_count('camp_d', "state = 'sending'") eq '5' }, 10),
	'a slow call is in progress');
my $worker = worker_pid($node);
my @children = split /\n/,
  $node->safe_psql('postgres',
	'SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid()');
my $t_kill = time();
$node->kill9;
my $exited = wait_for(sub { !kill(0, $worker) }, 10);
ok($exited, 'the worker exits when the postmaster dies');
note sprintf('the worker exited %.2f s after the postmaster died',
	time() - $t_kill);
kill 'KILL', $worker unless $exited;
# the other children go too; then the server can start again
wait_for(sub { !grep { kill 0, $_ } @children }, 10);
my $t_restart = time();
$node->start;
ok(wait_for(sub { outbox_count('camp_d', "state = 'sent'") eq '50' }, 20),
	'after the restart every lead is sent');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM squadstack.api_calls WHERE campaign_id = 'camp_d' AND started_at BETWEEN to_timestamp($t_kill) AND to_timestamp($t_restart)"
	),
	'0',
	'no call was started after the postmaster died');
is(outbox_count('camp_d', 'attempts > 0'), '0',
	'no attempt was used up by the shutdown');
is(outbox_count('camp_d', 'batch_limit = 1'), '5',
	'the call in flight is re-sent lead by lead');

# --- retention: old sent rows and old calls go, the rest stays

$double->fault(
	{ kind => 'status', status => 400, campaign => 'camp_old_failed', count => 1 });
queue_leads($node, 'camp_old_failed', 'OF', 1, 1);
ok(wait_for(sub { outbox_count('camp_old_failed', "state = 'failed'") eq '1' }, 10),
	'a failed operation');
$node->safe_psql(
	'postgres', q{
UPDATE squadstack.outbox SET created_at = now() - interval '8 days', sent_at = now() - interval '8 days'
WHERE campaign_id IN ('camp_u', 'camp_p');
UPDATE squadstack.outbox SET created_at = now() - interval '8 days', next_attempt_at = now() - interval '8 days'
WHERE campaign_id = 'camp_old_failed';
UPDATE squadstack.api_calls SET started_at = now() - interval '8 days'
WHERE campaign_id IN ('camp_u', 'camp_p', 'camp_old_failed');});
my $keep = $node->safe_psql('postgres',
	"SELECT count(*) FROM squadstack.outbox WHERE campaign_id NOT IN ('camp_u', 'camp_p')"
);
my $keep_calls = $node->safe_psql('postgres',
	"SELECT count(*) FROM squadstack.api_calls WHERE campaign_id NOT IN ('camp_u', 'camp_p', 'camp_old_failed')"
);
$node->restart;
ok( wait_for_sql(
		$node,
		"SELECT count(*) FROM squadstack.outbox WHERE campaign_id IN ('camp_u', 'camp_p')",
		'0', 20),
	'retention deletes sent operations older than squadstack.retention');
ok( wait_for_sql(
		$node,
		"SELECT count(*) FROM squadstack.api_calls WHERE started_at < now() - interval '7 days'",
		'0', 20),
	'and old api_calls rows');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM squadstack.outbox WHERE campaign_id NOT IN ('camp_u', 'camp_p')"
	),
	$keep,
	'recent operations and an old failed one are kept');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM squadstack.api_calls WHERE campaign_id NOT IN ('camp_u', 'camp_p', 'camp_old_failed')"
	),
	$keep_calls,
	'recent api_calls rows are kept');
my ($rc, $out, $err) = $node->psql('postgres',
	"ALTER SYSTEM SET squadstack.retention = '30min'");
like($err, qr/30 min|outside the valid range/,
	'a retention under one hour is refused');

done_testing();
