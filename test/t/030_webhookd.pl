
# squadstack-webhookd over real HTTP: webhooks posted with curl reach
# squadstack_receive_webhook() and the tables; every refusal has its status
# (403, 400, 404, 405, 413, 415, 429); 503 while the database is stopped and
# 201 again once it is back; never more database connections than allowed;
# a request in flight finishes during a shutdown; the secret never appears
# in the receiver's log.  The receiver is the one installed next to the
# cluster's binaries, and it is stopped at the end, also on failure.

use strict;
use warnings;

use IPC::Run ();
use Time::HiRes qw(time usleep);

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use SquadstackDouble;

my $secret = 'tap-Secret-7fq2x9';
my $campaign = 'camp_wh';

my $node = PostgreSQL::Test::Cluster->new('webhookd');
$node->init;
$node->append_conf('postgresql.conf', <<"EOC");
squadstack.webhook_secret = '$secret'
shared_buffers = '16MB'
EOC
$node->start;
$node->safe_psql(
	'postgres', q{
CREATE EXTENSION squadstack;
CREATE ROLE webhook_app LOGIN;
GRANT EXECUTE ON FUNCTION squadstack_receive_webhook(jsonb, text) TO webhook_app;
-- the test clusters log every statement: not the secret, a parameter
ALTER ROLE webhook_app SET log_parameter_max_length = 0;
});

my $webhookd = SquadstackDouble::Webhookd->new($node);
my $dsn_file = $webhookd->dsn_file;
my $dir = PostgreSQL::Test::Utils::tempdir('webhookd');

# ---------------------------------------------------------------------------
# HTTP with curl
# ---------------------------------------------------------------------------

sub url
{
	my ($path) = @_;
	return 'http://127.0.0.1:' . $webhookd->port . $path;
}

sub hook_path
{
	my ($camp, $sec) = @_;
	return '/squadstack/webhook/' . ($camp // $campaign) . '/' . ($sec // $secret);
}

# curl a request; returns (status, headers, body).  %o: method, body,
# content_type (undef: application/json; '' : none), headers (array ref),
# chunked
sub http
{
	my ($path, %o) = @_;
	my ($out, $err) = ('', '');
	my $hfile = "$dir/headers";
	my @cmd = ('curl', '-s', '-S', '--max-time', '20', '-o', '-',
		'-D', $hfile, '-w', '\n%{http_code}', '-X', $o{method} // 'POST');
	my $ctype = exists $o{content_type} ? $o{content_type} : 'application/json';
	push @cmd, '-H', "Content-Type: $ctype" if defined $ctype && $ctype ne '';
	push @cmd, '-H', 'Content-Type:' if defined $ctype && $ctype eq '';
	push @cmd, '-H', 'Transfer-Encoding: chunked' if $o{chunked};
	push @cmd, '-H', $_ for @{ $o{headers} // [] };
	my $stdin = \undef;
	if (defined $o{body})
	{
		push @cmd, '--data-binary', '@-';
		$stdin = \$o{body};
	}
	push @cmd, url($path);
	unlink $hfile;
	IPC::Run::run(\@cmd, '<', $stdin, '>', \$out, '2>', \$err,
		IPC::Run::timeout(30));
	my ($body, $code) = $out =~ /\A(.*)\n(\d{3})\z/s
	  or return (0, '', $err);
	my $headers = -e $hfile ? slurp_file($hfile) : '';
	return ($code, $headers, $body);
}

sub post
{
	my ($path, $body, %o) = @_;
	my ($code) = http($path, body => $body, %o);
	return $code;
}

sub payload
{
	my ($lead, %extra) = @_;
	my %p = (
		campaign_id => $campaign,
		lead_id => $lead,
		lead_outcome => 'Connected : Objective Met',
		processed_at => '2018-12-03T14:37:54+00:00',
		%extra);
	return '{'
	  . join(', ', map { defined $p{$_} ? qq{"$_": "$p{$_}"} : () } sort keys %p)
	  . '}';
}

sub sql
{
	my ($q) = @_;
	return $node->safe_psql('postgres', $q);
}

my $inbox_count = sub { sql('SELECT count(*) FROM squadstack.webhook_inbox') };

# ---------------------------------------------------------------------------
# what is stored and what is refused
# ---------------------------------------------------------------------------

$webhookd->start('--dsn-file' => $dsn_file, '--max-connections' => 2);
like(slurp_file($webhookd->log_file), qr/connected to the database/,
	'it connects at start with the connection string from --dsn-file');

my ($code, $headers, $body) = http(hook_path(), body => payload('L1'));
is($code, 201, 'a valid webhook: 201');
like($body, qr/^\{"status": 201, "message": "stored"\}$/, 'with a small JSON body');
like($headers, qr{^Content-Type: application/json}mi, 'as application/json');
is(sql(qq{SELECT lead_outcome FROM squadstack.lead_outcomes
  WHERE campaign_id = '$campaign' AND lead_id = 'L1'}),
	'Connected : Objective Met', 'the outcome is in lead_outcomes');
is(post(hook_path(), payload('L1')), 201, 'the same webhook again: 201');
is(sql(q{SELECT string_agg(status, ',' ORDER BY id) FROM squadstack.webhook_inbox}),
	'applied,duplicate', 'stored in the inbox as applied, then duplicate');
is(post(hook_path(), payload('L1b'), content_type => 'application/json; charset=utf-8'),
	201, 'a Content-Type with a charset is accepted');
is(post(hook_path(), payload('L1c'), content_type => ''), 201,
	'so is a request without a Content-Type');
is(post(hook_path() . '/', payload('L1d')), 201, 'and a trailing slash');

my $before = $inbox_count->();
is(post(hook_path(undef, 'wrong-secret'), payload('L2')), 403, 'a wrong secret: 403');
is(post(hook_path(undef, 'x' x 256), payload('L2')), 403, 'a long wrong secret: 403');
is($inbox_count->(), $before, 'nothing is stored for a wrong secret');
is(sql(q{SELECT count(*) FROM squadstack.lead_outcomes WHERE lead_id = 'L2'}), 0,
	'and no outcome');

is(post(hook_path(), qq({"campaign_id": "$campaign", "processed_at": "2018-12-03T14:37:54Z"})),
	400, 'a malformed payload: 400');
is(sql(q{SELECT status || ': ' || error FROM squadstack.webhook_inbox ORDER BY id DESC LIMIT 1}),
	'rejected: missing "lead_id"', 'stored in the inbox as rejected, with the reason');

is(post(hook_path(), 'this is not JSON {'), 400, 'a body that is not JSON: 400');
is(sql(q{SELECT status || ': ' || error || ': ' || payload::text
  FROM squadstack.webhook_inbox ORDER BY id DESC LIMIT 1}),
	'rejected: the payload is not a JSON object: "this is not JSON {"',
	'stored in the inbox as rejected, as a JSON string');
$before = $inbox_count->();
is(post(hook_path(undef, 'wrong'), 'not JSON either'), 403,
	'a body that is not JSON with a wrong secret: 403');
is(post(hook_path(), "\xff\xfe"), 400, 'a body that is not UTF-8: 400');
is(post(hook_path('other_camp'), payload('L3')), 400,
	'a payload of another campaign than the URL\'s: 400');
is($inbox_count->(), $before, 'none of these three is stored');

my $big = payload('L4', contact_name => ('x' x (70 * 1024)));
is(post(hook_path(), $big), 413, 'a body over 64 kB: 413');
is(post(hook_path(), $big, chunked => 1), 413, 'also when sent in chunks');
is(post(hook_path(), payload('L4', contact_name => ('x' x (60 * 1024)))), 201,
	'a body under 64 kB: 201');

is(post('/squadstack/webhook/' . $campaign, payload('L5')), 404, 'no secret in the path: 404');
is(post('/other/path', payload('L5')), 404, 'another path: 404');
is(post('/squadstack/webhook/camp%20x/' . $secret, payload('L5')), 404,
	'an invalid campaign id in the path: 404');
is(post('/squadstack/webhook/' . ('c' x 65) . '/' . $secret, payload('L5')), 404,
	'a campaign id of 65 characters: 404');
is(post(hook_path() . '/more', payload('L5')), 404, 'more after the secret: 404');

($code, $headers) = http(hook_path(), method => 'GET');
is($code, 405, 'GET: 405');
like($headers, qr/^Allow: POST/mi, 'with Allow: POST');
is(post(hook_path(), payload('L5'), method => 'PUT'), 405, 'PUT: 405');
is(post(hook_path(), payload('L5'), content_type => 'text/plain'), 415,
	'a Content-Type other than JSON: 415');
is(sql(q{SELECT count(*) FROM squadstack.webhook_inbox WHERE lead_id = 'L5'}), 0,
	'nothing of these is stored');

# ---------------------------------------------------------------------------
# the connection pool: never more than --max-connections
# ---------------------------------------------------------------------------

my @parallel = ('curl', '-s', '--parallel', '--parallel-max', '12');
for my $i (1 .. 40)
{
	push @parallel, '-o', '/dev/null', '-w', '%{http_code}\n',
	  '-H', 'Content-Type: application/json', '--data', payload("P$i"),
	  url(hook_path());
	push @parallel, '--next' if $i < 40;
}
my ($pout, $perr) = ('', '');
my $watch = 1;
my $max_conns = 0;
my $h = IPC::Run::start(\@parallel, '<', \undef, '>', \$pout, '2>', \$perr,
	IPC::Run::timeout(60));
while ($h->pumpable)
{
	my $n = sql(q{SELECT count(*) FROM pg_stat_activity
  WHERE application_name = 'squadstack-webhookd'});
	$max_conns = $n if $n > $max_conns;
	$h->pump_nb;
	usleep(10_000);
}
$h->finish;
my %codes;
$codes{$_}++ for split /\n/, $pout;
is_deeply(\%codes, { 201 => 40 }, '40 webhooks in parallel: all 201')
  or diag $pout;
cmp_ok($max_conns, '<=', 2, "never more than 2 database connections (seen: $max_conns)");
is(sql(q{SELECT count(*) FROM squadstack.lead_outcomes WHERE lead_id LIKE 'P%'}), 40,
	'all 40 outcomes stored');

# ---------------------------------------------------------------------------
# the database stopped and started again
# ---------------------------------------------------------------------------

$node->stop('fast');
($code, $headers) = http(hook_path(), body => payload('D1'));
is($code, 503, 'the database stopped: 503');
like($headers, qr/^Retry-After: \d+/mi, 'with Retry-After');
$node->start;
my $back;
my $deadline = time() + 30;
while (time() < $deadline)
{
	$code = post(hook_path(), payload('D1'));
	if ($code == 201)
	{
		$back = 1;
		last;
	}
	usleep(200_000);
}
ok($back, 'the database started again: 201 (it reconnects)');
is(sql(q{SELECT count(*) FROM squadstack.lead_outcomes WHERE lead_id = 'D1'}), 1,
	'the outcome is stored');
like(slurp_file($webhookd->log_file), qr/connected to the database again/, 'the log says it is back');

# ---------------------------------------------------------------------------
# a request in flight finishes during a shutdown
# ---------------------------------------------------------------------------

my ($lout, $lerr) = ('', '');
my $locker = IPC::Run::start(
	[
		'psql', '-X', '-q', '-d', $node->connstr('postgres'), '-c',
		'BEGIN; LOCK squadstack.lead_outcomes IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(3); COMMIT;'
	],
	'<', \undef, '>', \$lout, '2>', \$lerr, IPC::Run::timeout(60));
ok( wait_for(sub { sql(q{SELECT count(*) FROM pg_locks WHERE relation =
  'squadstack.lead_outcomes'::regclass AND mode = 'AccessExclusiveLock' AND granted}) == 1 }),
	'lead_outcomes is locked');
my ($fout, $ferr) = ('', '');
my $inflight = IPC::Run::start(
	[
		'curl', '-s', '--max-time', '30', '-o', '/dev/null', '-w', '%{http_code}',
		'-H', 'Content-Type: application/json', '--data', payload('S1'),
		url(hook_path())
	],
	'<', \undef, '>', \$fout, '2>', \$ferr, IPC::Run::timeout(60));
ok( wait_for(sub { sql(q{SELECT count(*) FROM pg_stat_activity
  WHERE application_name = 'squadstack-webhookd' AND wait_event_type = 'Lock'}) == 1 }),
	'a webhook waits for the lock');
my $t0 = time;
my $status = $webhookd->stop;
$inflight->finish;
$locker->finish;
is($fout, '201', 'the request in flight at SIGTERM is answered 201');
is($status, 0, 'then the receiver exits with status 0');
cmp_ok(time - $t0, '<', 10, 'within the wait for the lock');
like(slurp_file($webhookd->log_file), qr/received SIGTERM, shutting down.*\n.*status=201.*\n.*stopped$/m,
	'the log shows the shutdown, the last request and the stop');
is(sql(q{SELECT count(*) FROM pg_stat_activity WHERE application_name = 'squadstack-webhookd'}),
	0, 'its database connections are closed');

# ---------------------------------------------------------------------------
# rate limits, from a configuration file; the command line wins over it
# ---------------------------------------------------------------------------

my $conf = "$dir/webhookd.conf";
PostgreSQL::Test::Utils::append_to_file($conf, <<"EOC");
# a test configuration
listen = 127.0.0.1:1
dsn_file = $dsn_file
prefix = /hooks/squadstack/
client_rate_limit = 1
client_rate_burst = 3
EOC
$webhookd->start('--config' => $conf);
my $port = $webhookd->port;
like(slurp_file($webhookd->log_file), qr/listening on 127\.0\.0\.1:$port .*path \/hooks\/squadstack\/\{campaign\}/,
	'--listen wins over the file; the prefix comes from the file');
my @codes = map { post("/hooks/squadstack/$campaign/$secret", payload("R$_")) } 1 .. 6;
is_deeply([ @codes[ 0 .. 2 ] ], [ 201, 201, 201 ], 'the burst of 3 is served');
ok((grep { $_ == 429 } @codes[ 3 .. 5 ]) >= 2, 'then 429 (' . join(' ', @codes) . ')');
($code, $headers) = http("/hooks/squadstack/$campaign/$secret", body => payload('R7'));
like($headers, qr/^Retry-After: \d+/mi, 'with Retry-After') if $code == 429;
usleep(1_100_000);
is(post("/hooks/squadstack/$campaign/$secret", payload('R8')), 201,
	'a second later there is a token again');
is($webhookd->stop, 0, 'stopped');

$webhookd->start('--dsn-file' => $dsn_file, '--client-rate-limit' => 0,
	'--rate-limit' => 1, '--rate-burst' => 2);
@codes = map { post(hook_path(), payload("T$_")) } 1 .. 4;
is_deeply([ @codes[ 0 .. 1 ] ], [ 201, 201 ], 'overall limit: the burst of 2 is served');
ok((grep { $_ == 429 } @codes[ 2 .. 3 ]) >= 1, 'then 429 (' . join(' ', @codes) . ')');
is($webhookd->stop, 0, 'stopped');

# ---------------------------------------------------------------------------
# the logs
# ---------------------------------------------------------------------------

my $all_logs = $webhookd->logs;
unlike($all_logs, qr/\Q$secret\E/, 'the secret never appears in the receiver\'s log');
unlike($all_logs, qr/Objective Met|not JSON/, 'nor does any body');
like($all_logs,
	qr{request client=127\.0\.0\.1 method=POST path=/squadstack/webhook/$campaign/\*\*\* status=201 duration_ms=[\d.]+$}m,
	'a request is logged with the secret as ***');
like($all_logs, qr{status=403 reason=wrong_secret}, 'a wrong secret is logged as such');
like($all_logs, qr{status=400 reason=campaign_mismatch}, 'so is a campaign mismatch');
like($all_logs, qr{status=429 reason=rate_limited_client}, 'and the rate limits')
  and like($all_logs, qr{status=429 reason=rate_limited }, 'both');
unlike(slurp_file($node->logfile), qr/\Q$secret\E/, 'nor in the server\'s log');

$node->stop;
done_testing();
