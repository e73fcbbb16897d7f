# CRM writers under load with the sync trigger while the worker delivers:
# several clients insert rows and then update each in a second transaction,
# while the worker moves the intake to the outbox and sends.  Every lead
# reaches the API double exactly once as a create and once as an update,
# the create first, and nothing is left behind.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use SquadstackDouble;

my $clients = 4;
my $per_client = 150;
my $total = $clients * $per_client;

my $double = SquadstackDouble->new;
my $node = $double->new_node('load');

$node->safe_psql(
	'postgres', q{
CREATE SEQUENCE crm_no;
CREATE TABLE crm (id text PRIMARY KEY DEFAULT 'R' || nextval('crm_no'),
                  mobile text NOT NULL, full_name text NOT NULL, tier int);
CREATE TRIGGER to_squadstack AFTER INSERT OR UPDATE ON crm FOR EACH ROW
EXECUTE FUNCTION squadstack_sync_trigger(
  'camp_load', 'lead_id=id', 'phone_number=mobile', 'contact_name=full_name', 'tier=tier');
});

# each script run: one transaction inserts a row, the next updates it
$node->pgbench(
	"--no-vacuum --client=$clients --jobs=$clients --transactions=$per_client",
	0,
	[qr{processed: $total/$total}],
	[qr{^$}],
	'CRM writers with the sync trigger',
	{
		'009_crm' => q{
\set phone random(9000000000, 9999999999)
INSERT INTO crm (mobile, full_name) VALUES (:phone, 'Load ' || :phone) RETURNING id \gset
UPDATE crm SET tier = 2 WHERE id = ':id';
}
	});

ok( wait_for_sql(
		$node, q{
SELECT (SELECT count(*) FROM squadstack.intake) = 0
   AND (SELECT count(*) FROM squadstack.outbox WHERE state <> 'sent') = 0
   AND (SELECT count(*) FROM squadstack.outbox) = } . (2 * $total),
		't', 60),
	'the worker sent everything the writers queued');

my @reqs = $double->requests(campaign => 'camp_load');
my %creates = %{ count_by_lead(grep { $_->{endpoint} eq 'create' } @reqs) };
my %updates = %{ count_by_lead(grep { $_->{endpoint} eq 'update' } @reqs) };
is(scalar(keys %creates), $total, 'every lead was created');
is(scalar(grep { $_ != 1 } values %creates), 0, 'each exactly once');
is(scalar(keys %updates), $total, 'every lead was updated');
is(scalar(grep { $_ != 1 } values %updates), 0, 'each exactly once');

# the double logs requests in the order it answered them
my (%created_at, $late) = ();
$late = 0;
for my $i (0 .. $#reqs)
{
	my $r = $reqs[$i];
	if ($r->{endpoint} eq 'create')
	{
		$created_at{$_} = $i for @{ $r->{lead_ids} };
	}
	elsif ($r->{endpoint} eq 'update')
	{
		$late++ for grep { !defined $created_at{$_} } @{ $r->{lead_ids} };
	}
}
is($late, 0, "no update reached the API before its lead's create");

is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM squadstack.leads WHERE campaign_id = 'camp_load' AND status = 'created'}),
	$total,
	'the registry knows every lead as created');

$node->stop;
done_testing();
