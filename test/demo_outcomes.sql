-- after the double posted its webhooks to squadstack-webhookd
\pset footer off
\echo == the outcomes, stored from the webhooks
SELECT w.lead_id, w.status, o.lead_outcome, o.lead_responses
FROM squadstack.webhook_inbox w JOIN squadstack.lead_outcomes o USING (campaign_id, lead_id)
ORDER BY w.lead_id;
\echo == the CRM table after: outcome, call time and interest written back
SELECT id, full_name, outcome, called_at IS NOT NULL AS called, interest FROM customers ORDER BY id;
\echo == the lead registry
SELECT lead_id, status, last_outcome FROM squadstack.leads ORDER BY lead_id;
