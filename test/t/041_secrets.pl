# Secrets outside settings: access tokens set with squadstack_set_token()
# (per campaign and the default '*'), read from squadstack.token_file (a
# file only the server can read, re-read at reload), and the deprecated
# squadstack.token setting; webhook secrets set with
# squadstack_set_webhook_secret() (per campaign, the default '*') and the
# deprecated squadstack.webhook_secret.  Each is set, changed and used;
# then the whole server log, pg_stat_activity, pg_settings, every view and
# every table of the extension but squadstack.tokens are searched for every
# token and secret: none may appear.  The clusters log every statement
# (log_statement = 'all'), so the statements that carry a secret run with
# statement logging off, as doc/security.md advises.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use SquadstackDouble;

my %tok = (
	fn_default => 'tokFnDefault-51c0e7',
	fn_camp => 'tokFnCampA-8d22b1',
	fn_camp2 => 'tokFnCampA2-0f9a33',
	file_camp => 'tokFileCampC-6b1e40',
	file_camp2 => 'tokFileCampC2-e3d7a9',
	file_default => 'tokFileDefault-2a8c5f',
	guc => 'tokGuc-91b7d4',);
my %sec = (
	default => 'whDefault-c41f08',
	camp => 'whCampA-7e5b92',
	camp2 => 'whCampA2-13d6fa',
	guc => 'whGuc-a0c9e7',);
my @all = (values %tok, values %sec);

my $double = SquadstackDouble->new(tokens => [ values %tok ]);
my $node = $double->new_node('secrets', conf => "squadstack.token = ''\n");
my $datadir = $node->data_dir;

# Run SQL that carries a secret: statement logging off for it.
sub secret_psql
{
	my ($db, $sql) = @_;
	return $node->psql(
		$db, qq{
BEGIN;
SET LOCAL log_statement = 'none';
SET LOCAL log_min_error_statement = 'panic';
SET LOCAL log_min_duration_statement = -1;
$sql
COMMIT;
});
}

my $n = 0;

# Queue one lead and return the token the worker sent it with.
sub token_used
{
	my ($campaign) = @_;
	my $lead = 'S' . ++$n;
	$node->safe_psql('postgres',
		qq{SELECT squadstack_create_leads('$campaign', '{"lead_id": "$lead", "phone_number": "98765${\ sprintf('%05d', $n)}", "contact_name": "S"}')});
	my $auth;
	wait_for(
		sub {
			for my $r ($double->requests(campaign => $campaign, endpoint => 'create'))
			{
				next unless grep { $_ eq $lead } @{ $r->{lead_ids} || [] };
				$auth = $r->{authorization};
				return 1 if ($r->{status} // 0) >= 200 && $r->{status} < 300;
			}
			return 0;
		},
		30);
	return defined $auth ? $auth =~ s/^Bearer //r : '(not sent)';
}

# -- tokens set with functions: the default '*' and per campaign
my ($ret, $out, $err) = secret_psql('postgres', qq{SELECT squadstack_set_token('*', '$tok{fn_default}');});
is($ret, 0, 'set the default token') or diag $err;
is(token_used('camp_a'), $tok{fn_default}, 'a campaign without a token uses the default');
($ret, $out, $err) = secret_psql('postgres', qq{SELECT squadstack_set_token('camp_a', '$tok{fn_camp}');});
is(token_used('camp_a'), $tok{fn_camp}, 'a campaign token wins over the default');
is(token_used('camp_b'), $tok{fn_default}, 'other campaigns keep the default');
secret_psql('postgres', qq{SELECT squadstack_set_token('camp_a', '$tok{fn_camp2}');});
is(token_used('camp_a'), $tok{fn_camp2}, 'a changed campaign token is used');
($ret, $out, $err) = $node->psql('postgres', q{SELECT squadstack_set_token('*', E'bad\ttoken')});
like($err, qr/invalid access token for campaign "\*"/, 'a bad default token is refused');

# -- squadstack.token_file: refused while others may read it, used after chmod
my $file = "$datadir/squadstack_tokens";
sub write_tokens
{
	my ($text, $mode) = @_;
	open(my $fh, '>', $file) or die "cannot write $file: $!";
	print $fh $text;
	close $fh;
	chmod $mode, $file;
	return;
}
write_tokens("# campaign token\ncamp_c $tok{file_camp}\n* $tok{file_default}\n", 0644);
($ret, $out, $err) = $node->psql('postgres', q{ALTER SYSTEM SET squadstack.token_file = 'squadstack_tokens'});
like($err, qr/token file "squadstack_tokens" has group or world access/,
	'ALTER SYSTEM refuses a group- or world-readable token file');
chmod 0600, $file;
$node->safe_psql('postgres', q{ALTER SYSTEM SET squadstack.token_file = 'squadstack_tokens'});
$node->reload;
ok(wait_for_sql($node, q{SELECT current_setting('squadstack.token_file') = 'squadstack_tokens'}),
	'the token file is set');
is(token_used('camp_c'), $tok{file_camp}, 'a campaign of the token file uses its token');
is(token_used('camp_a'), $tok{fn_camp2}, 'a token set with the function wins over the file');
is(token_used('camp_d'), $tok{fn_default}, 'the default set with the function wins over the file\'s');
secret_psql('postgres', q{SELECT squadstack_set_token('*', NULL);});
is(token_used('camp_d'), $tok{file_default}, 'without it, the file\'s default');

# changed, but readable by others: refused at reload, the old tokens stay
write_tokens("camp_c $tok{file_camp2}\n$tok{file_default}\n", 0644);
my $logpos = -s $node->logfile;
$node->reload;
ok(wait_for(sub { slurp_file($node->logfile, $logpos) =~ /has group or world access/ }, 10),
	'a group- or world-readable token file is refused at reload');
is(token_used('camp_c'), $tok{file_camp}, 'the tokens read before stay in force');
chmod 0600, $file;
is(token_used('camp_c'), $tok{file_camp}, 'a changed file is not read before a reload');
$node->reload;
ok(wait_for(sub { token_used('camp_c') eq $tok{file_camp2} }, 20), 'after a reload the changed file is used');

# a line's third field is the token's business; a fourth, or a business
# name that cannot be one, makes the file refused (by line, never quoting)
for my $bad ("camp_c $tok{file_camp2} acme more\n",
	"camp_c $tok{file_camp2} " . ('b' x 64) . "\n")
{
	write_tokens($bad, 0600);
	$logpos = -s $node->logfile;
	$node->reload;
	ok(wait_for(sub { slurp_file($node->logfile, $logpos) =~
		/line 1 of token file "squadstack_tokens"(?: has more than three fields|: A business name is at most 63 bytes long)/ }, 10),
		'a bad line is refused at reload: ' . ($bad =~ /more/ ? 'four fields' : 'a long business name'));
}
is(token_used('camp_c'), $tok{file_camp2}, 'the tokens read before stay in force');
write_tokens("camp_c $tok{file_camp2} acme\n$tok{file_default}\n", 0600);
$node->reload;
ok(wait_for_sql($node, q{SELECT current_setting('squadstack.token_file') = 'squadstack_tokens'}),
	'the token file is still set');
is(token_used('camp_c'), $tok{file_camp2}, 'a line with a business gives its token');
ok( wait_for_sql(
		$node, q{
SELECT budget FROM squadstack.api_calls WHERE campaign_id = 'camp_c' ORDER BY id DESC LIMIT 1},
		'business:acme'),
	'and its calls count in the business\'s budget');

# -- the deprecated setting: a session's SET, used by its flush (another
# database, where the worker does not deliver)
$node->safe_psql('postgres', q{ALTER SYSTEM RESET squadstack.token_file});
$node->reload;
$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql('other', 'CREATE EXTENSION squadstack');
$node->safe_psql('other',
	q{SELECT squadstack_create_leads('camp_g', '{"lead_id": "G1", "phone_number": "9876599999", "contact_name": "G"}')});
($ret, $out, $err) = secret_psql('other', qq{
SET squadstack.token = '$tok{guc}';
SELECT squadstack_flush();});
is($ret, 0, 'a flush with the deprecated setting') or diag $err;
like($err, qr/WARNING:  setting "squadstack.token" is deprecated/, 'setting it warns');
like($err, qr/HINT:  Use squadstack_set_token\('\*', token\) or squadstack.token_file instead/,
	'naming the safer way');
my ($g) = grep { grep { $_ eq 'G1' } @{ $_->{lead_ids} || [] } }
  $double->requests(campaign => 'camp_g');
is($g && $g->{authorization}, "Bearer $tok{guc}", 'the deprecated setting\'s token was used');

# -- webhook secrets
sub webhook
{
	my ($campaign, $secret, $lead) = @_;
	my $arg = defined $secret ? "'$secret'" : 'NULL';
	my ($r, $o, $e) = secret_psql('postgres',
		qq{SELECT squadstack_receive_webhook('{"campaign_id": "$campaign", "lead_id": "$lead", "processed_at": "2024-01-01T10:00:00Z", "lead_outcome": "Interested"}', $arg);});
	diag $e if $r;
	return $o;
}
is(webhook('camp_a', undef, 'W0'), '201', 'no secret configured: accepted');
secret_psql('postgres', qq{SELECT squadstack_set_webhook_secret('*', '$sec{default}');});
secret_psql('postgres', qq{SELECT squadstack_set_webhook_secret('camp_a', '$sec{camp}');});
is(webhook('camp_a', $sec{camp}, 'W1'), '201', 'the campaign\'s secret is accepted');
is(webhook('camp_a', $sec{default}, 'W2'), '403', 'the default secret is not the campaign\'s');
is(webhook('camp_a', undef, 'W3'), '403', 'no secret: refused');
is(webhook('camp_b', $sec{default}, 'W4'), '201', 'another campaign takes the default');
is(webhook('camp_b', $sec{camp}, 'W5'), '403', 'but not camp_a\'s secret');
secret_psql('postgres', qq{SELECT squadstack_set_webhook_secret('camp_a', '$sec{camp2}');});
is(webhook('camp_a', $sec{camp}, 'W6'), '403', 'a replaced secret is refused');
is(webhook('camp_a', $sec{camp2}, 'W7'), '201', 'the new secret is accepted');
secret_psql('postgres', q{SELECT squadstack_set_webhook_secret('*', NULL);});
($ret, $out, $err) = secret_psql('postgres', qq{
SET squadstack.webhook_secret = '$sec{guc}';
SELECT squadstack_receive_webhook('{"campaign_id": "camp_b", "lead_id": "W8", "processed_at": "2024-01-01T10:00:00Z", "lead_outcome": "Interested"}', '$sec{guc}');});
is($out, '201', 'the deprecated setting still works as the default');
like($err, qr/WARNING:  setting "squadstack.webhook_secret" is deprecated/, 'with a warning');
is($node->safe_psql('postgres', q{SELECT count(*) FROM squadstack.webhook_inbox WHERE payload->>'lead_id' IN ('W2', 'W3', 'W5', 'W6')}),
	'0', 'nothing of a refused webhook is stored');
($ret, $out, $err) = $node->psql('postgres', q{SELECT squadstack_set_webhook_secret('camp a', 'x')});
like($err, qr/invalid campaign id/, 'the campaign is checked');

# -- where the secrets must not be
$node->safe_psql('postgres', q{SELECT squadstack_flush()});
my $activity = $node->safe_psql('postgres', q{SELECT string_agg(coalesce(query, ''), E'\n') FROM pg_stat_activity});
my $settings = $node->safe_psql('postgres',
	q{SELECT string_agg(concat_ws(' ', name, setting, reset_val, boot_val), E'\n') FROM pg_settings});
my $views = '';
my $tables = '';
for my $db (qw(postgres other))
{
	for my $rel (split /\n/, $node->safe_psql($db, q{
SELECT c.oid::regclass::text || ' ' || c.relkind::text FROM pg_depend d
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'squadstack'
JOIN pg_class c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid
WHERE c.relkind IN ('r', 'v') AND c.oid <> 'squadstack.tokens'::regclass}))
	{
		my ($name, $kind) = split / /, $rel;
		my $rows = $node->safe_psql($db, "SELECT coalesce(string_agg(t::text, E'\\n'), '') FROM $name t");
		if ($kind eq 'v') { $views .= $rows; } else { $tables .= $rows; }
	}
	$views .= $node->safe_psql($db, q{SELECT string_agg(squadstack.token_status(c)::text, ' ') FROM unnest(ARRAY['camp_a', 'camp_c', 'camp_d']) c});
}
my $log = slurp_file($node->logfile);
for my $s (sort @all)
{
	unlike($log, qr/\Q$s\E/, "$s: not in the server log");
	unlike($activity, qr/\Q$s\E/, "$s: not in pg_stat_activity");
	unlike($settings, qr/\Q$s\E/, "$s: not in pg_settings");
	unlike($views, qr/\Q$s\E/, "$s: not in a view");
	unlike($tables, qr/\Q$s\E/, "$s: not in a table but squadstack.tokens");
}
like($log, qr/parameter "squadstack.token_file" changed to "squadstack_tokens"/,
	'(the log does show the token file\'s path)');

$node->stop;
done_testing();
