-- squadstack_sync_responses(): outcomes pulled page by page from the
-- responses endpoint, through the webhook inbox, within the rate limit,
-- continuing from where the last sync stopped.
\getenv api_url SQUADSTACK_API_URL
SET squadstack.api_url = :'api_url';
SET squadstack.token = 'test-token';
SET timezone = 'UTC';
TRUNCATE squadstack.outbox, squadstack.api_calls, squadstack.token_state, squadstack.tokens,
  squadstack.leads, squadstack.webhook_inbox, squadstack.lead_outcomes, squadstack.response_sync;
\! python3 test/double_ctl.py reset '{"defaults": true}'
\! python3 test/double_ctl.py config '{"tokens": ["test-token"], "rate_limit": 1000, "rate_window": 1}'

\i test/double_helpers.sql
-- 150 processed leads at the double, one minute apart
\! python3 -c "import json; print(json.dumps([{'campaign_id': 'camp_s', 'lead_id': 'R%d' % i, 'phone_number': '+9198765%05d' % i, 'contact_name': 'Lead %d' % i, 'lead_outcome': 'Connected', 'processed_at': '2024-01-01T%02d:%02d:00+00:00' % (i // 60, i % 60), 'lead_responses': {'q1': 'yes'}} for i in range(150)]))" | python3 test/double_ctl.py outcomes -

-- a first sync pulls everything, 100 per page
SELECT squadstack_sync_responses('camp_s') AS stored;
SELECT method, path, query->>'page' AS page, query->>'processed_after' AS after, status FROM received ORDER BY seq;
SELECT count(*) AS outcomes, min(processed_at), max(processed_at) FROM squadstack.lead_outcomes WHERE campaign_id = 'camp_s';
SELECT status, count(*) FROM squadstack.webhook_inbox GROUP BY status ORDER BY status;
SELECT campaign_id, last_processed_at, last_stored FROM squadstack.response_sync;
SELECT op, method, n_leads, http_status FROM squadstack.api_calls ORDER BY id;

-- the next sync continues from there: only the boundary comes again (a duplicate)
\! python3 test/double_ctl.py outcomes '[{"campaign_id": "camp_s", "lead_id": "R900", "processed_at": "2024-01-02T00:00:00+00:00", "lead_outcome": "Callback"}, {"campaign_id": "camp_s", "lead_id": "R901", "processed_at": "2024-01-02T00:01:00+00:00", "lead_outcome": "Callback"}]'
SELECT squadstack_sync_responses('camp_s') AS stored;
SELECT query->>'page' AS page, to_timestamp((query->>'processed_after')::float8) AS after FROM received WHERE seq > 2 ORDER BY seq;
SELECT status, count(*) FROM squadstack.webhook_inbox GROUP BY status ORDER BY status;
SELECT last_processed_at FROM squadstack.response_sync;
SELECT lead_id, lead_outcome FROM squadstack.lead_outcomes WHERE lead_id IN ('R900', 'R901') ORDER BY lead_id;

-- since overrides the cursor
SELECT squadstack_sync_responses('camp_s', '2024-01-01 02:25:00+00') AS stored;

-- each page is one call under the rate limit: 1 call per 2 s here
ALTER SYSTEM SET squadstack.rate_limit = 1;
ALTER SYSTEM SET squadstack.rate_window = '2s';
SELECT pg_reload_conf();
SELECT pg_sleep(2.1);
SHOW squadstack.rate_limit;
SELECT squadstack_sync_responses('camp_s', '2024-01-01 00:00:00+00') AS stored;
SELECT count(*) AS calls, bool_and(gap >= 2.0) AS spaced_by_window FROM (
  SELECT received_at - lag(received_at) OVER (ORDER BY seq) AS gap
  FROM received WHERE seq > (SELECT max(seq) - 2 FROM received)) s WHERE gap IS NOT NULL;
ALTER SYSTEM RESET squadstack.rate_limit;
ALTER SYSTEM RESET squadstack.rate_window;
SELECT pg_reload_conf();
SELECT pg_sleep(0.5);
SHOW squadstack.rate_limit;

-- errors: no token, the endpoint not available for the account, server trouble
SET squadstack.token = '';
SELECT squadstack_sync_responses('camp_s');
SET squadstack.token = 'test-token';
SELECT squadstack_sync_responses(NULL);
SELECT squadstack_sync_responses('bad campaign');
\! python3 test/double_ctl.py config '{"responses_enabled": false}'
SELECT squadstack_sync_responses('camp_s');
\! python3 test/double_ctl.py config '{"responses_enabled": true}'
\! python3 test/double_ctl.py fault '{"kind": "status", "status": 500, "endpoint": "responses", "count": 1}'
SELECT squadstack_sync_responses('camp_s');
SELECT last_processed_at FROM squadstack.response_sync;

TRUNCATE squadstack.outbox, squadstack.api_calls, squadstack.token_state, squadstack.tokens,
  squadstack.leads, squadstack.webhook_inbox, squadstack.lead_outcomes, squadstack.response_sync;
