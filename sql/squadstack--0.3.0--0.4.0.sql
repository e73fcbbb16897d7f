/*
 * squadstack--0.3.0--0.4.0.sql
 *
 * Updates a 0.3.0 schema to 0.4.0: one rate budget per business.
 * SquadStack counts its rate limit per business, and a business may use
 * several tokens: tokens can now be grouped into a business, whose calls
 * share one budget of squadstack.rate_limit calls per rate_window.
 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION squadstack UPDATE TO '0.4.0'" to load this file. \quit

DO $$
BEGIN
	IF pg_catalog.string_to_array(squadstack.library_version(), '.')::int[] < '{0,4,0}' THEN
		RAISE EXCEPTION 'the squadstack library loaded is version %, older than 0.4.0',
			squadstack.library_version()
			USING HINT = 'Restart the server after installing squadstack 0.4.0, then update.';
	END IF;
END
$$;

/*
 * The business a token belongs to (NULL: the token is a business of its
 * own), and the token's digest, which is what the call log and the
 * limiter know a token by.  One token belongs to one business: setting
 * it with a business sets that business on every campaign's row of it.
 */
ALTER TABLE squadstack.tokens
	ADD COLUMN token_id text,
	ADD COLUMN business text
		CHECK (octet_length(business) BETWEEN 1 AND 63 AND business !~ '[\x01-\x1f\x7f]');
UPDATE squadstack.tokens
	SET token_id = pg_catalog.substr(pg_catalog.encode(pg_catalog.sha256(
		pg_catalog.convert_to(token, pg_catalog.getdatabaseencoding())), 'hex'), 1, 32);
ALTER TABLE squadstack.tokens ALTER COLUMN token_id SET NOT NULL;
CREATE INDEX tokens_token_id_idx ON squadstack.tokens (token_id);

/* the digest follows the token, also when a row is written directly */
CREATE FUNCTION squadstack.tokens_set_token_id()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	NEW.token_id := substr(encode(sha256(convert_to(NEW.token, getdatabaseencoding())), 'hex'), 1, 32);
	RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION squadstack.tokens_set_token_id() FROM PUBLIC;
CREATE TRIGGER tokens_token_id BEFORE INSERT OR UPDATE ON squadstack.tokens
	FOR EACH ROW EXECUTE FUNCTION squadstack.tokens_set_token_id();

/*
 * The budget a call is counted in: 'business:NAME' for a token of a
 * business, else 'token:DIGEST'.  The limiter counts calls per budget.
 */
ALTER TABLE squadstack.api_calls ADD COLUMN budget text;
UPDATE squadstack.api_calls SET budget = 'token:' || token_id;
ALTER TABLE squadstack.api_calls ALTER COLUMN budget SET NOT NULL;
CREATE INDEX api_calls_budget_idx ON squadstack.api_calls (budget, started_at);
DROP INDEX squadstack.api_calls_token_idx;

/*
 * One row per budget, locked while a call is admitted: every session and
 * process that sends shares one count per budget.
 */
CREATE TABLE squadstack.budget_state (
	budget			text PRIMARY KEY,
	updated_at		timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE squadstack.budget_state IS
	'One row per rate budget (a business, or a token of its own), locked to admit a call';

/*
 * squadstack_set_token(campaign, token, business): the business argument
 * is new; the two-argument form is replaced by it (calls with two
 * arguments still work through the default).
 */
DROP FUNCTION squadstack_set_token(text, text);
CREATE FUNCTION squadstack_set_token(campaign text, token text, business text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'squadstack_set_token'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION squadstack_set_token(text, text, text) FROM PUBLIC;

/*
 * The rate budgets: those of the tokens in squadstack.tokens and those
 * calls of the current window counted in; their tokens (digests only,
 * never a token), campaigns, calls of the current window, and a pause of
 * the business after a 429.
 */
CREATE VIEW squadstack.budgets AS
	WITH settings AS (
		SELECT coalesce(pg_catalog.current_setting('squadstack.rate_window', true), '60s')::interval AS w,
			   coalesce(pg_catalog.current_setting('squadstack.rate_limit', true), '100')::integer AS l),
	t AS (
		SELECT campaign_id, token_id,
			CASE WHEN b IS NULL THEN 'token:' || token_id ELSE 'business:' || b END AS budget
		FROM (SELECT t1.campaign_id, t1.token_id,
					 (SELECT t2.business FROM squadstack.tokens t2
					  WHERE t2.token_id = t1.token_id AND t2.business IS NOT NULL
					  ORDER BY t2.updated_at DESC LIMIT 1) AS b
			  FROM squadstack.tokens t1) x),
	c AS (
		SELECT a.budget, a.token_id, a.campaign_id
		FROM squadstack.api_calls a, settings
		WHERE a.started_at > pg_catalog.clock_timestamp() - settings.w),
	names AS (
		SELECT budget FROM t UNION SELECT budget FROM c)
	SELECT n.budget,
		CASE WHEN n.budget LIKE 'business:%' THEN pg_catalog.substr(n.budget, 10) END AS business,
		ARRAY(SELECT token_id FROM t WHERE t.budget = n.budget
			  UNION SELECT token_id FROM c WHERE c.budget = n.budget ORDER BY 1) AS token_ids,
		ARRAY(SELECT campaign_id FROM t WHERE t.budget = n.budget
			  UNION SELECT campaign_id FROM c WHERE c.budget = n.budget ORDER BY 1) AS campaigns,
		(SELECT pg_catalog.count(*) FROM c WHERE c.budget = n.budget) AS calls_in_window,
		settings.l AS rate_limit,
		(SELECT s.paused_until FROM squadstack.token_state s
		 WHERE s.token_id = n.budget AND s.paused_until > pg_catalog.now()) AS paused_until
	FROM names n, settings;
COMMENT ON VIEW squadstack.budgets IS
	'Rate budgets: the tokens and campaigns of each business, the calls of the current window, a pause after a 429';
REVOKE ALL ON squadstack.budget_state, squadstack.budgets FROM PUBLIC;

/*
 * The latest outcome of each lead of the campaigns the querying role may
 * use (every campaign for a superuser): the way to give an application
 * role its outcomes, where a grant on squadstack.lead_outcomes would show
 * every campaign's.
 */
CREATE VIEW squadstack.campaign_outcomes WITH (security_barrier) AS
SELECT o.*
FROM squadstack.lead_outcomes o
WHERE (EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.rolname = CURRENT_USER AND r.rolsuper)
	   OR EXISTS (SELECT FROM squadstack.campaign_grants g
				  WHERE g.campaign_id IN (o.campaign_id, '*')
					AND (g.expires_at IS NULL OR g.expires_at > pg_catalog.now())
					AND pg_catalog.pg_has_role(CURRENT_USER, g.role_id::pg_catalog.oid, 'USAGE')));
COMMENT ON VIEW squadstack.campaign_outcomes IS
	'lead_outcomes of the campaigns granted to the querying role';
REVOKE ALL ON squadstack.campaign_outcomes FROM PUBLIC;

/*
 * Grants of roles that no longer exist are not shown, and are removed (by
 * the worker, and by granting or revoking), so that a new role that gets a
 * dropped role's OID does not inherit its campaigns.
 */
CREATE OR REPLACE VIEW squadstack_campaign_grants WITH (security_barrier) AS
SELECT g.campaign_id, g.role_id AS role, g.granted_by, g.granted_at, g.expires_at
FROM squadstack.campaign_grants g
WHERE EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.oid = g.role_id::pg_catalog.oid)
  AND (EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.rolname = CURRENT_USER AND r.rolsuper)
	   OR pg_catalog.pg_has_role(CURRENT_USER, g.role_id::pg_catalog.oid, 'USAGE'));
DELETE FROM squadstack.campaign_grants g
WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.oid = g.role_id::pg_catalog.oid);
