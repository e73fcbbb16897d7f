
# bench/drain.pl: the measurements of bench/drain (which runs this as the
# postgres user in a scratch directory; see bench/drain for usage).
#
# One cluster with the worker preloaded, the API double on 127.0.0.1, fsync
# on.  Phases, in order:
#   1. latency: single leads committed into an idle outbox, from the clock
#      read right after COMMIT (in the same session) to the double's receipt,
#      and from the clock read just before COMMIT (an upper bound);
#   2. drain: a backlog under a short rate window (default 20,000 leads,
#      batch 100, 20 calls per 2 s, the double limiting the same way);
#   3. large backlog: 1,000,000 leads queued, the limit lifted, the worker
#      delivering flat out for a while; its peak memory and CPU per lead
#      against phase 2.
# Every wait has a deadline; clusters and the double are stopped at exit,
# also on errors and on SIGINT/SIGTERM.

use strict;
use warnings;

# the framework sends STDOUT to its log file: keep the terminal for results
BEGIN
{
	open(our $OUT, '>&', \*STDOUT) or die "cannot dup stdout: $!";
	$OUT->autoflush(1);
}
our $OUT;

use List::Util qw(sum);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Time::HiRes qw(time sleep);

use SquadstackDouble;

# the framework's progress notes go to the log, not the terminal
Test::More->builder->output($PostgreSQL::Test::Utils::test_logfile);
Test::More->builder->failure_output($PostgreSQL::Test::Utils::test_logfile);

$SIG{INT} = $SIG{TERM} = sub { die "interrupted\n" };

my %p = (
	samples => $ENV{BENCH_SAMPLES} // 50,
	leads => $ENV{BENCH_LEADS} // 20000,
	batch => $ENV{BENCH_BATCH} // 100,
	limit => $ENV{BENCH_LIMIT} // 20,
	window => $ENV{BENCH_WINDOW} // 2,
	big => $ENV{BENCH_BIG} // 1000000,
	big_secs => $ENV{BENCH_BIG_SECONDS} // 30);

sub out { printf $OUT @_; return; }

sub measure
{
	my ($name, $value, $goal) = @_;
	out("%s: %s (goal %s)\n", $name, $value, $goal);
	return;
}

sub die_unless
{
	my ($ok, $what) = @_;
	die "bench/drain: $what\n" unless $ok;
	return;
}

# utime + stime of a process, in seconds
sub cpu_seconds
{
	my ($pid) = @_;
	my $stat = slurp_file("/proc/$pid/stat");
	$stat =~ s/^.*\)\s+//s;
	my @f = split /\s+/, $stat;
	# fields 14 and 15 of stat(5), counted after "(comm)" from 3
	return ($f[11] + $f[12]) / 100;    # USER_HZ is 100 on Linux
}

# a line of /proc/PID/status, in kB
sub status_kb
{
	my ($pid, $key) = @_;
	my ($kb) = slurp_file("/proc/$pid/status") =~ /^$key:\s+(\d+) kB/m;
	return $kb // 0;
}

sub percentile
{
	my ($p, @v) = @_;
	@v = sort { $a <=> $b } @v;
	return $v[ int($p * $#v + 0.5) ];
}

out("bench/drain: %s leads, batch %d, %d calls per %g s; %d latency samples; "
	  . "%d-lead large backlog for %d s\n",
	$p{leads}, $p{batch}, $p{limit}, $p{window}, $p{samples}, $p{big},
	$p{big_secs});

my $double = SquadstackDouble->new(
	rate_limit => $p{limit},
	rate_window => $p{window});
my $node = $double->new_node(
	'bench', conf => qq{
squadstack.rate_limit = $p{limit}
squadstack.rate_window = '$p{window}s'
squadstack.batch_size = $p{batch}
fsync = on
log_statement = none
shared_buffers = '128MB'
max_wal_size = '4GB'
} . ($ENV{BENCH_EXTRA_CONF} // ''));
die_unless(wait_for(sub { worker_pid($node) ne '' }, 20), 'no worker');
my $worker = worker_pid($node);
out("worker pid %d; server %s\n", $worker,
	$node->safe_psql('postgres', 'SHOW server_version'));

# --- 1. commit-to-API latency into an idle outbox

die_unless(
	wait_for_sql(
		$node, "SELECT waiting_for FROM squadstack_worker_status()",
		'work', 20),
	'the worker is not idle');
my $psql = $node->background_psql('postgres');
my (@lat, @upper);
# samples are spaced so that the rate limit never holds one back
my $spacing = 1.5 * $p{window} / $p{limit};
my $next = time();
for my $i (1 .. $p{samples})
{
	sleep($next - time()) if $next > time();
	$next = time() + $spacing;
	my $out = $psql->query_safe(
		qq{BEGIN;
SELECT squadstack_create_leads('camp_latency', '{"lead_id": "LAT$i", "phone_number": "9876500000", "contact_name": "Latency"}');
SELECT extract(epoch from clock_timestamp());
COMMIT;
SELECT extract(epoch from clock_timestamp());});
	my (undef, $before_commit, $after_commit) = split /\n/, $out;
	my $r;
	die_unless(
		wait_for(
			sub {
				($r) = grep { $_->{lead_ids}[0] eq "LAT$i" }
				  $double->requests(campaign => 'camp_latency');
				return $r;
			},
			5),
		"lead LAT$i not delivered within 5 s");
	push @lat, 1000 * ($r->{received_at} - $after_commit);
	push @upper, 1000 * ($r->{received_at} - $before_commit);
}
$psql->quit;
my ($p50, $p99) = (percentile(0.5, @lat), percentile(0.99, @lat));
measure('commit-to-API latency p50',
	sprintf('%.1f ms (%.2f of goal)', $p50, $p50 / 50), '< 50 ms');
measure('commit-to-API latency p99', sprintf('%.1f ms', $p99), '< 500 ms (no polling)');
out("  from the clock read just before COMMIT (includes the commit): p50 %.1f ms, p99 %.1f ms\n",
	percentile(0.5, @upper), percentile(0.99, @upper));
my @slowest = (sort { $lat[$b] <=> $lat[$a] } 0 .. $#lat)[ 0 .. 2 ];
out("  slowest samples: %s\n",
	join(', ', map { sprintf('#%d %.1f ms', $_ + 1, $lat[$_]) } @slowest));

# --- 2. a backlog drained under a short window

$double->ctl('reset', {});
my $cpu0 = cpu_seconds($worker);
my $t_commit = time();
$node->safe_psql('postgres',
	queue_leads($node, 'camp_drain', 'D', 1, $p{leads}, 1));
my $n_calls = int(($p{leads} + $p{batch} - 1) / $p{batch});
my $drain_deadline = 30 + 2 * $n_calls / $p{limit} * $p{window};
die_unless(
	wait_for_sql(
		$node,
		"SELECT count(*) FROM squadstack.outbox WHERE campaign_id = 'camp_drain' AND state <> 'sent'",
		'0', $drain_deadline),
	'the backlog did not drain');
my $cpu_drain = cpu_seconds($worker) - $cpu0;
my @calls = $double->requests(campaign => 'camp_drain');
my @t = sort { $a <=> $b } map { $_->{received_at} } @calls;
my $n429 = grep { $_->{status} == 429 } $double->requests;
my $k = int($#t / $p{limit});
die_unless($k >= 1, 'too few calls to measure: queue at least 2 windows worth of calls');
# with the budget fully used, call k * limit goes out k windows after the first
my $span = $t[ $k * $p{limit} ] - $t[0];
my $per_window = $k * $p{limit} / ($span / $p{window});
my $leads_in_span = sum(map { scalar @{ $_->{lead_ids} } }
	  (sort { $a->{received_at} <=> $b->{received_at} } @calls)[ 0 .. $k * $p{limit} - 1 ]);
my $lps = $leads_in_span / $span;
my $lps_limit = $p{limit} * $p{batch} / $p{window};
my $most = sliding_max(\@t, $p{window});
my $cpu_per_1000 = $cpu_drain / ($p{leads} / 1000);

out("drain: %d calls, first %.3f s after the commit, %d windows measured over %.2f s, most in any window %d\n",
	scalar(@calls), $t[0] - $t_commit, $k, $span, $most);
measure('achieved calls per window / allowed',
	sprintf('%.2f / %d = %.3f', $per_window, $p{limit}, $per_window / $p{limit}),
	'>= 0.97');
measure('leads per second / limit',
	sprintf('%.0f / %.0f = %.3f', $lps, $lps_limit, $lps / $lps_limit),
	'>= 0.97');
measure('429s seen', $n429, '0');
measure('calls over the limit in any window',
	$most > $p{limit} ? $most - $p{limit} : 0, '0');
measure('worker CPU per 1,000 leads (drain)',
	sprintf('%.4f s (%.2f s for %d leads)', $cpu_per_1000, $cpu_drain, $p{leads}),
	'as low as possible; baseline for the large backlog');
my $hwm_small = status_kb($worker, 'VmHWM');
my $anon_small = status_kb($worker, 'RssAnon');
my $shmem_small = status_kb($worker, 'RssShmem');
measure('worker peak memory after the drain',
	sprintf('VmHWM %.1f MB (RssAnon now %.1f MB)', $hwm_small / 1024, $anon_small / 1024),
	'< 64 MB');

# --- 3. a large backlog

$double->ctl('reset', { rate_limit => 1000000, rate_window => 1 });
$node->safe_psql(
	'postgres', q{
ALTER SYSTEM SET squadstack.rate_limit = 100000;
ALTER SYSTEM SET squadstack.rate_window = '1s';
SELECT pg_reload_conf();});
my $t_fill = time();
my $chunk = 100000;
my ($hwm_big, $anon_big) = (0, 0);
for (my $from = 1; $from <= $p{big}; $from += $chunk)
{
	my $to = $from + $chunk - 1;
	$to = $p{big} if $to > $p{big};
	$node->safe_psql('postgres',
		queue_leads($node, 'camp_big', 'M', $from, $to, 1));
}
my $fill_secs = time() - $t_fill;
my $queued = $node->safe_psql('postgres',
	"SELECT count(*) FROM squadstack.outbox WHERE campaign_id = 'camp_big' AND state = 'queued'"
);
out("large backlog: %d leads queued in %.1f s, %d still queued\n",
	$p{big}, $fill_secs, $queued);

my $sent0 = $node->safe_psql('postgres',
	"SELECT count(*) FROM squadstack.outbox WHERE campaign_id = 'camp_big' AND state = 'sent'"
);
$cpu0 = cpu_seconds($worker);
my $t0 = time();
my @rss;
while (time() - $t0 < $p{big_secs})
{
	die_unless(kill(0, $worker), 'the worker died');
	my $anon = status_kb($worker, 'RssAnon');
	$anon_big = $anon if $anon > $anon_big;
	push @rss, $anon;
	sleep 0.5;
}
my $cpu_big = cpu_seconds($worker) - $cpu0;
my $sent = $node->safe_psql('postgres',
	"SELECT count(*) FROM squadstack.outbox WHERE campaign_id = 'camp_big' AND state = 'sent'"
) - $sent0;
$hwm_big = status_kb($worker, 'VmHWM');
my $left = $node->safe_psql('postgres',
	"SELECT count(*) FROM squadstack.outbox WHERE campaign_id = 'camp_big' AND state <> 'sent'"
);
die_unless($sent > 0, 'nothing was sent from the large backlog');
my $cpu_per_1000_big = $cpu_big / ($sent / 1000);
out("large backlog: %d leads sent in %d s (%.0f leads/s flat out), %d left\n",
	$sent, $p{big_secs}, $sent / (time() - $t0), $left);
measure('worker CPU per 1,000 leads (large backlog)',
	sprintf('%.4f s, %.2f x the drain', $cpu_per_1000_big,
		$cpu_per_1000_big / $cpu_per_1000),
	'flat: about 1 x');
my $shmem_big = status_kb($worker, 'RssShmem');
measure('worker peak memory with the large backlog',
	sprintf('VmHWM %.1f MB, %.2f x after the drain', $hwm_big / 1024,
		$hwm_big / $hwm_small),
	'flat, < 64 MB');
out("  of which shared buffers: RssShmem now %.1f MB (%.1f MB after the drain); "
	  . "VmHWM counts every page of shared_buffers the worker has touched\n",
	$shmem_big / 1024, $shmem_small / 1024);
measure('worker private memory (RssAnon) with the large backlog',
	sprintf('peak %.1f MB, %.2f x after the drain; samples: first %.1f, middle %.1f, last %.1f MB',
		$anon_big / 1024, $anon_big / ($anon_small || 1), $rss[0] / 1024,
		$rss[ $#rss / 2 ] / 1024, $rss[-1] / 1024),
	'flat, < 64 MB');

$node->stop('fast');
out("bench/drain: done in %.0f s\n", time() - $^T);
