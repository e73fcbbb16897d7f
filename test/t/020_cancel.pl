
# A large squadstack_create_leads() call can be cancelled at once, and its
# memory follows its input.
#
# Validation checks for interrupts in every loop over leads, so a
# statement_timeout of 500 ms ends a 600,000-lead call within 100 ms of the
# timeout.  Each lead is validated in a memory context reset after it, and
# the arrays the queueing statement takes are built in place, so the
# backend's private memory grows by well under 1 kB per lead beyond the
# input (measured on 200,000 leads as the peak of the backend's RssAnon;
# shared buffers are not counted).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $n_cancel = 600_000;
my $n_memory = 200_000;

my $node = PostgreSQL::Test::Cluster->new('cancel');
$node->init;
$node->append_conf('postgresql.conf', "shared_buffers = '128MB'\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION squadstack');

# The input is stored uncompressed, so that reading it back costs little of
# the 500 ms; the second row ends with an invalid lead, so that a call with
# it validates every lead and then fails before queueing anything.
$node->safe_psql(
	'postgres', qq{
CREATE TABLE input (name text PRIMARY KEY, leads jsonb);
ALTER TABLE input ALTER leads SET STORAGE EXTERNAL;
INSERT INTO input
SELECT 'big', jsonb_agg(jsonb_build_object(
         'lead_id', 'L' || i, 'phone_number', (9000000000 + i)::text,
         'contact_name', 'Lead ' || i, 'city', 'Pune') ORDER BY i)
FROM generate_series(1, $n_cancel) i;
INSERT INTO input
SELECT 'bad_last', leads || '[{"lead_id": "X", "phone_number": "1", "contact_name": "X"}]'
FROM input WHERE name = 'big';
INSERT INTO input
SELECT 'memory', jsonb_agg(jsonb_build_object(
         'lead_id', 'M' || i, 'phone_number', (9000000000 + i)::text,
         'contact_name', 'Lead ' || i, 'city', 'Pune') ORDER BY i)
FROM generate_series(1, $n_memory) i;
});

# Milliseconds a statement took, measured in the server session around it;
# the statement may fail.
sub timed
{
	my ($sql, %opt) = @_;
	my $timeout = $opt{timeout} // 0;
	my ($ret, $out, $err) = $node->psql(
		'postgres', qq{
SELECT extract(epoch FROM clock_timestamp()) AS t0 \\gset
SET statement_timeout = '$timeout';
$sql;
RESET statement_timeout;
SELECT round((extract(epoch FROM clock_timestamp()) - :t0) * 1000);
}, on_error_stop => 0);
	my ($ms) = $out =~ /(\d+)\s*$/;
	die "no time measured: $err" unless defined $ms;
	return ($ms, $err);
}

# Without a timeout, validating the 600,001 leads takes long enough for a
# cancel at 500 ms to land in the middle of it.
my ($full_ms, $full_err) =
  timed("SELECT squadstack_create_leads('camp_c', leads) FROM input WHERE name = 'bad_last'");
like($full_err, qr/invalid phone number for lead "X"/,
	'the call validates every lead and fails at the last');
cmp_ok($full_ms, '>', 1500, 'validating 600,000 leads takes over 1.5 s');
note "validating $n_cancel leads: $full_ms ms";

# The cancel: three tries, judged by their median.
my @latency;
for my $try (1 .. 3)
{
	my ($ms, $err) = timed(
		"SELECT squadstack_create_leads('camp_c', leads) FROM input WHERE name = 'big'",
		timeout => '500ms');
	like(
		$err,
		qr/canceling statement due to statement timeout/,
		"try $try: the call is cancelled by statement_timeout");
	push @latency, $ms - 500;
	note "try $try: cancelled after $ms ms";
}
@latency = sort { $a <=> $b } @latency;
cmp_ok($latency[1], '<=', 100,
	"the cancel takes effect within 100 ms of the timeout (median $latency[1] ms, all: @latency)");
is($node->safe_psql('postgres', 'SELECT count(*) FROM squadstack.outbox'),
	'0', 'a cancelled call queues nothing');

# Memory: the peak of the backend's private memory (RssAnon) during one
# call of 200,000 leads, sampled every 2 ms from another process.
my $bg = $node->background_psql('postgres');
my $pid = $bg->query_safe('SELECT pg_backend_pid()');
chomp $pid;
my $input_bytes = $bg->query_safe(
	"SELECT pg_column_size(leads) FROM input WHERE name = 'memory'");
chomp $input_bytes;
# plans and caches made once per session
$bg->query_safe(
	q{BEGIN; SELECT squadstack_create_leads('camp_w', '[{"lead_id": "W1", "phone_number": "9876543210", "contact_name": "W"}, {"lead_id": "W2", "phone_number": "9876543211", "contact_name": "W"}]'); ROLLBACK});

sub rss_anon_kb
{
	open(my $fh, '<', "/proc/$pid/status") or return undef;
	while (my $line = <$fh>)
	{
		return $1 if $line =~ /^RssAnon:\s+(\d+)\s+kB/;
	}
	return undef;
}

my $stop = PostgreSQL::Test::Utils::tempdir() . '/stop';
my $result = PostgreSQL::Test::Utils::tempdir() . '/peak';
my $before = rss_anon_kb();
my $sampler = fork();
die "fork failed: $!" unless defined $sampler;
if ($sampler == 0)
{
	my $peak = 0;
	until (-e $stop)
	{
		my $kb = rss_anon_kb();
		last unless defined $kb;
		$peak = $kb if $kb > $peak;
		usleep(2_000);
	}
	open(my $fh, '>', $result) or POSIX::_exit(1);
	print $fh "$peak\n";
	close $fh;
	POSIX::_exit(0);
}
my $t0 = time();
my $queued = $bg->query_safe(
	"SELECT squadstack_create_leads('camp_m', leads) FROM input WHERE name = 'memory'");
my $call_s = time() - $t0;
open(my $fh, '>', $stop) or die;
close $fh;
waitpid($sampler, 0);
my $peak = slurp_file($result);
chomp $peak;
$bg->quit;

is($queued, $n_memory, "the call queued $n_memory leads");
my $per_lead = ($peak - $before) * 1024 / $n_memory;
my $beyond_input = (($peak - $before) * 1024 - $input_bytes) / $n_memory;
note sprintf(
	"memory: RssAnon %d kB before, %d kB at the peak: %.0f bytes per lead, "
	  . "%.0f beyond the input (%.0f bytes per lead); the call took %.1f s",
	$before, $peak, $per_lead, $beyond_input, $input_bytes / $n_memory, $call_s);
cmp_ok($beyond_input, '<', 1024,
	'memory per lead beyond the input is under 1 kB');

$node->stop;
done_testing();
