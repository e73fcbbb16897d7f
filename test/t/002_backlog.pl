
# A backlog under the rate limit: every lead delivered exactly once, never
# more than rate_limit calls in any window per token (the double enforces
# the same limit and would answer 429), the budget used, campaigns on one
# token served in turn, a campaign queued mid-drain served within the next
# window.  Then the limit and batch size changed by SIGHUP take effect.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

use SquadstackDouble;

my ($limit, $window, $batch) = (20, 2, 25);

my $double = SquadstackDouble->new(rate_limit => $limit, rate_window => $window);
my $node = $double->new_node(
	'main', conf => qq{
squadstack.rate_limit = $limit
squadstack.rate_window = '${window}s'
squadstack.batch_size = $batch
});

# --- 2,000 leads in two campaigns on one token, queued together

$node->safe_psql('postgres',
	    'BEGIN; '
	  . queue_leads($node, 'camp_a', 'A', 1, 1000, 1) . '; '
	  . queue_leads($node, 'camp_b', 'B', 1, 1000, 1)
	  . '; COMMIT;');
my $t_queued = time();

# mid-drain, after the first window: a small campaign on the same token
ok(wait_for(sub { scalar $double->requests >= $limit }, 10),
	'the drain has started');
sleep 0.5;
queue_leads($node, 'camp_s', 'S', 1, 5);
my $t_small = time();

ok( wait_for_sql(
		$node,
		"SELECT count(*) FROM squadstack.outbox WHERE state <> 'sent'",
		'0', 30),
	'the backlog drains');

my @calls = $double->requests;
my @times = map { $_->{received_at} } @calls;
my $n_calls = 2000 / $batch + 1;

is(scalar(@calls), $n_calls, "$n_calls calls (batches of $batch)");
is(scalar(grep { $_->{status} == 429 } @calls), 0, 'no call was throttled (429)');
is(scalar(grep { $_->{status} != 201 } @calls), 0, 'every call was accepted');

my $per_lead = count_by_lead(@calls);
my @missing = grep { !$per_lead->{$_} }
  (lead_ids('A', 1, 1000), lead_ids('B', 1, 1000), lead_ids('S', 1, 5));
my @twice = grep { $per_lead->{$_} > 1 } keys %$per_lead;
is(scalar(@missing), 0, 'every lead was sent') or diag("missing: @missing[0..9]");
is(scalar(@twice), 0, 'no lead was sent twice') or diag("twice: @twice[0..9]");
is(scalar(keys %$per_lead), 2005, 'nothing else was sent');

my $leads = $double->leads;
is( scalar(keys %{ $leads->{camp_a} }) + scalar(keys %{ $leads->{camp_b} }),
	2000, 'the double stored all 2,000 leads');

my $most = sliding_max(\@times, $window);
cmp_ok($most, '<=', $limit,
	"never more than $limit calls in any ${window} s window (most: $most)");

my $used = budget_used(\@times, $limit, $window);
note sprintf('budget used: %.3f; drain took %.2f s', $used, $times[-1] - $times[0]);
cmp_ok($used, '>=', 0.9, 'at least 90% of the rate budget is used')
  or diag(timeline(@calls));
cmp_ok($times[0] - $t_queued, '<', 0.5, 'the first call went out at once');

# campaigns on one token take turns while both have work (when a rate slot
# frees between the checks of two campaigns, the second may get one turn
# more: allow for that)
my ($na, $nb, $worst) = (0, 0, 0);
for my $c (@calls)
{
	$na++ if $c->{campaign} eq 'camp_a';
	$nb++ if $c->{campaign} eq 'camp_b';
	last if $na == 40 || $nb == 40;
	$worst = abs($na - $nb) if abs($na - $nb) > $worst;
}
cmp_ok($worst, '<=', 3, 'two campaigns on one token are served in turn')
  or diag(timeline(@calls));

my ($small) = grep { $_->{campaign} eq 'camp_s' } @calls;
my $wait = $small->{received_at} - $t_small;
note sprintf('the campaign queued mid-drain was served after %.2f s', $wait);
cmp_ok($wait, '<', $window + 0.5,
	'a campaign queued mid-drain is served within the next window');
my $rest_after = grep { $_->{received_at} > $small->{received_at} } @calls;
cmp_ok($rest_after, '>=', 2 * $limit, 'it did not wait for the backlog to drain');

is( $node->safe_psql(
		'postgres',
		"SELECT count(*), sum(n_leads), count(*) FILTER (WHERE http_status = 201) FROM squadstack.api_calls"
	),
	"$n_calls|2005|$n_calls",
	'api_calls has every call');

# --- SIGHUP: lower the limit and change the batch size while draining

my ($limit1, $window1, $batch1) = (10, 1, 2);
my ($limit2, $batch2) = (3, 4);
$double->ctl('reset', { rate_limit => $limit1, rate_window => $window1 });
$node->safe_psql(
	'postgres', qq{
ALTER SYSTEM SET squadstack.rate_limit = $limit1;
ALTER SYSTEM SET squadstack.rate_window = '${window1}s';
ALTER SYSTEM SET squadstack.batch_size = $batch1;
SELECT pg_reload_conf();});
sleep 0.5;
queue_leads($node, 'camp_h', 'H', 1, 120);
ok(wait_for(sub { scalar $double->requests >= 20 }, 10),
	'delivery with the first settings');
$node->safe_psql(
	'postgres', qq{
ALTER SYSTEM SET squadstack.rate_limit = $limit2;
ALTER SYSTEM SET squadstack.batch_size = $batch2;
SELECT pg_reload_conf();});
my $t_reload = time();
# calls already admitted in the worker's current round may still go out
sleep 0.5;
$double->config({ rate_limit => $limit2 });
my $t_applied = time();

# squadstack_flush() in a session shares the limit with the worker
my $flushed = 0;
for (1 .. 3)
{
	sleep 0.3;
	$flushed += $node->safe_psql('postgres', 'SELECT squadstack_flush()');
}
note "squadstack_flush() made $flushed calls meanwhile";

# a restart while the worker waits for a rate slot: the new worker goes
# on from the limiter's record (the double, which keeps its own, would
# answer 429 otherwise)
ok( wait_for_sql(
		$node,
		"SELECT waiting_for FROM squadstack_worker_status()",
		'a rate slot', 10),
	'the worker waits for a rate slot');
$node->restart;
my $t_restart = time();

ok( wait_for_sql(
		$node,
		"SELECT count(*) FROM squadstack.outbox WHERE campaign_id = 'camp_h' AND state NOT IN ('sent', 'failed')",
		'0', 60),
	'the rest drains under the new settings, across a restart');
my @before = $double->requests(until => $t_reload);
my @after = $double->requests(since => $t_applied);
note sprintf('%d calls before the reload, %d after (%d after the restart)',
	scalar(@before), scalar(@after),
	scalar(grep { $_->{received_at} > $t_restart } @after));
cmp_ok(sliding_max([ map { $_->{received_at} } @before ], $window1),
	'<=', $limit1, "before: at most $limit1 calls per ${window1} s");
is(scalar(grep { @{ $_->{lead_ids} } != $batch1 } @before),
	0, "before: batches of $batch1");
my $most_after = sliding_max([ map { $_->{received_at} } @after ], $window1);
cmp_ok($most_after, '<=', $limit2,
	"after: at most $limit2 calls per ${window1} s, with flushes and across the restart (most: $most_after)");
cmp_ok(scalar(@after), '>=', 10, 'enough calls after the change to tell');
cmp_ok(scalar(grep { $_->{received_at} > $t_restart } @after),
	'>=', 3, 'enough calls after the restart to tell');
my @batches = grep { @{ $_->{lead_ids} } > 1 } @after;
is(scalar(grep { @{ $_->{lead_ids} } > $batch2 } @after),
	0, "after: at most $batch2 leads per call");
cmp_ok(scalar(grep { @{ $_->{lead_ids} } == $batch2 } @batches),
	'>=', scalar(@batches) - 1, "after: batches of $batch2");
is(scalar(grep { $_->{status} == 429 } $double->requests),
	0, 'no call throttled');

# a call cut off by the restart is re-sent lead by lead (its leads may then
# fail alone as already created); every other lead went exactly once
my %cut = map { $_ => 1 } split /\n/,
  $node->safe_psql('postgres',
	"SELECT lead_id FROM squadstack.outbox WHERE campaign_id = 'camp_h' AND batch_limit = 1");
my $h = count_by_lead($double->requests(campaign => 'camp_h'));
my $accepted = count_by_lead(grep { $_->{status} == 201 } $double->requests(campaign => 'camp_h'));
is(scalar(grep { $h->{$_} == 1 || ($cut{$_} && $h->{$_} == 2) } lead_ids('H', 1, 120)),
	120, 'every lead sent exactly once, unless cut off by the restart');
is(scalar(grep { ($accepted->{$_} // 0) == 1 } lead_ids('H', 1, 120)),
	120, 'every lead accepted exactly once');

done_testing();

# one line per call: seconds since the first, campaign, leads, status
sub timeline
{
	my (@c) = @_;
	return join("\n",
		map { sprintf('%7.3f %s %d %d', $_->{received_at} - $c[0]{received_at},
				$_->{campaign}, scalar(@{ $_->{lead_ids} }), $_->{status}) } @c);
}
