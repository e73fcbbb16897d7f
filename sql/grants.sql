-- Campaign grants: every function and view, run as a role granted the
-- campaign, a role granted another campaign, a role with no grant, a
-- member of a granted role, a role granted every campaign ('*') and a role
-- with the transitional grant of the update to 0.3.0.
\getenv api_url SQUADSTACK_API_URL
SET squadstack.api_url = :'api_url';
SET squadstack.retry_base = '1ms';
SET squadstack.retry_max = '1ms';
TRUNCATE squadstack.outbox, squadstack.intake, squadstack.api_calls, squadstack.token_state,
  squadstack.tokens, squadstack.leads, squadstack.campaign_grants;
\! python3 test/double_ctl.py reset '{"defaults": true}'
\! python3 test/double_ctl.py config '{"tokens": ["test-token"], "rate_limit": 1000, "rate_window": 1}'
SELECT squadstack_set_token('*', 'test-token');

-- the roles, each with the application grants of doc/security.md
CREATE ROLE sq_granted;
CREATE ROLE sq_other;
CREATE ROLE sq_nothing;
CREATE ROLE sq_member IN ROLE sq_granted;
CREATE ROLE sq_all;
CREATE ROLE sq_legacy;
CREATE ROLE sq_expired;
DO $$
DECLARE
	r text;
BEGIN
	FOREACH r IN ARRAY ARRAY['sq_granted', 'sq_other', 'sq_nothing', 'sq_all', 'sq_legacy', 'sq_expired'] LOOP
		EXECUTE format('GRANT USAGE ON SCHEMA squadstack TO %I', r);
		EXECUTE format($g$GRANT EXECUTE ON FUNCTION
			squadstack_create_leads(text, jsonb, boolean), squadstack_disable_leads(text, jsonb),
			squadstack_update_lead(text, jsonb), squadstack_delete_lead(text, text),
			squadstack_convert_lead(text, text, text), squadstack_flush(integer),
			squadstack_retry(text, text), squadstack_sync_responses(text, timestamptz),
			squadstack.token_status(text) TO %I$g$, r);
		EXECUTE format('GRANT SELECT ON squadstack.queue_status, squadstack_writebacks, squadstack_campaign_grants, squadstack.campaign_outcomes TO %I', r);
	END LOOP;
END
$$;
SELECT squadstack_grant_campaign('camp_g1', 'sq_granted');
SELECT squadstack_grant_campaign('camp_g2', 'sq_other');
SELECT squadstack_grant_campaign('*', 'sq_all');
-- what the update gives roles that used the extension before: every
-- campaign, for a while
INSERT INTO squadstack.campaign_grants (campaign_id, role_id, expires_at)
VALUES ('*', 'sq_legacy', now() + interval '30 days'),
       ('*', 'sq_expired', now() - interval '1 second');
-- a grant of a campaign id that is not one, and a role that is not one
SELECT squadstack_grant_campaign('camp one', 'sq_granted');
SELECT squadstack_grant_campaign('camp_g1', 'no_such_role');
SELECT squadstack_grant_campaign(NULL, 'sq_granted');
SELECT campaign_id, role, granted_by, expires_at IS NOT NULL AS transitional
FROM squadstack_campaign_grants ORDER BY campaign_id, role::text;

-- queueing: each function, as each role
CREATE FUNCTION pg_temp.try_all(campaign text, lead text) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
	call text;
BEGIN
	FOREACH call IN ARRAY ARRAY[
		format('squadstack_create_leads(%L, %L)', campaign,
			json_build_object('lead_id', lead, 'phone_number', '9876543210', 'contact_name', 'G')),
		format('squadstack_update_lead(%L, %L)', campaign, json_build_object('lead_id', lead, 'contact_name', 'H')),
		format('squadstack_disable_leads(%L, %L)', campaign, json_build_array(lead)),
		format('squadstack_convert_lead(%L, %L, %L)', campaign, lead, 'won'),
		format('squadstack_delete_lead(%L, %L)', campaign, lead),
		format('squadstack_retry(%L)', campaign),
		format('squadstack.token_status(%L)', campaign)] LOOP
		BEGIN
			EXECUTE 'SELECT ' || call;
			RETURN NEXT split_part(call, '(', 1) || ': ok';
		EXCEPTION WHEN insufficient_privilege THEN
			RETURN NEXT split_part(call, '(', 1) || ': ' || SQLSTATE || ' ' || SQLERRM;
		END;
	END LOOP;
END
$$;
SET client_min_messages = error;
SET ROLE sq_granted;
SELECT * FROM pg_temp.try_all('camp_g1', 'G1');
SELECT * FROM pg_temp.try_all('camp_g2', 'G2');
RESET ROLE;
SET ROLE sq_other;
SELECT * FROM pg_temp.try_all('camp_g1', 'O1');
SELECT * FROM pg_temp.try_all('camp_g2', 'O2');
RESET ROLE;
SET ROLE sq_nothing;
SELECT * FROM pg_temp.try_all('camp_g1', 'N1');
RESET ROLE;
SET ROLE sq_member;
SELECT * FROM pg_temp.try_all('camp_g1', 'M1');
RESET ROLE;
SET ROLE sq_all;
SELECT * FROM pg_temp.try_all('camp_g3', 'A3');
RESET ROLE;
SET ROLE sq_expired;
SELECT * FROM pg_temp.try_all('camp_g3', 'E3');
RESET ROLE;
RESET client_min_messages;
-- nothing of a refused call was queued
SELECT campaign_id, lead_id, op FROM squadstack.outbox ORDER BY id;

-- the transitional grant works, with a warning at every use (its detail
-- names the end, a time)
\set VERBOSITY terse
SET ROLE sq_legacy;
SELECT squadstack_create_leads('camp_g3', '{"lead_id": "L3", "phone_number": "9876543210", "contact_name": "L"}') AS queued;
SELECT squadstack_update_lead('camp_g3', '{"lead_id": "L3", "contact_name": "M"}') AS queued;
RESET ROLE;
\set VERBOSITY default

-- the error, in full
SET ROLE sq_other;
SELECT squadstack_create_leads('camp_g1', '{"lead_id": "X1", "phone_number": "9876543210", "contact_name": "X"}');
RESET ROLE;

-- views: each role sees its campaigns only
CREATE TABLE wb_g1 (id text PRIMARY KEY, outcome text);
CREATE TABLE wb_g2 (id text PRIMARY KEY, outcome text);
SELECT squadstack_writeback('camp_g1', 'wb_g1', 'id=lead_id', 'outcome=lead_outcome');
SELECT squadstack_writeback('camp_g2', 'wb_g2', 'id=lead_id', 'outcome=lead_outcome');
SET ROLE sq_granted;
SELECT campaign_id, state, operations FROM squadstack.queue_status ORDER BY 1, 2;
SELECT campaign_id, target FROM squadstack_writebacks ORDER BY 1;
SELECT campaign_id, role FROM squadstack_campaign_grants ORDER BY 1, 2::text;
RESET ROLE;
SET ROLE sq_member;
SELECT campaign_id, state, operations FROM squadstack.queue_status ORDER BY 1, 2;
SELECT campaign_id, role FROM squadstack_campaign_grants ORDER BY 1, 2::text;
RESET ROLE;
SET ROLE sq_other;
SELECT campaign_id, state, operations FROM squadstack.queue_status ORDER BY 1, 2;
SELECT campaign_id, target FROM squadstack_writebacks ORDER BY 1;
SELECT campaign_id, role FROM squadstack_campaign_grants ORDER BY 1, 2::text;
RESET ROLE;
SET ROLE sq_nothing;
SELECT campaign_id, state, operations FROM squadstack.queue_status ORDER BY 1, 2;
SELECT campaign_id, target FROM squadstack_writebacks ORDER BY 1;
SELECT campaign_id, role FROM squadstack_campaign_grants ORDER BY 1, 2::text;
RESET ROLE;
SET ROLE sq_all;
SELECT campaign_id, state, operations FROM squadstack.queue_status ORDER BY 1, 2;
RESET ROLE;

-- retry of every campaign (NULL) puts back only the caller's
UPDATE squadstack.outbox SET state = 'failed' WHERE state = 'queued';
SET ROLE sq_other;
SELECT squadstack_retry() AS retried;
RESET ROLE;
SELECT campaign_id, state, count(*) FROM squadstack.outbox GROUP BY 1, 2 ORDER BY 1, 2;
UPDATE squadstack.outbox SET state = 'queued' WHERE state = 'failed';

-- flush: a role delivers only its campaigns
SET ROLE sq_other;
SELECT squadstack_flush() > 0 AS sent_some;
RESET ROLE;
SELECT campaign_id, state, count(*) FROM squadstack.outbox GROUP BY 1, 2 ORDER BY 1, 2;
SET ROLE sq_nothing;
SELECT squadstack_flush() AS calls;
RESET ROLE;
SET ROLE sq_granted;
SELECT squadstack_flush() > 0 AS sent_some;
RESET ROLE;
SELECT campaign_id, state, count(*) FROM squadstack.outbox GROUP BY 1, 2 ORDER BY 1, 2;

-- the responses sync of a campaign
SET ROLE sq_other;
SELECT squadstack_sync_responses('camp_g1');
SELECT squadstack_sync_responses('camp_g2') >= 0 AS synced;
RESET ROLE;

-- the sync trigger's writer needs the campaign
CREATE TABLE crm_g (id text PRIMARY KEY, mobile text, name text);
CREATE TRIGGER to_squadstack AFTER INSERT ON crm_g FOR EACH ROW
EXECUTE FUNCTION squadstack_sync_trigger('camp_g1', 'lead_id=id', 'phone_number=mobile', 'contact_name=name');
GRANT INSERT ON crm_g TO sq_granted, sq_other, sq_member;
SET ROLE sq_granted;
INSERT INTO crm_g VALUES ('T1', '9876543210', 'T'), ('T2', '9876543211', 'T');
RESET ROLE;
SET ROLE sq_member;
INSERT INTO crm_g VALUES ('T3', '9876543212', 'T');
RESET ROLE;
SET ROLE sq_other;
INSERT INTO crm_g VALUES ('T4', '9876543213', 'T');
RESET ROLE;
SELECT campaign_id, lead_id FROM squadstack.intake ORDER BY id;
SELECT id FROM crm_g ORDER BY id;

-- granting is for those with EXECUTE on the functions: nobody by default
SET ROLE sq_granted;
SELECT squadstack_grant_campaign('camp_g2', 'sq_granted');
SELECT squadstack_revoke_campaign('camp_g1', 'sq_other');
RESET ROLE;

-- outcomes: squadstack.campaign_outcomes shows a role its campaigns' only
SELECT squadstack_receive_webhook(jsonb_build_object('campaign_id', c, 'lead_id', 'O1',
  'processed_at', '2024-01-02T10:00:00Z', 'lead_outcome', 'Connected')) AS status
FROM unnest(ARRAY['camp_g1', 'camp_g2', 'camp_g3']) c;
CREATE FUNCTION pg_temp.outcomes_seen(r text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	seen text;
BEGIN
	EXECUTE format('SET LOCAL ROLE %I', r);
	SELECT string_agg(campaign_id, ',' ORDER BY campaign_id) INTO seen
	FROM squadstack.campaign_outcomes WHERE lead_id = 'O1';
	RESET ROLE;
	RETURN coalesce(seen, '');
END
$$;
SELECT r AS role, pg_temp.outcomes_seen(r) AS outcomes_seen
FROM unnest(ARRAY['sq_granted', 'sq_member', 'sq_other', 'sq_nothing', 'sq_all', 'sq_expired']) r;

-- a dropped role's grants are not shown, and are removed at the next grant
-- or revoke (and by the worker), so a new role given its OID gets nothing
CREATE ROLE sq_dropped;
SELECT squadstack_grant_campaign('camp_g1', 'sq_dropped');
DROP ROLE sq_dropped;
SELECT count(*) AS grants_of_dropped_roles FROM squadstack.campaign_grants g
WHERE NOT EXISTS (SELECT FROM pg_roles r WHERE r.oid = g.role_id::oid);
SELECT count(*) AS shown FROM squadstack_campaign_grants
WHERE NOT EXISTS (SELECT FROM pg_roles r WHERE r.oid = role::oid);
SELECT squadstack_revoke_campaign('camp_g9', 'sq_other') AS revoked;
SELECT count(*) AS grants_of_dropped_roles FROM squadstack.campaign_grants g
WHERE NOT EXISTS (SELECT FROM pg_roles r WHERE r.oid = g.role_id::oid);

-- write-backs and re-applying, for roles given EXECUTE on them: the
-- campaign must be theirs too (a table owner cannot take in another
-- campaign's outcomes)
GRANT EXECUTE ON FUNCTION squadstack_writeback(text, regclass, text[]),
  squadstack_drop_writeback(text, regclass), squadstack_reapply(text),
  squadstack_reapply(bigint) TO sq_other, sq_granted;
CREATE TABLE wb_other (id text PRIMARY KEY, outcome text);
ALTER TABLE wb_other OWNER TO sq_other;
UPDATE squadstack.webhook_inbox SET status = 'apply_failed', error = 'a test'
WHERE campaign_id = 'camp_g1' AND lead_id = 'O1' RETURNING id AS failed_id \gset
SET ROLE sq_other;
SELECT squadstack_writeback('camp_g1', 'wb_other', 'id=lead_id', 'outcome=lead_outcome');
SELECT squadstack_writeback('camp_g2', 'wb_other', 'id=lead_id', 'outcome=lead_outcome', 'on_missing=insert');
SELECT squadstack_drop_writeback('camp_g1', 'wb_g1');
SELECT squadstack_reapply('camp_g1');
SELECT squadstack_reapply(:failed_id::bigint);
SELECT squadstack_reapply('camp_g2') AS reapplied;
RESET ROLE;
SELECT campaign_id, target FROM squadstack_writebacks ORDER BY 1, 2;
SET ROLE sq_granted;
SELECT squadstack_reapply(:failed_id::bigint) AS reapplied;
RESET ROLE;
SELECT status FROM squadstack.webhook_inbox WHERE id = :failed_id;
-- nor through a SECURITY DEFINER function of its own that a role granted
-- the campaign calls: the table's owner is checked too
GRANT CREATE ON SCHEMA public TO sq_other;
SET ROLE sq_other;
CREATE FUNCTION public.wb_trap() RETURNS void LANGUAGE sql SECURITY DEFINER
AS $$ SELECT squadstack_writeback('camp_g1', 'wb_other', 'id=lead_id', 'outcome=lead_outcome') $$;
RESET ROLE;
SET ROLE sq_granted;
SELECT public.wb_trap();
RESET ROLE;
DROP FUNCTION public.wb_trap();
REVOKE CREATE ON SCHEMA public FROM sq_other;
-- a write-back applies only while its table's owner may use the campaign;
-- one that may not is skipped, and the outcome still applies
SELECT squadstack_receive_webhook('{"campaign_id": "camp_g2", "lead_id": "W1", "processed_at": "2024-01-03T10:00:00Z", "lead_outcome": "Connected"}') AS status;
SELECT squadstack_revoke_campaign('camp_g2', 'sq_other') AS revoked;
SELECT squadstack_receive_webhook('{"campaign_id": "camp_g2", "lead_id": "W2", "processed_at": "2024-01-03T10:00:00Z", "lead_outcome": "Connected"}') AS status;
SELECT id, outcome FROM wb_other ORDER BY id;
SELECT lead_id, status FROM squadstack.webhook_inbox WHERE lead_id IN ('W1', 'W2') ORDER BY lead_id;
SELECT squadstack_grant_campaign('camp_g2', 'sq_other');

-- revoking: the role loses the campaign at once
SELECT squadstack_revoke_campaign('camp_g1', 'sq_granted') AS revoked;
SELECT squadstack_revoke_campaign('camp_g1', 'sq_granted') AS revoked_again;
SET ROLE sq_member;
SELECT squadstack_create_leads('camp_g1', '{"lead_id": "R1", "phone_number": "9876543210", "contact_name": "R"}');
RESET ROLE;
-- a grant replaces the transitional one, which then ends nowhere
SELECT squadstack_grant_campaign('*', 'sq_legacy');
SELECT campaign_id, role, expires_at FROM squadstack_campaign_grants WHERE role = 'sq_legacy'::regrole;

-- clean up
DROP TABLE crm_g, wb_g1, wb_g2, wb_other;
TRUNCATE squadstack.outbox, squadstack.intake, squadstack.api_calls, squadstack.token_state,
  squadstack.tokens, squadstack.leads, squadstack.campaign_grants, squadstack.writebacks,
  squadstack.webhook_inbox, squadstack.lead_outcomes;
DO $$
DECLARE
	r text;
BEGIN
	FOREACH r IN ARRAY ARRAY['sq_granted', 'sq_other', 'sq_nothing', 'sq_member', 'sq_all', 'sq_legacy', 'sq_expired'] LOOP
		EXECUTE format('DROP OWNED BY %I', r);
		EXECUTE format('DROP ROLE %I', r);
	END LOOP;
END
$$;
RESET squadstack.api_url;
