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

-- contact_name
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L1","phone_number":"9876543210"}]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L1","phone_number":"9876543210","contact_name":null}]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L1","phone_number":"9876543210","contact_name":""}]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L1","phone_number":"9876543210","contact_name":"   "}]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L1","phone_number":"9876543210","contact_name":42}]')$$);

-- custom fields
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L1","phone_number":"9876543210","contact_name":"A","plan":{"tier":"lite"}}]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L1","phone_number":"9876543210","contact_name":"A","tags":["a","b"]}]')$$);
SELECT pg_temp.err($$squadstack_create_leads('camp_1', '[{"lead_id":"L1","phone_number":"9876543210","contact_name":"A","":"x"}]')$$);

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
SELECT pg_temp.err($$squadstack_convert_lead('camp_1', 'L1', repeat('d', 33))$$);
SELECT pg_temp.err($$squadstack_convert_lead('camp_1', NULL, 'paid')$$);

-- tokens and retry
SELECT pg_temp.err($$squadstack_set_token('camp_1', '')$$);
SELECT pg_temp.err($$squadstack_set_token('camp_1', E'abc\ndef')$$);
SELECT pg_temp.err($$squadstack_set_token('no such campaign', 'abc')$$);
SELECT pg_temp.err($$squadstack_retry('bad campaign')$$);
SELECT pg_temp.err($$squadstack_flush(0)$$);

-- none of the failed calls queued anything
\pset tuples_only off
SELECT count(*) AS queued FROM squadstack.outbox;

