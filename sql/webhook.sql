-- Webhook outcomes into tables; the lead registry; erasure after a delete.
TRUNCATE squadstack.outbox, squadstack.api_calls, squadstack.token_state, squadstack.tokens,
  squadstack.leads, squadstack.webhook_inbox, squadstack.lead_outcomes;

-- a user's trigger acting on outcomes: copy lead_outcome to the CRM row
-- (outcomes are written with search_path = pg_catalog, pg_temp, so the
-- trigger names its table with the schema)
CREATE TABLE crm_customers (id text PRIMARY KEY, full_name text, squadstack_outcome text);
INSERT INTO crm_customers VALUES ('L1', 'Asha Rao', NULL), ('L2', 'Ravi', NULL);
CREATE FUNCTION copy_outcome() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE public.crm_customers SET squadstack_outcome = NEW.lead_outcome WHERE id = NEW.lead_id;
  RETURN NEW;
END $$;
CREATE TRIGGER copy_outcome AFTER INSERT OR UPDATE OF lead_outcome ON squadstack.lead_outcomes
FOR EACH ROW EXECUTE FUNCTION copy_outcome();

-- the reference's example payload is stored and applied
SELECT squadstack_receive_webhook('{
    "phone_number": "+919876543210",
    "lead_id": "L1",
    "latest_recording_url": "https://recordings.example/L1.mp3",
    "campaign_id": "camp_1",
    "latest_called_at": "2018-12-03T14:36:38+00:00",
    "lead_outcome": "Connected : Objective Met",
    "processed_at": "2018-12-03T14:37:54+00:00",
    "contact_name": "Asha Rao",
    "created_at": "2018-12-03T14:36:01+00:00",
    "lead_responses": {"response_key_1": "response_value_1", "interested": true}
}') AS http_status;
SET timezone = 'UTC';
SELECT campaign_id, lead_id, phone_number, contact_name, lead_outcome, latest_recording_url,
       latest_called_at, processed_at, created_at, lead_responses
FROM squadstack.lead_outcomes;
SELECT id, squadstack_outcome FROM crm_customers ORDER BY id;
SELECT campaign_id, lead_id, status, last_outcome, last_processed_at FROM squadstack.leads;

-- redelivery of the same payload: duplicate; an older one: stale; a newer one replaces
SELECT squadstack_receive_webhook('{"campaign_id":"camp_1","lead_id":"L1","processed_at":"2018-12-03T14:37:54Z","lead_outcome":"Connected : Objective Met"}') AS duplicate;
SELECT squadstack_receive_webhook('{"campaign_id":"camp_1","lead_id":"L1","processed_at":"2018-12-03T14:00:00+00:00","lead_outcome":"Older"}') AS stale;
SELECT squadstack_receive_webhook('{"campaign_id":"camp_1","lead_id":"L1","processed_at":"2018-12-04T09:00:00+05:30","lead_outcome":"Not Interested"}') AS newer;
SELECT lead_id, lead_outcome, processed_at, phone_number FROM squadstack.lead_outcomes;
SELECT id, squadstack_outcome FROM crm_customers ORDER BY id;

-- timestamps: without offset (squadstack.webhook_timezone), epoch numbers and strings
SELECT squadstack_receive_webhook('{"campaign_id":"camp_1","lead_id":"L2","processed_at":"2018-12-05T10:00:00","created_at":1543847761,"latest_called_at":"1543847700.5"}') AS no_offset;
SET squadstack.webhook_timezone = 'Asia/Kolkata';
SELECT squadstack_receive_webhook('{"campaign_id":"camp_1","lead_id":2,"processed_at":"2018-12-05 10:00"}') AS kolkata;
SELECT squadstack_receive_webhook('{"campaign_id":"camp_1","lead_id":"L3","processed_at":1543847761000}') AS epoch_ms;
RESET squadstack.webhook_timezone;
SELECT lead_id, processed_at, created_at, latest_called_at FROM squadstack.lead_outcomes
WHERE lead_id IN ('L2', '2', 'L3') ORDER BY lead_id;
SET squadstack.webhook_timezone = 'Mars/Olympus';

-- malformed payloads are stored as rejected with a precise reason (HTTP 400)
SELECT squadstack_receive_webhook(p::jsonb) AS http_status, p
FROM (VALUES
  ('[1, 2]'),
  ('"just a string"'),
  ('{"lead_id":"L9","processed_at":"2018-12-03T14:37:54Z"}'),
  ('{"campaign_id":"camp_1","processed_at":"2018-12-03T14:37:54Z"}'),
  ('{"campaign_id":"camp_1","lead_id":"L9"}'),
  ('{"campaign_id":42,"lead_id":"L9","processed_at":"2018-12-03T14:37:54Z"}'),
  ('{"campaign_id":"camp 1","lead_id":"L9","processed_at":"2018-12-03T14:37:54Z"}'),
  ('{"campaign_id":"camp_1","lead_id":{"id":1},"processed_at":"2018-12-03T14:37:54Z"}'),
  ('{"campaign_id":"camp_1","lead_id":1.5,"processed_at":"2018-12-03T14:37:54Z"}'),
  ('{"campaign_id":"camp_1","lead_id":"L9","processed_at":"yesterday"}'),
  ('{"campaign_id":"camp_1","lead_id":"L9","processed_at":"2018-13-03T14:37:54Z"}'),
  ('{"campaign_id":"camp_1","lead_id":"L9","processed_at":"2018-02-30"}'),
  ('{"campaign_id":"camp_1","lead_id":"L9","processed_at":"now"}'),
  ('{"campaign_id":"camp_1","lead_id":"L9","processed_at":"2018-12-03T14:37:54Z","latest_called_at":"soon"}'),
  ('{"campaign_id":"camp_1","lead_id":"L9","processed_at":"2018-12-03T14:37:54Z","created_at":true}'),
  ('{"campaign_id":"camp_1","lead_id":"L9","processed_at":"2018-12-03T14:37:54Z","lead_responses":["a"]}'),
  ('{"campaign_id":"camp_1","lead_id":"L9","processed_at":"2018-12-03T14:37:54Z","lead_outcome":{"x":1}}')
) v(p);
SELECT squadstack_receive_webhook(NULL) AS null_payload;
SELECT status, campaign_id, lead_id, error FROM squadstack.webhook_inbox
WHERE status = 'rejected' ORDER BY id;
SELECT count(*) AS outcomes_for_l9 FROM squadstack.lead_outcomes WHERE lead_id = 'L9';

-- rows INSERTed directly behave the same
INSERT INTO squadstack.webhook_inbox (payload) VALUES
  ('{"campaign_id":"camp_1","lead_id":"L4","processed_at":"2018-12-06T10:00:00Z","lead_outcome":"Callback"}'),
  ('{"campaign_id":"camp_1","lead_id":"L4","processed_at":"2018-12-06T10:00:00Z","lead_outcome":"Callback"}'),
  ('{"campaign_id":"camp_1"}');
SELECT status, lead_id, error FROM squadstack.webhook_inbox WHERE id > (SELECT max(id) - 3 FROM squadstack.webhook_inbox) ORDER BY id;
-- ... except a row inserted already processed, as pg_restore writes them:
-- a status other than rejected and a processed_at keep it as given
INSERT INTO squadstack.webhook_inbox (payload, status, campaign_id, lead_id, processed_at) VALUES
  ('{"campaign_id":"camp_1","lead_id":"L6","processed_at":"2018-12-06T10:00:00Z","lead_outcome":"Restored"}',
   'duplicate', 'camp_1', 'L6', '2018-12-06T10:00:00Z');
SELECT status, lead_id, error FROM squadstack.webhook_inbox WHERE lead_id = 'L6';
SELECT count(*) AS outcomes_for_l6 FROM squadstack.lead_outcomes WHERE lead_id = 'L6';

-- every payload received is kept, with its status
SELECT status, count(*) FROM squadstack.webhook_inbox GROUP BY status ORDER BY status;

-- a secret, when configured, is required (403 stores nothing)
SET squadstack.webhook_secret = 's3cret';
SELECT squadstack_receive_webhook('{"campaign_id":"camp_1","lead_id":"L5","processed_at":"2018-12-06T10:00:00Z"}') AS no_secret;
SELECT squadstack_receive_webhook('{"campaign_id":"camp_1","lead_id":"L5","processed_at":"2018-12-06T10:00:00Z"}', 'wrong') AS wrong_secret;
SELECT count(*) AS stored_l5 FROM squadstack.webhook_inbox WHERE lead_id = 'L5';
SELECT squadstack_receive_webhook('{"campaign_id":"camp_1","lead_id":"L5","processed_at":"2018-12-06T10:00:00Z"}', 's3cret') AS right_secret;
RESET squadstack.webhook_secret;

-- skip_existing: a scheduled sync can offer the same leads every time
SELECT squadstack_create_leads('camp_1', '[{"lead_id":"L1","phone_number":"9876543210","contact_name":"Asha Rao"},
                                           {"lead_id":"S1","phone_number":"9876543211","contact_name":"Sync one"}]') AS queued;
SELECT squadstack_create_leads('camp_1', '[{"lead_id":"S1","phone_number":"9876543211","contact_name":"Sync one"},
                                           {"lead_id":"S2","phone_number":"9876543212","contact_name":"Sync two"}]') AS queued;
SELECT squadstack_create_leads('camp_1', '[{"lead_id":"S2","phone_number":"9876543212","contact_name":"Sync two"}]', false) AS queued_anyway;
SELECT lead_id, op FROM squadstack.outbox ORDER BY id;
SELECT lead_id, status FROM squadstack.leads ORDER BY lead_id;

-- delivery keeps the registry up to date; a delete accepted with 202 erases
-- the lead's personal data everywhere in the extension's tables
\getenv api_url SQUADSTACK_API_URL
SET squadstack.api_url = :'api_url';
SET squadstack.token = 'test-token';
\! python3 test/double_ctl.py reset '{"defaults": true}'
\! python3 test/double_ctl.py config '{"tokens": ["test-token"], "rate_limit": 1000, "rate_window": 1}'
TRUNCATE squadstack.outbox;
SELECT squadstack_create_leads('camp_2', '[{"lead_id":"E1","phone_number":"9812345678","contact_name":"Erase Me","city":"Pune"},
                                           {"lead_id":"E2","phone_number":"9812345679","contact_name":"Keep Me"}]') AS queued;
SELECT squadstack_update_lead('camp_2', '{"lead_id":"E1","contact_name":"Erase Me Too"}') AS queued;
SELECT squadstack_receive_webhook('{"campaign_id":"camp_2","lead_id":"E1","phone_number":"+919812345678","contact_name":"Erase Me","processed_at":"2018-12-06T10:00:00Z","lead_outcome":"Connected","latest_recording_url":"https://recordings.example/E1.mp3","lead_responses":{"name_confirmed":"Erase Me"}}') AS http_status;
-- the API's answer to the first try quotes the lead's data; the call log keeps it
\! python3 test/double_ctl.py fault '{"kind": "status", "status": 400, "campaign": "camp_2", "count": 1, "body": "{\"errors\": [{\"phone_number\": \"+919812345678\", \"contact_name\": \"Erase Me\", \"city\": \"Pune\", \"error\": \"in use by Erase Mercy (Pune-West)\"}]}"}'
SELECT squadstack_flush() AS calls;
SELECT count(*) AS calls_quoting_e1 FROM squadstack.api_calls WHERE error LIKE '%Erase Me%';
SELECT squadstack_disable_leads('camp_2', '["E2"]') AS queued;
SELECT squadstack_convert_lead('camp_2', 'E2', 'bought') AS queued;
SELECT squadstack_delete_lead('camp_2', 'E1') AS queued;
-- the erasure runs in a delivering process as a superuser: an overload a
-- role has put in public must not be called by it
CREATE FUNCTION public.jsonb_build_object(text, jsonb) RETURNS jsonb LANGUAGE plpgsql AS
$$BEGIN RAISE EXCEPTION 'public.jsonb_build_object ran as %', current_user; END$$;
-- the same lead_id is created again after the delete: a new person, whose
-- data the erasure must leave alone
SELECT squadstack_create_leads('camp_2', '[{"lead_id":"E1","phone_number":"9898989898","contact_name":"New Person"}]', false) AS queued;
SELECT squadstack_flush() AS calls;
DROP FUNCTION public.jsonb_build_object(text, jsonb);
SELECT lead_id, op, state, http_status FROM squadstack.outbox ORDER BY id;
SELECT error FROM squadstack.api_calls WHERE http_status = 400 AND campaign_id = 'camp_2';
-- an outcome that arrives after the erasure is applied without personal data
SELECT squadstack_create_leads('camp_2', '[{"lead_id":"E3","phone_number":"9812345677","contact_name":"Late Erase"}]') AS queued;
SELECT squadstack_flush() AS calls;
SELECT squadstack_delete_lead('camp_2', 'E3') AS queued;
SELECT squadstack_flush() AS calls;
SELECT squadstack_receive_webhook('{"campaign_id":"camp_2","lead_id":"E3","phone_number":"+919812345677","contact_name":"Late Erase","processed_at":"2018-12-07T10:00:00Z","lead_outcome":"Not connected","latest_recording_url":"https://recordings.example/E3.mp3","lead_responses":{"q":"Late Erase"}}') AS http_status;
SELECT status, payload FROM squadstack.webhook_inbox WHERE lead_id = 'E3';
SELECT lead_id, status FROM squadstack.leads WHERE campaign_id = 'camp_2' ORDER BY lead_id;
SELECT count(*) AS rows_with_e1_pii FROM (
  SELECT row_to_json(t)::text AS t FROM squadstack.outbox t
  UNION ALL SELECT row_to_json(t)::text FROM squadstack.intake t
  UNION ALL SELECT row_to_json(t)::text FROM squadstack.lead_outcomes t
  UNION ALL SELECT row_to_json(t)::text FROM squadstack.webhook_inbox t
  UNION ALL SELECT row_to_json(t)::text FROM squadstack.leads t
  UNION ALL SELECT row_to_json(t)::text FROM squadstack.api_calls t
  UNION ALL SELECT row_to_json(t)::text FROM squadstack.sync_skipped t) x
-- ("Erase Mercy", another person named in an API error, stays)
WHERE t LIKE '%9812345678%' OR t ~ 'Erase Me(?![[:alnum:]])' OR t LIKE '%Pune%' OR t LIKE '%E1.mp3%'
   OR t LIKE '%9812345677%' OR t LIKE '%Late Erase%' OR t LIKE '%E3.mp3%';
SELECT count(*) AS rows_with_e2_pii FROM squadstack.outbox WHERE payload::text LIKE '%Keep Me%';
SELECT payload->>'contact_name' AS recreated FROM squadstack.outbox WHERE lead_id = 'E1' AND op = 'create' ORDER BY id;
SELECT lead_id, phone_number, contact_name, lead_outcome, latest_recording_url, lead_responses
FROM squadstack.lead_outcomes WHERE campaign_id = 'camp_2';

-- a create refused by the API marks the lead failed, so a later sync may retry it
\! python3 test/double_ctl.py fault '{"kind": "status", "status": 400, "campaign": "camp_3", "count": 1}'
SELECT squadstack_create_leads('camp_3', '[{"lead_id":"F1","phone_number":"9812345670","contact_name":"Refused"}]') AS queued;
SELECT squadstack_flush() AS calls;
SELECT lead_id, status FROM squadstack.leads WHERE campaign_id = 'camp_3';
SELECT squadstack_create_leads('camp_3', '[{"lead_id":"F1","phone_number":"9812345670","contact_name":"Refused"}]') AS queued_again;
-- ... and so does a create that ran out of attempts
SET squadstack.max_attempts = 1;
\! python3 test/double_ctl.py fault '{"kind": "status", "status": 500, "campaign": "camp_4", "count": 1}'
SELECT squadstack_create_leads('camp_4', '[{"lead_id":"G1","phone_number":"9812345671","contact_name":"Unlucky"}]') AS queued;
SELECT squadstack_flush() AS calls;
SELECT o.state, l.status FROM squadstack.outbox o JOIN squadstack.leads l USING (campaign_id, lead_id) WHERE o.campaign_id = 'camp_4';
RESET squadstack.max_attempts;

DROP TABLE crm_customers;
DROP FUNCTION copy_outcome() CASCADE;
TRUNCATE squadstack.outbox, squadstack.api_calls, squadstack.token_state, squadstack.tokens,
  squadstack.leads, squadstack.webhook_inbox, squadstack.lead_outcomes;
