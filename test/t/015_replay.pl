
# Replays reconciled.  Creates in flight when the worker is killed (SIGKILL;
# the postmaster restarts every process) have reached the API, which has
# stored the leads; re-sent, they are answered 400 "lead already exists".
# That answer matches squadstack.duplicate_create_pattern: the creates are
# recorded as sent with an "already done:" note, the registry says created,
# and a later update of such a lead is delivered.  With a pattern that does
# not match the API's wording they fail instead.  A delete in flight,
# re-sent and answered 404, is recorded as sent.  A 2xx answer whose body
# is not JSON is a success, noted, and never re-sent.

use strict;
use warnings;

use JSON::PP ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use SquadstackDouble;

my $double = SquadstackDouble->new;
my $node = $double->new_node(
	'main', conf => q{
squadstack.batch_size = 5
squadstack.rate_window = '2s'
});

sub query { return $node->safe_psql('postgres', $_[0]); }

sub states
{
	my ($campaign) = @_;
	return query(
		"SELECT string_agg(lead_id || ':' || state, ',' ORDER BY lead_id) FROM squadstack.outbox WHERE campaign_id = '$campaign' AND op = 'create'"
	);
}

# Queue $n creates for $campaign and kill the worker while their call is in
# flight, after the API has stored the leads; wait until they are settled.
sub crash_in_flight
{
	my ($campaign, $prefix, $n) = @_;

	crash_in_flight_of(
		$campaign, 'create', $n,
		sub { queue_leads($node, $campaign, $prefix, 1, $n); },
		sub { keys %{ $double->leads->{$campaign} || {} } == $n });
	return;
}

# The same for any call: $queue queues $n operations that go to $endpoint
# in one call, $done says when the API has applied them.
sub crash_in_flight_of
{
	my ($campaign, $endpoint, $n, $queue, $done) = @_;

	# the API applies the call at once and answers 10 s later
	$double->fault(
		{
			kind => 'delay',
			seconds => 10,
			after_effect => JSON::PP::true,
			campaign => $campaign,
			endpoint => $endpoint,
			count => 1
		});
	$queue->();
	ok( wait_for_sql(
			$node,
			"SELECT count(*) FROM squadstack.outbox WHERE campaign_id = '$campaign' AND state = 'sending'",
			$n, 10),
		"$campaign: a call of $n ${endpoint}s is in flight");
	ok(wait_for($done, 10), "$campaign: the API has applied it");
	my $worker = worker_pid($node);
	note "killing the worker, pid $worker";
	kill 'KILL', $worker;
	ok( wait_for(
			sub { my $p = worker_pid($node); $p ne '' && $p ne $worker }, 30),
		"$campaign: a new worker runs");
	ok( wait_for_sql(
			$node,
			"SELECT count(*) FROM squadstack.outbox WHERE campaign_id = '$campaign' AND state IN ('queued', 'sending')",
			'0', 30),
		"$campaign: the ${endpoint}s are settled");
	return;
}

# The answers to the re-sent creates: lead => list of statuses of the calls
# that carried it alone.
sub resent_alone
{
	my ($campaign) = @_;
	my %status;
	for my $r (grep { @{ $_->{lead_ids} } == 1 }
		$double->requests(campaign => $campaign, endpoint => 'create'))
	{
		push @{ $status{ $r->{lead_ids}[0] } }, $r->{status};
	}
	return { map { $_ => join(',', @{ $status{$_} }) } keys %status };
}

# --- re-sent creates answered "lead already exists" are recorded as sent

crash_in_flight('camp_r', 'R', 5);
is(states('camp_r'), join(',', map { "$_:sent" } lead_ids('R', 1, 5)),
	'replay: every create is recorded as sent');
is( query(
		"SELECT count(*) FROM squadstack.outbox WHERE campaign_id = 'camp_r' AND http_status = 400 AND error LIKE 'already done:%'"
	),
	'5',
	'replay: ... with the 400 kept and an "already done:" note');
note 'replay note: '
  . query(
	"SELECT error FROM squadstack.outbox WHERE campaign_id = 'camp_r' ORDER BY id LIMIT 1");
is( query(
		"SELECT string_agg(DISTINCT status, ',') FROM squadstack.leads WHERE campaign_id = 'camp_r'"
	),
	'created',
	'replay: the registry says created');
my $alone = resent_alone('camp_r');
is(join(' ', map { "$_=" . ($alone->{$_} // '-') } lead_ids('R', 1, 5)),
	join(' ', map { "$_=400" } lead_ids('R', 1, 5)),
	'replay: each lead was re-sent once, alone, and answered 400 by the API');

query(q{SELECT squadstack_update_lead('camp_r', '{"lead_id": "R1", "city": "Pune"}')});
ok( wait_for_sql(
		$node,
		"SELECT state FROM squadstack.outbox WHERE campaign_id = 'camp_r' AND op = 'update'",
		'sent', 10),
	'replay: a later update of a replayed lead is sent');
is( join(',',
		map { $_->{status} }
		  $double->requests(campaign => 'camp_r', endpoint => 'update')),
	'200',
	'replay: ... and accepted by the API');
is($double->leads->{camp_r}{R1}{fields}{city},
	'Pune', 'replay: the API has the update');

# --- a delete in flight, re-sent and answered 404, is recorded as sent

crash_in_flight_of(
	'camp_r', 'delete', 1,
	sub { query("SELECT squadstack_delete_lead('camp_r', 'R2')"); },
	sub { ($double->leads->{camp_r}{R2}{state} // '') eq 'deleted' });
is( query(
		"SELECT state || ' ' || http_status FROM squadstack.outbox WHERE campaign_id = 'camp_r' AND op = 'delete'"
	),
	'sent 404',
	'replayed delete: recorded as sent, with the 404 kept');
# (its "already done:" note quoted the API's answer, and the erasure that
# follows an accepted delete clears the error texts of the lead's operations)
is( query(
		"SELECT status FROM squadstack.leads WHERE campaign_id = 'camp_r' AND lead_id = 'R2'"),
	'deleted',
	'replayed delete: the registry says deleted');
is( join(',',
		map { $_->{status} }
		  $double->requests(campaign => 'camp_r', endpoint => 'delete')),
	'404',
	'replayed delete: the re-sent delete was answered 404 (the first is still unanswered)');

# --- a pattern that does not match the API's wording: the creates fail

query(
	"ALTER SYSTEM SET squadstack.duplicate_create_pattern = 'is a duplicate'; SELECT pg_reload_conf();"
);
# the worker rereads its configuration at its next loop
sleep 1;
crash_in_flight('camp_w', 'W', 3);
is(states('camp_w'), join(',', map { "$_:failed" } lead_ids('W', 1, 3)),
	'other wording: the re-sent creates fail');
is( query(
		"SELECT count(*) FROM squadstack.outbox WHERE campaign_id = 'camp_w' AND http_status = 400 AND error LIKE '%lead already exists%' AND error NOT LIKE 'already done%'"
	),
	'3',
	'other wording: ... with the API\'s answer as the error');
is( query(
		"SELECT string_agg(DISTINCT status, ',') FROM squadstack.leads WHERE campaign_id = 'camp_w'"
	),
	'failed',
	'other wording: the registry says failed');
query(
	"ALTER SYSTEM RESET squadstack.duplicate_create_pattern; SELECT pg_reload_conf();"
);

# --- a 2xx answer that is not JSON is a success, never re-sent

$double->fault(
	{ kind => 'nonjson', campaign => 'camp_n', endpoint => 'create', count => 1 });
queue_leads($node, 'camp_n', 'N', 1, 3);
ok( wait_for_sql(
		$node,
		"SELECT count(*) FROM squadstack.outbox WHERE campaign_id = 'camp_n' AND state IN ('queued', 'sending')",
		'0', 10),
	'non-JSON: the creates are settled');
is(states('camp_n'), join(',', map { "$_:sent" } lead_ids('N', 1, 3)),
	'non-JSON: the creates are recorded as sent');
is( query(
		"SELECT count(*) FROM squadstack.outbox WHERE campaign_id = 'camp_n' AND error ~* 'json'"
	),
	'3',
	'non-JSON: ... with a note that the answer was not JSON');
is( query(
		"SELECT string_agg(DISTINCT status, ',') FROM squadstack.leads WHERE campaign_id = 'camp_n'"
	),
	'created',
	'non-JSON: the registry says created');
# give a re-send, if one were to come, the time to happen
sleep 2;
is( join(',',
		map { $_->{status} . '/' . scalar @{ $_->{lead_ids} } }
		  $double->requests(campaign => 'camp_n')),
	'201/3',
	'non-JSON: the API saw one call, never a re-send');

done_testing();
