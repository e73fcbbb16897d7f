/*
 * squadstack--0.2.0--0.3.0.sql
 *
 * Updates a 0.2.0 schema to 0.3.0: a delivery engine that keeps going
 * under poison payloads, held locks and a saturated rate limit.
 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION squadstack UPDATE TO '0.3.0'" to load this file. \quit

DO $$
BEGIN
	IF pg_catalog.string_to_array(squadstack.library_version(), '.')::int[] < '{0,3,0}' THEN
		RAISE EXCEPTION 'the squadstack library loaded is version %, older than 0.3.0',
			squadstack.library_version()
			USING HINT = 'Restart the server after installing squadstack 0.3.0, then update.';
	END IF;
END
$$;

/*
 * An operation whose last attempt may have reached the API without its
 * answer reaching us (the sender stopped during the call, a timeout, a cut
 * connection, a 5xx).  If the API then answers that the operation was
 * already done, it is recorded as delivered.
 */
ALTER TABLE squadstack.outbox ADD COLUMN uncertain boolean NOT NULL DEFAULT false;

/*
 * Per campaign: failures of the delivery machinery itself (an error while
 * preparing, sending or recording a call), so that a campaign that keeps
 * failing is backed off and others go first.
 */
CREATE TABLE squadstack.campaign_state (
	campaign_id		text PRIMARY KEY,
	failures		integer NOT NULL DEFAULT 0,
	backoff_until	timestamptz,
	last_error		text,
	updated_at		timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON squadstack.campaign_state FROM PUBLIC;

COMMENT ON TABLE squadstack.campaign_state IS
	'Campaigns whose delivery failed in the extension itself, and until when they are backed off';

/*
 * The intake is moved into the outbox per campaign, as calls need it, so it
 * may hold a backlog: this index finds a campaign's oldest operations, a
 * lead's unsent operations (which hold back its later ones in the outbox)
 * and unsent creates for skip_existing.
 */
CREATE INDEX intake_lead_idx ON squadstack.intake (campaign_id, lead_id, id);

/*
 * An answer whose lead-registry update (or erasure, after a delete) could
 * not be made when it was recorded, because a user's open transaction held
 * a row it needed: the worker applies it later.
 */
ALTER TABLE squadstack.outbox ADD COLUMN record_pending boolean NOT NULL DEFAULT false;
CREATE INDEX outbox_record_pending_idx ON squadstack.outbox (id) WHERE record_pending;

/*
 * Campaign grants: a role other than a superuser may queue for, retry,
 * flush and read only the campaigns granted to it or to a role whose
 * privileges it has (squadstack_grant_campaign()).  Campaign '*' is every
 * campaign.  A grant with an end (expires_at) is the transitional grant
 * this update gives the roles that could use the extension before (see
 * the end of this script); squadstack_grant_campaign() makes lasting ones.
 */
CREATE TABLE squadstack.campaign_grants (
	campaign_id		text NOT NULL,
	role_id			regrole NOT NULL,
	granted_by		regrole,
	granted_at		timestamptz NOT NULL DEFAULT now(),
	expires_at		timestamptz,
	PRIMARY KEY (campaign_id, role_id)
);
REVOKE ALL ON squadstack.campaign_grants FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('squadstack.campaign_grants', '');

COMMENT ON TABLE squadstack.campaign_grants IS
	'Which roles may use which campaigns (''*'': every campaign); a grant with expires_at is transitional';

/*
 * Per campaign and state: how many operations, the oldest, when the next is
 * due, the last error, and whether the campaign's token is paused.
 * Operations still in the intake count as queued.  blocked: queued
 * operations held back by an earlier unfinished operation of the same lead;
 * blocked_by: the kinds and states of those earlier operations.  A role
 * other than a superuser sees the campaigns granted to it.
 */
CREATE OR REPLACE VIEW squadstack.queue_status WITH (security_barrier) AS
SELECT s.campaign_id,
	   s.state,
	   s.operations,
	   s.oldest_created_at,
	   s.next_due_at,
	   s.last_error,
	   t.paused AS token_paused,
	   t.paused_until AS token_paused_until,
	   t.pause_reason AS token_pause_reason,
	   coalesce(b.blocked, 0) AS blocked,
	   b.blocked_by
FROM (SELECT o.campaign_id,
			 o.state,
			 count(*) AS operations,
			 min(o.created_at) AS oldest_created_at,
			 min(o.next_attempt_at) FILTER (WHERE o.state = 'queued') AS next_due_at,
			 (array_agg(o.error ORDER BY o.id DESC)
				FILTER (WHERE o.error IS NOT NULL))[1] AS last_error
	  FROM (SELECT id, campaign_id, state, created_at, next_attempt_at, error
			FROM squadstack.outbox
			UNION ALL
			SELECT id, campaign_id, 'queued'::squadstack.op_state, created_at, created_at, NULL
			FROM squadstack.intake) o
	  WHERE (EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.rolname = CURRENT_USER AND r.rolsuper)
			 OR EXISTS (SELECT FROM squadstack.campaign_grants g
						WHERE g.campaign_id IN (o.campaign_id, '*')
						  AND (g.expires_at IS NULL OR g.expires_at > pg_catalog.now())
						  AND pg_catalog.pg_has_role(CURRENT_USER, g.role_id::pg_catalog.oid, 'USAGE')))
	  GROUP BY o.campaign_id, o.state) s
	 CROSS JOIN LATERAL squadstack.token_status(s.campaign_id) t
	 LEFT JOIN LATERAL (
		SELECT count(DISTINCT q.id) AS blocked,
			   string_agg(DISTINCT e.op || ' ' || e.state, ', ') AS blocked_by
		FROM squadstack.outbox q
			 JOIN squadstack.outbox e ON e.campaign_id = q.campaign_id
				AND e.lead_id = q.lead_id AND e.id < q.id
				AND e.state IN ('queued', 'sending')
		WHERE s.state = 'queued' AND q.campaign_id = s.campaign_id
		  AND q.state = 'queued') b ON true;

/*
 * Outcomes written back into CRM tables (squadstack_writeback()): per
 * campaign and table, the mapping as given, and the search_path of the
 * session that defined it, which applying uses, as the table's owner.
 */
CREATE TABLE squadstack.writebacks (
	campaign_id		text NOT NULL,
	target			regclass NOT NULL,
	mapping			text[] NOT NULL,
	search_path		text NOT NULL,
	defined_by		regrole NOT NULL,
	created_at		timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (campaign_id, target)
);
REVOKE ALL ON squadstack.writebacks FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('squadstack.writebacks', '');

COMMENT ON TABLE squadstack.writebacks IS
	'Write-backs of outcomes into CRM tables, defined with squadstack_writeback()';

/*
 * A payload whose outcome could not be applied (a user's trigger on
 * lead_outcomes or a write-back failed) is kept as apply_failed, for
 * squadstack_reapply().
 */
ALTER TABLE squadstack.webhook_inbox DROP CONSTRAINT webhook_inbox_status_check;
ALTER TABLE squadstack.webhook_inbox ADD CONSTRAINT webhook_inbox_status_check
	CHECK (status IN ('applied', 'duplicate', 'stale', 'rejected', 'apply_failed'));
CREATE INDEX webhook_inbox_apply_failed_idx ON squadstack.webhook_inbox (campaign_id, id)
	WHERE status = 'apply_failed';

/*
 * Define (or replace) the write-back of a campaign's outcomes into a table:
 * mappings in squadstack_sync_trigger()'s style, the first naming the key
 * column ('id=lead_id'), then 'column=field' or 'column=lead_responses.KEY',
 * and optionally 'on_missing=insert'.  The caller must own the table.  It
 * runs as its caller (a write-back is applied as the table's owner); the C
 * code stores the definition as this function's owner.
 */
CREATE FUNCTION squadstack_writeback(campaign text, target regclass, VARIADIC mapping text[])
RETURNS void
AS 'MODULE_PATHNAME', 'squadstack_writeback'
LANGUAGE C VOLATILE;

CREATE FUNCTION squadstack_drop_writeback(campaign text, target regclass)
RETURNS boolean
AS 'MODULE_PATHNAME', 'squadstack_drop_writeback'
LANGUAGE C VOLATILE;

/* Apply again inbox rows whose apply failed: one, or a campaign's. */
CREATE FUNCTION squadstack_reapply(inbox_id bigint)
RETURNS bigint
AS 'MODULE_PATHNAME', 'squadstack_reapply'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION squadstack_reapply(campaign text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'squadstack_reapply'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

/* The write-backs defined, one row each. */
CREATE VIEW squadstack_writebacks WITH (security_barrier) AS
SELECT w.campaign_id, w.target, w.mapping, w.search_path, w.defined_by, w.created_at
FROM squadstack.writebacks w
WHERE (EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.rolname = CURRENT_USER AND r.rolsuper)
			 OR EXISTS (SELECT FROM squadstack.campaign_grants g
						WHERE g.campaign_id IN (w.campaign_id, '*')
						  AND (g.expires_at IS NULL OR g.expires_at > pg_catalog.now())
						  AND pg_catalog.pg_has_role(CURRENT_USER, g.role_id::pg_catalog.oid, 'USAGE')));

REVOKE ALL ON FUNCTION squadstack_writeback(text, regclass, text[]),
	squadstack_drop_writeback(text, regclass),
	squadstack_reapply(bigint),
	squadstack_reapply(text)
	FROM PUBLIC;
REVOKE ALL ON squadstack_writebacks FROM PUBLIC;

/*
 * Secrets outside settings.  A token for campaign '*' is the default for
 * every campaign without its own.  Webhook secrets per campaign ('*': the
 * default), kept as SHA-256 digests: a secret is only ever compared.
 */
COMMENT ON TABLE squadstack.tokens IS
	'Access tokens per campaign; campaign ''*'' is the default token';

CREATE TABLE squadstack.webhook_secrets (
	campaign_id		text PRIMARY KEY,
	secret_digest	bytea NOT NULL CHECK (octet_length(secret_digest) = 32),
	updated_at		timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON squadstack.webhook_secrets FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('squadstack.webhook_secrets', '');

COMMENT ON TABLE squadstack.webhook_secrets IS
	'SHA-256 digests of the secrets webhooks must present, per campaign; campaign ''*'' is the default';

CREATE FUNCTION squadstack_set_webhook_secret(campaign text, secret text)
RETURNS void
AS 'MODULE_PATHNAME', 'squadstack_set_webhook_secret'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

REVOKE ALL ON FUNCTION squadstack_set_webhook_secret(text, text) FROM PUBLIC;

/*
 * Campaign grants: the functions, and a view of the grants (a role other
 * than a superuser sees the grants of the roles whose privileges it has).
 */
CREATE FUNCTION squadstack_grant_campaign(campaign text, role regrole)
RETURNS void
AS 'MODULE_PATHNAME', 'squadstack_grant_campaign'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION squadstack_revoke_campaign(campaign text, role regrole)
RETURNS boolean
AS 'MODULE_PATHNAME', 'squadstack_revoke_campaign'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE VIEW squadstack_campaign_grants WITH (security_barrier) AS
SELECT g.campaign_id, g.role_id AS role, g.granted_by, g.granted_at, g.expires_at
FROM squadstack.campaign_grants g
WHERE EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.rolname = CURRENT_USER AND r.rolsuper)
   OR pg_catalog.pg_has_role(CURRENT_USER, g.role_id::pg_catalog.oid, 'USAGE');

REVOKE ALL ON FUNCTION squadstack_grant_campaign(text, regrole),
	squadstack_revoke_campaign(text, regrole)
	FROM PUBLIC;
REVOKE ALL ON squadstack_campaign_grants FROM PUBLIC;

/*
 * Roles that could use the extension before campaign grants existed keep
 * working, for 30 days: every role other than a superuser with a privilege
 * on one of the extension's functions or relations, and every role that
 * may write a table with a squadstack sync trigger (and the table's owner),
 * gets a grant of every campaign ('*') that ends in 30 days.  Each use
 * under it warns; each such role is named here.  Grant the campaigns each
 * role needs with squadstack_grant_campaign() before the end.
 */
DO $$
DECLARE
	grantee record;
BEGIN
	FOR grantee IN
		WITH ext_objects AS (
			SELECT d.classid, d.objid
			FROM pg_catalog.pg_depend d
			JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
			WHERE d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
			  AND e.extname = 'squadstack' AND d.deptype = 'e'),
		acl_grantees AS (
			SELECT a.grantee
			FROM ext_objects o
			JOIN pg_catalog.pg_proc p ON o.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
				AND p.oid = o.objid
			CROSS JOIN LATERAL pg_catalog.aclexplode(p.proacl) a
			UNION
			SELECT a.grantee
			FROM ext_objects o
			JOIN pg_catalog.pg_class c ON o.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
				AND c.oid = o.objid
			CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) a
			UNION
			-- the writers of tables with a sync trigger, and their owners
			SELECT a.grantee
			FROM pg_catalog.pg_trigger t
			JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
			CROSS JOIN LATERAL pg_catalog.aclexplode(
				coalesce(c.relacl, pg_catalog.acldefault('r', c.relowner))) a
			WHERE t.tgfoid = 'squadstack_sync_trigger()'::pg_catalog.regprocedure
			  AND a.privilege_type IN ('INSERT', 'UPDATE', 'DELETE'))
		SELECT DISTINCT g.grantee::pg_catalog.regrole AS role
		FROM acl_grantees g
		JOIN pg_catalog.pg_roles ro ON ro.oid = g.grantee
		WHERE NOT ro.rolsuper
		ORDER BY 1
	LOOP
		INSERT INTO squadstack.campaign_grants (campaign_id, role_id, expires_at)
		VALUES ('*', grantee.role, pg_catalog.now() + interval '30 days')
		ON CONFLICT DO NOTHING;
		RAISE WARNING 'role % may use every campaign until % through a transitional grant', grantee.role,
			pg_catalog.now() + interval '30 days'
			USING HINT = 'Grant it the campaigns it needs with squadstack_grant_campaign(); campaign grants are checked from now on.';
	END LOOP;
END
$$;
