-- A query cancel aborts an HTTP call in progress at once; the operation
-- whose call was cut off is queued again and re-sent alone.
\getenv api_url SQUADSTACK_API_URL
SET squadstack.api_url = :'api_url';
SET squadstack.token = 'test-token';
TRUNCATE squadstack.outbox, squadstack.api_calls, squadstack.token_state, squadstack.tokens, squadstack.leads;
\! python3 test/double_ctl.py reset '{"defaults": true}'
\! python3 test/double_ctl.py config '{"tokens": ["test-token"], "rate_limit": 1000, "rate_window": 1}'
\! python3 test/double_ctl.py fault '{"kind": "delay", "seconds": 3, "count": 1}'

SELECT squadstack_create_leads('camp_k', '[{"lead_id":"K1","phone_number":"9876500001","contact_name":"A"},
                                           {"lead_id":"K2","phone_number":"9876500002","contact_name":"B"}]') AS queued;
SELECT clock_timestamp() AS t0 \gset
-- long enough for the flush worker to start and make its call, also in a
-- sanitizer build; the call itself takes 3 s
SET statement_timeout = '1s';
SELECT squadstack_flush();
RESET statement_timeout;
SELECT clock_timestamp() - :'t0'::timestamptz < interval '2 seconds' AS aborted_at_once;

-- the flush worker is gone, and with it the lease: the next flush re-sends
-- the two leads one per call (the first call did reach the API: the double
-- answers 400 "exists" for those leads)
SELECT pg_sleep(3.2);  -- the double finishes the slow call
SELECT count(*) AS flush_workers FROM pg_stat_activity WHERE backend_type = 'squadstack flush';
SELECT squadstack_flush() AS calls;
SELECT lead_id, state, http_status, batch_limit FROM squadstack.outbox ORDER BY id;
SELECT error FROM squadstack.api_calls ORDER BY id LIMIT 1;
TRUNCATE squadstack.outbox, squadstack.api_calls, squadstack.token_state, squadstack.tokens, squadstack.leads;
