
# A streaming standby: its worker stays away and squadstack_flush() refuses
# to run during recovery; when the primary stops mid-backlog and the standby
# is promoted, it delivers the rest of the replicated outbox: nothing lost,
# nothing the primary had sent sent again, and the rate limit (whose record
# is replicated too) still holds across the failover.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

use SquadstackDouble;

my ($limit, $window) = (10, 1);
my $double = SquadstackDouble->new(rate_limit => $limit, rate_window => $window);
my $primary = $double->new_node(
	'primary',
	allows_streaming => 1,
	conf => qq{
squadstack.rate_limit = $limit
squadstack.rate_window = '${window}s'
squadstack.batch_size = 10
max_connections = 20
});
$primary->backup('backup');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'backup', has_streaming => 1);
$standby->start;

# --- on the standby: no worker, no flush

queue_leads($primary, 'camp_r', 'R', 1, 2);
$primary->wait_for_catchup($standby);
is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'),
	't', 'the standby is in recovery');
is( $standby->safe_psql(
		'postgres', 'SELECT count(*) FROM squadstack.outbox'),
	'2',
	'the outbox is replicated');
sleep 1;
is(worker_pid($standby), '', 'no worker runs on the standby');
is( $standby->safe_psql(
		'postgres',
		'SELECT running, pid IS NULL FROM squadstack_worker_status()'),
	'f|t',
	'squadstack_worker_status() on the standby: not running');
my ($rc, $out, $err) =
  $standby->psql('postgres', 'SELECT squadstack_flush()');
isnt($rc, 0, 'squadstack_flush() fails on the standby');
like(
	$err,
	qr/ERROR: .*during recovery/,
	'... saying why');
ok( wait_for_sql(
		$primary,
		"SELECT count(*) FROM squadstack.outbox WHERE state = 'sent'",
		'2', 10),
	'the primary delivers');

# --- a backlog: the primary sends part of it, the standby the rest

queue_leads($primary, 'camp_f', 'F', 1, 600);
ok(wait_for(sub { scalar $double->requests(campaign => 'camp_f') >= 25 }, 10),
	'the primary is draining the backlog');
$primary->stop('fast');
my $t_stop = time();
my $sent_by_primary = scalar $double->requests(campaign => 'camp_f');
note "the primary made $sent_by_primary calls";
cmp_ok($sent_by_primary, '<', 60, 'the primary stopped mid-backlog');

is( $standby->safe_psql(
		'postgres',
		"SELECT count(*) FROM squadstack.outbox WHERE campaign_id = 'camp_f'"),
	'600',
	'the standby has the whole backlog');
sleep 1;
is(scalar $double->requests(campaign => 'camp_f'),
	$sent_by_primary, 'nothing is sent while the standby is in recovery');

$standby->promote;
ok( wait_for_sql($standby, 'SELECT pg_is_in_recovery()', 'f', 30),
	'the standby is promoted');
ok(wait_for(sub { worker_pid($standby) ne '' }, 20),
	'after promotion the worker runs');
ok( wait_for_sql(
		$standby,
		"SELECT count(*) FROM squadstack.outbox WHERE campaign_id = 'camp_f' AND state IN ('queued', 'sending')",
		'0', 30),
	'the promoted standby works off the backlog');

my @reqs = $double->requests(campaign => 'camp_f');
my @all = lead_ids('F', 1, 600);
my $stored = $double->leads->{camp_f} || {};
is(scalar(grep { $stored->{$_} } @all), 600, 'the double has all 600 leads');
my $accepted = count_by_lead(grep { $_->{status} >= 200 && $_->{status} < 300 } @reqs);
is(scalar(grep { ($accepted->{$_} // 0) == 1 } @all),
	600, 'every lead was created exactly once');

# only a call cut off by the primary's shutdown may be repeated, lead by lead
my $resent = $standby->safe_psql('postgres',
	"SELECT string_agg(lead_id, ',' ORDER BY lead_id) FROM squadstack.outbox WHERE campaign_id = 'camp_f' AND batch_limit = 1"
);
my %resent = map { $_ => 1 } split /,/, $resent;
note 'operations re-sent after the failover: ' . (scalar(keys %resent));
my $carried = count_by_lead(@reqs);
is(scalar(grep { !$resent{$_} && $carried->{$_} != 1 } @all),
	0, 'every other lead was sent exactly once');
cmp_ok(scalar(keys %resent), '<=', 10, 'at most one call was cut off');
my @after = grep { $_->{received_at} > $t_stop } @reqs;
cmp_ok(scalar(@after), '>', 0, 'the promoted standby made the rest of the calls');
is( scalar(grep { $resent{ $_->{lead_ids}[0] } && @{ $_->{lead_ids} } != 1 } @after),
	0, 'cut-off leads were re-sent alone');

my @times = map { $_->{received_at} } $double->requests;
my $most = sliding_max(\@times, $window);
cmp_ok($most, '<=', $limit,
	"never more than $limit calls per ${window} s, across the failover (most: $most)");
is(scalar(grep { $_->{status} == 429 } $double->requests), 0, 'no 429');

done_testing();
