-- The rate limit: never more than rate_limit calls in any rate_window per
-- budget (a business, or a token of its own), counted over every sender;
-- the budget is used; a flush does not wait for budget.  Here: 5 calls per
-- 2 s, and the double enforces the same limit per token independently (it
-- would answer 429).  The rate settings are the server's: a session cannot
-- set them.
\getenv api_url SQUADSTACK_API_URL
SET squadstack.api_url = :'api_url';
SET squadstack.token = 'test-token';
LOAD 'squadstack';
ALTER SYSTEM SET squadstack.rate_limit = 5;
ALTER SYSTEM SET squadstack.rate_window = '2s';
SELECT pg_reload_conf();
SELECT pg_sleep(0.5);
SHOW squadstack.rate_limit;
SHOW squadstack.rate_window;
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

-- two tokens of one business share its budget: 8 calls are due, the first
-- flush makes the 5 the window allows, whichever token they use
\! python3 test/double_ctl.py config '{"tokens": ["test-token", "biz-token-1", "biz-token-2"]}'
SELECT squadstack_set_token('camp_b1', 'biz-token-1', 'acme');
SELECT squadstack_set_token('camp_b2', 'biz-token-2', 'acme');
SELECT squadstack_create_leads('camp_b' || c, jsonb_build_array(jsonb_build_object(
  'lead_id', 'B' || c, 'phone_number', (9876520000 + c)::text, 'contact_name', 'Biz ' || c))) AS queued
FROM generate_series(1, 2) c;
SELECT squadstack_convert_lead('camp_b' || c, 'B' || c, 'step ' || k) AS queued
FROM generate_series(1, 2) c, generate_series(1, 3) k;
SELECT squadstack_flush() AS calls_in_the_business_budget;
SELECT squadstack_flush() AS calls_without_budget;
SELECT budget, business, cardinality(token_ids) AS tokens, campaigns, calls_in_window, rate_limit
FROM squadstack.budgets ORDER BY budget;
SELECT budget, count(*) AS calls FROM squadstack.api_calls GROUP BY budget ORDER BY budget;
-- a token belongs to one business: giving it another moves every campaign of it
SELECT squadstack_set_token('camp_b3', 'biz-token-2', 'other business');
SELECT campaign_id, business FROM squadstack.tokens ORDER BY campaign_id;
-- set without a business for another campaign, it stays in its business
SELECT squadstack_set_token('camp_b4', 'biz-token-2');
SELECT budget, campaigns FROM squadstack.budgets WHERE business IS NOT NULL ORDER BY budget;
-- a business name is checked
SELECT squadstack_set_token('camp_b1', 'biz-token-1', '');
SELECT squadstack_set_token('camp_b1', 'biz-token-1', repeat('b', 64));
SELECT squadstack_set_token('camp_b1', 'biz-token-1', E'acme\n');
SELECT squadstack_set_token('camp_b1', NULL, 'acme');
-- a direct write keeps the digest right
UPDATE squadstack.tokens SET token = 'biz-token-9' WHERE campaign_id = 'camp_b1';
SELECT token_id = substr(encode(sha256('biz-token-9'::bytea), 'hex'), 1, 32) AS digest_follows
FROM squadstack.tokens WHERE campaign_id = 'camp_b1';
-- a session cannot change the server's rate settings
SET squadstack.rate_limit = 1000;

TRUNCATE squadstack.outbox, squadstack.api_calls, squadstack.token_state, squadstack.tokens,
  squadstack.budget_state;
ALTER SYSTEM RESET squadstack.rate_limit;
ALTER SYSTEM RESET squadstack.rate_window;
SELECT pg_reload_conf();
SELECT pg_sleep(0.5);
