-- The rate limit: never more than rate_limit calls in any rate_window per
-- access token, counted over every sender; the budget is used; a flush does
-- not wait for budget.  Here: 5 calls per 2 s, and the double enforces the
-- same limit independently (it would answer 429).
\getenv api_url SQUADSTACK_API_URL
SET squadstack.api_url = :'api_url';
SET squadstack.token = 'test-token';
SET squadstack.rate_limit = 5;
SET squadstack.rate_window = '2s';
TRUNCATE squadstack.outbox, squadstack.api_calls, squadstack.token_state, squadstack.tokens;
\! python3 test/double_ctl.py reset '{"defaults": true}'
\! python3 test/double_ctl.py config '{"tokens": ["test-token", "other-token"], "rate_limit": 5, "rate_window": 2}'

\i test/double_helpers.sql
-- 1 create call + 12 convert calls = 13 calls
SELECT squadstack_create_leads('camp_l', (SELECT jsonb_agg(jsonb_build_object(
  'lead_id', 'L' || i, 'phone_number', (9876500000 + i)::text, 'contact_name', 'Lead ' || i) ORDER BY i)
  FROM generate_series(1, 12) i)) AS queued;
SELECT sum(squadstack_convert_lead('camp_l', 'L' || i, 'paid')) AS queued FROM generate_series(1, 12) i;

-- the first flush uses the window's budget and returns without waiting
SELECT squadstack_flush() AS calls;
SELECT squadstack_flush() AS calls_without_budget;

-- another token has its own budget
SELECT squadstack_set_token('camp_other', 'other-token');
SELECT squadstack_create_leads('camp_other', '[{"lead_id":"Z1","phone_number":"9876511111","contact_name":"Other"}]') AS queued;
SELECT squadstack_flush() AS calls_on_other_token;

-- drain the rest, flushing every 50 ms (bounded: at most 15 s)
DO $$
BEGIN
  FOR i IN 1..300 LOOP
    PERFORM squadstack_flush();
    EXIT WHEN NOT EXISTS (SELECT 1 FROM squadstack.outbox WHERE state IN ('queued', 'sending'));
    PERFORM pg_sleep(0.05);
  END LOOP;
END $$;

SELECT state, count(*) FROM squadstack.outbox GROUP BY state ORDER BY state;
SELECT auth, count(*) AS calls, count(*) FILTER (WHERE status = 429) AS throttled
FROM received GROUP BY auth ORDER BY auth;

-- the most calls the double saw with one token within any 2 s
SELECT max(n) AS most_calls_in_any_window FROM (
  SELECT (SELECT count(*) FROM received b
          WHERE b.auth = a.auth AND b.received_at >= a.received_at
            AND b.received_at < a.received_at + 2.0) AS n
  FROM received a) s;

-- the budget is used: the 6th call comes right after the first window, the
-- 11th right after the second (within 0.8 s: the margin is 50 ms, the rest
-- is for a loaded machine or a sanitizer build)
SELECT w.k, (w.t - first.t) BETWEEN 2.0 * (w.k / 5) AND 2.0 * (w.k / 5) + 0.8 AS on_time
FROM (SELECT min(received_at) AS t FROM received WHERE auth = 'Bearer test-token') first,
     (SELECT row_number() OVER (ORDER BY seq) - 1 AS k, received_at AS t
      FROM received WHERE auth = 'Bearer test-token') w
WHERE w.k IN (5, 10)
ORDER BY w.k;

-- the limiter's record survives in api_calls: a new flush right now still
-- respects the window
SELECT squadstack_convert_lead('camp_l', 'L1', 'again') AS queued;
SELECT squadstack_convert_lead('camp_l', 'L2', 'again') AS queued;
SELECT squadstack_convert_lead('camp_l', 'L3', 'again') AS queued;
SELECT squadstack_flush() < 3 AS held_back_by_window;

TRUNCATE squadstack.outbox, squadstack.api_calls, squadstack.token_state, squadstack.tokens;
