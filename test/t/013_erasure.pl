
# Erasure after a delete copes with any value: a lead with a 70,000-character
# custom field and regular-expression metacharacters in every field, whose
# values an API error quoted into api_calls.error, is deleted; the worker
# does not fail, and none of the lead's values remains in the outbox,
# api_calls.error, lead_outcomes or webhook_inbox.  Another lead's values,
# quoted in the same error, stay.

use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use SquadstackDouble;

my $double = SquadstackDouble->new;
my $node = $double->new_node(
	'main', conf => q{
squadstack.rate_window = '2s'
});
my $worker = worker_pid($node);
my $log_start = log_position($node);
my $json = JSON::PP->new->canonical;

my $meta = '.*+?()[]{}|\^$';
my $notes = 'Long';
$notes .= " $meta x" while length($notes) < 70_000;
$notes = substr($notes, 0, 69_997) . 'end';
my %e1 = (
	lead_id => "E${meta}1",
	phone_number => '+919812345601',
	contact_name => "Ram $meta Kumar",
	city => "Pune$meta",
	account => 98765432,
	notes => $notes);
my %e2 = (
	lead_id => 'E2',
	phone_number => '+919812345602',
	contact_name => 'Sita Devi',
	city => 'Nagpur');
is(length($notes), 70_000, 'the long field has 70,000 characters');

# values the lead's erasure must remove, by name
my %values = (
	phone => $e1{phone_number},
	phone_national => '9812345601',
	name => $e1{contact_name},
	city => $e1{city},
	account => $e1{account},
	notes => $notes,
	recording => 'https://recordings.example/E-meta.mp3',
	response => "yes $meta");

sub query { return $node->safe_psql('postgres', $_[0]); }
sub literal { return '$v$' . $_[0] . '$v$'; }

# "place:value name" for each value of %$vals found in the erasure's reach
# (any row of camp_e: another lead's row may quote it too)
sub found
{
	my ($vals) = @_;
	my $v = join(",\n",
		map { '(' . literal($_) . ', ' . literal($vals->{$_}) . ')' }
		  sort keys %$vals);
	return query(
		"WITH v(name, value) AS (VALUES $v)\n" . q{
SELECT coalesce(string_agg(DISTINCT place || ':' || name, ',' ORDER BY place || ':' || name), '')
FROM (
  SELECT 'outbox' AS place, v.name
  FROM squadstack.outbox o, v
  WHERE o.campaign_id = 'camp_e'
    AND (strpos(coalesce(o.error, ''), v.value) > 0
         OR EXISTS (SELECT FROM jsonb_path_query(o.payload, 'strict $.**') j
                    WHERE strpos(j #>> '{}', v.value) > 0))
  UNION ALL
  SELECT 'api_calls', v.name
  FROM squadstack.api_calls c, v
  WHERE c.campaign_id = 'camp_e' AND strpos(c.error, v.value) > 0
  UNION ALL
  SELECT 'lead_outcomes', v.name
  FROM squadstack.lead_outcomes lo, v
  WHERE lo.campaign_id = 'camp_e'
    AND EXISTS (SELECT FROM jsonb_path_query(to_jsonb(lo), 'strict $.**') j
                WHERE strpos(j #>> '{}', v.value) > 0)
  UNION ALL
  SELECT 'webhook_inbox', v.name
  FROM squadstack.webhook_inbox w, v
  WHERE w.campaign_id = 'camp_e'
    AND EXISTS (SELECT FROM jsonb_path_query(w.payload, 'strict $.**') j
                WHERE strpos(j #>> '{}', v.value) > 0)
) f});
}

# --- the create: the API refuses the batch once with an error quoting both
# leads' values, then accepts each lead alone

my $quote = sprintf(
	'invalid leads: lead "%s" contact_name "%s" city "%s" phone_number "%s" (%s) account %s; '
	  . 'lead "E2" contact_name "%s" city "%s"; notes "%s"',
	$e1{lead_id}, $e1{contact_name}, $e1{city}, $e1{phone_number},
	$values{phone_national}, $e1{account}, $e2{contact_name}, $e2{city}, $notes);
$double->fault(
	{
		kind => 'status',
		status => 400,
		campaign => 'camp_e',
		endpoint => 'create',
		count => 1,
		body => $quote,
		content_type => 'text/plain'
	});
query(  "SET squadstack.max_lead_bytes = '1MB'; "
	  . "SELECT squadstack_create_leads('camp_e', \$json\$"
	  . $json->encode([ \%e1, \%e2 ])
	  . "\$json\$)");
ok( wait_for_sql(
		$node,
		"SELECT count(*) FROM squadstack.outbox WHERE campaign_id = 'camp_e' AND state = 'sent'",
		'2', 20),
	'both leads are sent after the refused batch is split');
is(join(',', map { $_->{status} } $double->requests(campaign => 'camp_e')),
	'400,201,201', 'the API saw the refused batch, then each lead alone');
is( found({ name => $e1{contact_name}, city => $e1{city}, phone => $e1{phone_number} }),
	'api_calls:city,api_calls:name,api_calls:phone,outbox:city,outbox:name,outbox:phone',
	'the API error quoting the values is kept in api_calls.error');

# outcomes of both leads, with the values in them
my $at = 0;
for my $lead (\%e1, \%e2)
{
	$at++;
	my $payload = $json->encode(
		{
			campaign_id => 'camp_e',
			lead_id => $lead->{lead_id},
			processed_at => "2030-01-0${at}T10:00:00+00:00",
			phone_number => $lead->{phone_number},
			contact_name => $lead->{contact_name},
			lead_outcome => 'Connected',
			latest_recording_url => $lead == \%e1
			? $values{recording}
			: 'https://recordings.example/E2.mp3',
			lead_responses => {
				city => $lead->{city},
				answer => $lead == \%e1 ? $values{response} : 'no thanks'
			}
		});
	is( query("SELECT squadstack_receive_webhook(\$json\$$payload\$json\$)"),
		'201', "an outcome of $lead->{lead_id} is stored");
}
like(
	found(\%values),
	qr/lead_outcomes:name.*webhook_inbox:name/,
	'the outcome\'s values are in lead_outcomes and webhook_inbox');

# --- the delete

query("SELECT squadstack_delete_lead('camp_e', " . literal($e1{lead_id}) . ')');
ok( wait_for_sql(
		$node,
		"SELECT status FROM squadstack.leads WHERE campaign_id = 'camp_e' AND lead_id = "
		  . literal($e1{lead_id}),
		'deleted', 20),
	'the registry says deleted');
is( query(
		"SELECT state FROM squadstack.outbox WHERE campaign_id = 'camp_e' AND op = 'delete'"),
	'sent',
	'the delete is sent');
is(found(\%values),
	'', 'no value of the deleted lead remains anywhere erasure reaches');
is( query(
		"SELECT count(*) FROM squadstack.api_calls WHERE campaign_id = 'camp_e' AND strpos(error, "
		  . literal(substr($notes, 0, 64))
		  . ') > 0'),
	'0',
	'no piece of the long value, cut short in a kept error, remains either');
is( found({ name => $e2{contact_name}, city => $e2{city}, phone => $e2{phone_number} }),
	'api_calls:city,api_calls:name,lead_outcomes:city,lead_outcomes:name,lead_outcomes:phone,outbox:city,outbox:name,outbox:phone,webhook_inbox:city,webhook_inbox:name,webhook_inbox:phone',
	'the other lead\'s values stay');
is(worker_pid($node), $worker, 'the worker is the same process');
is(join("\n", worker_exits($node, $log_start)),
	'', 'the server log shows no exit or restart of the worker');

done_testing();
