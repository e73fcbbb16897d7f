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
