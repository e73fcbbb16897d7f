-- squadstack demo against the API double
\pset footer off
CREATE EXTENSION squadstack;

-- configuration a DBA would put in postgresql.conf
ALTER SYSTEM SET squadstack.api_url = :'api_url';
ALTER SYSTEM SET squadstack.token = 'demo-token';
SELECT pg_reload_conf();
SELECT pg_sleep(0.2);

\echo == a CRM table and leads queued in the same transaction as the CRM rows
CREATE TABLE customers (id text PRIMARY KEY, mobile text, full_name text, kyc text);
BEGIN;
INSERT INTO customers VALUES
  ('C1', '098765 43210', 'Asha Rao', 'YES'),
  ('C2', '+91 91234-56789', 'Ravi Kumar', 'NO');
SELECT squadstack_create_leads('camp_1',
  (SELECT jsonb_agg(jsonb_build_object('lead_id', id, 'phone_number', mobile,
                                       'contact_name', full_name, 'is_KYC', kyc))
   FROM customers)) AS queued;
COMMIT;

\echo == a bad lead is refused and nothing is queued
\set ON_ERROR_STOP 0
SELECT squadstack_create_leads('camp_1', '[{"lead_id":"C3","phone_number":"12345","contact_name":"Bad"}]');
\set ON_ERROR_STOP 1

SELECT squadstack_update_lead('camp_1', '{"lead_id":"C1","contact_name":"Asha R. Rao"}') AS queued;
SELECT squadstack_convert_lead('camp_1', 'C2', 'policy_bought') AS queued;

\echo == queued
SELECT campaign_id, state, operations FROM squadstack.queue_status;

\echo == deliver what is due (the background worker does this by itself when preloaded)
SELECT squadstack_flush() AS api_calls;

\echo == delivered
SELECT id, lead_id, op, state, http_status FROM squadstack.outbox ORDER BY id;
SELECT campaign_id, op, method, n_leads, http_status, round(duration_ms) AS ms FROM squadstack.api_calls ORDER BY id;
SELECT campaign_id, state, operations, token_paused FROM squadstack.queue_status;
