/*
 * squadstack--0.1.0--0.2.0.sql
 *
 * Updates a 0.1.0 schema to 0.2.0.  A new install of 0.2.0 runs
 * squadstack--0.1.0.sql and then this script, so what is here is all that
 * 0.2.0 adds or changes.
 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION squadstack UPDATE TO '0.2.0'" to load this file. \quit

/*
 * This fails ("could not find function") in a session that still runs the
 * 0.1.0 library: restart the server (or end the sessions that loaded it)
 * after installing 0.2.0 and before updating.  The 0.2.0 library works
 * with the 0.1.0 schema until then; the 0.1.0 library would not work with
 * the 0.2.0 schema, whose sync trigger is no longer SECURITY DEFINER.
 */
/*
 * The version of the squadstack library this session runs.  The update
 * script calls it, so that an update fails in a session (or a server, when
 * preloaded) still running an older library.
 */
CREATE FUNCTION squadstack.library_version()
RETURNS text
AS 'MODULE_PATHNAME', 'squadstack_library_version'
LANGUAGE C VOLATILE STRICT;
REVOKE ALL ON FUNCTION squadstack.library_version() FROM PUBLIC;

DO $$
BEGIN
	-- 0.2.0 or a later library, which runs the later update scripts next
	IF pg_catalog.string_to_array(squadstack.library_version(), '.')::int[] < '{0,2,0}' THEN
		RAISE EXCEPTION 'the squadstack library loaded is version %, older than 0.2.0',
			squadstack.library_version()
			USING HINT = 'Restart the server after installing squadstack 0.2.0, then update.';
	END IF;
END
$$;

/*
 * Operations queued by sync triggers (squadstack_sync_trigger()), on their
 * way to the outbox.  A trigger appends here, to a table without indexes,
 * so that a CRM write pays for one plain row; whoever delivers moves the
 * rows into the outbox (keeping their ids, which come from the outbox's
 * sequence) before each claim.  Rows wait here only while nothing
 * delivers: neither the background worker nor squadstack_flush().
 */
CREATE TABLE squadstack.intake (
	id				bigint NOT NULL,
	campaign_id		text NOT NULL,
	lead_id			text NOT NULL,
	op				squadstack.op_name NOT NULL,
	payload			jsonb NOT NULL,
	created_at		timestamptz NOT NULL
);

COMMENT ON TABLE squadstack.intake IS
	'Operations queued by sync triggers, moved to squadstack.outbox by the next delivery';

-- it has no key: a publication of all tables must still let deliveries
-- delete from it
ALTER TABLE squadstack.intake REPLICA IDENTITY FULL;

REVOKE ALL ON squadstack.intake FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('squadstack.intake', '');

/*
 * The sync trigger is no longer SECURITY DEFINER: it writes the intake
 * without privilege checks and runs its rare SPI statements as its owner.
 */
ALTER FUNCTION squadstack_sync_trigger() SECURITY INVOKER RESET search_path;

/*
 * Per campaign and state: how many operations, the oldest, when the next is
 * due, the last error, and whether the campaign's token is paused.
 * Operations still in the intake count as queued.
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
	   t.pause_reason AS token_pause_reason
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
	 CROSS JOIN LATERAL squadstack.token_status(s.campaign_id) t;

