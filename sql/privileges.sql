-- An application role with the grants the README shows can queue leads and
-- read queue_status, but cannot read tokens, change the API URL or see
-- the default token.
SET squadstack.token = '';
SELECT squadstack_set_token('camp_p', 'secret-campaign-token');

CREATE ROLE squadstack_app LOGIN;
GRANT USAGE ON SCHEMA squadstack TO squadstack_app;
GRANT EXECUTE ON FUNCTION
  squadstack_create_leads(text, jsonb, boolean),
  squadstack_disable_leads(text, jsonb),
  squadstack_update_lead(text, jsonb),
  squadstack_delete_lead(text, text),
  squadstack_convert_lead(text, text, text),
  squadstack.token_status(text)
  TO squadstack_app;
GRANT SELECT ON squadstack.queue_status TO squadstack_app;
-- and the campaigns it may use
SELECT squadstack_grant_campaign('camp_p', 'squadstack_app');

-- a role without grants can do nothing
CREATE ROLE squadstack_nobody LOGIN;
SET ROLE squadstack_nobody;
SELECT squadstack_create_leads('camp_p', '{"lead_id":"X1","phone_number":"9876543210","contact_name":"A"}');
SELECT * FROM squadstack.queue_status;
RESET ROLE;

SET ROLE squadstack_app;
SELECT squadstack_create_leads('camp_p', '{"lead_id":"A1","phone_number":"9876543210","contact_name":"A"}') AS queued;
SELECT squadstack_update_lead('camp_p', '{"lead_id":"A1","contact_name":"B"}') AS queued;
SELECT campaign_id, state, operations, token_paused FROM squadstack.queue_status;
-- no access to tokens, the outbox, the intake, or the calls
SELECT * FROM squadstack.tokens;
SELECT * FROM squadstack.outbox;
SELECT * FROM squadstack.intake;
SELECT * FROM squadstack.api_calls;
SELECT squadstack_set_token('camp_p', 'stolen');
SELECT squadstack_receive_webhook('{}');
SELECT squadstack_sync_responses('camp_p');
SELECT running FROM squadstack_worker_status();
CREATE TEMP TABLE crm (id text, mobile text, name text);
CREATE TRIGGER to_squadstack AFTER INSERT ON crm FOR EACH ROW
  EXECUTE FUNCTION squadstack_sync_trigger('camp_p', 'lead_id=id', 'phone_number=mobile', 'contact_name=name');
SELECT * FROM squadstack.webhook_inbox;
SELECT * FROM squadstack.lead_outcomes;
SELECT * FROM squadstack.leads;
SELECT squadstack_flush();
SELECT squadstack_retry();
-- configuration: the token is hidden, the URL cannot be changed
SHOW squadstack.token;
SELECT count(*) FROM pg_settings WHERE name = 'squadstack.token';
SELECT current_setting('squadstack.token');
SET squadstack.api_url = 'http://attacker.example/api/v4';
SET squadstack.token = 'x';
SET squadstack.rate_limit = 100000;
-- calling the owner's functions does not let a caller's search_path in
CREATE TEMP TABLE outbox (x int);
SELECT squadstack_create_leads('camp_p', '{"lead_id":"A2","phone_number":"9876543210","contact_name":"A"}') AS queued;
RESET ROLE;

SELECT lead_id, op FROM squadstack.outbox WHERE campaign_id = 'camp_p' ORDER BY id;

-- invalid api_url values are refused outright
SET squadstack.api_url = 'ftp://example.com/api';
SET squadstack.api_url = 'file:///etc/passwd';

-- nothing in the extension is granted to PUBLIC
SELECT count(*) AS functions,
       count(*) FILTER (WHERE p.proacl IS NULL
                           OR EXISTS (SELECT 1 FROM aclexplode(p.proacl) a WHERE a.grantee = 0))
         AS public_execute
FROM pg_proc p
JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'squadstack';
SELECT count(*) AS public_grants
FROM pg_class c, aclexplode(c.relacl) a
WHERE c.relnamespace = 'squadstack'::regnamespace AND a.grantee = 0;

TRUNCATE squadstack.outbox;
SELECT squadstack_set_token('camp_p', NULL);
SELECT squadstack_revoke_campaign('camp_p', 'squadstack_app');
DROP OWNED BY squadstack_app;
DROP ROLE squadstack_app;
DROP ROLE squadstack_nobody;
RESET squadstack.token;
