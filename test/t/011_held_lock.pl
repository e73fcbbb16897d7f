
# A user's open transaction holding a lead's registry row does not stop
# delivery.  A create of lead H1 is in flight; a session queues another
# create of H1 with skip_existing => false, which locks H1's registry row,
# and stays open.  When the answer to the first create arrives, the worker
# cannot update the registry: it gives that part up after
# squadstack.lock_timeout, delivers another campaign meanwhile, and
# completes H1 (registry 'created') once the session has ended.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

use SquadstackDouble;

my $double = SquadstackDouble->new;
my $node = $double->new_node(
	'main', conf => q{
squadstack.lock_timeout = '1s'
squadstack.rate_window = '2s'
});
my $worker = worker_pid($node);
my $log_start = log_position($node);

sub query { return $node->safe_psql('postgres', $_[0]); }

# the first create of H1 hangs at the API for 2 s
$double->fault(
	{ kind => 'delay', seconds => 2, campaign => 'camp_h', count => 1 });
queue_leads($node, 'camp_h', 'H', 1, 1);
ok( wait_for_sql(
		$node,
		"SELECT state FROM squadstack.outbox WHERE campaign_id = 'camp_h' AND lead_id = 'H1'",
		'sending', 10),
	'the create of H1 is in flight');

# a session queues H1 again and keeps its transaction open
my $held = $node->background_psql('postgres');
$held->query_safe('BEGIN');
$held->query_safe(
	q{SELECT squadstack_create_leads('camp_h',
  '[{"lead_id": "H1", "phone_number": "9000000001", "contact_name": "Lead 1"}]',
  skip_existing => false)});
my $held_since = time();

ok( wait_for(
		sub {
			grep { ($_->{fault} // '') eq 'delay' }
			  $double->requests(campaign => 'camp_h');
		},
		10),
	'the API has answered the first create');

# the worker is now recording that answer, and H1's registry row is locked
queue_leads($node, 'camp_o', 'O', 1, 5);
my $t0 = time();
my $others = wait_for_sql(
	$node,
	"SELECT count(*) FROM squadstack.outbox WHERE campaign_id = 'camp_o' AND state = 'sent'",
	'5', 8);
my $took = time() - $t0;
ok($others, 'another campaign is delivered while the registry row is held');
note sprintf('camp_o delivered %.2f s after queueing (lock_timeout 1 s)', $took);
cmp_ok($took, '<=', 3,
	'... within a couple of seconds');
is( query(
		"SELECT string_agg(state, ',' ORDER BY id) FROM squadstack.outbox WHERE campaign_id = 'camp_h'"
	),
	'sent',
	'the answered create is recorded as sent meanwhile (the held queueing is not visible)');
is( query(
		"SELECT status FROM squadstack.leads WHERE campaign_id = 'camp_h' AND lead_id = 'H1'"
	),
	'queued',
	'the registry row could not be updated while held');
cmp_ok(time() - $held_since, '<', 20, 'the session was still open for all this');

# the session gives up its create; its lock goes
$held->query_safe('ROLLBACK');
$held->quit;
ok( wait_for_sql(
		$node,
		"SELECT status FROM squadstack.leads WHERE campaign_id = 'camp_h' AND lead_id = 'H1'",
		'created', 15),
	'after the session ends, H1 completes: the registry says created')
  or diag 'registry: '
  . query(
	"SELECT status FROM squadstack.leads WHERE campaign_id = 'camp_h' AND lead_id = 'H1'")
  . '; outbox: '
  . query(
	"SELECT string_agg(format('%s %s record_pending=%s', id, state, record_pending), '; ') FROM squadstack.outbox WHERE campaign_id = 'camp_h'"
  ) . '; worker waits for: '
  . query('SELECT waiting_for FROM squadstack_worker_status()');

my @h = $double->requests(campaign => 'camp_h');
is(scalar @h, 1, 'H1 reached the API once');
is(query("SELECT count(*) FROM squadstack.outbox WHERE campaign_id = 'camp_h'"),
	'1', 'the rolled back create left nothing queued');
is(scalar(grep { $double->leads->{camp_o}{$_} } lead_ids('O', 1, 5)),
	5, 'the other campaign\'s leads reached the API');
is(worker_pid($node), $worker, 'the worker is the same process');
is(join("\n", worker_exits($node, $log_start)),
	'', 'the server log shows no exit or restart of the worker');

done_testing();
