/* squadstack--0.2.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION squadstack" to load this file. \quit

CREATE SCHEMA squadstack;
REVOKE ALL ON SCHEMA squadstack FROM PUBLIC;

/*
 * Domains rather than CHECK constraints on the tables every queued operation
 * writes: a domain's check is cached, a table's CHECK constraint is parsed
 * again by every statement that writes the table.
 */
CREATE DOMAIN squadstack.op_name AS text
	CHECK (VALUE IN ('create', 'update', 'disable', 'delete', 'convert'));
CREATE DOMAIN squadstack.op_state AS text
	CHECK (VALUE IN ('queued', 'sending', 'sent', 'failed'));
CREATE DOMAIN squadstack.lead_status AS text
	CHECK (VALUE IN ('queued', 'created', 'failed', 'disabled', 'converted', 'deleted'));
CREATE DOMAIN squadstack.positive_int AS integer CHECK (VALUE > 0);

/*
 * One row per lead operation.  Rows are written in the caller's transaction
 * by the squadstack_* functions and moved through their states by whoever
 * delivers them (squadstack_flush() or the background worker).
 */
CREATE TABLE squadstack.outbox (
	id				bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	campaign_id		text NOT NULL,
	lead_id			text NOT NULL,
	op				squadstack.op_name NOT NULL,
	payload			jsonb NOT NULL,
	state			squadstack.op_state NOT NULL DEFAULT 'queued',
	attempts		integer NOT NULL DEFAULT 0,
	next_attempt_at timestamptz NOT NULL DEFAULT now(),
	created_at		timestamptz NOT NULL DEFAULT now(),
	sent_at			timestamptz,
	http_status		integer,
	error			text,
	-- most leads this operation may share a call with; set after a 400 on a
	-- batch (halving) and after a crash while its call was in flight (1)
	batch_limit		squadstack.positive_int,
	-- the api_calls row of the call in flight or of the last call
	call_id			bigint,
	-- who is sending it: a lease is live while that process runs
	lease_pid		integer,
	leased_at		timestamptz,
	lease_expires_at timestamptz
);

COMMENT ON TABLE squadstack.outbox IS
	'One row per lead operation queued for the SquadStack API';

-- operations waiting to be sent, per campaign (also the index the sender
-- walks to find campaigns with due work)
CREATE INDEX outbox_queued_idx ON squadstack.outbox (campaign_id, next_attempt_at, id)
	WHERE state = 'queued';
-- earlier unfinished operations of the same lead hold later ones back
CREATE INDEX outbox_pending_lead_idx ON squadstack.outbox (campaign_id, lead_id, id)
	WHERE state IN ('queued', 'sending', 'failed');
CREATE INDEX outbox_sending_idx ON squadstack.outbox (lease_expires_at)
	WHERE state = 'sending';
-- retention; only sent rows are in it, so queueing does not pay for it
CREATE INDEX outbox_sent_idx ON squadstack.outbox (sent_at) WHERE state = 'sent';

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

/*
 * One row per HTTP call.  A row is written when a call is admitted by the
 * rate limiter (so a call counts against the limit even if the sender dies
 * while it is in flight) and completed when the answer arrives.  token_id is
 * a digest of the access token, never the token.
 */
CREATE TABLE squadstack.api_calls (
	id				bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	token_id		text NOT NULL,
	campaign_id		text NOT NULL,
	op				text NOT NULL,
	method			text NOT NULL,
	n_leads			integer NOT NULL,
	started_at		timestamptz NOT NULL,
	duration_ms		double precision,
	http_status		integer,
	error			text,
	retry_after		interval,
	sender_pid		integer NOT NULL
);

COMMENT ON TABLE squadstack.api_calls IS
	'One row per HTTP call made to the SquadStack API';

CREATE INDEX api_calls_token_idx ON squadstack.api_calls (token_id, started_at);
CREATE INDEX api_calls_campaign_idx ON squadstack.api_calls (campaign_id, started_at);
CREATE INDEX api_calls_started_idx ON squadstack.api_calls (started_at);

/*
 * The lead registry: one row per (campaign, lead) the extension has seen,
 * with its lifecycle, kept up to date by delivery and by outcomes.
 *   queued    a create is waiting to be sent
 *   created   SquadStack accepted the create (or reported an outcome)
 *   failed    the create was refused; a later create may queue it again
 *   disabled, converted, deleted: the accepted operation of that name
 */
CREATE TABLE squadstack.leads (
	campaign_id		text NOT NULL,
	lead_id			text NOT NULL,
	status			squadstack.lead_status NOT NULL,
	last_outcome	text,
	last_processed_at timestamptz,
	created_at		timestamptz NOT NULL DEFAULT now(),
	updated_at		timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (campaign_id, lead_id)
);

/*
 * Every "lead processed" webhook payload received, raw, malformed ones
 * included.  A trigger fills in status, error, campaign_id and lead_id and
 * applies valid payloads to lead_outcomes, so a direct INSERT behaves like
 * squadstack_receive_webhook().
 */
CREATE TABLE squadstack.webhook_inbox (
	id				bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	received_at		timestamptz NOT NULL DEFAULT now(),
	payload			jsonb NOT NULL,
	status			text NOT NULL DEFAULT 'rejected'
		CHECK (status IN ('applied', 'duplicate', 'stale', 'rejected')),
	error			text,
	campaign_id		text,
	lead_id			text,
	processed_at	timestamptz
);
CREATE INDEX webhook_inbox_lead_idx ON squadstack.webhook_inbox (campaign_id, lead_id);

/* Where the last complete squadstack_sync_responses() got to, per campaign. */
CREATE TABLE squadstack.response_sync (
	campaign_id		text PRIMARY KEY,
	last_processed_at timestamptz,
	last_synced_at	timestamptz NOT NULL,
	last_stored		bigint NOT NULL
);

/* The latest outcome SquadStack reported for each lead. */
CREATE TABLE squadstack.lead_outcomes (
	campaign_id		text NOT NULL,
	lead_id			text NOT NULL,
	phone_number	text,
	contact_name	text,
	lead_outcome	text,
	latest_recording_url text,
	latest_called_at timestamptz,
	processed_at	timestamptz NOT NULL,
	created_at		timestamptz,
	lead_responses	jsonb,
	inbox_id		bigint,
	updated_at		timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (campaign_id, lead_id)
);

CREATE FUNCTION squadstack.webhook_inbox_apply()
RETURNS trigger
AS 'MODULE_PATHNAME', 'squadstack_webhook_inbox_apply'
LANGUAGE C SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE TRIGGER apply_webhook BEFORE INSERT ON squadstack.webhook_inbox
FOR EACH ROW EXECUTE FUNCTION squadstack.webhook_inbox_apply();

/*
 * Rows a CRM sync trigger with on_invalid=skip could not queue, for the
 * operator to fix and replay.
 */
CREATE TABLE squadstack.sync_skipped (
	id				bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	skipped_at		timestamptz NOT NULL DEFAULT now(),
	table_name		text NOT NULL,
	trigger_name	text NOT NULL,
	operation		text NOT NULL,
	campaign_id		text NOT NULL,
	lead_id			text,
	sqlstate		text NOT NULL,
	error			text NOT NULL,
	row_data		jsonb
);

/* Per-campaign access tokens; readable by the extension owner only. */
CREATE TABLE squadstack.tokens (
	campaign_id		text PRIMARY KEY,
	-- it becomes an HTTP header, also when written without squadstack_set_token()
	token			text NOT NULL
		CHECK (octet_length(token) BETWEEN 1 AND 1023 AND token !~ '[\x01-\x1f\x7f]'),
	updated_at		timestamptz NOT NULL DEFAULT now()
);

/* Pause state per access token (keyed by digest). */
CREATE TABLE squadstack.token_state (
	token_id		text PRIMARY KEY,
	paused_until	timestamptz,
	pause_reason	text,
	pause_count		integer NOT NULL DEFAULT 0,
	updated_at		timestamptz NOT NULL DEFAULT now()
);

REVOKE ALL ON squadstack.outbox, squadstack.intake, squadstack.api_calls, squadstack.tokens,
	squadstack.token_state, squadstack.leads, squadstack.sync_skipped,
	squadstack.webhook_inbox, squadstack.lead_outcomes, squadstack.response_sync
	FROM PUBLIC;

-- queued work and tokens are user data: keep them in pg_dump output
SELECT pg_catalog.pg_extension_config_dump('squadstack.outbox', '');
SELECT pg_catalog.pg_extension_config_dump('squadstack.outbox_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('squadstack.intake', '');
SELECT pg_catalog.pg_extension_config_dump('squadstack.tokens', '');
SELECT pg_catalog.pg_extension_config_dump('squadstack.leads', '');
SELECT pg_catalog.pg_extension_config_dump('squadstack.webhook_inbox', '');
SELECT pg_catalog.pg_extension_config_dump('squadstack.webhook_inbox_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('squadstack.sync_skipped', '');
SELECT pg_catalog.pg_extension_config_dump('squadstack.sync_skipped_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('squadstack.response_sync', '');
SELECT pg_catalog.pg_extension_config_dump('squadstack.lead_outcomes', '');

/*
 * Functions.  Every function runs as the extension owner (SECURITY DEFINER,
 * with a fixed search_path), so that roles granted EXECUTE can queue leads
 * without any privilege on the tables, and nothing is granted to PUBLIC.
 */
CREATE FUNCTION squadstack_create_leads(campaign text, leads jsonb,
	skip_existing boolean DEFAULT true)
RETURNS bigint
AS 'MODULE_PATHNAME', 'squadstack_create_leads'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION squadstack_disable_leads(campaign text, lead_ids jsonb)
RETURNS bigint
AS 'MODULE_PATHNAME', 'squadstack_disable_leads'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION squadstack_update_lead(campaign text, lead jsonb)
RETURNS bigint
AS 'MODULE_PATHNAME', 'squadstack_update_lead'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION squadstack_delete_lead(campaign text, lead_id text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'squadstack_delete_lead'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION squadstack_convert_lead(campaign text, lead_id text, detail text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'squadstack_convert_lead'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION squadstack_flush(max_calls integer DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'squadstack_flush'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION squadstack_retry(campaign text DEFAULT NULL, lead_id text DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'squadstack_retry'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION squadstack_set_token(campaign text, token text)
RETURNS void
AS 'MODULE_PATHNAME', 'squadstack_set_token'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

/*
 * Row trigger for CRM tables: queues creates, updates and disables (or
 * deletes) from INSERT, UPDATE and DELETE, configured by its arguments.
 * Not SECURITY DEFINER: it writes squadstack.intake without privilege
 * checks and runs its rare SPI statements as its owner itself, so that a
 * CRM write does not pay for the switch of user and search_path.
 */
CREATE FUNCTION squadstack_sync_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'squadstack_sync_trigger'
LANGUAGE C;

/*
 * Store one webhook payload; returns the HTTP status to answer with
 * (201 stored, 400 malformed, 403 wrong secret).
 */
CREATE FUNCTION squadstack_receive_webhook(payload jsonb, secret text DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'squadstack_receive_webhook'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

/*
 * Pull outcomes from the API's responses endpoint through the webhook
 * inbox, from where the last sync stopped (or from since); returns how
 * many were stored.
 */
CREATE FUNCTION squadstack_sync_responses(campaign text, since timestamptz DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'squadstack_sync_responses'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

/*
 * Whether the access token a campaign uses is paused, and why.  Used by
 * queue_status; runs as the owner because it has to look at the token.
 */
CREATE FUNCTION squadstack.token_status(campaign text,
	OUT paused boolean, OUT paused_until timestamptz, OUT pause_reason text)
RETURNS record
AS 'MODULE_PATHNAME', 'squadstack_token_status'
LANGUAGE C STABLE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

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

/* What the background worker is doing (it runs when the library is preloaded). */
CREATE FUNCTION squadstack_worker_status(
	OUT running boolean, OUT pid integer, OUT database text,
	OUT waiting_for text, OUT wait_until timestamptz,
	OUT calls bigint, OUT errors bigint, OUT started_at timestamptz)
RETURNS record
AS 'MODULE_PATHNAME', 'squadstack_worker_status'
LANGUAGE C VOLATILE;

REVOKE ALL ON FUNCTION squadstack_create_leads(text, jsonb, boolean),
	squadstack_disable_leads(text, jsonb),
	squadstack_update_lead(text, jsonb),
	squadstack_delete_lead(text, text),
	squadstack_convert_lead(text, text, text),
	squadstack_flush(integer),
	squadstack_retry(text, text),
	squadstack_set_token(text, text),
	squadstack.token_status(text),
	squadstack_worker_status(),
	squadstack_sync_trigger(),
	squadstack_receive_webhook(jsonb, text),
	squadstack_sync_responses(text, timestamptz),
	squadstack.webhook_inbox_apply()
	FROM PUBLIC;

/*
 * Per campaign and state: how many operations, the oldest, when the next is
 * due, the last error, and whether the campaign's token is paused.
 * Operations still in the intake count as queued.
 */
CREATE VIEW squadstack.queue_status AS
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

REVOKE ALL ON squadstack.queue_status FROM PUBLIC;
