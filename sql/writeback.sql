-- Outcomes written back into CRM tables; what a failure downstream keeps.
TRUNCATE squadstack.webhook_inbox, squadstack.lead_outcomes, squadstack.leads, squadstack.writebacks;
SET timezone = 'UTC';

CREATE ROLE sqs_wb_owner;
CREATE ROLE sqs_wb_other;
GRANT USAGE, CREATE ON SCHEMA public TO sqs_wb_owner;
GRANT EXECUTE ON FUNCTION squadstack_writeback(text, regclass, text[]),
  squadstack_drop_writeback(text, regclass) TO sqs_wb_owner, sqs_wb_other;
-- defining a write-back needs the campaign, as queueing does
SELECT squadstack_grant_campaign('camp_w', r) FROM unnest(ARRAY['sqs_wb_owner', 'sqs_wb_other']::regrole[]) r;

SET ROLE sqs_wb_owner;
CREATE TABLE crm_people (
  id integer PRIMARY KEY,
  name text,
  status text CHECK (status IS DISTINCT FROM 'Refused'),
  called_on date,
  called_at timestamptz,
  interest text,
  answers jsonb,
  seen boolean,
  shout text GENERATED ALWAYS AS (upper(status)) STORED
);
INSERT INTO crm_people (id, name) VALUES (1, 'Asha'), (2, 'Ravi');

-- defined with a check of table, columns, fields and types
SELECT squadstack_writeback('camp_w', 'crm_people', 'id=lead_id', 'status=lead_outcome',
  'called_on=latest_called_at', 'called_at=latest_called_at',
  'interest=lead_responses.interest', 'answers=lead_responses');
SELECT squadstack_writeback('camp_w', 'crm_people', 'status=lead_outcome');
SELECT squadstack_writeback('camp_w', 'crm_people', 'id=lead_id');
SELECT squadstack_writeback('camp_w', 'crm_people', 'id=lead_id', 'nope=lead_outcome');
SELECT squadstack_writeback('camp_w', 'crm_people', 'id=lead_id', 'status=mood');
SELECT squadstack_writeback('camp_w', 'crm_people', 'id=lead_id', 'status');
SELECT squadstack_writeback('camp_w', 'crm_people', 'id=lead_id', 'status=lead_outcome', 'name=lead_outcome', 'status=processed_at');
SELECT squadstack_writeback('camp_w', 'crm_people', 'id=lead_id', 'shout=lead_outcome');
SELECT squadstack_writeback('camp_w', 'crm_people', 'id=lead_id', 'seen=latest_called_at');
SELECT squadstack_writeback('camp_w', 'crm_people', 'id=lead_id', 'status=lead_outcome', 'on_missing=maybe');
SELECT squadstack_writeback('camp w', 'crm_people', 'id=lead_id', 'status=lead_outcome');
SELECT squadstack_writeback('camp_w', 'no_such_table', 'id=lead_id', 'status=lead_outcome');
RESET ROLE;

-- only the table's owner may define one
SET ROLE sqs_wb_other;
SELECT squadstack_writeback('camp_w', 'crm_people', 'id=lead_id', 'status=lead_outcome');
SELECT squadstack_drop_writeback('camp_w', 'crm_people');
RESET ROLE;

SELECT campaign_id, target, mapping, search_path, defined_by FROM squadstack_writebacks;

-- an applied outcome is written into the row, converted to each column's type
SELECT squadstack_receive_webhook('{"campaign_id":"camp_w","lead_id":"1","processed_at":"2024-05-01T10:00:00Z",
  "latest_called_at":"2024-05-01T09:58:00+05:30","lead_outcome":"Connected",
  "lead_responses":{"interest":"high","budget":50000}}') AS http_status;
SELECT id, name, status, called_on, called_at, interest, answers FROM crm_people ORDER BY id;
-- a duplicate or stale outcome is not written again; a lead without a row is skipped
UPDATE crm_people SET status = 'edited by hand' WHERE id = 1;
SELECT squadstack_receive_webhook('{"campaign_id":"camp_w","lead_id":"1","processed_at":"2024-05-01T10:00:00Z","lead_outcome":"Connected"}') AS duplicate;
SELECT squadstack_receive_webhook('{"campaign_id":"camp_w","lead_id":"3","processed_at":"2024-05-01T10:00:00Z","lead_outcome":"Busy"}') AS no_row;
SELECT id, status FROM crm_people ORDER BY id;

-- on_missing=insert makes the row
SET ROLE sqs_wb_owner;
SELECT squadstack_writeback('camp_w', 'crm_people', 'id=lead_id', 'status=lead_outcome', 'on_missing=insert');
RESET ROLE;
SELECT squadstack_receive_webhook('{"campaign_id":"camp_w","lead_id":"4","processed_at":"2024-05-01T10:00:00Z","lead_outcome":"Call back"}') AS inserted;
SELECT id, name, status FROM crm_people ORDER BY id;

-- a write-back that breaks the table's CHECK constraint: the webhook is
-- still answered 201, the outcome is stored, the inbox says apply_failed
SELECT squadstack_receive_webhook('{"campaign_id":"camp_w","lead_id":"2","processed_at":"2024-05-02T10:00:00Z","lead_outcome":"Refused"}') AS http_status;
SELECT lead_id, status, error FROM squadstack.webhook_inbox WHERE lead_id = '2';
SELECT lead_id, lead_outcome FROM squadstack.lead_outcomes WHERE lead_id = '2';
SELECT id, status FROM crm_people WHERE id = 2;
-- a lead_id that is not an integer cannot match the key column
SELECT squadstack_receive_webhook('{"campaign_id":"camp_w","lead_id":"X9","processed_at":"2024-05-02T10:00:00Z","lead_outcome":"Busy"}') AS http_status;
SELECT lead_id, status, error FROM squadstack.webhook_inbox WHERE lead_id = 'X9';

-- after the cause is fixed, squadstack_reapply() writes it back
SET ROLE sqs_wb_owner;
ALTER TABLE crm_people DROP CONSTRAINT crm_people_status_check;
RESET ROLE;
SELECT squadstack_reapply('camp_w') AS reapplied;
SELECT lead_id, status, error FROM squadstack.webhook_inbox WHERE lead_id IN ('2', 'X9') ORDER BY id;
SELECT id, status FROM crm_people WHERE id = 2;
SELECT squadstack_reapply(-1) AS none;

-- a user's trigger on lead_outcomes that raises: nothing of the outcome is
-- applied, the inbox keeps it as apply_failed, the webhook is answered 201
CREATE FUNCTION pg_temp.refuse_outcome() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'outcomes of lead % are refused', NEW.lead_id;
END $$;
CREATE TRIGGER refuse_outcome BEFORE INSERT OR UPDATE ON squadstack.lead_outcomes
FOR EACH ROW EXECUTE FUNCTION pg_temp.refuse_outcome();
SELECT squadstack_receive_webhook('{"campaign_id":"camp_w","lead_id":"1","processed_at":"2024-05-03T10:00:00Z","lead_outcome":"Converted"}') AS http_status;
SELECT status, error FROM squadstack.webhook_inbox WHERE processed_at IS NULL AND lead_id = '1';
SELECT lead_outcome FROM squadstack.lead_outcomes WHERE lead_id = '1';
DROP TRIGGER refuse_outcome ON squadstack.lead_outcomes;
SELECT squadstack_reapply(id) AS reapplied FROM squadstack.webhook_inbox
WHERE status = 'apply_failed' AND lead_id = '1';
SELECT lead_outcome FROM squadstack.lead_outcomes WHERE lead_id = '1';
SELECT id, status FROM crm_people WHERE id = 1;

-- the write-back runs as the table's owner, with privilege checks
SET ROLE sqs_wb_owner;
REVOKE UPDATE ON crm_people FROM sqs_wb_owner;
RESET ROLE;
SELECT squadstack_receive_webhook('{"campaign_id":"camp_w","lead_id":"1","processed_at":"2024-05-04T10:00:00Z","lead_outcome":"Lost"}') AS http_status;
SELECT status, error FROM squadstack.webhook_inbox WHERE lead_id = '1' ORDER BY id DESC LIMIT 1;

-- removed
SET ROLE sqs_wb_owner;
SELECT squadstack_drop_writeback('camp_w', 'crm_people') AS dropped;
SELECT squadstack_drop_writeback('camp_w', 'crm_people') AS dropped_again;
RESET ROLE;
SELECT count(*) FROM squadstack_writebacks;

DROP TABLE crm_people;
REVOKE ALL ON SCHEMA public FROM sqs_wb_owner;
REVOKE ALL ON FUNCTION squadstack_writeback(text, regclass, text[]),
  squadstack_drop_writeback(text, regclass) FROM sqs_wb_owner, sqs_wb_other;
SELECT squadstack_revoke_campaign('camp_w', r) AS revoked FROM unnest(ARRAY['sqs_wb_owner', 'sqs_wb_other']::regrole[]) r;
DROP ROLE sqs_wb_owner;
DROP ROLE sqs_wb_other;
