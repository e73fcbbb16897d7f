# Outbound network settings: squadstack.http_proxy and squadstack.no_proxy
# (a CONNECT proxy in test/connect_proxy.py), squadstack.ca_file (a TLS
# listener of the API double with a certificate of a CA made here) and
# squadstack.tls_min_version (the listener offers at most TLS 1.2).  The
# calls are made by squadstack_flush() with the calling session's settings;
# the background worker delivers from another database and stays out of it.
# Proxy variables in the server's environment are never used.

use strict;
use warnings;

use File::Basename qw(dirname);
use POSIX qw(WNOHANG);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Cwd ();
use Time::HiRes qw(time usleep);

use SquadstackDouble;

# absolute: the server reads ca_file from its data directory
my $dir = Cwd::abs_path(PostgreSQL::Test::Utils::tempdir('network'));

# a throw-away CA and a certificate for 127.0.0.1 signed by it
sub openssl
{
	my @cmd = ('openssl', @_);
	system(@cmd) == 0 or BAIL_OUT("openssl @_ failed");
	return;
}
my @ec = ('-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes');
openssl('req', '-x509', @ec, '-keyout', "$dir/ca.key", '-out', "$dir/ca.crt",
	'-days', '2', '-subj', '/CN=squadstack test CA');
openssl('req', @ec, '-keyout', "$dir/server.key", '-out', "$dir/server.csr",
	'-subj', '/CN=127.0.0.1');
open(my $ext, '>', "$dir/server.ext") or die;
print $ext "subjectAltName = IP:127.0.0.1\nbasicConstraints = CA:FALSE\n";
close $ext;
openssl('x509', '-req', '-in', "$dir/server.csr", '-CA', "$dir/ca.crt",
	'-CAkey', "$dir/ca.key", '-CAcreateserial', '-out', "$dir/server.crt",
	'-days', '2', '-extfile', "$dir/server.ext");

my $double = SquadstackDouble->new(
	args => [
		'--tls-cert' => "$dir/server.crt",
		'--tls-key' => "$dir/server.key",
		'--tls-max-version' => 'TLSv1.2'
	]);
my $plain_port = $double->port;
my $tls_port = $double->tls_port;

# the CONNECT proxy, with a password that must never reach a log
my $proxy_password = 'proxy-pw-7c1f0a';
my $proxy_log = "$dir/proxy.log";
my $scripts = $ENV{TESTDIR} // dirname(dirname(__FILE__));
my $proxy_pid = fork();
die "fork: $!" unless defined $proxy_pid;
if ($proxy_pid == 0)
{
	open(STDOUT, '>>', "$dir/proxy.out");
	open(STDERR, '>&', \*STDOUT);
	exec('python3', "$scripts/connect_proxy.py",
		'--port-file' => "$dir/proxy.port",
		'--log' => $proxy_log,
		'--user' => "squad:$proxy_password",
		'--parent-pid' => $$,
		'--max-lifetime' => 600) or POSIX::_exit(127);
}
END
{
	if ($proxy_pid)
	{
		kill 'TERM', $proxy_pid;
		waitpid($proxy_pid, 0);
	}
}
ok(wait_for(sub { -s "$dir/proxy.port" }, 15), 'the proxy is listening');
my $proxy_port = slurp_file("$dir/proxy.port");
chomp $proxy_port;
my $proxy_url = "http://squad:$proxy_password\@127.0.0.1:$proxy_port";

sub proxy_targets
{
	return () unless -e $proxy_log;
	return split /\n/, slurp_file($proxy_log);
}
sub proxy_count { my @t = proxy_targets(); return scalar @t; }

# Proxy variables in the server's environment: never used.
local $ENV{http_proxy} = $proxy_url;
local $ENV{https_proxy} = $proxy_url;
local $ENV{HTTPS_PROXY} = $proxy_url;
local $ENV{ALL_PROXY} = $proxy_url;

my $node = $double->new_node('network');
$node->safe_psql('postgres', 'CREATE DATABASE net');
$node->safe_psql('net', 'CREATE EXTENSION squadstack');

my $n = 0;

# Queue one lead for $campaign and flush with the settings in $set (a
# superuser session); returns the flush's result and the lead's id.
sub flush_with
{
	my ($campaign, $set) = @_;
	my $lead = 'N' . ++$n;
	# log_statement = 'all' in these clusters: the proxy's password is set
	# in statements that are not logged
	my ($ret, $out, $err) = $node->psql(
		'net', qq{
SET log_statement = 'none';
$set
SELECT squadstack_create_leads('$campaign',
  '{"lead_id": "$lead", "phone_number": "98765${\ sprintf('%05d', $n)}", "contact_name": "Net"}');
SELECT squadstack_flush();
});
	return ($ret, $out, $err, $lead);
}

sub sent
{
	my ($campaign, $lead) = @_;
	return scalar grep { ($_->{lead_ids} && grep { $_ eq $lead } @{ $_->{lead_ids} })
		  || ($_->{body} // '') =~ /"$lead"/ }
	  $double->requests(campaign => $campaign, endpoint => 'create');
}

sub last_error
{
	my ($campaign) = @_;
	return $node->safe_psql('net',
		qq{SELECT coalesce(error, '') FROM squadstack.api_calls WHERE campaign_id = '$campaign' ORDER BY id DESC LIMIT 1});
}

my $plain = $double->url;
my $tls = $double->tls_url;

# 1. no proxy configured: a direct call although the environment names one
my ($ret, $out, $err, $lead) = flush_with('camp_direct', "SET squadstack.api_url = '$plain';");
is($ret, 0, 'flush without a proxy') or diag $err;
ok(sent('camp_direct', $lead), 'the lead reached the double directly');
is(proxy_count(), 0, 'the proxy saw nothing: environment variables are not used');

# 2. through the proxy: a CONNECT to the API's host and port
($ret, $out, $err, $lead) = flush_with('camp_proxy',
	"SET squadstack.api_url = '$plain'; SET squadstack.http_proxy = '$proxy_url';");
is($ret, 0, 'flush through the proxy') or diag $err;
ok(sent('camp_proxy', $lead), 'the lead reached the double through the proxy');
ok((grep { $_ eq "CONNECT 127.0.0.1:$plain_port" } proxy_targets()),
	'the proxy saw CONNECT to the API host and port')
  or diag join("\n", proxy_targets());

# 3. no_proxy names the API's host: direct again
my $before = proxy_count();
($ret, $out, $err, $lead) = flush_with('camp_noproxy',
	"SET squadstack.api_url = '$plain'; SET squadstack.http_proxy = '$proxy_url'; SET squadstack.no_proxy = 'example.com, 127.0.0.1';");
is($ret, 0, 'flush with no_proxy') or diag $err;
ok(sent('camp_noproxy', $lead), 'the lead reached the double');
is(proxy_count(), $before, 'no_proxy bypasses the proxy');

# 4. TLS with the test CA: reached, also through the proxy
($ret, $out, $err, $lead) = flush_with('camp_tls',
	"SET squadstack.api_url = '$tls'; SET squadstack.ca_file = '$dir/ca.crt';");
is($ret, 0, 'flush over TLS with ca_file') or diag $err;
ok(sent('camp_tls', $lead), 'the TLS double was reached with the test CA');
is(last_error('camp_tls'), '', 'no error recorded');

($ret, $out, $err, $lead) = flush_with('camp_tls_proxy',
	"SET squadstack.api_url = '$tls'; SET squadstack.ca_file = '$dir/ca.crt'; SET squadstack.http_proxy = '$proxy_url';");
is($ret, 0, 'flush over TLS through the proxy') or diag $err;
ok(sent('camp_tls_proxy', $lead), 'the TLS double was reached through the proxy');
ok((grep { $_ eq "CONNECT 127.0.0.1:$tls_port" } proxy_targets()),
	'the proxy saw CONNECT to the TLS port');

# 5. TLS without the CA: a certificate error, recorded, nothing sent
($ret, $out, $err, $lead) = flush_with('camp_nocert', "SET squadstack.api_url = '$tls';");
is($ret, 0, 'a flush whose call fails verification does not fail');
ok(!sent('camp_nocert', $lead), 'nothing was sent');
like(last_error('camp_nocert'), qr/certificate/i, 'the certificate error is in api_calls.error');
is($node->safe_psql('net', qq{SELECT state FROM squadstack.outbox WHERE campaign_id = 'camp_nocert'}),
	'queued', 'the operation waits for a retry');

# 6. a wrong proxy password: a recorded error that does not quote it
($ret, $out, $err, $lead) = flush_with('camp_badproxy',
	"SET squadstack.api_url = '$plain'; SET squadstack.http_proxy = 'http://squad:wrong-pw-93ab\@127.0.0.1:$proxy_port';");
is($ret, 0, 'flush with a refused proxy login');
ok(!sent('camp_badproxy', $lead), 'nothing was sent');
like(last_error('camp_badproxy'), qr/407/, 'the proxy\'s 407 is recorded');

# 7. tls_min_version = TLSv1.3 against a server that offers TLS 1.2 at most
($ret, $out, $err, $lead) = flush_with('camp_tls13',
	"SET squadstack.api_url = '$tls'; SET squadstack.ca_file = '$dir/ca.crt'; SET squadstack.tls_min_version = 'TLSv1.3';");
is($ret, 0, 'flush with tls_min_version = TLSv1.3');
ok(!sent('camp_tls13', $lead), 'a TLS 1.2 server is refused');
isnt(last_error('camp_tls13'), '', 'the handshake failure is recorded');
note('recorded: ' . last_error('camp_tls13'));

# the settings: validated, superuser-only, the proxy hidden
($ret, $out, $err) = $node->psql('net', "SET log_statement = 'none'; SET log_min_error_statement = 'panic'; SET squadstack.http_proxy = 'ftp://u:leak-pw-5d2e\@host'");
like($err, qr/invalid value for parameter "squadstack.http_proxy"/, 'only http and https proxies');
unlike($err, qr/leak-pw-5d2e/, 'the rejected value is not quoted');
($ret, $out, $err) = $node->psql('net', "SET squadstack.tls_min_version = 'TLSv1.1'");
isnt($ret, 0, 'TLSv1.1 is not a choice');
$node->safe_psql('net', 'CREATE ROLE app LOGIN');
for my $name (qw(http_proxy no_proxy ca_file tls_min_version))
{
	($ret, $out, $err) = $node->psql('net', "SET ROLE app; SET squadstack.$name = 'TLSv1.2'");
	like($err, qr/permission denied to set parameter "squadstack.$name"/, "$name is superuser-only");
}
($ret, $out, $err) = $node->psql('net', 'SET ROLE app; SHOW squadstack.http_proxy');
like($err, qr/must be superuser or have privileges of pg_read_all_settings|permission denied to examine/,
	'SHOW http_proxy is superuser-only');
is($node->safe_psql('net', q{SELECT count(*) FROM pg_settings WHERE name = 'squadstack.http_proxy'}),
	'0', 'http_proxy is not in pg_settings');

# the proxy's password: in no log line and no recorded error
my $log = slurp_file($node->logfile);
unlike($log, qr/\Q$proxy_password\E|wrong-pw-93ab|leak-pw-5d2e/, 'no proxy password in the server log');
is($node->safe_psql('net', qq{SELECT count(*) FROM squadstack.api_calls WHERE error ~ '$proxy_password|wrong-pw'}),
	'0', 'no proxy password in api_calls');

$node->stop;
done_testing();
