# Two-phase commit: what a prepared transaction queued (by a function or by
# a sync trigger) is sent soon after COMMIT PREPARED, which wakes nobody,
# and nothing of a prepared transaction that is rolled back is sent.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

use SquadstackDouble;

my $double = SquadstackDouble->new;
my $node = $double->new_node('prepared', conf => "max_prepared_transactions = 4\n");

$node->safe_psql(
	'postgres', q{
CREATE TABLE crm (id text PRIMARY KEY, mobile text, full_name text);
CREATE TRIGGER to_squadstack AFTER INSERT ON crm FOR EACH ROW
EXECUTE FUNCTION squadstack_sync_trigger(
  'camp_2pc', 'lead_id=id', 'phone_number=mobile', 'contact_name=full_name');
});
ok(wait_for_sql($node,
		q{SELECT waiting_for = 'work' FROM squadstack_worker_status()}),
	'the worker is idle, waiting for work');

$node->safe_psql(
	'postgres', q{
BEGIN;
SELECT squadstack_create_leads('camp_2pc',
  '{"lead_id": "P1", "phone_number": "9876500001", "contact_name": "Prepared one"}');
INSERT INTO crm VALUES ('P2', '9876500002', 'Prepared two');
PREPARE TRANSACTION 'sqs_sent';
BEGIN;
SELECT squadstack_create_leads('camp_2pc',
  '{"lead_id": "P3", "phone_number": "9876500003", "contact_name": "Rolled back"}');
INSERT INTO crm VALUES ('P4', '9876500004', 'Rolled back too');
PREPARE TRANSACTION 'sqs_dropped';
});

# the worker goes back to sleep before the commit comes
sleep 2;
is(scalar($double->requests(campaign => 'camp_2pc')), 0, 'nothing is sent while prepared');

$node->safe_psql('postgres', q{ROLLBACK PREPARED 'sqs_dropped'});
my $t0 = time;
$node->safe_psql('postgres', q{COMMIT PREPARED 'sqs_sent'});
ok(wait_for(sub { count_by_lead($double->requests(campaign => 'camp_2pc', endpoint => 'create'))->{P2} }, 15),
	'a lead queued in a prepared transaction is sent after COMMIT PREPARED');
my $delay = time - $t0;
cmp_ok($delay, '<', 5, 'within seconds (the worker looks every second while one is pending)');
note(sprintf('sent %.2f s after COMMIT PREPARED', $delay));

my %sent = %{ count_by_lead($double->requests(campaign => 'camp_2pc', endpoint => 'create')) };
is_deeply(\%sent, { P1 => 1, P2 => 1 }, 'both committed leads once, none of the rolled back ones');

$node->stop;
done_testing();
