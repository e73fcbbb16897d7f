
# What a failed operation holds back.  After a create refused with 400, an
# update and a convert of the same lead fail at once, with an error naming
# the failed create, and are never sent; a delete is sent (an erasure is
# never held back by a failed operation), also after a failed update.
# Operations held back by a queued one are shown in squadstack.queue_status
# (blocked, blocked_by), here while the token is paused.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use SquadstackDouble;

my $double = SquadstackDouble->new(tokens => [ 'test-token', 'token-2' ]);
my $node = $double->new_node(
	'main', conf => q{
squadstack.rate_window = '2s'
});

sub query { return $node->safe_psql('postgres', $_[0]); }

sub states
{
	my ($campaign, $lead) = @_;
	return query(
		"SELECT string_agg(op || ':' || state, ',' ORDER BY id) FROM squadstack.outbox WHERE campaign_id = '$campaign' AND lead_id = '$lead'"
	);
}

sub sent_to_api
{
	my ($campaign, $endpoint, $lead) = @_;
	return scalar grep { grep { $_ eq $lead } @{ $_->{lead_ids} } }
	  $double->requests(campaign => $campaign, endpoint => $endpoint);
}

# --- a failed create: update and convert fail at once, delete is sent

$double->fault(
	{
		kind => 'status',
		status => 400,
		campaign => 'camp_b',
		endpoint => 'create',
		count => 1,
		body => { error => 'invalid lead', lead_id => 'B1' }
	});
queue_leads($node, 'camp_b', 'B', 1, 1);
ok(wait_for(sub { states('camp_b', 'B1') eq 'create:failed' }, 10),
	'the create of B1 is refused');
my $create_id = query(
	"SELECT id FROM squadstack.outbox WHERE campaign_id = 'camp_b' AND lead_id = 'B1' AND op = 'create'"
);

query(
	q{BEGIN;
SELECT squadstack_update_lead('camp_b', '{"lead_id": "B1", "city": "Pune"}');
SELECT squadstack_convert_lead('camp_b', 'B1', 'paid');
SELECT squadstack_delete_lead('camp_b', 'B1');
COMMIT;});
ok( wait_for(
		sub { states('camp_b', 'B1') =~ /^create:failed,update:failed,convert:failed,delete:(sent|failed)$/ },
		5),
	'update and convert fail at once; the delete is attempted');
is(states('camp_b', 'B1') =~ s/,delete:.*//r,
	'create:failed,update:failed,convert:failed', 'the states of B1\'s operations');
my @errors = split /\n/,
  query(
	"SELECT coalesce(error, '(none)') FROM squadstack.outbox WHERE campaign_id = 'camp_b' AND lead_id = 'B1' AND op IN ('update', 'convert') ORDER BY id"
  );
is(scalar @errors, 2, 'an error for the update and the convert');
like($_, qr/\b$create_id\b/, "the error names the failed operation's id: $_")
  for @errors;
like($_, qr/\bcreate\b/, "... and that it was a create: $_") for @errors;
is(sent_to_api('camp_b', 'update', 'B1') + sent_to_api('camp_b', 'convert', 'B1'),
	0, 'neither the update nor the convert reached the API');
is(sent_to_api('camp_b', 'delete', 'B1'),
	1, 'the delete reached the API, once');

# --- a failed update does not hold back a delete either

queue_leads($node, 'camp_b', 'B', 2, 2);
ok(wait_for(sub { states('camp_b', 'B2') eq 'create:sent' }, 10),
	'B2 is created');
$double->fault(
	{
		kind => 'status',
		status => 404,
		campaign => 'camp_b',
		endpoint => 'update',
		count => 1
	});
query(q{SELECT squadstack_update_lead('camp_b', '{"lead_id": "B2", "city": "Goa"}')});
ok(wait_for(sub { states('camp_b', 'B2') eq 'create:sent,update:failed' }, 10),
	'the update of B2 is answered 404 and fails');
query(q{SELECT squadstack_delete_lead('camp_b', 'B2')});
ok( wait_for(
		sub { states('camp_b', 'B2') eq 'create:sent,update:failed,delete:sent' }, 10),
	'the delete of B2 is sent after the failed update');
is( query(
		"SELECT status FROM squadstack.leads WHERE campaign_id = 'camp_b' AND lead_id = 'B2'"),
	'deleted',
	'the registry says B2 is deleted');

# --- blocked operations in queue_status, while the token is paused

$double->fault(
	{ kind => 'status', status => 401, campaign => 'camp_q', count => 1 });
queue_leads($node, 'camp_q', 'Q', 0, 0);
ok( wait_for_sql(
		$node,
		"SELECT bool_or(token_paused) FROM squadstack.queue_status WHERE campaign_id = 'camp_q'",
		't', 10),
	'the token is paused');
query(
	q{BEGIN;
SELECT squadstack_create_leads('camp_q', '[{"lead_id": "C1", "phone_number": "9000000001", "contact_name": "C One"}, {"lead_id": "C2", "phone_number": "9000000002", "contact_name": "C Two"}]');
SELECT squadstack_update_lead('camp_q', '{"lead_id": "C1", "city": "Pune"}');
SELECT squadstack_convert_lead('camp_q', 'C1', 'paid');
COMMIT;});
my ($rc, $out, $err) = $node->psql('postgres',
	"SELECT blocked, blocked_by FROM squadstack.queue_status WHERE campaign_id = 'camp_q' AND state = 'queued'"
);
is($rc, 0, 'queue_status has the columns blocked and blocked_by')
  or diag $err;
my ($blocked, $blocked_by) = split /\|/, $out, 2;
is($blocked, '2', 'the update and the convert of C1 are counted as blocked');
ok(defined $blocked_by && $blocked_by ne '', 'blocked_by says by what');
note 'blocked_by: ' . ($blocked_by // '(none)');

# a new token resumes delivery: everything goes, in order
query(
	"ALTER SYSTEM SET squadstack.token = 'token-2'; SELECT pg_reload_conf();");
ok( wait_for_sql(
		$node,
		"SELECT count(*) FROM squadstack.outbox WHERE campaign_id = 'camp_q' AND state <> 'sent'",
		'0', 15),
	'with a new token every operation of camp_q is sent');
is( join(',',
		map { $_->{endpoint} }
		  grep { grep { $_ eq 'C1' } @{ $_->{lead_ids} } }
		  grep { $_->{status} >= 200 && $_->{status} < 300 }
		  $double->requests(campaign => 'camp_q')),
	'create,update,convert',
	'C1\'s operations reached the API in order');
($rc, $out, $err) = $node->psql('postgres',
	"SELECT coalesce(sum(blocked), 0) FROM squadstack.queue_status WHERE campaign_id = 'camp_q'"
);
is($out, '0', 'nothing is blocked any more') or diag $err;

done_testing();
