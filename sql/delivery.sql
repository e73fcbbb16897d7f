-- Delivery against the API double: batching, order per lead, every outcome
-- class, retries.  Assertions are on what reached the double.
\getenv api_url SQUADSTACK_API_URL
SET squadstack.api_url = :'api_url';
SET squadstack.token = 'test-token';
SET squadstack.retry_base = '1ms';
SET squadstack.retry_max = '1ms';
TRUNCATE squadstack.outbox, squadstack.api_calls, squadstack.token_state, squadstack.tokens;
\! python3 test/double_ctl.py reset '{"defaults": true}'
\! python3 test/double_ctl.py config '{"tokens": ["test-token", "token-r", "token-a-new"], "rate_limit": 1000, "rate_window": 1}'

\i test/double_helpers.sql
-- nothing to send
SELECT squadstack_flush() AS calls;

-- batching: five creates with batch size 2 go out in three calls
SET squadstack.batch_size = 2;
SELECT squadstack_create_leads('camp_b', (SELECT jsonb_agg(jsonb_build_object(
  'lead_id', 'D' || i, 'phone_number', '098765 4321' || i, 'contact_name', 'Lead ' || i, 'is_KYC', 'YES') ORDER BY i)
  FROM generate_series(1, 5) i)) AS queued;
SELECT squadstack_flush() AS calls;
SELECT seq, method, endpoint, campaign, lead_ids, status, auth, content_type FROM received ORDER BY seq;
SELECT body->0 AS first_lead_sent FROM received WHERE seq = 1;
SELECT lead_id, state, http_status, error, attempts FROM squadstack.outbox ORDER BY id;
SELECT campaign_id, op, method, n_leads, http_status, error, retry_after FROM squadstack.api_calls ORDER BY id;
RESET squadstack.batch_size;

-- disable in one batch; a lead given as an integer goes as an integer
SELECT squadstack_create_leads('camp_b', '{"lead_id": 42, "phone_number": "9876500042", "contact_name": "Int"}') AS queued;
SELECT squadstack_disable_leads('camp_b', '["D1", "D2", 42]') AS queued;
SELECT squadstack_flush() AS calls;
SELECT seq, method, endpoint, lead_ids, status, body FROM received WHERE seq > 3 ORDER BY seq;

-- order per lead: an update never overtakes its create, and so on
SELECT squadstack_create_leads('camp_o', '[{"lead_id":"O1","phone_number":"9876511111","contact_name":"Order"}]') AS queued;
SELECT squadstack_update_lead('camp_o', '{"lead_id":"O1","contact_name":"Order 2"}') AS queued;
SELECT squadstack_convert_lead('camp_o', 'O1', 'signed') AS queued;
SELECT squadstack_update_lead('camp_o', '{"lead_id":"O1","plan":"Gold"}') AS queued;
SELECT squadstack_create_leads('camp_o', '[{"lead_id":"O2","phone_number":"9876522222","contact_name":"Other"}]') AS queued;
SELECT squadstack_delete_lead('camp_o', 'O1') AS queued;
SELECT pg_temp.flush_until_idle() AS calls;
SELECT method, endpoint, lead_ids, status, body FROM received WHERE campaign = 'camp_o' ORDER BY seq;
SELECT lead_id, op, state FROM squadstack.outbox WHERE campaign_id = 'camp_o' ORDER BY id;

-- an update behind a failed create of its lead fails at once, naming the
-- create; other leads are not held up; retrying both sends them in order
\! python3 test/double_ctl.py fault '{"kind": "status", "status": 400, "campaign": "camp_w", "count": 1, "body": "{\"error\": \"injected\"}"}'
SELECT squadstack_create_leads('camp_w', '[{"lead_id":"W1","phone_number":"9876533333","contact_name":"Wait"}]') AS queued;
SELECT squadstack_update_lead('camp_w', '{"lead_id":"W1","contact_name":"Waited"}') AS queued;
SELECT pg_temp.flush_until_idle() AS calls;
SELECT squadstack_create_leads('camp_w', '[{"lead_id":"W2","phone_number":"9876544444","contact_name":"Free"}]') AS queued;
SELECT pg_temp.flush_until_idle() AS calls;
SELECT lead_id, op, state, http_status, regexp_replace(error, 'operation [0-9]+', 'operation N') AS error FROM squadstack.outbox WHERE campaign_id = 'camp_w' ORDER BY id;
SELECT squadstack_retry('camp_w', 'W1') AS retried;
SELECT pg_temp.flush_until_idle() AS calls;
SELECT method, endpoint, lead_ids, status FROM received WHERE campaign = 'camp_w' ORDER BY seq;
SELECT lead_id, op, state FROM squadstack.outbox WHERE campaign_id = 'camp_w' ORDER BY id;

-- 400 on a batch: retried in halves, so one bad lead fails alone (H1 exists
-- at the API already; skip_existing => false lets it through)
SELECT squadstack_create_leads('camp_h', '[{"lead_id":"H1","phone_number":"9876500001","contact_name":"First"}]') AS queued;
SELECT squadstack_flush() AS calls;
SELECT squadstack_create_leads('camp_h', (SELECT jsonb_agg(jsonb_build_object(
  'lead_id', id, 'phone_number', '98765000' || lpad(n::text, 2, '0'), 'contact_name', 'Lead ' || id) ORDER BY n)
  FROM unnest(ARRAY['H2', 'H3', 'H1', 'H4', 'H5']) WITH ORDINALITY AS u(id, n)),
  skip_existing => false) AS queued;
SELECT pg_temp.flush_until_idle() AS calls;
SELECT lead_ids, status FROM received WHERE campaign = 'camp_h' ORDER BY seq;
SELECT lead_id, state, http_status, error, attempts, batch_limit FROM squadstack.outbox WHERE campaign_id = 'camp_h' ORDER BY id;

-- 404 (unknown lead) and 405 are permanent failures with the body kept
SELECT squadstack_update_lead('camp_n', '{"lead_id":"NOPE","contact_name":"x"}') AS queued;
\! python3 test/double_ctl.py fault '{"kind": "status", "status": 405, "campaign": "camp_n", "endpoint": "convert", "body": "{\"detail\": \"Method not allowed.\"}"}'
SELECT squadstack_convert_lead('camp_n', 'NOPE2', 'paid') AS queued;
SELECT pg_temp.flush_until_idle() AS calls;
SELECT lead_id, op, state, http_status, error, attempts FROM squadstack.outbox WHERE campaign_id = 'camp_n' ORDER BY id;
\! python3 test/double_ctl.py clear-faults

-- 500s are retried with backoff; the attempts are counted
\! python3 test/double_ctl.py fault '{"kind": "status", "status": 500, "campaign": "camp_5", "count": 2}'
SELECT squadstack_create_leads('camp_5', '[{"lead_id":"F1","phone_number":"9876555555","contact_name":"Flaky"}]') AS queued;
SELECT pg_temp.flush_until_idle() AS calls;
SELECT status, fault FROM received WHERE campaign = 'camp_5' ORDER BY seq;
SELECT lead_id, state, http_status, error, attempts FROM squadstack.outbox WHERE campaign_id = 'camp_5';

-- ... until max_attempts, then failed
SET squadstack.max_attempts = 3;
\! python3 test/double_ctl.py fault '{"kind": "status", "status": 502, "campaign": "camp_m"}'
SELECT squadstack_create_leads('camp_m', '[{"lead_id":"M1","phone_number":"9876566666","contact_name":"Doomed"}]') AS queued;
SELECT pg_temp.flush_until_idle() AS calls;
SELECT count(*) AS calls_received FROM received WHERE campaign = 'camp_m';
SELECT lead_id, state, http_status, error, attempts FROM squadstack.outbox WHERE campaign_id = 'camp_m';
RESET squadstack.max_attempts;
\! python3 test/double_ctl.py clear-faults

-- a timeout, a dropped connection and a 2xx that is not JSON are retried
SELECT squadstack_create_leads('camp_x', '[{"lead_id":"X1","phone_number":"9876577777","contact_name":"Net"}]') AS queued;
SELECT squadstack_flush() AS calls;
SET squadstack.request_timeout = '300ms';
\! python3 test/double_ctl.py fault '[{"kind": "delay", "seconds": 1.5, "campaign": "camp_x", "count": 1}, {"kind": "drop", "campaign": "camp_x", "count": 1}, {"kind": "nonjson", "campaign": "camp_x", "count": 1}]'
SELECT squadstack_convert_lead('camp_x', 'X1', 'paid') AS queued;
SELECT pg_temp.flush_until_idle() AS calls;
SELECT op, state, http_status, error IS NULL AS no_error, attempts FROM squadstack.outbox WHERE campaign_id = 'camp_x' ORDER BY id;
SELECT http_status, error ~ 'Timeout was reached' AS timed_out, error ~ 'Empty reply|Server returned nothing' AS dropped,
       error ~ 'not JSON' AS not_json
FROM squadstack.api_calls WHERE campaign_id = 'camp_x' ORDER BY id;
RESET squadstack.request_timeout;
SELECT pg_sleep(1.5);  -- let the delayed request finish at the double
SELECT endpoint, fault, status FROM received WHERE campaign = 'camp_x' ORDER BY seq;

-- 429 with Retry-After pauses the token, without counting an attempt
SELECT squadstack_set_token('camp_r', 'token-r');
\! python3 test/double_ctl.py fault '{"kind": "status", "status": 429, "retry_after": "1", "campaign": "camp_r", "count": 1}'
SELECT squadstack_create_leads('camp_r', '[{"lead_id":"R1","phone_number":"9876588888","contact_name":"Rate"}]') AS queued;
SELECT squadstack_flush() AS calls;
SELECT lead_id, state, attempts, http_status FROM squadstack.outbox WHERE campaign_id = 'camp_r';
SELECT http_status, retry_after FROM squadstack.api_calls WHERE campaign_id = 'camp_r';
SELECT campaign_id, state, token_paused, token_paused_until > now() AS in_future, token_pause_reason
FROM squadstack.queue_status WHERE campaign_id = 'camp_r';
SELECT squadstack_flush() AS calls_while_paused;
SELECT pg_sleep(1.1);
SELECT squadstack_flush() AS calls;
SELECT lead_id, state, attempts FROM squadstack.outbox WHERE campaign_id = 'camp_r';
SELECT auth, status FROM received WHERE campaign = 'camp_r' ORDER BY seq;

-- 503 maintenance pauses the token the same way
\! python3 test/double_ctl.py fault '{"kind": "maintenance", "retry_after": "1", "campaign": "camp_r", "count": 1}'
SELECT squadstack_update_lead('camp_r', '{"lead_id":"R1","contact_name":"Rate 2"}') AS queued;
SELECT squadstack_flush() AS calls;
SELECT campaign_id, state, token_paused, token_pause_reason FROM squadstack.queue_status
WHERE campaign_id = 'camp_r' AND state = 'queued';
SELECT pg_sleep(1.1);
SELECT squadstack_flush() AS calls;
SELECT op, state, attempts FROM squadstack.outbox WHERE campaign_id = 'camp_r' ORDER BY id;

-- 403 (a wrong token): the token is paused until it is changed
SELECT squadstack_set_token('camp_a', 'token-a-old');
SELECT squadstack_create_leads('camp_a', '[{"lead_id":"A1","phone_number":"9876599999","contact_name":"Auth"}]') AS queued;
SELECT squadstack_flush() AS calls;
SELECT campaign_id, state, operations, token_paused, token_paused_until, token_pause_reason
FROM squadstack.queue_status WHERE campaign_id = 'camp_a';
SELECT pg_sleep(0.1);
SELECT squadstack_flush() AS calls_while_paused;
SELECT squadstack_set_token('camp_a', 'token-a-new');
SELECT campaign_id, state, token_paused FROM squadstack.queue_status WHERE campaign_id = 'camp_a';
SELECT squadstack_flush() AS calls;
SELECT lead_id, state, attempts FROM squadstack.outbox WHERE campaign_id = 'camp_a';
SELECT auth, status FROM received WHERE campaign = 'camp_a' ORDER BY seq;

-- 401 (no or bad credentials): the same pause; a new default token resumes
\! python3 test/double_ctl.py fault '{"kind": "status", "status": 401, "campaign": "camp_u", "count": 1}'
SELECT squadstack_create_leads('camp_u', '[{"lead_id":"U1","phone_number":"9876500009","contact_name":"Unauth"}]') AS queued;
SELECT squadstack_flush() AS calls;
SELECT state, token_paused, token_pause_reason FROM squadstack.queue_status WHERE campaign_id = 'camp_u';
SET squadstack.token = 'token-r';
SELECT squadstack_flush() AS calls;
SELECT lead_id, state, attempts FROM squadstack.outbox WHERE campaign_id = 'camp_u';
-- the old tokens stay paused until they are changed (test-token, token-a-old)
SELECT count(*) AS paused_for_good FROM squadstack.token_state WHERE paused_until = 'infinity';

-- max_calls limits one flush
SELECT squadstack_create_leads('camp_c', '[{"lead_id":"C1","phone_number":"9876500011","contact_name":"A"}]') AS queued;
SELECT squadstack_flush() AS calls;
SELECT squadstack_convert_lead('camp_c', 'C1', 'one') AS queued;
SELECT squadstack_convert_lead('camp_c', 'C1', 'two') AS queued;
SELECT squadstack_convert_lead('camp_c', 'C1', 'three') AS queued;
SELECT squadstack_flush(1) AS calls;
SELECT squadstack_flush() AS calls;

-- the token appears in no table; it reached the double only as a bearer token
SELECT count(*) AS rows_with_token FROM (
  SELECT row_to_json(o)::text AS t FROM squadstack.outbox o
  UNION ALL SELECT row_to_json(c)::text FROM squadstack.api_calls c
  UNION ALL SELECT row_to_json(s)::text FROM squadstack.token_state s) x
WHERE t LIKE '%test-token%' OR t LIKE '%token-r%' OR t LIKE '%token-a-%';
SELECT auth, count(*) FROM received GROUP BY auth ORDER BY auth;
SELECT count(*) AS token_in_bodies FROM received WHERE body::text LIKE '%token%';

-- every call is in api_calls
SELECT (SELECT count(*) FROM received) = (SELECT count(*) FROM squadstack.api_calls) AS all_calls_logged;
SELECT count(*) AS unfinished_calls FROM squadstack.api_calls WHERE duration_ms IS NULL;

TRUNCATE squadstack.outbox, squadstack.api_calls, squadstack.token_state, squadstack.tokens;
