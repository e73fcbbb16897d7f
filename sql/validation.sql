-- Every validation error: an ERROR with a precise SQLSTATE and a message that
-- names the lead and the field; a failed call queues nothing.

-- run one call and show its SQLSTATE, message and detail
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE
  st text;
  msg text;
  det text;
BEGIN
  EXECUTE 'SELECT ' || q;
  RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
  RETURN st || ': ' || msg || coalesce(E'\n       ' || nullif(det, ''), '');
END $f$;
\pset format unaligned
\pset tuples_only on

-- campaign
SELECT pg_temp.err($$squadstack_create_leads(NULL, '[{"lead_id":"L1","phone_number":"9876543210","contact_name":"A"}]')$$);
SELECT pg_temp.err($$squadstack_create_leads('', '[{"lead_id":"L1","phone_number":"9876543210","contact_name":"A"}]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp 1', '[{"lead_id":"L1","phone_number":"9876543210","contact_name":"A"}]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp/../x', '[{"lead_id":"L1","phone_number":"9876543210","contact_name":"A"}]')$$);
SELECT pg_temp.err($$squadstack_create_leads(repeat('c', 65), '[{"lead_id":"L1","phone_number":"9876543210","contact_name":"A"}]')$$);

-- shapes of the leads argument
SELECT pg_temp.err($$squadstack_create_leads('camp_1', NULL)$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '5')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '"L1"')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', 'null')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[5]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[[{"lead_id":"L1"}]]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L1","phone_number":"9876543210","contact_name":"A"}, "L2"]')$$);

-- lead_id
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"phone_number":"9876543210","contact_name":"A"}]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":null,"phone_number":"9876543210","contact_name":"A"}]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"","phone_number":"9876543210","contact_name":"A"}]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":1.5,"phone_number":"9876543210","contact_name":"A"}]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":true,"phone_number":"9876543210","contact_name":"A"}]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":{"id":1},"phone_number":"9876543210","contact_name":"A"}]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', jsonb_build_array(jsonb_build_object('lead_id', repeat('x', 256), 'phone_number', '9876543210', 'contact_name', 'A')))$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L1","phone_number":"9876543210","contact_name":"A"},
                                           {"lead_id":"L2","phone_number":"9876543211","contact_name":"B"},
                                           {"lead_id":"L1","phone_number":"9876543212","contact_name":"C"}]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":7,"phone_number":"9876543210","contact_name":"A"},
                                           {"lead_id":"7","phone_number":"9876543211","contact_name":"B"}]')$$);

-- lead_id: no control characters (they would reach URLs and log lines);
-- the lead is named by its position
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L\u0001","phone_number":"9876543210","contact_name":"A"}]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L1\n","phone_number":"9876543210","contact_name":"A"}]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"\u001b[1mL1","phone_number":"9876543210","contact_name":"A"}]')$$);
SELECT pg_temp.err($$squadstack_disable_leads('camp_1', '["L1", "L\t2"]')$$);
SELECT pg_temp.err($$squadstack_update_lead('camp_1', '{"lead_id":"L1\r","contact_name":"A"}')$$);
SELECT pg_temp.err($$squadstack_delete_lead('camp_1', E'L\x7f1')$$);
SELECT pg_temp.err($$squadstack_convert_lead('camp_1', E'L\n1', 'paid')$$);

-- phone_number
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L1","contact_name":"A"}]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L1","phone_number":null,"contact_name":"A"}]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L1","phone_number":"12345","contact_name":"A"}]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L1","phone_number":"0123456789","contact_name":"A"}]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L1","phone_number":"98765432101","contact_name":"A"}]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L1","phone_number":"+1 987 654 3210","contact_name":"A"}]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L1","phone_number":"+91 0 98765 43210","contact_name":"A"}]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L1","phone_number":"98765x43210","contact_name":"A"}]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L1","phone_number":"9876+543210","contact_name":"A"}]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L1","phone_number":["9876543210"],"contact_name":"A"}]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L1","phone_number":true,"contact_name":"A"}]')$$);
-- as a JSON number: a whole number, without a sign or a decimal point (the
-- separators dropped from a string would otherwise make one of them); the
-- number is not quoted in the message
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L1","phone_number":-9876543210,"contact_name":"A"}]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L1","phone_number":987654321.0,"contact_name":"A"}]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L1","phone_number":98765.43210,"contact_name":"A"}]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L1","phone_number":9876543210.00,"contact_name":"A"}]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L1","phone_number":-98765.4321e5,"contact_name":"A"}]')$$);
SELECT pg_temp.err($$squadstack_update_lead('camp_1', '{"lead_id":"L1","phone_number":-9876543210}')$$);
-- no message quotes a phone number
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L1","phone_number":"98765 4321","contact_name":"A"}]')$$) !~ '98765' AS not_quoted;

-- contact_name
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L1","phone_number":"9876543210"}]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L1","phone_number":"9876543210","contact_name":null}]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L1","phone_number":"9876543210","contact_name":""}]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L1","phone_number":"9876543210","contact_name":"   "}]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L1","phone_number":"9876543210","contact_name":"\t\n \r"}]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L1","phone_number":"9876543210","contact_name":42}]')$$);

-- custom fields
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L1","phone_number":"9876543210","contact_name":"A","plan":{"tier":"lite"}}]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L1","phone_number":"9876543210","contact_name":"A","tags":["a","b"]}]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L1","phone_number":"9876543210","contact_name":"A","":"x"}]')$$);
-- a custom field named like a reserved one but for case or white space,
-- reported before the reserved field is missed
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L1","phone_number":"9876543210","contact_name":"A","phone_number ":"9876543211"}]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L1","Phone_Number":"9876543210","contact_name":"A"}]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L1","phone_number":"9876543210","CONTACT_NAME":"A"}]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L1","phone_number":"9876543210","contact_name":"A","\tcontact_name":"B"}]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{" lead_id":"L1","phone_number":"9876543210","contact_name":"A"}]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L1","phone_number":"9876543210","contact_name":"A","Lead_ID":"L2"}]')$$);
SELECT pg_temp.err($$squadstack_update_lead('camp_1', '{"lead_id":"L1"," Phone_Number ":"9876543210"}')$$);
SELECT pg_temp.err($$squadstack_update_lead('camp_1', '{"lead_id":"L1","Contact_Name":"B"}')$$);
SELECT pg_temp.err($$squadstack_disable_leads('camp_1', '[{"LEAD_ID":"L1"}]')$$);

-- one bad lead among good ones fails the whole call
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"G1","phone_number":"9876543210","contact_name":"A"},
                                           {"lead_id":"G2","phone_number":"9876543211","contact_name":"B"},
                                           {"lead_id":"BAD","phone_number":"555","contact_name":"C"}]')$$);

-- disable
SELECT pg_temp.err($$squadstack_disable_leads('camp_1', NULL)$$);
SELECT pg_temp.err($$squadstack_disable_leads('camp_1', '[]')$$);
SELECT pg_temp.err($$squadstack_disable_leads('camp_1', '[true]')$$);
SELECT pg_temp.err($$squadstack_disable_leads('camp_1', '[["L1"]]')$$);
SELECT pg_temp.err($$squadstack_disable_leads('camp_1', '[{"id":"L1"}]')$$);
SELECT pg_temp.err($$squadstack_disable_leads('camp_1', '[{"lead_id":"L1","reason":"x"}]')$$);
SELECT pg_temp.err($$squadstack_disable_leads('camp_1', '["L1","L1"]')$$);
SELECT pg_temp.err($$squadstack_disable_leads('bad campaign', '["L1"]')$$);

-- update
SELECT pg_temp.err($$squadstack_update_lead('camp_1', NULL)$$);
SELECT pg_temp.err($$squadstack_update_lead('camp_1', '[{"lead_id":"L1","contact_name":"A"}]')$$);
SELECT pg_temp.err($$squadstack_update_lead('camp_1', '{"contact_name":"A"}')$$);
SELECT pg_temp.err($$squadstack_update_lead('camp_1', '{"lead_id":"L1"}')$$);
SELECT pg_temp.err($$squadstack_update_lead('camp_1', '{"lead_id":"L1","phone_number":"12"}')$$);
SELECT pg_temp.err($$squadstack_update_lead('camp_1', '{"lead_id":"L1","phone_number":null}')$$);
SELECT pg_temp.err($$squadstack_update_lead('camp_1', '{"lead_id":"L1","contact_name":""}')$$);
SELECT pg_temp.err($$squadstack_update_lead('camp_1', '{"lead_id":"L1","extra":{"a":1}}')$$);

-- delete
SELECT pg_temp.err($$squadstack_delete_lead('camp_1', NULL)$$);
SELECT pg_temp.err($$squadstack_delete_lead('camp_1', '')$$);
SELECT pg_temp.err($$squadstack_delete_lead('camp_1', repeat('x', 256))$$);
SELECT pg_temp.err($$squadstack_delete_lead(NULL, 'L1')$$);

-- convert
SELECT pg_temp.err($$squadstack_convert_lead('camp_1', 'L1', NULL)$$);
SELECT pg_temp.err($$squadstack_convert_lead('camp_1', 'L1', '')$$);
SELECT pg_temp.err($$squadstack_convert_lead('camp_1', 'L1', '   ')$$);
SELECT pg_temp.err($$squadstack_convert_lead('camp_1', 'L1', E'\t \n')$$);
SELECT pg_temp.err($$squadstack_convert_lead('camp_1', 'L1', repeat('d', 33))$$);
SELECT pg_temp.err($$squadstack_convert_lead('camp_1', NULL, 'paid')$$);

-- squadstack.max_lead_bytes: a lead's payload as JSON text (as sent), the
-- phone number normalised, names counted with quotes, ": " and ", ",
-- escapes at their escaped length; the lead is named, its data is not
SET squadstack.max_lead_bytes = 1024;
SELECT pg_temp.err($$squadstack_create_leads('camp_1', jsonb_build_array(
  jsonb_build_object('lead_id', 'S1', 'phone_number', '9876543210', 'contact_name', 'A'),
  jsonb_build_object('lead_id', 'S2', 'phone_number', '9876543211', 'contact_name', 'B', 'notes', repeat('n', 1000))))$$);
SELECT pg_temp.err($$squadstack_update_lead('camp_1', jsonb_build_object('lead_id', 'S3', 'notes', repeat('n', 2000)))$$);
-- the count is exact: this lead has one byte too many ...
CREATE TEMP TABLE sized AS
WITH base AS (
  SELECT jsonb_build_object('lead_id', 'S4', 'phone_number', '+919876543210', 'contact_name', E'A "quoted"\\name',
                            'notes', repeat(E'\n\u0001x', 50), 'score', 12.50, 'vip', true, 'ref', null, 'pad', '') AS lead)
SELECT extra, lead || jsonb_build_object('pad', repeat('p', 1024 - octet_length(lead::text) + extra)) AS lead
FROM base, (VALUES (0), (1)) v(extra);
SELECT extra, octet_length(lead::text) AS json_bytes FROM sized ORDER BY extra;
SELECT pg_temp.err(format('squadstack_create_leads(%L, %L)', 'camp_1', lead)) FROM sized WHERE extra = 1;
-- ... and one byte less fits (queued in a transaction rolled back)
BEGIN;
SELECT squadstack_create_leads('camp_1', lead) AS queued FROM sized WHERE extra = 0;
SELECT payload = lead AS same_payload, octet_length(payload::text) AS json_bytes
FROM squadstack.outbox, sized WHERE lead_id = 'S4' AND extra = 0;
ROLLBACK;
RESET squadstack.max_lead_bytes;

-- tokens and retry
SELECT pg_temp.err($$squadstack_set_token('camp_1', '')$$);
SELECT pg_temp.err($$squadstack_set_token('camp_1', E'abc\ndef')$$);
SELECT pg_temp.err($$squadstack_set_token('no such campaign', 'abc')$$);
SELECT pg_temp.err($$squadstack_retry('bad campaign')$$);
SELECT pg_temp.err($$squadstack_flush(0)$$);

-- none of the failed calls queued anything
\pset tuples_only off
SELECT count(*) AS queued FROM squadstack.outbox;

-- Unicode: in a UTF-8 database whatever the cluster's encoding
SELECT current_database() AS regress_db \gset
CREATE DATABASE squadstack_utf8 TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C';
\c squadstack_utf8
CREATE EXTENSION squadstack;
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE
  st text;
  msg text;
  det text;
BEGIN
  EXECUTE 'SELECT ' || q;
  RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
  RETURN st || ': ' || msg || coalesce(E'\n       ' || nullif(det, ''), '');
END $f$;
-- a C1 control in a lead_id
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L\u0085","phone_number":"9876543210","contact_name":"A"}]')$$);
SELECT pg_temp.err($$squadstack_delete_lead('camp_1', U&'L\009B1')$$);
-- a contact name or a conversion detail of only Unicode white space or
-- zero-width characters: no-break, ideographic, em, narrow no-break space,
-- zero-width space, byte order mark
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L1","phone_number":"9876543210","contact_name":"\u00a0"}]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L1","phone_number":"9876543210","contact_name":"\u3000\u3000"}]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L1","phone_number":"9876543210","contact_name":"\u2003\u202f\u200b\ufeff"}]')$$);
SELECT pg_temp.err($$squadstack_update_lead('camp_1', '{"lead_id":"L1","contact_name":" \u00a0 "}')$$);
SELECT pg_temp.err($$squadstack_convert_lead('camp_1', 'L1', U&'\00A0\3000')$$);
-- a reserved field's name with a no-break space
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L1","phone_number":"9876543210","contact_name":"A","phone_number\u00a0":"x"}]')$$);
-- multibyte characters count at their bytes: 255 four-byte characters
-- make a lead to disable too large for 1024 bytes
SET squadstack.max_lead_bytes = 1024;
SELECT pg_temp.err($$squadstack_disable_leads('camp_1', jsonb_build_array(repeat(U&'\+01F600', 255)))$$) ~ '^54000: lead ".*" is too large' AS too_large;
SELECT pg_temp.err($$squadstack_delete_lead('camp_1', repeat(U&'\+01F600', 255))$$) ~ '^54000: lead ".*" is too large' AS too_large;
SELECT pg_temp.err($$squadstack_delete_lead('camp_1', repeat(U&'\+01F600', 252))$$) AS fits;
RESET squadstack.max_lead_bytes;
-- names with these characters among others are fine
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L\u00e9","phone_number":"9876543210","contact_name":"Asha\u00a0Rao","not\u00a0phone_number":"x"}]')$$) AS fine;
SELECT op, length(lead_id) AS id_chars, payload - 'lead_id' AS payload FROM squadstack.outbox ORDER BY id;
\c :regress_db
DROP DATABASE squadstack_utf8;
