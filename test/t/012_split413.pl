
# Request size: a batch answered 413 (Payload Too Large) is split like one
# answered 400, until every lead is delivered; a single lead answered 413
# fails alone.  With a small squadstack.max_request_bytes, batches are cut
# so that no request body exceeds it.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use SquadstackDouble;

my $double = SquadstackDouble->new;
my $node = $double->new_node(
	'main', conf => q{
squadstack.batch_size = 10
squadstack.rate_window = '2s'
});
my $worker = worker_pid($node);

sub query { return $node->safe_psql('postgres', $_[0]); }

# SQL to queue leads $prefix$from .. $prefix$to with a custom field of
# $size characters.
sub queue_sized
{
	my ($campaign, $prefix, $from, $to, $size) = @_;
	return "SELECT squadstack_create_leads('$campaign', "
	  . "(SELECT jsonb_agg(jsonb_build_object('lead_id', '$prefix' || i, "
	  . "'phone_number', (9000000000 + i)::text, 'contact_name', 'Lead ' || i, "
	  . "'notes', repeat('n', $size)) ORDER BY i) FROM generate_series($from, $to) i));";
}

sub settled
{
	my ($campaign) = @_;
	return wait_for_sql(
		$node,
		"SELECT count(*) FROM squadstack.outbox WHERE campaign_id = '$campaign' AND state IN ('queued', 'sending')",
		'0', 20);
}

sub accepted { return grep { $_->{status} >= 200 && $_->{status} < 300 } @_; }

# --- a batch answered 413 is split until it fits

# a lead is about 290 bytes as JSON: 3 fit in 1000 bytes, 10 do not
my $max_body = 1000;
$double->config({ max_body => $max_body });
query(queue_sized('camp_s', 'S', 1, 10, 200));
ok(settled('camp_s'), '413: the campaign is worked off');
is( query(
		"SELECT count(*) FROM squadstack.outbox WHERE campaign_id = 'camp_s' AND state = 'sent'"
	),
	'10',
	'413: every lead is sent');
my @s = $double->requests(campaign => 'camp_s');
my @too_large = grep { $_->{status} == 413 } @s;
cmp_ok(scalar(grep { @{ $_->{lead_ids} } > 1 } @too_large),
	'>=', 1, '413: the API refused batches as too large');
is(scalar(grep { $_->{body_bytes} <= $max_body } @too_large),
	0, '413: ... only those above its limit');
my $s_ok = count_by_lead(accepted(@s));
is(scalar(grep { ($s_ok->{$_} // 0) == 1 } lead_ids('S', 1, 10)),
	10, '413: each lead was accepted exactly once');
cmp_ok(scalar(grep { @{ $_->{lead_ids} } > 1 } accepted(@s)),
	'>=', 1, '413: leads still go in batches after the split');
is(scalar(grep { $double->leads->{camp_s}{$_} } lead_ids('S', 1, 10)),
	10, '413: the API has every lead');

# --- a single lead answered 413 fails alone

# one transaction, so that the worker takes the four together
query('BEGIN; '
	  . queue_sized('camp_one', 'Z', 1, 1, 2000)
	  . queue_sized('camp_one', 'Z', 2, 4, 200)
	  . ' COMMIT;');
ok(settled('camp_one'), '413 alone: the campaign is worked off');
is( query(
		"SELECT string_agg(lead_id || ':' || state || ':' || coalesce(http_status::text, '-'), ',' ORDER BY lead_id) FROM squadstack.outbox WHERE campaign_id = 'camp_one'"
	),
	'Z1:failed:413,Z2:sent:201,Z3:sent:201,Z4:sent:201',
	'413 alone: the large lead fails with 413, the others are sent');
my @one = $double->requests(campaign => 'camp_one');
cmp_ok(
	scalar(
		grep { $_->{status} == 413 && join(',', @{ $_->{lead_ids} }) eq 'Z1' } @one),
	'>=', 1,
	'413 alone: the large lead was refused on its own');
cmp_ok(
	scalar(
		grep { $_->{status} == 413 && @{ $_->{lead_ids} } > 1 } @one),
	'>=', 1,
	'413 alone: ... after a refused batch that held it');
is(count_by_lead(accepted(@one))->{Z1},
	undef, '413 alone: the large lead never was accepted');
is( query(
		"SELECT status FROM squadstack.leads WHERE campaign_id = 'camp_one' AND lead_id = 'Z1'"
	),
	'failed',
	'413 alone: the registry says failed');

# --- squadstack.max_request_bytes cuts batches

$double->config({ max_body => undef });
my $max_request = 2048;
query(
	"ALTER SYSTEM SET squadstack.max_request_bytes = $max_request; SELECT pg_reload_conf();"
);
ok( wait_for_sql(
		$node, 'SHOW squadstack.max_request_bytes', '2kB', 10),
	'max_request_bytes is set to 2 kB');
# the worker picks the setting up at its next loop
sleep 1;
query(queue_sized('camp_cut', 'C', 1, 20, 200));
ok(settled('camp_cut'), 'cut: the campaign is worked off');
is( query(
		"SELECT count(*) FROM squadstack.outbox WHERE campaign_id = 'camp_cut' AND state = 'sent'"
	),
	'20',
	'cut: every lead is sent');
my @cut = $double->requests(campaign => 'camp_cut');
my @over = grep { $_->{body_bytes} > $max_request } @cut;
is(scalar @over, 0, "cut: no request body the API saw exceeds $max_request bytes");
note 'cut: body sizes seen: ' . join(', ', map { $_->{body_bytes} } @cut);
is(scalar(grep { $_->{status} < 200 || $_->{status} >= 300 } @cut),
	0, 'cut: every call was accepted');
cmp_ok(scalar(grep { @{ $_->{lead_ids} } > 1 } @cut),
	'>=', 1, 'cut: leads still go several to a call');
my $cut_ok = count_by_lead(@cut);
is(scalar(grep { ($cut_ok->{$_} // 0) == 1 } lead_ids('C', 1, 20)),
	20, 'cut: each lead was sent exactly once');

is(worker_pid($node), $worker, 'the worker is the same process');

done_testing();
