
# SquadstackDouble: the SquadStack API double (test/api_double.py) for the
# TAP tests, and helpers to set up clusters that deliver to it and to judge
# what reached it.
#
#	my $double = SquadstackDouble->new(tokens => ['test-token']);
#	my $node = $double->new_node('main');
#	...
#	my @calls = $double->requests(campaign => 'camp_a');
#
# The double runs on 127.0.0.1 with a port it picks; it is stopped when the
# test ends, also when it dies (END block), and by itself when the test
# process is gone (--parent-pid) or after 15 minutes.  api_double.py and
# double_ctl.py are looked for in $ENV{TESTDIR} (where test/tap.sh puts them),
# else next to this file's directory.

package SquadstackDouble;

use strict;
use warnings;

use Carp;
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use IPC::Run ();
use JSON::PP ();
use POSIX qw(WNOHANG);
use Time::HiRes qw(time usleep);

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use Exporter 'import';
our @EXPORT = qw(wait_for wait_for_sql worker_pid sliding_max
  budget_used queue_leads lead_ids count_by_lead epoch_now
  log_position worker_exits);

my $json = JSON::PP->new->canonical;
my @running;    # doubles to stop at exit

sub script_dir
{
	for my $dir ($ENV{TESTDIR}, dirname(dirname(abs_path(__FILE__))))
	{
		return $dir if defined $dir && -f "$dir/api_double.py";
	}
	croak "api_double.py not found (set TESTDIR)";
}

=pod

SquadstackDouble->new(%params) starts a double.  Parameters: tokens (array
ref of accepted tokens, default ['test-token']), rate_limit (default 1000),
rate_window (seconds, default 1), port (default: a free one), args (array ref
of more api_double.py options, e.g. ['--webhook-url' => $url]; with
'--tls-cert' and '--tls-key' the TLS listener's port is tls_port).

=cut

sub new
{
	my ($class, %params) = @_;
	my $self = bless {
		tokens => $params{tokens} || ['test-token'],
		rate_limit => $params{rate_limit} || 1000,
		rate_window => $params{rate_window} || 1,
		port => $params{port} || 0,
		args => $params{args} || [],
		dir => PostgreSQL::Test::Utils::tempdir('double'),
		scripts => script_dir(),
	}, $class;
	$self->{log} = "$self->{dir}/requests.jsonl";
	$self->start;
	push @running, $self;
	return $self;
}

sub start
{
	my ($self) = @_;
	my $portfile = "$self->{dir}/port";

	croak "the double is already running" if $self->{pid};
	unlink $portfile;
	my @cmd = (
		'python3', "$self->{scripts}/api_double.py",
		'--port' => $self->{port},
		'--port-file' => $portfile,
		'--log' => $self->{log},
		(map { ('--token' => $_) } @{ $self->{tokens} }),
		'--rate-limit' => $self->{rate_limit},
		'--rate-window' => $self->{rate_window},
		'--parent-pid' => $$,
		'--max-lifetime' => 900,
		@{ $self->{args} });
	my $tls = grep { $_ eq '--tls-cert' } @{ $self->{args} };
	push @cmd, '--tls-port-file' => "$self->{dir}/tls_port" if $tls;
	my $pid = spawn(\@cmd, "$self->{dir}/double.out");
	$self->{pid} = $pid;

	my $deadline = time() + 15;
	until (-s $portfile)
	{
		if (waitpid($pid, WNOHANG) == $pid)
		{
			delete $self->{pid};
			croak "the API double exited at start: "
			  . slurp_file("$self->{dir}/double.out");
		}
		croak "the API double did not write its port" if time() > $deadline;
		usleep(20_000);
	}
	my $port = slurp_file($portfile);
	chomp $port;
	$self->{port} = $port;
	if ($tls)
	{
		# written before the plain port
		$self->{tls_port} = slurp_file("$self->{dir}/tls_port");
		chomp $self->{tls_port};
	}
	$self->ctl('wait-ready', '--timeout', 10);
	note "API double (pid $pid) listening on 127.0.0.1:$port";
	return;
}

sub stop
{
	my ($self) = @_;
	my $pid = delete $self->{pid};

	return unless $pid;
	terminate($pid, 5);
	return;
}

# Run @$cmd in the background, its output appended to $out; returns its pid.
sub spawn
{
	my ($cmd, $out) = @_;
	my $pid = fork();

	croak "fork failed: $!" unless defined $pid;
	if ($pid == 0)
	{
		open(STDOUT, '>>', $out) or POSIX::_exit(126);
		open(STDERR, '>&', \*STDOUT) or POSIX::_exit(126);
		exec(@$cmd) or POSIX::_exit(127);
	}
	return $pid;
}

# SIGTERM to $pid, SIGKILL if it has not exited after $timeout seconds;
# returns its exit status, or undef if it had to be killed.
sub terminate
{
	my ($pid, $timeout) = @_;
	my $deadline = time() + $timeout;

	kill 'TERM', $pid;
	while (waitpid($pid, WNOHANG) != $pid)
	{
		if (time() > $deadline)
		{
			kill 'KILL', $pid;
			waitpid($pid, 0);
			return undef;
		}
		usleep(20_000);
	}
	return $?;
}

# Stop and start again on the same port (the request log goes on; the
# double's leads store starts empty).
sub restart
{
	my ($self) = @_;
	$self->stop;
	$self->start;
	return;
}

sub port { return $_[0]->{port}; }
sub url { return "http://127.0.0.1:$_[0]->{port}/api/v4"; }
# the TLS listener (args --tls-cert and --tls-key)
sub tls_port { return $_[0]->{tls_port}; }
sub tls_url { return "https://127.0.0.1:$_[0]->{tls_port}/api/v4"; }
sub log_file { return $_[0]->{log}; }

# Run double_ctl.py with the given arguments; returns its output, dies on
# failure.  JSON arguments may be given as Perl references; a long one (a
# fault quoting a large lead) goes through standard input, as an argument
# may not be that long.
sub ctl
{
	my ($self, @args) = @_;
	my ($in, $out, $err) = (undef, '', '');

	@args = map { ref $_ ? $json->encode($_) : $_ } @args;
	for my $arg (@args)
	{
		next unless length($arg) > 16384;
		croak "only one long argument can go through standard input"
		  if defined $in;
		($in, $arg) = ($arg, '-');
	}
	my @cmd = ('python3', "$self->{scripts}/double_ctl.py",
		'--port' => $self->{port}, @args);
	IPC::Run::run(\@cmd, '<', \$in, '>', \$out, '2>', \$err,
		IPC::Run::timeout($self->{ctl_timeout} // 30))
	  or croak "double_ctl @args failed: $err";
	return $out;
}

sub config { my ($self, $c) = @_; return $self->ctl('config', $c); }
sub fault { my ($self, $f) = @_; return $self->ctl('fault', $f); }
sub clear_faults { my ($self) = @_; return $self->ctl('clear-faults'); }

# {campaign: {lead_id: {fields, state, detail}}}
sub leads
{
	my ($self) = @_;
	return $json->decode($self->ctl('leads'));
}

=pod

$double->process(campaign => $c, %request): the double processes leads (all
of the campaign's created, unprocessed ones unless lead_ids => [...] is given;
outcome, lead_responses, processed_at) and queues their webhooks.

$double->webhooks(%filter): the recorded webhook attempts, in order, each
{seq, campaign, lead_id, url (secret as ***), attempt, attempts, status,
error, answer, result, payload}; result is delivered, rejected, retrying,
gave_up or dropped.  Filters: campaign, lead_id, result.

$double->wait_webhooks($timeout): wait until no webhook is pending and no lead
scheduled for processing; returns whether that happened in time.

=cut

sub process
{
	my ($self, %request) = @_;
	return $self->ctl('process', \%request);
}

sub webhooks
{
	my ($self, %f) = @_;
	my @attempts;

	for my $line (split /\n/, $self->ctl('webhooks'))
	{
		my $r = $json->decode($line);
		next if defined $f{campaign} && $r->{campaign} ne $f{campaign};
		next if defined $f{lead_id} && $r->{lead_id} ne $f{lead_id};
		next if defined $f{result} && $r->{result} ne $f{result};
		push @attempts, $r;
	}
	return @attempts;
}

sub wait_webhooks
{
	my ($self, $timeout) = @_;
	$timeout //= 30;
	local $self->{ctl_timeout} = $timeout + 30;
	return eval { $self->ctl('wait-webhooks', '--timeout', $timeout); 1 } ? 1 : 0;
}

=pod

$double->requests(%filter): the recorded API requests (from the JSON-lines
log, over every start of the double), in the order they were answered.
Filters: campaign, endpoint, since (received_at >= since), until.

=cut

sub requests
{
	my ($self, %f) = @_;
	my @records;

	return () unless -e $self->{log};
	open(my $fh, '<', $self->{log}) or croak "cannot read $self->{log}: $!";
	while (my $line = <$fh>)
	{
		next unless $line =~ /\}\s*$/;    # a line being written
		my $r = eval { $json->decode($line) };
		next unless $r;
		next if defined $f{campaign} && ($r->{campaign} // '') ne $f{campaign};
		next if defined $f{endpoint} && ($r->{endpoint} // '') ne $f{endpoint};
		next if defined $f{since} && $r->{received_at} < $f{since};
		next if defined $f{until} && $r->{received_at} >= $f{until};
		push @records, $r;
	}
	close $fh;
	return @records;
}

=pod

$double->new_node($name, %params): a cluster with the library preloaded and
the worker pointed at this double, started, with the extension created.
Parameters: conf (more postgresql.conf lines), allows_streaming,
no_extension (do not CREATE EXTENSION), no_start.

=cut

sub node_conf
{
	my ($self) = @_;
	my $url = $self->url;
	return <<"EOC";
shared_preload_libraries = 'squadstack'
squadstack.database_name = 'postgres'
squadstack.api_url = '$url'
squadstack.token = 'test-token'
squadstack.rate_limit = 1000
squadstack.rate_window = '1s'
squadstack.retry_base = '20ms'
squadstack.retry_max = '200ms'
squadstack.request_timeout = '10s'
restart_after_crash = on
max_worker_processes = 16
shared_buffers = '16MB'
listen_addresses = ''
EOC
}

sub new_node
{
	my ($self, $name, %params) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);

	$node->init(allows_streaming => $params{allows_streaming} || 0);
	$node->append_conf('postgresql.conf',
		$self->node_conf . ($params{conf} // ''));
	return $node if $params{no_start};
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION squadstack')
	  unless $params{no_extension};
	return $node;
}

=pod

SquadstackDouble::Webhookd->new($node, %params): the webhook receiver
squadstack-webhookd installed next to $node's binaries (a test that it is
there; without it the test bails out), and a file with the connection
string for $node as the role user (default webhook_app): dsn_file.  With
port, it listens on that port at every start; without, on a free one
chosen at each start.

$receiver->start(@args) starts it on 127.0.0.1 with the options @args after
--listen (which wins over a configuration file's), each start with a log
file of its own, and waits until it has tried the database once.
$receiver->stop sends SIGTERM and returns its exit status, or undef if it
had to be killed.  port is where it listens, log_file its current log
file, and logs the text of all its logs.  A receiver still running when
the test ends, also when it dies, is killed.

=cut

my @receivers;    # receivers to kill at exit

END
{
	my $rc = $?;
	$_->stop for @running;
	for my $r (@receivers)
	{
		my $pid = delete $r->{pid} or next;
		kill 'KILL', $pid;
		waitpid($pid, 0);
	}
	$? = $rc;
}

package SquadstackDouble::Webhookd;

use Carp;
use POSIX qw(WNOHANG);
use Time::HiRes qw(time usleep);

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

sub new
{
	my ($class, $node, %params) = @_;
	my $bindir = $node->config_data('--bindir');
	my $self = bless {
		bin => "$bindir/squadstack-webhookd",
		fixed_port => $params{port},
		dir => PostgreSQL::Test::Utils::tempdir('webhookd'),
		nlogs => 0,
	}, $class;

	ok(-x $self->{bin}, "squadstack-webhookd is installed in $bindir")
	  or BAIL_OUT("$self->{bin} not found: run make install");
	$self->{dsn_file} = "$self->{dir}/dsn";
	PostgreSQL::Test::Utils::append_to_file($self->{dsn_file},
		'host=' . $node->host . ' port=' . $node->port
		  . ' dbname=postgres user=' . ($params{user} // 'webhook_app') . "\n");
	push @receivers, $self;
	return $self;
}

sub start
{
	my ($self, @args) = @_;

	croak "squadstack-webhookd is already running" if $self->{pid};
	$self->{port} = $self->{fixed_port}
	  // PostgreSQL::Test::Cluster::get_free_port();
	my $log = $self->{log} = "$self->{dir}/webhookd." . ++$self->{nlogs} . '.log';
	my $pid = SquadstackDouble::spawn(
		[ $self->{bin}, '--listen' => "127.0.0.1:$self->{port}", @args ], $log);
	$self->{pid} = $pid;
	my $deadline = time() + 15;
	# it tries the database once at start
	until (-e $log
		  && slurp_file($log) =~ /listening on.*\n.*(connected to|could not connect to) the database/)
	{
		if (waitpid($pid, WNOHANG) == $pid)
		{
			delete $self->{pid};
			croak "squadstack-webhookd exited at start: " . slurp_file($log);
		}
		croak "squadstack-webhookd did not start" if time() > $deadline;
		usleep(20_000);
	}
	note "squadstack-webhookd (pid $pid) on 127.0.0.1:$self->{port}";
	return;
}

sub stop
{
	my ($self) = @_;
	my $pid = delete $self->{pid};

	return undef unless $pid;
	return SquadstackDouble::terminate($pid, 15);
}

sub port { return $_[0]->{port}; }
sub dsn_file { return $_[0]->{dsn_file}; }
sub log_file { return $_[0]->{log}; }

sub logs
{
	my ($self) = @_;
	return join '',
	  map { slurp_file("$self->{dir}/webhookd.$_.log") } 1 .. $self->{nlogs};
}

package SquadstackDouble;

# ---------------------------------------------------------------------------
# Helpers (exported)
# ---------------------------------------------------------------------------

sub epoch_now { return time(); }

# Poll $cond every 50 ms until it returns true or $timeout seconds pass;
# returns whether it did.
sub wait_for
{
	my ($cond, $timeout) = @_;
	my $deadline = time() + ($timeout // 30);
	while (1)
	{
		return 1 if $cond->();
		return 0 if time() > $deadline;
		usleep(50_000);
	}
}

# Wait until $sql returns $expected (default 't'), at most $timeout seconds
# (default: the framework's); returns whether it did.  This is
# PostgreSQL::Test::Cluster's poll_query_until, with a timeout of the
# test's choosing.
sub wait_for_sql
{
	my ($node, $sql, $expected, $timeout) = @_;
	$expected //= 't';
	local $PostgreSQL::Test::Utils::timeout_default = $timeout
	  if defined $timeout;
	return $node->poll_query_until('postgres', $sql, $expected);
}

# The worker's pid from pg_stat_activity, or '' if it is not running.
sub worker_pid
{
	my ($node) = @_;
	my ($rc, $out) = $node->psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'squadstack worker'"
	);
	return $rc == 0 ? $out : '';
}

# The most calls within any half-open window [t, t + $window) of the sorted
# times.
sub sliding_max
{
	my ($times, $window) = @_;
	my @t = sort { $a <=> $b } @$times;
	my ($max, $j) = (0, 0);
	for my $i (0 .. $#t)
	{
		$j++ while $j < @t && $t[$j] < $t[$i] + $window;
		$max = $j - $i if $j - $i > $max;
	}
	return $max;
}

# The share of the rate budget used, from the sorted call times: with the
# budget fully used, call number k * limit (counting from 0) goes out k
# windows after the first call.  Returns k * window / (t[k * limit] - t[0])
# for the largest such k (so a last, partial burst does not count).
sub budget_used
{
	my ($times, $limit, $window) = @_;
	my @t = sort { $a <=> $b } @$times;
	my $k = int($#t / $limit);
	return 0 if $k < 1 || $t[ $k * $limit ] <= $t[0];
	return $k * $window / ($t[ $k * $limit ] - $t[0]);
}

# Queue leads $prefix$from .. $prefix$to for $campaign in one call (in the
# caller's transaction if $sql_only is set: returns the SQL).
sub queue_leads
{
	my ($node, $campaign, $prefix, $from, $to, $sql_only) = @_;
	my $sql =
	    "SELECT squadstack_create_leads('$campaign', "
	  . "(SELECT jsonb_agg(jsonb_build_object('lead_id', '$prefix' || i, "
	  . "'phone_number', (9000000000 + i)::text, 'contact_name', 'Lead ' || i) ORDER BY i) "
	  . "FROM generate_series($from, $to) i))";
	return $sql if $sql_only;
	return $node->safe_psql('postgres', $sql);
}

# Where the server log ends now, for worker_exits.
sub log_position
{
	my ($node) = @_;
	return -s $node->logfile // 0;
}

# The server log's lines, after $offset, that say the worker exited or was
# killed: the postmaster writes one for every end of the worker but a clean
# shutdown.
sub worker_exits
{
	my ($node, $offset) = @_;
	my $log = slurp_file($node->logfile, $offset);
	return grep { /background worker "squadstack worker" \(PID \d+\) (?:exited|was terminated)/ }
	  split /\n/, $log;
}

# lead_id => number of the given requests that carried it
sub count_by_lead
{
	my (@reqs) = @_;
	my %n;
	for my $r (@reqs)
	{
		$n{$_}++ for @{ $r->{lead_ids} };
	}
	return \%n;
}

sub lead_ids
{
	my ($prefix, $from, $to) = @_;
	return map { "$prefix$_" } $from .. $to;
}

1;
