
# A poison campaign does not stop the worker or the other campaigns.
# (a) Operations too large for one request (queued by a superuser who raised
#     squadstack.max_lead_bytes, or inserted into the outbox directly) are
#     marked failed without a call.
# (b) A campaign whose answers cannot be recorded (a superuser's trigger on
#     the outbox refuses it) is recorded as failing, backed off, and the
#     other campaigns go on.
# Either way the worker keeps running (same pid, no restart in the log) and
# another campaign's leads are delivered within one rate window.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

use SquadstackDouble;

my $window = 2;
my $double = SquadstackDouble->new;
my $node = $double->new_node(
	'main', conf => qq{
squadstack.batch_size = 10
squadstack.rate_limit = 20
squadstack.rate_window = '${window}s'
squadstack.max_request_bytes = '100kB'
squadstack.max_attempts = 1000
});

my $worker = worker_pid($node);
ok($worker, 'the worker runs');
my $log_start = log_position($node);

sub count
{
	my ($sql) = @_;
	return $node->safe_psql('postgres', "SELECT count(*) FROM $sql");
}

# Queue $n leads of $campaign and wait until they are all sent; returns the
# seconds it took from the commit.
sub deliver_other
{
	my ($campaign, $prefix, $n) = @_;
	queue_leads($node, $campaign, $prefix, 1, $n);
	my $t0 = time();
	wait_for(
		sub {
			count("squadstack.outbox WHERE campaign_id = '$campaign' AND state = 'sent'")
			  == $n;
		},
		$window + 8);
	return time() - $t0;
}

# --- (a) payloads larger than squadstack.max_request_bytes

# 150 kB each: allowed at queueing by the session's own limit, more than
# one request may carry
$node->safe_psql(
	'postgres', q{
SET squadstack.max_lead_bytes = '1MB';
SELECT squadstack_create_leads('camp_big',
  (SELECT jsonb_agg(jsonb_build_object('lead_id', 'BIG' || i,
     'phone_number', (9100000000 + i)::text, 'contact_name', 'Big ' || i,
     'notes', repeat('x', 150000)) ORDER BY i)
   FROM generate_series(1, 5) i));
});
# 2 MB each, past every limit, inserted directly
$node->safe_psql(
	'postgres', q{
INSERT INTO squadstack.outbox (campaign_id, lead_id, op, payload)
SELECT 'camp_big', 'HUGE' || i, 'create',
       jsonb_build_object('lead_id', 'HUGE' || i, 'phone_number', (9200000000 + i)::text,
                          'contact_name', 'Huge ' || i, 'notes', repeat('y', 2000000))
FROM generate_series(1, 3) i;
});

my $took = deliver_other('camp_ok', 'OK', 5);
note sprintf('camp_ok delivered %.2f s after queueing, next to oversized operations', $took);
cmp_ok($took, '<=', $window + 1,
	'oversized operations: another campaign is delivered within one rate window');
ok( wait_for_sql(
		$node,
		"SELECT count(*) FROM squadstack.outbox WHERE campaign_id = 'camp_big' AND state = 'failed'",
		'8', 10),
	'every oversized operation ends failed');
is( count(
		q{squadstack.outbox WHERE campaign_id = 'camp_big'
  AND error ~ '^the operation has \d+ bytes as JSON, more than squadstack\.max_request_bytes \(102400\): not sent$'}
	),
	'8',
	'... with an error naming squadstack.max_request_bytes');
is(scalar $double->requests(campaign => 'camp_big'),
	0, 'no oversized operation reached the API');
is(count("squadstack.api_calls WHERE campaign_id = 'camp_big'"),
	'0', 'no call was made for them');
is(worker_pid($node), $worker, 'the worker is the same process');

# --- (b) a campaign whose answers cannot be recorded

$node->safe_psql(
	'postgres', q{
CREATE FUNCTION public.refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.campaign_id = 'camp_poison' AND OLD.state = 'sending'
     AND NEW.state IN ('sent', 'failed') THEN
    RAISE EXCEPTION 'test trigger refuses to record camp_poison';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER refuse_poison BEFORE UPDATE ON squadstack.outbox
FOR EACH ROW EXECUTE FUNCTION public.refuse_poison();
});
# the API accepts every call but keeps nothing, so every attempt is answered
# the same way and fails in the same place
$double->fault(
	{
		kind => 'status',
		status => 201,
		body => { created => 1 },
		campaign => 'camp_poison'
	});
queue_leads($node, 'camp_poison', 'P', 1, 5);

ok( wait_for_sql(
		$node,
		"SELECT count(*) > 0 FROM squadstack.api_calls WHERE campaign_id = 'camp_poison' AND error LIKE '%test trigger refuses to record camp_poison%'",
		't', 15),
	'poison: the error is recorded on the call');
ok( wait_for_sql(
		$node,
		"SELECT count(*) FROM squadstack.outbox WHERE campaign_id = 'camp_poison' AND attempts >= 1 AND error LIKE '%test trigger refuses to record camp_poison%'",
		'5', 10),
	'poison: ... and on the operations, with an attempt counted');
is( count(
		"squadstack.outbox WHERE campaign_id = 'camp_poison' AND state IN ('sent', 'failed')"),
	'0',
	'poison: nothing is recorded as done');
ok( wait_for_sql(
		$node,
		q{SELECT failures >= 1 AND backoff_until IS NOT NULL
  AND last_error LIKE '%test trigger refuses to record camp_poison%'
FROM squadstack.campaign_state WHERE campaign_id = 'camp_poison'},
		't', 10),
	'poison: the campaign is backed off in squadstack.campaign_state');

my @poison_calls = $double->requests(campaign => 'camp_poison');
cmp_ok(scalar @poison_calls, '>=', 1, 'poison: its calls reach the API');

$took = deliver_other('camp_ok2', 'OK2_', 5);
note sprintf('camp_ok2 delivered %.2f s after queueing, next to the poison campaign', $took);
cmp_ok($took, '<=', $window + 1,
	'poison: another campaign is delivered within one rate window');
$took = deliver_other('camp_ok3', 'OK3_', 5);
cmp_ok($took, '<=', $window + 1, 'poison: ... and again later');
my $stored = $double->leads;
is( scalar(grep { $stored->{camp_ok2}{$_} } lead_ids('OK2_', 1, 5))
	  + scalar(grep { $stored->{camp_ok3}{$_} } lead_ids('OK3_', 1, 5)),
	10,
	'poison: the other campaigns\' leads reached the API');

my $log = slurp_file($node->logfile, $log_start);
like($log, qr/\[$worker\][^\n]*(?:ERROR|WARNING|LOG):[^\n]*test trigger refuses to record camp_poison/,
	'poison: the worker logs the error');
is(worker_pid($node), $worker, 'poison: the worker is the same process');
is( $node->safe_psql('postgres', 'SELECT pid FROM squadstack_worker_status()'),
	$worker, 'squadstack_worker_status() shows the same pid');
is(join("\n", worker_exits($node, $log_start)),
	'', 'the server log shows no exit or restart of the worker');

# --- once the trigger is gone the poison campaign is delivered

$node->safe_psql('postgres',
	'DROP TRIGGER refuse_poison ON squadstack.outbox');
$double->clear_faults;
ok( wait_for_sql(
		$node,
		"SELECT count(*) FROM squadstack.outbox WHERE campaign_id = 'camp_poison' AND state = 'sent'",
		'5', 20),
	'the poison campaign recovers once its answers can be recorded');

done_testing();
