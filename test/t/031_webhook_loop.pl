
# The whole loop over HTTP: leads queued in SQL are delivered by the worker
# to the API double; the double processes them and POSTs the "lead
# processed" webhook to squadstack-webhookd, which stores it with
# squadstack_receive_webhook(); the outcomes land in squadstack.lead_outcomes
# and, through a write-back, in a CRM table.  Also: the double retries while
# the receiver is down and while the database is down (503), gives up on a
# wrong secret (403), and processes leads by itself with auto_process.  The
# receiver is the one installed next to the cluster's binaries; it and the
# double are stopped at the end, also on failure.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use SquadstackDouble;

my $secret = 'loop-Secret-4kd81z';
my $campaign = 'camp_loop';

my $double = SquadstackDouble->new;
my $node = $double->new_node('loop',
	conf => "squadstack.webhook_secret = '$secret'\n");
$node->safe_psql(
	'postgres', q{
CREATE ROLE webhook_app LOGIN;
GRANT EXECUTE ON FUNCTION squadstack_receive_webhook(jsonb, text) TO webhook_app;
-- the test clusters log every statement: not the secret, a parameter
ALTER ROLE webhook_app SET log_parameter_max_length = 0;
CREATE TABLE crm_leads (id text PRIMARY KEY, outcome text, interest text,
  called_at timestamptz);
SELECT squadstack_writeback('camp_loop', 'crm_leads', 'id=lead_id',
  'outcome=lead_outcome', 'interest=lead_responses.interest',
  'called_at=latest_called_at', 'on_missing=insert');
});

my $port = PostgreSQL::Test::Cluster::get_free_port();
my $hook = "http://127.0.0.1:$port/squadstack/webhook/{campaign}/$secret";
my $webhookd = SquadstackDouble::Webhookd->new($node, port => $port);

sub sql
{
	my ($q) = @_;
	return $node->safe_psql('postgres', $q);
}

# wait until the double holds these leads of a campaign (the worker has
# delivered them)
sub wait_delivered
{
	my ($camp, @ids) = @_;
	return wait_for(
		sub {
			my $stored = $double->leads->{$camp} || {};
			return !grep { !$stored->{$_} } @ids;
		},
		60);
}

sub summary
{
	return join ' ',
	  map { "$_->{attempt}:" . ($_->{status} // $_->{error}) . ":$_->{result}" } @_;
}

$webhookd->start('--dsn-file' => $webhookd->dsn_file);
$double->config(
	{
		webhook_url => $hook,
		webhook_attempts => 20,
		webhook_retry_base => 0.2,
		webhook_retry_max => 1,
		webhook_timeout => 10,
	});

# ---------------------------------------------------------------------------
# queued in SQL, delivered, processed, sent back, stored, written back
# ---------------------------------------------------------------------------

queue_leads($node, $campaign, 'W', 1, 5);
ok(wait_delivered($campaign, lead_ids('W', 1, 5)),
	'the worker delivers the queued leads to the double');

$double->process(
	campaign => $campaign,
	lead_ids => [ lead_ids('W', 1, 5) ],
	outcome => 'Connected : Objective Met',
	lead_responses => { interest => 'high' });
ok($double->wait_webhooks(60), 'the double sends its webhooks');
my @sent = $double->webhooks(campaign => $campaign);
is(summary(@sent), join(' ', ('1:201:delivered') x 5),
	'five webhooks, each answered 201 at the first attempt');
is_deeply([ sort map { $_->{lead_id} } @sent ], [ lead_ids('W', 1, 5) ],
	'one per lead');
is_deeply([ map { $_->{url} } @sent ],
	[ ("http://127.0.0.1:$port/squadstack/webhook/$campaign/***") x 5 ],
	'to the receiver\'s URL, recorded with the secret as ***');

is( sql(qq{SELECT count(*) FROM squadstack.lead_outcomes
  WHERE campaign_id = '$campaign' AND lead_outcome = 'Connected : Objective Met'
    AND lead_responses->>'interest' = 'high'}),
	5, 'the five outcomes are in lead_outcomes');
is( sql(qq{SELECT string_agg(DISTINCT status, ',') FROM squadstack.webhook_inbox
  WHERE campaign_id = '$campaign'}),
	'applied', 'each applied from the webhook inbox');
my $w1 = (grep { $_->{lead_id} eq 'W1' } @sent)[0]{payload};
is( sql(qq{SELECT concat_ws('|', phone_number, contact_name,
    to_char(processed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"+00:00"'))
  FROM squadstack.lead_outcomes WHERE campaign_id = '$campaign' AND lead_id = 'W1'}),
	join('|', $w1->{phone_number}, $w1->{contact_name}, $w1->{processed_at}),
	'stored as sent: phone number, contact name, processed_at');
is($w1->{contact_name}, 'Lead 1', 'the payload carries the lead as queued');
is( sql(q{SELECT string_agg(id || '=' || outcome || '/' || interest
    || '/' || (called_at IS NOT NULL), ',' ORDER BY id) FROM crm_leads}),
	join(',', map { "W$_=Connected : Objective Met/high/true" } 1 .. 5),
	'and written back into the CRM table');

# the responses endpoint reports the same outcomes: pulling them stores nothing new
my $before = sql(qq{SELECT string_agg(lead_id || lead_outcome || processed_at, ','
  ORDER BY lead_id) FROM squadstack.lead_outcomes WHERE campaign_id = '$campaign'});
my $t_sync = epoch_now();
sql(qq{SELECT squadstack_sync_responses('$campaign')});
ok(scalar($double->requests(endpoint => 'responses', campaign => $campaign,
	since => $t_sync)), 'the responses endpoint is asked');
is( sql(qq{SELECT string_agg(lead_id || lead_outcome || processed_at, ','
  ORDER BY lead_id) FROM squadstack.lead_outcomes WHERE campaign_id = '$campaign'}),
	$before, 'the responses endpoint agrees with the webhooks');
is( sql(qq{SELECT count(*) FROM squadstack.webhook_inbox
  WHERE campaign_id = '$campaign' AND status = 'applied'}),
	5, 'nothing applied twice');

# ---------------------------------------------------------------------------
# the receiver down: the double retries until it is back
# ---------------------------------------------------------------------------

queue_leads($node, $campaign, 'W', 6, 7);
ok(wait_delivered($campaign, 'W6', 'W7'), 'two more leads delivered');

is($webhookd->stop, 0, 'the receiver is stopped');
$double->process(campaign => $campaign, lead_ids => ['W6'],
	outcome => 'Callback');
ok( wait_for(
		sub {
			grep { ($_->{error} // '') eq 'connection refused' }
			  $double->webhooks(lead_id => 'W6');
		},
		30),
	'the webhook finds no receiver');
$webhookd->start('--dsn-file' => $webhookd->dsn_file);
ok($double->wait_webhooks(60), 'the receiver is back: the double sends it');
my @w6 = $double->webhooks(lead_id => 'W6');
like(summary(@w6), qr/^(?:\d+:connection refused:retrying )+\d+:201:delivered$/,
	'refused, retried, then delivered (' . summary(@w6) . ')');
is( sql(qq{SELECT lead_outcome FROM squadstack.lead_outcomes
  WHERE campaign_id = '$campaign' AND lead_id = 'W6'}),
	'Callback', 'the outcome is stored');

# ---------------------------------------------------------------------------
# the database down: the receiver answers 503 and the double retries
# ---------------------------------------------------------------------------

$node->stop('fast');
$double->process(campaign => $campaign, lead_ids => ['W7'],
	outcome => 'Not Interested');
ok( wait_for(
		sub {
			grep { ($_->{status} // 0) == 503 } $double->webhooks(lead_id => 'W7');
		},
		30),
	'the database is stopped: the receiver answers 503');
$node->start;
ok($double->wait_webhooks(60), 'the database is back: the webhook goes through');
my @w7 = $double->webhooks(lead_id => 'W7');
like(summary(@w7), qr/^(?:\d+:503:retrying )+\d+:201:delivered$/,
	'503, retried, then delivered (' . summary(@w7) . ')');
is( sql(qq{SELECT lead_outcome FROM squadstack.lead_outcomes
  WHERE campaign_id = '$campaign' AND lead_id = 'W7'}),
	'Not Interested', 'the outcome is stored');
is(sql(q{SELECT outcome FROM crm_leads WHERE id = 'W7'}),
	'Not Interested', 'and written back');

# ---------------------------------------------------------------------------
# a wrong secret: 403, not retried, nothing stored
# ---------------------------------------------------------------------------

$double->config(
	{
		webhook_urls => {
			camp_bad => "http://127.0.0.1:$port/squadstack/webhook/{campaign}/not-the-secret"
		}
	});
queue_leads($node, 'camp_bad', 'X', 1, 1);
ok(wait_delivered('camp_bad', 'X1'), 'a lead of another campaign delivered');
$double->process(campaign => 'camp_bad');
ok($double->wait_webhooks(60), 'its webhook is sent');
is(summary($double->webhooks(campaign => 'camp_bad')), '1:403:rejected',
	'a wrong secret: 403 at the first attempt, not retried');
is( sql(q{SELECT count(*) FROM squadstack.lead_outcomes WHERE campaign_id = 'camp_bad'}),
	0, 'and nothing stored');

# ---------------------------------------------------------------------------
# auto_process: queue leads and wait, as the demo does
# ---------------------------------------------------------------------------

$double->config(
	{
		auto_process => {
			delay => 0.3,
			outcome => 'Interested',
			lead_responses => { interest => 'medium' }
		}
	});
queue_leads($node, $campaign, 'A', 1, 3);
ok( wait_for_sql(
		$node,
		q{SELECT count(*) FROM crm_leads WHERE id LIKE 'A%'
  AND outcome = 'Interested' AND interest = 'medium'},
		'3', 60),
	'with auto_process, queued leads come back into the CRM table by themselves');
ok($double->wait_webhooks(30), 'no webhook left pending');
is( scalar(grep { $_->{result} ne 'delivered' && $_->{result} ne 'retrying' }
	  $double->webhooks(campaign => $campaign)),
	0, 'every webhook of the campaign was delivered in the end');

# ---------------------------------------------------------------------------
# the secret stays out of the logs
# ---------------------------------------------------------------------------

is($webhookd->stop, 0, 'the receiver stops');
my $all_logs = $webhookd->logs;
unlike($all_logs, qr/\Q$secret\E/, 'the secret is not in the receiver\'s log');
unlike($double->ctl('webhooks') . $double->ctl('get-config'),
	qr/\Q$secret\E/, 'nor in the double\'s webhook record or config');

$node->stop;
done_testing();
