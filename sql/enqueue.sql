-- Queueing: what each function writes to the outbox, in the caller's
-- transaction.
TRUNCATE squadstack.outbox;

-- phone numbers in every accepted form, normalised to E.164 by default
SELECT squadstack_create_leads('camp_1', '[
  {"lead_id":"P1","phone_number":"098765 43210","contact_name":"Asha Rao","is_KYC":"YES"},
  {"lead_id":"P2","phone_number":"+91 98765-43211","contact_name":"Ravi"},
  {"lead_id":"P3","phone_number":"0091 (98765) 43212","contact_name":"Meera"},
  {"lead_id":"P4","phone_number":"91.98765.43213","contact_name":"Kiran"},
  {"lead_id":"P5","phone_number":"9876543214","contact_name":"Dev","product_plan":"Lite","is_squadlead":true,"score":7,"note":null},
  {"lead_id":"P6","phone_number":9123456789,"contact_name":"Numeric phone"},
  {"lead_id":17,"phone_number":"1123456789","contact_name":"Integer id, Delhi landline"}
]') AS queued;

SELECT lead_id, op, state, attempts, payload
FROM squadstack.outbox ORDER BY id;

-- other phone formats
SET squadstack.phone_format = 'national';
SELECT squadstack_create_leads('camp_1', '{"lead_id":"N1","phone_number":"+91 98765 43215","contact_name":"One object"}') AS queued;
SET squadstack.phone_format = 'as_given';
SELECT squadstack_create_leads('camp_1', '{"lead_id":"G1","phone_number":"+91 98765 43216","contact_name":"As given"}') AS queued;
RESET squadstack.phone_format;
SELECT lead_id, payload->>'phone_number' AS phone FROM squadstack.outbox WHERE lead_id IN ('N1', 'G1') ORDER BY id;

-- the other operations
SELECT squadstack_disable_leads('camp_1', '["P1", {"lead_id": "P2"}, 17]') AS queued;
SELECT squadstack_disable_leads('camp_1', '"P3"') AS queued;
SELECT squadstack_update_lead('camp_1', '{"lead_id":"P4","phone_number":"9876500000","plan":"Gold"}') AS queued;
SELECT squadstack_delete_lead('camp_1', 'P5') AS queued;
SELECT squadstack_convert_lead('camp_1', 'P6', 'paid_in_full') AS queued;
SELECT lead_id, op, payload FROM squadstack.outbox WHERE op <> 'create' ORDER BY id;

-- nothing is queued unless the transaction commits
BEGIN;
SELECT squadstack_create_leads('camp_2', '[{"lead_id":"R1","phone_number":"9876543210","contact_name":"Rolled back"}]') AS queued;
ROLLBACK;
SELECT count(*) AS camp_2_rows FROM squadstack.outbox WHERE campaign_id = 'camp_2';

-- a failed call in a transaction queues nothing, and neither does the rest
BEGIN;
SELECT squadstack_create_leads('camp_2', '[{"lead_id":"R2","phone_number":"9876543210","contact_name":"x"}]') AS queued;
SELECT squadstack_create_leads('camp_2', '[{"lead_id":"R3","phone_number":"1","contact_name":"x"}]');
COMMIT;
SELECT count(*) AS camp_2_rows FROM squadstack.outbox WHERE campaign_id = 'camp_2';

-- a large call keeps the caller's order
SELECT squadstack_create_leads('camp_3',
  (SELECT jsonb_agg(jsonb_build_object('lead_id', 'B' || i, 'phone_number', (9000000000 + i)::text, 'contact_name', 'Lead ' || i) ORDER BY i)
   FROM generate_series(1, 1000) i)) AS queued;
SELECT bool_and(lead_id = 'B' || rn) AS in_order, count(*)
FROM (SELECT lead_id, row_number() OVER (ORDER BY id) rn FROM squadstack.outbox WHERE campaign_id = 'camp_3') s;

-- queue_status without any token
SET squadstack.token = '';
SELECT campaign_id, state, operations, token_paused, token_pause_reason
FROM squadstack.queue_status ORDER BY campaign_id, state;

-- per-campaign tokens: set, replace, remove; never shown
SELECT squadstack_set_token('camp_1', 'campaign-one-token');
SELECT squadstack_set_token('camp_1', 'campaign-one-token-2');
SELECT campaign_id, state, token_paused, token_pause_reason
FROM squadstack.queue_status ORDER BY campaign_id, state;
SELECT campaign_id, token = 'campaign-one-token-2' AS replaced FROM squadstack.tokens;
SELECT squadstack_set_token('camp_1', NULL);
SELECT count(*) AS tokens FROM squadstack.tokens;

-- retry puts failed operations back, optionally by campaign and lead
UPDATE squadstack.outbox SET state = 'failed', attempts = 3, error = 'x' WHERE lead_id IN ('P1', 'P2', 'B1');
SELECT squadstack_retry('camp_1', 'P1') AS retried;
SELECT squadstack_retry('camp_1') AS retried;
SELECT squadstack_retry() AS retried;
SELECT squadstack_retry() AS retried;
SELECT lead_id, state, attempts FROM squadstack.outbox WHERE lead_id IN ('P1', 'P2', 'B1') AND op = 'create' ORDER BY id;

-- a phone number given as a JSON number in exponent form is a whole number
SELECT squadstack_create_leads('camp_4', '[{"lead_id":"E1","phone_number":9.87654321e9,"contact_name":"Exponent"}]') AS queued;
SELECT payload->>'phone_number' AS phone FROM squadstack.outbox WHERE lead_id = 'E1';

-- skip_existing looks each lead up in the intake through its index: what it
-- reads follows the call's leads, not the size of the intake
INSERT INTO squadstack.intake (id, campaign_id, lead_id, op, payload, created_at)
SELECT nextval('squadstack.outbox_id_seq'), 'camp_5', 'I' || i, 'create', '{}', now()
FROM generate_series(1, 20000) i;
ANALYZE squadstack.intake;
SET stats_fetch_consistency = none;
SELECT pg_stat_force_next_flush();
SELECT t.seq_tup_read AS seq0, i.idx_tup_read AS idx0
FROM pg_stat_user_tables t, pg_stat_user_indexes i
WHERE t.relid = 'squadstack.intake'::regclass AND i.indexrelid = 'squadstack.intake_lead_idx'::regclass \gset
SELECT squadstack_create_leads('camp_5', '[{"lead_id":"I7","phone_number":"9876543210","contact_name":"In the intake"},
                                          {"lead_id":"N1","phone_number":"9876543211","contact_name":"New"}]') AS queued;
SELECT pg_stat_force_next_flush();
SELECT t.seq_tup_read - :seq0 AS intake_rows_scanned, i.idx_tup_read - :idx0 < 10 AS few_index_entries_read
FROM pg_stat_user_tables t, pg_stat_user_indexes i
WHERE t.relid = 'squadstack.intake'::regclass AND i.indexrelid = 'squadstack.intake_lead_idx'::regclass;
RESET stats_fetch_consistency;
SELECT lead_id FROM squadstack.outbox WHERE campaign_id = 'camp_5';
TRUNCATE squadstack.intake;

TRUNCATE squadstack.outbox;
RESET squadstack.token;
