-- squadstack demo against the API double, with the background worker
\pset footer off
CREATE EXTENSION squadstack;
CREATE EXTENSION pg_cron;

-- configuration a DBA would put in postgresql.conf
ALTER SYSTEM SET squadstack.api_url = :'api_url';
ALTER SYSTEM SET squadstack.token = 'demo-token';
ALTER SYSTEM SET squadstack.webhook_secret = :'secret';
SELECT pg_reload_conf() \gset
SELECT pg_sleep(0.3) \gset

\echo == a CRM table whose rows go to SquadStack through the sync trigger
CREATE TABLE customers (
  id text PRIMARY KEY, mobile text, full_name text, kyc text,
  outcome text, called_at timestamptz, interest text);
CREATE TRIGGER to_squadstack AFTER INSERT OR UPDATE OR DELETE ON customers
FOR EACH ROW EXECUTE FUNCTION squadstack_sync_trigger(
  'camp_1', 'lead_id=id', 'phone_number=mobile', 'contact_name=full_name', 'is_KYC=kyc');

\echo == ... and whose outcome columns the outcomes fill in (a write-back)
SELECT squadstack_writeback('camp_1', 'customers', 'id=lead_id',
  'outcome=lead_outcome', 'called_at=latest_called_at', 'interest=lead_responses.interest');

\echo == CRM rows written; the leads are queued in the same transaction
INSERT INTO customers (id, mobile, full_name, kyc) VALUES
  ('C1', '098765 43210', 'Asha Rao', 'YES'),
  ('C2', '+91 91234-56789', 'Ravi Kumar', 'NO'),
  ('C3', '9812345678', 'Meera Iyer', 'YES');

\echo == a bad row is refused and nothing is queued
\set ON_ERROR_STOP 0
INSERT INTO customers (id, mobile, full_name) VALUES ('C4', '12345', 'Bad Number');
\set ON_ERROR_STOP 1

\echo == a change to a CRM row queues an update of the mapped fields that changed
UPDATE customers SET full_name = 'Asha R. Rao' WHERE id = 'C1';

\echo == the background worker delivers them at once (no flush)
DO $$
BEGIN
  FOR i IN 1..100 LOOP   -- at most 10 s
    EXIT WHEN NOT EXISTS (SELECT 1 FROM squadstack.intake)
          AND NOT EXISTS (SELECT 1 FROM squadstack.outbox WHERE state <> 'sent')
          AND EXISTS (SELECT 1 FROM squadstack.outbox);
    PERFORM pg_sleep(0.1);
  END LOOP;
END $$;
SELECT o.lead_id, o.op, o.state, o.http_status,
       round(extract(epoch FROM o.sent_at - o.created_at) * 1000) AS ms_to_send
FROM squadstack.outbox o ORDER BY o.id;
SELECT running, waiting_for, calls FROM squadstack_worker_status();

\echo == the CRM table before SquadStack has called anyone
SELECT id, full_name, outcome, called_at, interest FROM customers ORDER BY id;

\echo == outcomes are also pulled by a pg_cron job each minute, for webhooks that never came
SELECT cron.schedule('squadstack-responses', '* * * * *',
                     $$SELECT squadstack_sync_responses('camp_1')$$) IS NOT NULL AS scheduled;
SELECT jobname, schedule, command FROM cron.job;
