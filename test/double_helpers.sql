-- Shared by the pg_regress tests that deliver to the API double
-- (\i test/double_helpers.sql; pg_regress runs from the repository root).
\getenv double_log SQUADSTACK_DOUBLE_LOG

-- what the double received, in order of receipt
CREATE TEMP VIEW received AS
SELECT (r->>'seq')::int AS seq, r->>'method' AS method, r->>'path' AS path,
       r->'query' AS query, r->>'endpoint' AS endpoint, r->>'campaign' AS campaign,
       r->'lead_ids' AS lead_ids, (r->>'status')::int AS status, r->>'fault' AS fault,
       r->>'authorization' AS auth, r->>'content_type' AS content_type,
       r->'body' AS body, (r->>'received_at')::float8 AS received_at
FROM (SELECT l::jsonb AS r
      FROM regexp_split_to_table(pg_read_file(:'double_log'), E'\n') AS l
      WHERE l <> '') s;

-- flush until three rounds in a row make no call (bounded)
CREATE FUNCTION pg_temp.flush_until_idle() RETURNS int LANGUAGE plpgsql AS $$
DECLARE
  total int := 0;
  n int;
  idle int := 0;
BEGIN
  FOR i IN 1..100 LOOP
    n := squadstack_flush();
    total := total + n;
    idle := CASE WHEN n = 0 THEN idle + 1 ELSE 0 END;
    EXIT WHEN idle >= 3;
    PERFORM pg_sleep(0.02);
  END LOOP;
  RETURN total;
END $$;
