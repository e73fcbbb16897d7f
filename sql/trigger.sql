-- The CRM sync trigger: what INSERT, UPDATE and DELETE on a CRM table
-- queue, how its arguments are checked, what happens to invalid rows, and
-- what reaches the API double once the queue is flushed.
\getenv api_url SQUADSTACK_API_URL
TRUNCATE squadstack.outbox, squadstack.intake, squadstack.api_calls,
  squadstack.token_state, squadstack.leads, squadstack.sync_skipped;
\! python3 test/double_ctl.py reset '{"defaults": true}'
\! python3 test/double_ctl.py config '{"tokens": ["test-token"], "rate_limit": 1000, "rate_window": 1}'

-- the trigger appends to squadstack.intake; deliveries move it to the outbox
CREATE TEMP VIEW queued AS
SELECT campaign_id, lead_id, op, payload FROM squadstack.intake ORDER BY id;

-- an error's SQLSTATE, message, detail and hint, for the argument checks
CREATE FUNCTION pg_temp.error_of(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  state text;
  msg text;
  detail text;
  hint text;
BEGIN
  EXECUTE sql;
  RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
    detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
  RETURN state || ': ' || msg
    || CASE WHEN detail <> '' THEN E'\nDETAIL: ' || detail ELSE '' END
    || CASE WHEN hint <> '' THEN E'\nHINT: ' || hint ELSE '' END;
END $$;

CREATE SCHEMA crm;
CREATE TABLE crm.customers (
  id          text PRIMARY KEY,
  mobile      text,
  full_name   text,
  kyc_status  text,
  score       integer,
  vip         boolean,
  balance     numeric,
  rating      float8,
  signed_up   date,
  notes       text              -- not mapped
);
CREATE TRIGGER to_squadstack AFTER INSERT OR UPDATE OR DELETE ON crm.customers
FOR EACH ROW EXECUTE FUNCTION squadstack_sync_trigger(
  'camp_t', 'lead_id=id', 'phone_number=mobile', 'contact_name=full_name',
  'is_KYC=kyc_status', 'score=score', 'vip=vip', 'balance=balance',
  'rating=rating', 'signed_up=signed_up', 'on_delete=disable');

-- INSERT queues a create: text as strings, numbers as numbers, booleans,
-- NULL as null, other types as their text; the phone number normalised
INSERT INTO crm.customers VALUES
  ('C1', '098765 43210', 'Asha Rao', 'YES', 7, true, 12.50, 4.5, '2024-01-15', 'first');
INSERT INTO crm.customers (id, mobile, full_name) VALUES ('C2', '+91 98765-43211', 'Ravi');
INSERT INTO crm.customers (id, mobile, full_name, balance, rating)
VALUES ('C3', '9876543212', 'Meera', 'NaN', '-Infinity');
SELECT * FROM queued;
-- they count as queued; the lead registry learns of them when they are
-- answered (tested with delivery below)
SELECT campaign_id, state, operations FROM squadstack.queue_status;
SELECT lead_id, status FROM squadstack.leads ORDER BY lead_id;
-- a create the trigger queued counts as queued for skip_existing
SELECT squadstack_create_leads('camp_t',
  '[{"lead_id": "C2", "phone_number": "9876543211", "contact_name": "Ravi"},
    {"lead_id": "C4", "phone_number": "9876543214", "contact_name": "New"}]') AS queued;
SELECT lead_id, op FROM squadstack.outbox ORDER BY id;
-- ... also once moved to the outbox, until it is answered
INSERT INTO squadstack.outbox (campaign_id, lead_id, op, payload)
SELECT campaign_id, lead_id, op, payload FROM squadstack.intake WHERE lead_id = 'C3';
DELETE FROM squadstack.intake WHERE lead_id = 'C3';
SELECT squadstack_create_leads('camp_t',
  '[{"lead_id": "C3", "phone_number": "9876543212", "contact_name": "Meera"}]') AS queued;
TRUNCATE squadstack.outbox, squadstack.intake, squadstack.leads;

-- UPDATE queues only the mapped fields that changed, with the lead_id
UPDATE crm.customers SET full_name = 'Asha R. Rao', notes = 'renamed' WHERE id = 'C1';
UPDATE crm.customers SET notes = 'unmapped column only' WHERE id = 'C1';
UPDATE crm.customers SET full_name = full_name, score = score WHERE id = 'C1';
UPDATE crm.customers SET score = NULL, vip = false, mobile = '91 98765 00000' WHERE id = 'C1';
UPDATE crm.customers SET kyc_status = 'NO' WHERE id = 'C2';
-- one statement over several rows: only the rows that changed
UPDATE crm.customers SET kyc_status = 'NO';
SELECT * FROM queued;
TRUNCATE squadstack.intake;

-- the lead_id cannot change
UPDATE crm.customers SET id = 'C9' WHERE id = 'C1';
SELECT split_part(pg_temp.error_of($$UPDATE crm.customers SET id = 'C9' WHERE id = 'C1'$$), ':', 1) AS sqlstate;
SELECT count(*) AS queued FROM squadstack.intake;

-- an update that breaks validation fails the statement (the validation's
-- own messages are tested in validation.sql; only their first line here)
\set VERBOSITY terse
UPDATE crm.customers SET mobile = '12345' WHERE id = 'C1';
UPDATE crm.customers SET full_name = '  ' WHERE id = 'C1';
UPDATE crm.customers SET full_name = NULL WHERE id = 'C1';
\set VERBOSITY default
SELECT count(*) AS queued FROM squadstack.intake;

-- DELETE with on_delete=disable
DELETE FROM crm.customers WHERE id = 'C2';
SELECT * FROM queued;
TRUNCATE squadstack.intake;

-- on_delete=delete
DROP TRIGGER to_squadstack ON crm.customers;
CREATE TRIGGER to_squadstack AFTER INSERT OR UPDATE OR DELETE ON crm.customers
FOR EACH ROW EXECUTE FUNCTION squadstack_sync_trigger(
  'camp_t', 'lead_id=id', 'phone_number=mobile', 'contact_name=full_name',
  'on_delete=delete');
DELETE FROM crm.customers WHERE id = 'C3';
SELECT * FROM queued;
TRUNCATE squadstack.intake;

-- on_delete=ignore
DROP TRIGGER to_squadstack ON crm.customers;
CREATE TRIGGER to_squadstack AFTER INSERT OR UPDATE OR DELETE ON crm.customers
FOR EACH ROW EXECUTE FUNCTION squadstack_sync_trigger(
  'camp_t', 'lead_id=id', 'phone_number=mobile', 'contact_name=full_name',
  'on_delete=ignore');
DELETE FROM crm.customers WHERE id = 'C1';
SELECT count(*) AS queued FROM squadstack.intake;

-- a multi-row INSERT ... SELECT queues one create per row, in order
INSERT INTO crm.customers (id, mobile, full_name)
SELECT 'M' || i, (9000000000 + i)::text, 'Multi ' || i FROM generate_series(1, 5) i;
SELECT * FROM queued;
TRUNCATE squadstack.intake;

-- nothing is queued unless the transaction commits
BEGIN;
INSERT INTO crm.customers (id, mobile, full_name) VALUES ('R1', '9876543299', 'Rolled back');
UPDATE crm.customers SET full_name = 'Rolled back too' WHERE id = 'M1';
DELETE FROM crm.customers WHERE id = 'M2';
SELECT count(*) AS queued_in_transaction FROM squadstack.intake;
ROLLBACK;
SELECT count(*) AS queued FROM squadstack.intake;
SELECT count(*) AS registered FROM squadstack.leads WHERE lead_id = 'R1';

-- a row that fails validation fails the CRM statement by default, and one
-- bad row in a multi-row statement fails it all
INSERT INTO crm.customers (id, mobile) VALUES ('BAD2', '9876543210');
\set VERBOSITY terse
INSERT INTO crm.customers (id, mobile, full_name) VALUES ('BAD1', '12345', 'Bad phone');
INSERT INTO crm.customers (id, mobile, full_name) VALUES ('BAD3', '9876543210', '');
INSERT INTO crm.customers (id, mobile, full_name) VALUES (repeat('x', 256), '9876543210', 'Long id');
INSERT INTO crm.customers (id, mobile, full_name)
VALUES ('OK1', '9876543210', 'Fine'), ('BAD4', '0', 'Bad');
\set VERBOSITY default
SELECT count(*) AS rows_kept FROM crm.customers WHERE id IN ('BAD1', 'BAD2', 'BAD3', 'OK1', 'BAD4');
SELECT count(*) AS queued FROM squadstack.intake;

-- with on_invalid=skip, an invalid row is written, warned about and
-- recorded, and the others are queued
CREATE TABLE crm.prospects (
  ref       text,
  phone     text,
  name      text,
  source    text
);
CREATE TRIGGER to_squadstack AFTER INSERT OR UPDATE OR DELETE ON crm.prospects
FOR EACH ROW EXECUTE FUNCTION squadstack_sync_trigger(
  'camp_s', 'lead_id=ref', 'phone_number=phone', 'contact_name=name',
  'source=source', 'on_invalid=skip');
\set VERBOSITY terse
INSERT INTO crm.prospects VALUES
  ('S1', '9876511111', 'Good one', 'web'),
  ('S2', '12345', 'Bad phone', 'fair'),
  (NULL, '9876522222', 'No ref', 'web'),
  ('S3', '9876533333', 'Good two', NULL);
UPDATE crm.prospects SET phone = '000' WHERE ref = 'S1';
UPDATE crm.prospects SET source = 'phone' WHERE ref = 'S3';
\set VERBOSITY default
DELETE FROM crm.prospects WHERE ref IS NULL;
SELECT count(*) AS prospects FROM crm.prospects;
SELECT * FROM queued;
SELECT table_name, trigger_name, operation, campaign_id, lead_id, sqlstate, error, row_data
FROM squadstack.sync_skipped ORDER BY id;
-- a skipped row in a rolled back transaction leaves no record either
BEGIN;
\set VERBOSITY terse
INSERT INTO crm.prospects VALUES ('S4', 'bad', 'Rolled back', NULL);
\set VERBOSITY default
ROLLBACK;
SELECT count(*) AS skipped FROM squadstack.sync_skipped;
-- a lead_id change is an error even with on_invalid=skip
UPDATE crm.prospects SET ref = 'S5' WHERE ref = 'S3';
TRUNCATE squadstack.intake, squadstack.sync_skipped;

-- a lead larger than squadstack.max_lead_bytes as JSON is an invalid row:
-- an error, or skipped and recorded with on_invalid=skip
SET squadstack.max_lead_bytes = 1024;
SELECT pg_temp.error_of($$INSERT INTO crm.customers (id, mobile, full_name)
                          VALUES ('C7', '9876577777', repeat('k', 1000))$$);
SELECT pg_temp.error_of($$UPDATE crm.customers SET full_name = repeat('k', 1000) WHERE id = 'M1'$$);
\set VERBOSITY terse
INSERT INTO crm.prospects VALUES ('S6', '9876566666', 'Large', repeat('s', 1000));
\set VERBOSITY default
RESET squadstack.max_lead_bytes;
SELECT lead_id, operation, sqlstate, error FROM squadstack.sync_skipped;
SELECT count(*) AS queued FROM squadstack.intake;
TRUNCATE squadstack.intake, squadstack.sync_skipped;

-- an integer lead_id column: the lead_id stays a JSON number
CREATE TABLE crm.accounts (
  acct_no   bigint PRIMARY KEY,
  phone     bigint,
  holder    varchar(80),
  tier      smallint,
  opened    timestamptz
);
CREATE TRIGGER to_squadstack AFTER INSERT OR UPDATE OR DELETE ON crm.accounts
FOR EACH ROW EXECUTE FUNCTION squadstack_sync_trigger(
  'camp_i', 'lead_id=acct_no', 'phone_number=phone', 'contact_name=holder',
  'tier=tier', 'on_delete=delete');
INSERT INTO crm.accounts VALUES (1001, 9876544444, 'Integer Id', 2, NULL);
UPDATE crm.accounts SET tier = 3 WHERE acct_no = 1001;
UPDATE crm.accounts SET opened = '2024-01-01 00:00+00' WHERE acct_no = 1001;
DELETE FROM crm.accounts WHERE acct_no = 1001;
SELECT * FROM queued;
SELECT jsonb_typeof(payload->'lead_id') AS lead_id_type FROM squadstack.intake ORDER BY id;
TRUNCATE squadstack.intake;

-- a trigger on a partitioned table is cloned to each partition, whose
-- columns may sit at other positions
CREATE TABLE crm.regional (
  id        text,
  region    text,
  mobile    text,
  full_name text
) PARTITION BY LIST (region);
CREATE TABLE crm.regional_north PARTITION OF crm.regional FOR VALUES IN ('north');
CREATE TABLE crm.regional_south (extra int, full_name text, mobile text, region text, id text);
ALTER TABLE crm.regional_south DROP COLUMN extra;
ALTER TABLE crm.regional ATTACH PARTITION crm.regional_south FOR VALUES IN ('south');
CREATE TRIGGER to_squadstack AFTER INSERT OR UPDATE OR DELETE ON crm.regional
FOR EACH ROW EXECUTE FUNCTION squadstack_sync_trigger(
  'camp_p', 'lead_id=id', 'phone_number=mobile', 'contact_name=full_name',
  'region=region');
INSERT INTO crm.regional VALUES
  ('N1', 'north', '9876500001', 'North one'),
  ('S1', 'south', '9876500002', 'South one'),
  ('N2', 'north', '9876500003', 'North two');
SELECT * FROM queued;
TRUNCATE squadstack.intake;

-- an application role that may only write the CRM table still queues (the
-- trigger writes the intake without privilege checks) and records skipped
-- rows (it runs that statement as its owner), but cannot read either
CREATE ROLE squadstack_crm_writer;
GRANT USAGE ON SCHEMA crm TO squadstack_crm_writer;
GRANT INSERT, UPDATE, DELETE, SELECT ON crm.customers, crm.prospects TO squadstack_crm_writer;
SET ROLE squadstack_crm_writer;
INSERT INTO crm.customers (id, mobile, full_name) VALUES ('W1', '9876577777', 'Writer');
\set VERBOSITY terse
INSERT INTO crm.prospects VALUES ('W2', '12', 'Writer', NULL);
\set VERBOSITY default
SELECT * FROM squadstack.intake;
SELECT * FROM squadstack.sync_skipped;
RESET ROLE;
-- the skipped row's row_data is made as the writer, not as the owner: a
-- cast to json that a column's type brings runs as the writer
CREATE TYPE crm.mood AS ENUM ('happy', 'sad');
CREATE FUNCTION crm.mood_json(crm.mood) RETURNS json LANGUAGE sql AS
$$SELECT pg_catalog.json_build_object('mood', $1::text, 'made_by', current_user)$$;
CREATE CAST (crm.mood AS json) WITH FUNCTION crm.mood_json(crm.mood);
CREATE TABLE crm.moody (ref text, phone text, name text, mood crm.mood);
CREATE TRIGGER to_squadstack AFTER INSERT ON crm.moody
FOR EACH ROW EXECUTE FUNCTION squadstack_sync_trigger(
  'camp_s', 'lead_id=ref', 'phone_number=phone', 'contact_name=name', 'on_invalid=skip');
GRANT INSERT ON crm.moody TO squadstack_crm_writer;
SET ROLE squadstack_crm_writer;
SET search_path = pg_temp, public;
\set VERBOSITY terse
INSERT INTO crm.moody VALUES ('W3', '34', 'Writer', 'sad');
\set VERBOSITY default
RESET search_path;
RESET ROLE;
SELECT row_data->'mood' AS mood FROM squadstack.sync_skipped WHERE lead_id = 'W3';
SELECT * FROM queued;
SELECT lead_id, error FROM squadstack.sync_skipped;
DELETE FROM crm.prospects WHERE ref = 'W2';
TRUNCATE squadstack.sync_skipped;
TRUNCATE squadstack.intake;

-- bad trigger arguments fail at the first row, naming trigger, table and
-- argument
CREATE TABLE crm.bad (id text, mobile text, full_name text);
CREATE FUNCTION pg_temp.try_trigger(args text, kind text DEFAULT 'AFTER INSERT OR UPDATE OR DELETE',
                                    level text DEFAULT 'ROW') RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  result text;
BEGIN
  EXECUTE format('CREATE TRIGGER sync_bad %s ON crm.bad FOR EACH %s EXECUTE FUNCTION squadstack_sync_trigger(%s)',
                 kind, level, args);
  result := pg_temp.error_of($q$INSERT INTO crm.bad VALUES ('B1', '9876543210', 'Bad args')$q$);
  IF result = 'no error' THEN
    result := pg_temp.error_of($q$UPDATE crm.bad SET full_name = 'Renamed'$q$);
  END IF;
  EXECUTE 'DROP TRIGGER sync_bad ON crm.bad';
  DELETE FROM crm.bad;
  RETURN result;
END $$;
SELECT pg_temp.try_trigger('');
SELECT pg_temp.try_trigger($$'camp 1', 'lead_id=id', 'phone_number=mobile', 'contact_name=full_name'$$);
SELECT pg_temp.try_trigger(format('%L, ''lead_id=id'', ''phone_number=mobile'', ''contact_name=full_name''', repeat('c', 65)));
SELECT pg_temp.try_trigger($$'camp_b', 'lead_id=id', 'phone_number', 'contact_name=full_name'$$);
SELECT pg_temp.try_trigger($$'camp_b', 'lead_id=id', '=mobile', 'contact_name=full_name'$$);
SELECT pg_temp.try_trigger($$'camp_b', 'lead_id=id', 'phone_number=', 'contact_name=full_name'$$);
SELECT pg_temp.try_trigger($$'camp_b', 'lead_id=id', 'phone_number=phone', 'contact_name=full_name'$$);
SELECT pg_temp.try_trigger($$'camp_b', 'lead_id=id', 'phone_number=Mobile', 'contact_name=full_name'$$);
SELECT pg_temp.try_trigger($$'camp_b', 'lead_id=id', 'phone_number=mobile'$$);
SELECT pg_temp.try_trigger($$'camp_b', 'phone_number=mobile', 'contact_name=full_name'$$);
SELECT pg_temp.try_trigger($$'camp_b', 'contact_name=full_name'$$, 'AFTER UPDATE');
SELECT pg_temp.try_trigger($$'camp_b', 'lead_id=id', 'phone_number=mobile', 'contact_name=full_name', 'lead_id=mobile'$$);
SELECT pg_temp.try_trigger($$'camp_b', 'lead_id=id', 'Phone_Number=mobile', 'contact_name=full_name'$$);
SELECT pg_temp.try_trigger($$'camp_b', 'lead_id=id', 'phone_number=mobile', 'contact_name=full_name', 'contact_name =full_name'$$);
SELECT pg_temp.try_trigger($$'camp_b', 'lead_id=id', 'phone_number=mobile', 'contact_name=full_name', 'on_update=ignore'$$);
SELECT pg_temp.try_trigger($$'camp_b', 'lead_id=id', 'phone_number=mobile', 'contact_name=full_name', 'on_delete=purge'$$);
SELECT pg_temp.try_trigger($$'camp_b', 'lead_id=id', 'phone_number=mobile', 'contact_name=full_name', 'on_invalid=ignore'$$);
SELECT pg_temp.try_trigger($$'camp_b', 'lead_id=id', 'phone_number=mobile', 'contact_name=full_name', 'on_delete=ignore', 'on_delete=delete'$$);
SELECT pg_temp.try_trigger($$'camp_b', 'lead_id=id', 'phone_number=mobile', 'contact_name=full_name'$$, 'BEFORE INSERT');
SELECT pg_temp.try_trigger($$'camp_b', 'lead_id=id', 'phone_number=mobile', 'contact_name=full_name'$$, 'AFTER INSERT', 'STATEMENT');
-- an UPDATE-only trigger does not create leads, so it needs only lead_id
SELECT pg_temp.try_trigger($$'camp_b', 'lead_id=id', 'contact_name=full_name'$$, 'AFTER UPDATE');
SELECT * FROM queued;
-- as psql shows it
CREATE TRIGGER sync_bad AFTER INSERT ON crm.bad
FOR EACH ROW EXECUTE FUNCTION squadstack_sync_trigger('camp_b', 'lead_id=id', 'phone_number=phone');
INSERT INTO crm.bad VALUES ('B1', '9876543210', 'Bad args');
DROP TRIGGER sync_bad ON crm.bad;
TRUNCATE squadstack.intake;

-- a session keeps each trigger's resolved arguments until its table changes
CREATE TABLE crm.cached (id text, mobile text, full_name text);
CREATE TRIGGER to_squadstack AFTER INSERT ON crm.cached
FOR EACH ROW EXECUTE FUNCTION squadstack_sync_trigger(
  'camp_c', 'lead_id=id', 'phone_number=mobile', 'contact_name=full_name');
INSERT INTO crm.cached VALUES ('K1', '9876500011', 'Cached one');
ALTER TABLE crm.cached RENAME COLUMN full_name TO old_name;
ALTER TABLE crm.cached ADD COLUMN full_name text;
INSERT INTO crm.cached VALUES ('K2', '9876500012', 'Old name', 'New column');
ALTER TABLE crm.cached RENAME COLUMN mobile TO phone;
\set VERBOSITY terse
INSERT INTO crm.cached (id, phone, full_name) VALUES ('K3', '9876500013', 'Renamed');
\set VERBOSITY default
CREATE OR REPLACE TRIGGER to_squadstack AFTER INSERT ON crm.cached
FOR EACH ROW EXECUTE FUNCTION squadstack_sync_trigger(
  'camp_c2', 'lead_id=id', 'phone_number=phone', 'contact_name=old_name');
INSERT INTO crm.cached (id, phone, old_name) VALUES ('K4', '9876500014', 'Replaced');
SELECT * FROM queued;
TRUNCATE squadstack.intake;

-- delivery: what the trigger queued reaches the API double in order
SET squadstack.api_url = :'api_url';
SET squadstack.token = 'test-token';
\i test/double_helpers.sql
DROP TRIGGER to_squadstack ON crm.customers;
CREATE TRIGGER to_squadstack AFTER INSERT OR UPDATE OR DELETE ON crm.customers
FOR EACH ROW EXECUTE FUNCTION squadstack_sync_trigger(
  'camp_d', 'lead_id=id', 'phone_number=mobile', 'contact_name=full_name',
  'is_KYC=kyc_status', 'score=score');
INSERT INTO crm.customers (id, mobile, full_name, kyc_status, score) VALUES
  ('D1', '9876560001', 'Deliver one', 'YES', 1),
  ('D2', '9876560002', 'Deliver two', 'NO', NULL);
UPDATE crm.customers SET full_name = 'Deliver One', score = 2 WHERE id = 'D1';
DELETE FROM crm.customers WHERE id = 'D2';
INSERT INTO crm.accounts VALUES (2002, 9876560003, 'Account', 1, NULL);
DELETE FROM crm.accounts WHERE acct_no = 2002;
-- an update queued by function after the trigger's operations goes after them
SELECT squadstack_update_lead('camp_d', '{"lead_id": "D1", "score": 3}');
-- a publication of all tables does not stop the move out of the intake,
-- which has no key
SET client_min_messages = error;
CREATE PUBLICATION squadstack_everything FOR ALL TABLES;
RESET client_min_messages;
SELECT pg_temp.flush_until_idle() AS calls;
DROP PUBLICATION squadstack_everything;
SELECT method, endpoint, campaign, lead_ids, status, body FROM received ORDER BY seq;
SELECT campaign_id, lead_id, op, state, http_status FROM squadstack.outbox ORDER BY id;
SELECT count(*) AS left_in_intake FROM squadstack.intake;
-- the registry learns of a trigger's creates when they are answered
SELECT campaign_id, lead_id, status FROM squadstack.leads ORDER BY campaign_id, lead_id;
-- a refused create enters it as failed
\! python3 test/double_ctl.py fault '{"kind": "status", "status": 400, "campaign": "camp_d", "count": 1}'
INSERT INTO crm.customers (id, mobile, full_name) VALUES ('D9', '9876560009', 'Refused');
SELECT pg_temp.flush_until_idle() AS calls;
SELECT lead_id, status FROM squadstack.leads WHERE lead_id = 'D9';
-- a row too large to stay inline in the intake (its payload is toasted)
-- arrives whole
INSERT INTO crm.customers (id, mobile, full_name, kyc_status)
SELECT 'D8', '9876560008', 'Large', string_agg(md5(i::text), '') FROM generate_series(1, 300) i;
SELECT pg_column_size(payload) > 8000 AS large FROM squadstack.intake WHERE lead_id = 'D8';
SELECT pg_temp.flush_until_idle() AS calls;
SELECT body->0->>'is_KYC' = (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 300) i) AS arrived_whole
FROM received WHERE lead_ids = '["D8"]';

RESET squadstack.api_url;
RESET squadstack.token;
DROP SCHEMA crm CASCADE;
DROP ROLE squadstack_crm_writer;
TRUNCATE squadstack.outbox, squadstack.intake, squadstack.api_calls,
  squadstack.token_state, squadstack.leads, squadstack.sync_skipped;
