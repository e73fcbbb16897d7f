# Updating the extension from 0.1.0 to the current version in a database that uses it:
# the current library works with the 0.1.0 schema until the update (the
# sync trigger then queues to the outbox as 0.1.0 did), the update keeps
# what is queued, everything queued before and after is delivered in order,
# and the schema updated in use is the same as a fresh install's (which runs
# the same scripts on an empty database).  Then a dump of
# that database restores with the same queue, registry and inbox.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use SquadstackDouble;

my $double = SquadstackDouble->new;
my $url = $double->url;

# not preloaded: deliveries happen only when this test flushes
my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
squadstack.api_url = '$url'
squadstack.token = 'test-token'
squadstack.rate_limit = 1000
squadstack.rate_window = '1s'
max_worker_processes = 16
listen_addresses = ''
});
$node->start;

$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION squadstack');
is($node->safe_psql('fresh',
		q{SELECT extversion FROM pg_extension WHERE extname = 'squadstack'}),
	'0.4.0', 'a fresh install is 0.4.0');

# 0.1.0, in use
$node->safe_psql(
	'postgres', q{
CREATE EXTENSION squadstack VERSION '0.1.0';
CREATE TABLE crm (id text PRIMARY KEY, mobile text, full_name text);
CREATE TRIGGER to_squadstack AFTER INSERT OR UPDATE ON crm FOR EACH ROW
EXECUTE FUNCTION squadstack_sync_trigger(
  'camp_u', 'lead_id=id', 'phone_number=mobile', 'contact_name=full_name');
INSERT INTO crm VALUES ('U1', '9876500001', 'Before one');
-- an application role and a CRM writer as they were set up before
-- campaign grants existed
CREATE ROLE app_old;
GRANT USAGE ON SCHEMA squadstack TO app_old;
GRANT EXECUTE ON FUNCTION squadstack_create_leads(text, jsonb, boolean) TO app_old;
CREATE ROLE crm_writer_old;
GRANT INSERT, UPDATE ON crm TO crm_writer_old;
CREATE ROLE unrelated_old;
-- as squadstack_set_token() of 0.3.0 wrote it
INSERT INTO squadstack.tokens (campaign_id, token) VALUES ('camp_t', 'token-before-0.4.0');
});
is($node->safe_psql('postgres',
		q{SELECT string_agg(lead_id || ':' || op, ',' ORDER BY id) FROM squadstack.outbox}),
	'U1:create', 'with the 0.1.0 schema the trigger queues to the outbox');
is($node->safe_psql('postgres', q{
SELECT squadstack_create_leads('camp_u',
  '[{"lead_id": "U1", "phone_number": "9876500001", "contact_name": "Again"},
    {"lead_id": "U2", "phone_number": "9876500002", "contact_name": "Before two"}]')}),
	'1', 'skip_existing works with the 0.1.0 schema');

$node->safe_psql('postgres', 'ALTER EXTENSION squadstack UPDATE');
is($node->safe_psql('postgres',
		q{SELECT extversion FROM pg_extension WHERE extname = 'squadstack'}),
	'0.4.0', 'updated to 0.4.0');
is($node->safe_psql('postgres',
		q{SELECT string_agg(lead_id || ':' || op || ':' || state, ',' ORDER BY id) FROM squadstack.outbox}),
	'U1:create:queued,U2:create:queued', 'the update keeps what was queued');
is($node->safe_psql('postgres', q{
SELECT budget = 'token:' || substr(encode(sha256('token-before-0.4.0'::bytea), 'hex'), 1, 32)
  AND business IS NULL AND campaigns = '{camp_t}'
FROM squadstack.budgets}),
	't', 'a token set before 0.4.0 is a business of its own, known by its digest');

# roles that could queue before keep working, for 30 days, with a warning
is($node->safe_psql('postgres', q{
SELECT string_agg(role_id::text || ':' || campaign_id || ':' ||
  (expires_at BETWEEN now() + interval '29 days' AND now() + interval '31 days'), ',' ORDER BY role_id::text)
FROM squadstack.campaign_grants}),
	'app_old:*:true,crm_writer_old:*:true',
	'the update gives the roles that used the extension a transitional grant of every campaign');
my ($ret, $out, $err) = $node->psql('postgres', q{
SET ROLE app_old;
SELECT squadstack_create_leads('camp_new', '[{"lead_id": "N1", "phone_number": "9876500009", "contact_name": "New"}]')});
is($out, '1', 'an application role of 0.2.0 still queues');
like($err, qr/WARNING:  role "app_old" uses campaign "camp_new" through the transitional grant/,
	'with a warning');
($ret, $out, $err) = $node->psql('postgres', q{
GRANT USAGE ON SCHEMA squadstack TO unrelated_old;
GRANT EXECUTE ON FUNCTION squadstack_create_leads(text, jsonb, boolean) TO unrelated_old;
SET ROLE unrelated_old;
SELECT squadstack_create_leads('camp_new', '[{"lead_id": "N2", "phone_number": "9876500008", "contact_name": "New"}]')});
like($err, qr/permission denied for campaign "camp_new"/, 'a role given EXECUTE after the update needs a grant');
$node->safe_psql('postgres', q{
DELETE FROM squadstack.outbox WHERE campaign_id = 'camp_new';
DELETE FROM squadstack.leads WHERE campaign_id = 'camp_new';
DELETE FROM squadstack.campaign_grants;
REVOKE ALL ON FUNCTION squadstack_create_leads(text, jsonb, boolean) FROM app_old, unrelated_old;
REVOKE ALL ON SCHEMA squadstack FROM app_old, unrelated_old;
REVOKE ALL ON crm FROM crm_writer_old;
DROP ROLE app_old, crm_writer_old, unrelated_old;
});

# after the update the trigger appends to the intake
$node->safe_psql(
	'postgres', q{
INSERT INTO crm VALUES ('U3', '9876500003', 'After three');
UPDATE crm SET full_name = 'Before One' WHERE id = 'U1';
});
is($node->safe_psql('postgres',
		q{SELECT string_agg(lead_id || ':' || op, ',' ORDER BY id) FROM squadstack.intake}),
	'U3:create,U1:update', 'after the update the trigger queues to the intake');
is($node->safe_psql('postgres', q{
SELECT squadstack_create_leads('camp_u',
  '[{"lead_id": "U3", "phone_number": "9876500003", "contact_name": "Again"}]')}),
	'0', 'skip_existing sees the creates in the intake');

$node->safe_psql('postgres', 'SELECT squadstack_flush()');
my @sent = map { "$_->{endpoint}:" . join('+', @{ $_->{lead_ids} }) }
  $double->requests(campaign => 'camp_u');
is_deeply(\@sent, [ 'create:U1+U2+U3', 'update:U1' ],
	'everything reached the double once, in order');
is($node->safe_psql('postgres', q{
SELECT (SELECT count(*) FROM squadstack.intake) || ' ' ||
       (SELECT string_agg(DISTINCT state, ',') FROM squadstack.outbox) || ' ' ||
       (SELECT string_agg(lead_id || ':' || status, ',' ORDER BY lead_id) FROM squadstack.leads)}),
	'0 sent U1:created,U2:created,U3:created', 'outbox, intake and registry agree');

# the updated schema is the fresh one: every object of the extension, with
# columns, defaults, indexes, constraints, views, functions, triggers,
# privileges, comments and dump configuration
my $describe = q{
WITH ext AS (SELECT oid FROM pg_extension WHERE extname = 'squadstack'),
member AS (
  SELECT d.classid, d.objid FROM pg_depend d, ext
  WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'),
rel AS (SELECT c.* FROM pg_class c WHERE c.relnamespace = 'squadstack'::regnamespace)
SELECT string_agg(line, E'\n' ORDER BY line) FROM (
  SELECT 'member ' || pg_describe_object(classid, objid, 0) FROM member
  UNION ALL
  SELECT format('column %s.%s %s %s notnull=%s identity=%s default=%s', c.relname,
                a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                a.attidentity, pg_get_expr(ad.adbin, ad.adrelid))
  FROM rel c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
  UNION ALL
  SELECT 'index ' || pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN rel c ON c.oid = i.indrelid
  UNION ALL
  SELECT format('constraint %s %s %s', co.conrelid::regclass, co.conname, pg_get_constraintdef(co.oid))
  FROM pg_constraint co WHERE co.connamespace = 'squadstack'::regnamespace
  UNION ALL
  SELECT 'view ' || c.relname || ' ' || pg_get_viewdef(c.oid) FROM rel c WHERE c.relkind = 'v'
  UNION ALL
  SELECT 'function ' || pg_get_functiondef(m.objid) || ' acl=' || coalesce(p.proacl::text, '')
  FROM member m JOIN pg_proc p ON p.oid = m.objid WHERE m.classid = 'pg_proc'::regclass
  UNION ALL
  SELECT 'trigger ' || pg_get_triggerdef(t.oid) FROM pg_trigger t JOIN rel c ON c.oid = t.tgrelid
  WHERE NOT t.tgisinternal
  UNION ALL
  SELECT format('relation %s kind=%s acl=%s replica identity=%s', c.relname, c.relkind,
                c.relacl, c.relreplident) FROM rel c
  UNION ALL
  SELECT 'comment ' || pg_describe_object(de.classoid, de.objoid, de.objsubid) || ' ' || de.description
  FROM pg_description de JOIN member m ON m.classid = de.classoid AND m.objid = de.objoid
  UNION ALL
  SELECT 'dumped ' || x::regclass FROM pg_extension e, unnest(e.extconfig) x
  WHERE e.extname = 'squadstack'
) s(line)};
my $fresh = $node->safe_psql('fresh', $describe);
my $upgraded = $node->safe_psql('postgres', $describe);
like($fresh, qr/relation intake kind=r/, 'the description covers the intake');
is($upgraded, $fresh, 'the updated schema equals a fresh install of 0.4.0');

# pg_dump and pg_restore keep the queue (intake included), the registry,
# the outcomes and the inbox with its statuses
$node->safe_psql(
	'postgres', q{
SELECT squadstack_receive_webhook(p::jsonb) FROM (VALUES
  ('{"campaign_id": "camp_u", "lead_id": "U1", "processed_at": "2024-01-02T10:00:00Z", "lead_outcome": "Connected"}'),
  ('{"campaign_id": "camp_u", "lead_id": "U1", "processed_at": "2024-01-02T10:00:00Z", "lead_outcome": "Connected"}'),
  ('{"campaign_id": "camp_u", "lead_id": "U1", "processed_at": "2024-01-01T10:00:00Z", "lead_outcome": "Busy"}'),
  ('{"campaign_id": "camp_u"}')) v(p);
INSERT INTO crm VALUES ('U4', '9876500004', 'Waiting in the intake');
});
my $state = q{
SELECT string_agg(x, E'\n' ORDER BY x) FROM (
  SELECT format('inbox %s %s %s', id, status, lead_id) FROM squadstack.webhook_inbox
  UNION ALL SELECT format('outcome %s %s %s', lead_id, processed_at, lead_outcome) FROM squadstack.lead_outcomes
  UNION ALL SELECT format('outbox %s %s %s %s', id, lead_id, op, state) FROM squadstack.outbox
  UNION ALL SELECT format('intake %s %s %s', id, lead_id, op) FROM squadstack.intake
  UNION ALL SELECT format('lead %s %s', lead_id, status) FROM squadstack.leads
  UNION ALL SELECT 'next id ' || nextval('squadstack.outbox_id_seq')) s(x)};
my $dump = $node->basedir . '/squadstack.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('postgres') ],
	'pg_dump');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
$node->command_ok([ 'pg_restore', '-d', $node->connstr('restored'), $dump ], 'pg_restore');
my $before = $node->safe_psql('postgres', $state);
like($before, qr/inbox \d+ duplicate U1.*inbox \d+ stale U1/s, 'the inbox has every status');
like($before, qr/intake \d+ U4 create/, 'the intake has a row');
is($node->safe_psql('restored', $state), $before,
	'the restored database has the same queue, registry, outcomes and inbox statuses');

$node->stop;
done_testing();
