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
 * Per campaign and state: how many operations, the oldest, when the next is
 * due, the last error, and whether the campaign's token is paused.
 * Operations still in the intake count as queued.  blocked: queued
 * operations held back by an earlier unfinished operation of the same lead;
 * blocked_by: the kinds and states of those earlier operations.
 */
CREATE OR REPLACE VIEW squadstack.queue_status AS
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
CREATE VIEW squadstack_writebacks AS
SELECT campaign_id, target, mapping, search_path, defined_by, created_at
FROM squadstack.writebacks;

REVOKE ALL ON FUNCTION squadstack_writeback(text, regclass, text[]),
	squadstack_drop_writeback(text, regclass),
	squadstack_reapply(bigint),
	squadstack_reapply(text)
	FROM PUBLIC;
REVOKE ALL ON squadstack_writebacks FROM PUBLIC;
