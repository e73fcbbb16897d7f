-- The delivery engine under bad input: size limits, 413, what a failed
-- operation holds back, replays after an uncertain attempt, errors in the
-- extension itself.  Assertions are on what reached the double.
\getenv api_url SQUADSTACK_API_URL
SET squadstack.api_url = :'api_url';
SET squadstack.token = 'test-token';
SET squadstack.retry_base = '1ms';
SET squadstack.retry_max = '1ms';
TRUNCATE squadstack.outbox, squadstack.intake, squadstack.api_calls, squadstack.token_state,
  squadstack.tokens, squadstack.leads, squadstack.campaign_state;
\! python3 test/double_ctl.py reset '{"defaults": true}'
\! python3 test/double_ctl.py config '{"tokens": ["test-token"], "rate_limit": 1000, "rate_window": 1}'
\i test/double_helpers.sql

-- a batch is cut to fit max_request_bytes; no body the double saw is larger
SET squadstack.max_request_bytes = '2kB';
SELECT squadstack_create_leads('camp_size', (SELECT jsonb_agg(jsonb_build_object(
  'lead_id', 'S' || i, 'phone_number', '98765000' || lpad(i::text, 2, '0'),
  'contact_name', 'Sized ' || i, 'note', repeat('x', 300)) ORDER BY i)
  FROM generate_series(1, 12) i)) AS queued;
SELECT pg_temp.flush_until_idle() AS calls;
SELECT count(*) AS calls, sum(jsonb_array_length(lead_ids)) AS leads,
       max(octet_length(body::text)) <= 2048 AS all_fit,
       min(jsonb_array_length(lead_ids)) > 1 AS batched
FROM received WHERE campaign = 'camp_size';

-- an operation larger than max_request_bytes fails without a call
SET squadstack.max_lead_bytes = '64kB';
SELECT squadstack_create_leads('camp_size', '[{"lead_id":"BIG","phone_number":"9876500099","contact_name":"Big"}]'::jsonb
  || jsonb_build_array(jsonb_build_object('lead_id', 'BIG2', 'phone_number', '9876500098',
     'contact_name', 'Bigger', 'note', repeat('y', 3000)))) AS queued;
SELECT pg_temp.flush_until_idle() AS calls;
SELECT lead_id, state, http_status, error FROM squadstack.outbox
WHERE lead_id IN ('BIG', 'BIG2') ORDER BY id;
SELECT count(*) AS calls_with_big2 FROM received WHERE lead_ids ? 'BIG2';
RESET squadstack.max_request_bytes;
RESET squadstack.max_lead_bytes;

-- 413 splits a batch like 400; a single lead answered 413 fails
\! python3 test/double_ctl.py fault '[{"kind": "status", "status": 413, "campaign": "camp_413", "count": 2}]'
SELECT squadstack_create_leads('camp_413', (SELECT jsonb_agg(jsonb_build_object(
  'lead_id', 'T' || i, 'phone_number', '98765100' || lpad(i::text, 2, '0'), 'contact_name', 'Split ' || i) ORDER BY i)
  FROM generate_series(1, 4) i)) AS queued;
SELECT pg_temp.flush_until_idle() AS calls;
SELECT lead_ids, status FROM received WHERE campaign = 'camp_413' ORDER BY seq;
SELECT string_agg(DISTINCT state, ',') AS states FROM squadstack.outbox WHERE campaign_id = 'camp_413';
\! python3 test/double_ctl.py fault '[{"kind": "status", "status": 413, "campaign": "camp_413", "count": 1}]'
SELECT squadstack_create_leads('camp_413', '[{"lead_id":"T9","phone_number":"9876510009","contact_name":"Alone"}]') AS queued;
SELECT pg_temp.flush_until_idle() AS calls;
SELECT state, http_status, error FROM squadstack.outbox WHERE lead_id = 'T9';

-- a failed create: the update and convert behind it fail at once, naming
-- it; the delete behind it is sent (and answered 404: no such lead)
\! python3 test/double_ctl.py fault '[{"kind": "status", "status": 400, "campaign": "camp_block", "count": 1, "body": "{\"error\": \"bad lead\"}"}]'
SELECT squadstack_create_leads('camp_block', '[{"lead_id":"B1","phone_number":"9876520001","contact_name":"Blocked"}]') AS queued;
SELECT squadstack_update_lead('camp_block', '{"lead_id":"B1","contact_name":"Later"}') AS queued;
SELECT squadstack_convert_lead('camp_block', 'B1', 'won') AS queued;
SELECT squadstack_delete_lead('camp_block', 'B1') AS queued;
SELECT pg_temp.flush_until_idle() AS calls;
SELECT op, state, http_status, regexp_replace(error, 'operation [0-9]+', 'operation N') AS error
FROM squadstack.outbox WHERE campaign_id = 'camp_block' ORDER BY id;
SELECT method, endpoint, lead_ids, status FROM received WHERE campaign = 'camp_block' ORDER BY seq;

-- operations held behind one that is queued: blocked and blocked_by
SELECT squadstack_create_leads('camp_held', '[{"lead_id":"H1","phone_number":"9876530001","contact_name":"Held"}]') AS queued;
SELECT squadstack_update_lead('camp_held', '{"lead_id":"H1","contact_name":"Held 2"}') AS queued;
SELECT squadstack_update_lead('camp_held', '{"lead_id":"H1","contact_name":"Held 3"}') AS queued;
SELECT state, operations, blocked, blocked_by FROM squadstack.queue_status WHERE campaign_id = 'camp_held';
DELETE FROM squadstack.outbox WHERE campaign_id = 'camp_held';

-- a create that timed out is uncertain; re-sent and answered "lead already
-- exists", it is recorded as sent and the registry says created
SET squadstack.request_timeout = '300ms';
\! python3 test/double_ctl.py fault '[{"kind": "delay", "seconds": 1, "campaign": "camp_replay", "count": 1}]'
SELECT squadstack_create_leads('camp_replay', '[{"lead_id":"R1","phone_number":"9876540001","contact_name":"Replayed"}]') AS queued;
SELECT squadstack_flush(1) AS calls;
SELECT state, uncertain, attempts FROM squadstack.outbox WHERE lead_id = 'R1';
RESET squadstack.request_timeout;
SELECT pg_sleep(1.2);  -- the double finishes the slow create
SELECT squadstack_update_lead('camp_replay', '{"lead_id":"R1","contact_name":"After"}') AS queued;
SELECT pg_temp.flush_until_idle() AS calls;
SELECT op, state, http_status, error FROM squadstack.outbox WHERE campaign_id = 'camp_replay' ORDER BY id;
SELECT status FROM squadstack.leads WHERE lead_id = 'R1';
SELECT endpoint, lead_ids, status, fault FROM received WHERE campaign = 'camp_replay' ORDER BY seq;

-- with another wording the repeated create stays failed
SET squadstack.duplicate_create_pattern = 'lead is already there';
SET squadstack.request_timeout = '300ms';
\! python3 test/double_ctl.py fault '[{"kind": "delay", "seconds": 1, "campaign": "camp_replay", "count": 1}]'
SELECT squadstack_create_leads('camp_replay', '[{"lead_id":"R2","phone_number":"9876540002","contact_name":"Other"}]') AS queued;
SELECT squadstack_flush(1) AS calls;
RESET squadstack.request_timeout;
SELECT pg_sleep(1.2);
SELECT pg_temp.flush_until_idle() AS calls;
SELECT state, http_status, error FROM squadstack.outbox WHERE lead_id = 'R2';
RESET squadstack.duplicate_create_pattern;
-- a pattern that is not a regular expression is refused
SET squadstack.duplicate_create_pattern = 'already (exists';

-- an error in the extension itself (here a superuser's trigger on the
-- outbox) is recorded and backs the campaign off; others are delivered
CREATE FUNCTION pg_temp.refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.campaign_id = 'camp_poison' AND NEW.state = 'sending' THEN
    RAISE EXCEPTION 'refused by a test trigger';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER refuse BEFORE UPDATE ON squadstack.outbox FOR EACH ROW EXECUTE FUNCTION pg_temp.refuse();
SET squadstack.retry_base = '1h';
SET squadstack.retry_max = '1h';
SELECT squadstack_create_leads('camp_poison', '[{"lead_id":"P1","phone_number":"9876550001","contact_name":"Poison"}]') AS queued;
SELECT squadstack_create_leads('camp_fine', '[{"lead_id":"F1","phone_number":"9876550002","contact_name":"Fine"}]') AS queued;
SELECT squadstack_flush() AS calls;
SELECT campaign_id, state FROM squadstack.outbox WHERE campaign_id IN ('camp_poison', 'camp_fine') ORDER BY id;
SELECT campaign_id, failures, backoff_until > now() + interval '50 minutes' AS backed_off, last_error
FROM squadstack.campaign_state;
-- backed off, it is left alone by the next flush
SELECT squadstack_flush() AS calls;
SELECT count(*) AS poison_calls FROM received WHERE campaign = 'camp_poison';
DROP TRIGGER refuse ON squadstack.outbox;
UPDATE squadstack.campaign_state SET backoff_until = now();
SELECT pg_temp.flush_until_idle() AS calls;
SELECT campaign_id, state FROM squadstack.outbox WHERE campaign_id = 'camp_poison';
SELECT count(*) AS campaigns_backed_off FROM squadstack.campaign_state;
