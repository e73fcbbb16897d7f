# Scheduled syncs with pg_cron (Debian's postgresql-15-cron), where the
# squadstack worker is not preloaded: a nightly bulk sync from a CRM query,
# a flush every minute, and a response sync, each run by pg_cron for real.
# pg_cron's smallest schedule is one minute, so this test waits for the
# minute boundaries (about two minutes at most).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

use SquadstackDouble;

my $double = SquadstackDouble->new;
my $url = $double->url;

my $node = PostgreSQL::Test::Cluster->new('cron');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'pg_cron'
cron.database_name = 'postgres'
cron.use_background_workers = on
max_worker_processes = 16
squadstack.api_url = '$url'
squadstack.token = 'test-token'
listen_addresses = ''
});
$node->start;

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION pg_cron;
CREATE EXTENSION squadstack;
CREATE TABLE crm_customers (id text PRIMARY KEY, mobile text, full_name text, kyc text);
INSERT INTO crm_customers
SELECT 'C' || i, '98765' || lpad(i::text, 5, '0'), 'Customer ' || i, CASE WHEN i % 2 = 0 THEN 'YES' ELSE 'NO' END
FROM generate_series(1, 30) i;
});

# outcomes the responses endpoint will report for some of them
$double->ctl('outcomes',
	[ map { {
		campaign_id => 'camp_1', lead_id => "C$_",
		processed_at => "2024-01-01T10:0$_:00+00:00",
		lead_outcome => 'Connected : Objective Met' } } (1 .. 5) ]);

# the jobs the README shows (here every minute instead of nightly)
$node->safe_psql(
	'postgres', q{
SELECT cron.schedule('squadstack-nightly-sync', '* * * * *', $$
  SELECT squadstack_create_leads('camp_1', leads)
  FROM (SELECT jsonb_agg(jsonb_build_object('lead_id', id, 'phone_number', mobile,
                                            'contact_name', full_name, 'is_KYC', kyc)) AS leads
        FROM public.crm_customers) s
  WHERE leads IS NOT NULL   -- an empty CRM query queues nothing instead of failing
$$);
SELECT cron.schedule('squadstack-flush', '* * * * *', 'SELECT squadstack_flush()');
SELECT cron.schedule('squadstack-responses', '* * * * *', $$SELECT squadstack_sync_responses('camp_1')$$);
});

# the leads reach the API within two minute boundaries (the flush may run
# before the sync in the first minute)
ok( wait_for(
		sub {
			my $seen = count_by_lead(grep { ($_->{status} // 0) == 201 }
				  $double->requests(endpoint => 'create'));
			return keys(%$seen) == 30;
		},
		150),
	'pg_cron ran the bulk sync and the flush: all 30 CRM rows reached the API');

my $creates = count_by_lead($double->requests(endpoint => 'create'));
is(scalar(grep { $_ != 1 } values %$creates), 0, 'each lead was sent once');

ok( wait_for_sql(
		$node,
		"SELECT count(*) = 5 FROM squadstack.lead_outcomes WHERE campaign_id = 'camp_1'",
		't', 90),
	'pg_cron ran the response sync: outcomes are in squadstack.lead_outcomes');

is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM cron.job_run_details WHERE status = 'failed'}),
	'0',
	'no pg_cron run failed');
note $node->safe_psql('postgres',
	q{SELECT j.jobname, d.status, d.return_message FROM cron.job_run_details d JOIN cron.job j USING (jobid) ORDER BY d.runid});

# a later run of the nightly sync offers the same rows and queues nothing new
is( $node->safe_psql(
		'postgres',
		q{SELECT squadstack_create_leads('camp_1',
		    (SELECT jsonb_agg(jsonb_build_object('lead_id', id, 'phone_number', mobile,
		                                         'contact_name', full_name))
		     FROM public.crm_customers))}),
	'0',
	'the sync is idempotent: leads already created are skipped');

$node->stop;
done_testing();
