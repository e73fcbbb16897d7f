# One budget per business: two tokens grouped into one business (one with
# squadstack_set_token(), one by a line of squadstack.token_file) share its
# rate budget, so the calls of both together never exceed rate_limit in any
# window at the API double, and the budget is used; a token that is a
# business of its own keeps its own budget beside them.  The worker
# delivers, as in production.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes;

use SquadstackDouble;

my ($limit, $window, $batch) = (6, 2, 10);
my $double = SquadstackDouble->new(rate_limit => $limit, rate_window => $window);
$double->config({ tokens => [ 'test-token', 'acme-1', 'acme-2', 'solo' ] });
my $node = $double->new_node(
	'main', no_start => 1, conf => qq{
squadstack.rate_limit = $limit
squadstack.rate_window = '${window}s'
squadstack.batch_size = $batch
squadstack.token_file = 'squadstack_tokens'
});
my $token_file = $node->data_dir . '/squadstack_tokens';
append_to_file($token_file, "# campaign token business\ncamp_a2\tacme-2  acme\n");
chmod(0600, $token_file) or die "chmod: $!";
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION squadstack');

$node->safe_psql('postgres', q{
SELECT squadstack_set_token('camp_a1', 'acme-1', 'acme');
SELECT squadstack_set_token('camp_s', 'solo');
});

# 150 leads on each token of the business: 30 calls, 5 windows at least
$node->safe_psql('postgres',
	    'BEGIN; '
	  . queue_leads($node, 'camp_a1', 'A', 1, 150, 1) . '; '
	  . queue_leads($node, 'camp_a2', 'B', 1, 150, 1) . '; '
	  . queue_leads($node, 'camp_s', 'S', 1, 100, 1)
	  . '; COMMIT;');

ok( wait_for_sql(
		$node,
		"SELECT count(*) FROM squadstack.outbox WHERE state <> 'sent'",
		'0', 60),
	'everything is delivered');

my @calls = $double->requests;
my @business = grep { ($_->{authorization} // '') =~ /^Bearer acme-[12]$/ } @calls;
my @solo = grep { ($_->{authorization} // '') eq 'Bearer solo' } @calls;

is(scalar(@business), 30, 'the business made 30 calls');
cmp_ok(scalar(grep { $_->{authorization} eq 'Bearer acme-1' } @business),
	'>=', 1, 'with its first token')
  and cmp_ok(scalar(grep { $_->{authorization} eq 'Bearer acme-2' } @business),
	'>=', 1, 'and its second');
is(scalar(grep { $_->{status} == 429 } @calls), 0, 'no call was throttled (429)');

my @times = map { $_->{received_at} } @business;
my $most = sliding_max(\@times, $window);
cmp_ok($most, '<=', $limit,
	"the two tokens of the business together: never more than $limit calls in any $window s (most: $most)");
my $used = budget_used(\@times, $limit, $window);
note sprintf('business budget used: %.3f', $used);
cmp_ok($used, '>=', 0.8, 'the business budget is used');

# the token of its own business is not held back by the other budget: it
# gets calls in the windows where the business is using all of its own
my $solo_first = (sort { $a <=> $b } map { $_->{received_at} } @solo)[0];
my $business_last = (sort { $b <=> $a } @times)[0];
is(scalar(@solo), 10, 'the token of its own made its 10 calls');
cmp_ok($solo_first, '<', $business_last,
	'while the business still had work (its own budget)');
my $solo_most = sliding_max([ map { $_->{received_at} } @solo ], $window);
cmp_ok($solo_most, '<=', $limit, "and never more than $limit in any window");

is( $node->safe_psql(
		'postgres', q{
SELECT string_agg(budget || '=' || n, ',' ORDER BY budget) FROM (
  SELECT regexp_replace(budget, '^token:.*', 'token') AS budget, count(*) AS n
  FROM squadstack.api_calls GROUP BY 1) s}),
	'business:acme=30,token=10',
	'api_calls counts the calls per budget');

# --- a 429 to one token of the business pauses the whole business: the
# other token waits too, and the token of its own goes on
$node->safe_psql('postgres', 'TRUNCATE squadstack.api_calls');
sleep $window + 0.2;
$double->fault(
	{ kind => 'status', status => 429, retry_after => 3, campaign => 'camp_a1', count => 1 });
my $t0 = Time::HiRes::time();
queue_leads($node, 'camp_a1', 'C', 1, 1);
ok( wait_for_sql(
		$node,
		"SELECT paused_until IS NOT NULL FROM squadstack.budgets WHERE budget = 'business:acme'",
		't', 10),
	'429: squadstack.budgets shows the business paused');
is( $node->safe_psql('postgres',
		"SELECT paused AND pause_reason LIKE 'HTTP 429%' FROM squadstack.token_status('camp_a2')"),
	't', "token_status shows the business's pause for its other token");
my $t429 = Time::HiRes::time();
queue_leads($node, 'camp_a2', 'D', 1, 1);
queue_leads($node, 'camp_s', 'T', 1, 1);
ok( wait_for_sql(
		$node,
		"SELECT count(*) FROM squadstack.outbox WHERE state <> 'sent'",
		'0', 30),
	'everything is delivered after the pause');
my ($throttled) = grep { ($_->{status} // 0) == 429 } $double->requests;
my ($d1) = grep { grep { $_ eq 'D1' } @{ $_->{lead_ids} || [] } } $double->requests;
my ($t1) = grep { grep { $_ eq 'T1' } @{ $_->{lead_ids} || [] } } $double->requests;
ok($throttled, 'the first call of camp_a1 was answered 429');
cmp_ok($d1->{received_at} - $throttled->{received_at}, '>=', 2.9,
	'the other token of the business waited for the Retry-After');
cmp_ok($t1->{received_at} - $throttled->{received_at}, '<', 2.5,
	'the token of its own did not wait');

done_testing();
