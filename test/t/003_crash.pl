
# Crashes with a call in flight: kill -9 of the worker, kill -9 of another
# backend (the postmaster resets every process), pg_ctl stop -m immediate.
# Each time: nothing queued is lost, the operations of the call in flight are
# queued again and re-sent one lead per call (a lead the API already
# accepted then fails alone, with 400), every other operation is sent
# exactly once.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

use SquadstackDouble;

my $double = SquadstackDouble->new;
my $node = $double->new_node(
	'main', conf => q{
squadstack.batch_size = 10
});
my $delay = 3;

sub crash_with_call_in_flight
{
	my ($what, $campaign, $prefix, $crash) = @_;
	my $done_sql =
	  "SELECT count(*) FROM squadstack.outbox WHERE campaign_id = '$campaign' AND state IN ('queued', 'sending')";

	note "=== $what";
	queue_leads($node, $campaign, $prefix, 1, 30);
	ok(wait_for_sql($node, $done_sql, '0', 10),
		"$what: the first 30 leads are sent");

	# the next call hangs at the double; crash while it is in flight
	$double->fault(
		{ kind => 'delay', seconds => $delay, campaign => $campaign, count => 1 });
	queue_leads($node, $campaign, $prefix, 31, 100);
	my $in_flight = '';
	wait_for(
		sub {
			$in_flight = $node->safe_psql('postgres',
				"SELECT string_agg(lead_id, ',' ORDER BY lead_id) FROM squadstack.outbox WHERE campaign_id = '$campaign' AND state = 'sending'"
			);
			return $in_flight ne '';
		},
		10);
	my @in_flight = split /,/, $in_flight;
	is(scalar(@in_flight), 10, "$what: a call of 10 leads is in flight");
	my $worker = worker_pid($node);

	$crash->();

	ok( wait_for(sub { my $p = worker_pid($node); $p ne '' && $p ne $worker }, 30),
		"$what: a new worker runs");
	ok(wait_for_sql($node, $done_sql, '0', 30),
		"$what: the outbox is worked off");
	ok( wait_for(
			sub {
				grep { ($_->{fault} // '') eq 'delay' }
				  $double->requests(campaign => $campaign);
			},
			$delay + 10),
		"$what: the call that was in flight has been answered at the double");

	my @reqs = $double->requests(campaign => $campaign);
	my ($slow) = grep { ($_->{fault} // '') eq 'delay' } @reqs;
	is(join(',', sort @{ $slow->{lead_ids} }),
		$in_flight, "$what: the call in flight carried the leads being sent");

	# what reached the double
	my @all = lead_ids($prefix, 1, 100);
	my %in_flight = map { $_ => 1 } @in_flight;
	my $stored = $double->leads->{$campaign} || {};
	is(scalar(grep { $stored->{$_} } @all), 100,
		"$what: the double has all 100 leads");
	my $accepted = count_by_lead(grep { $_->{status} >= 200 && $_->{status} < 300 } @reqs);
	is(scalar(grep { ($accepted->{$_} // 0) == 1 } @all),
		100, "$what: every lead was created exactly once");

	my $carried = count_by_lead(@reqs);
	my $singles = count_by_lead(grep { @{ $_->{lead_ids} } == 1 } @reqs);
	is(scalar(grep { $carried->{$_} == 2 && $singles->{$_} == 1 } @in_flight),
		10, "$what: each lead of the call in flight was re-sent once, alone");
	my @others = grep { !$in_flight{$_} } @all;
	is(scalar(grep { $carried->{$_} == 1 } @others),
		90, "$what: every other lead was sent exactly once");
	is( scalar(grep { @{ $_->{lead_ids} } == 1 } @reqs),
		10, "$what: only the re-sent leads went alone");

	# what the outbox says
	is( $node->safe_psql(
			'postgres',
			"SELECT string_agg(lead_id, ',' ORDER BY lead_id) FROM squadstack.outbox WHERE campaign_id = '$campaign' AND batch_limit = 1"
		),
		$in_flight,
		"$what: exactly the operations in flight were limited to one lead per call");
	is( $node->safe_psql(
			'postgres', qq{
SELECT count(*) FROM squadstack.outbox
WHERE campaign_id = '$campaign'
  AND NOT (state = 'sent'
           OR (batch_limit = 1 AND state = 'failed' AND http_status = 400
               AND error LIKE '%already exists%'))}),
		'0',
		"$what: all sent, except leads already accepted that failed alone with 400");
	is( $node->safe_psql(
			'postgres', qq{
SELECT count(*) FROM squadstack.api_calls
WHERE campaign_id = '$campaign' AND error LIKE 'no answer recorded%'}),
		'1',
		"$what: the call in flight is recorded as unanswered");
	$double->clear_faults;
	return;
}

crash_with_call_in_flight(
	'kill -9 of the worker',
	'camp_k', 'K',
	sub {
		my $pid = worker_pid($node);
		note "killing the worker, pid $pid";
		kill 'KILL', $pid;
	});

crash_with_call_in_flight(
	'kill -9 of another backend',
	'camp_b', 'B',
	sub {
		my $psql = $node->background_psql('postgres', on_error_stop => 0);
		my $pid = $psql->query_safe('SELECT pg_backend_pid()');
		note "killing backend $pid";
		kill 'KILL', $pid;
		eval { $psql->quit; };
	});

crash_with_call_in_flight(
	'pg_ctl stop -m immediate',
	'camp_i', 'I',
	sub {
		$node->stop('immediate');
		$node->start;
	});

like(
	slurp_file($node->logfile),
	qr/background worker "squadstack worker" \(PID \d+\) was terminated by signal 9/,
	'the server log shows the worker was killed');

done_testing();
