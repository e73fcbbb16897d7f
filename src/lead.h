/*-------------------------------------------------------------------------
 *
 * lead.h
 *		Validating campaigns and leads (lead.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQUADSTACK_LEAD_H
#define SQUADSTACK_LEAD_H

#include "fmgr.h"

#include "lead_field.h"
#include "squadstack.h"

extern void squadstack_check_campaign(const char *campaign);
/* a SQL function's campaign argument, checked ("*" too if allow_all) */
extern char *squadstack_campaign_arg(FunctionCallInfo fcinfo, int argno, bool allow_all);
extern char *squadstack_lead_id_from_jsonb(JsonbValue *v, const char *context);

/* one lead, validated into its operation (id and payload) */
extern JsonbContainer *squadstack_lead_object(JsonbValue *elem, int pos);
extern SquadstackLeadOp *squadstack_parse_lead(JsonbContainer *obj, int pos, bool is_update);
extern SquadstackLeadOp *squadstack_parse_lead_fields(SquadstackLeadField *fields, int n,
													  bool is_update);
extern SquadstackLeadOp *squadstack_parse_update_lead(Jsonb *lead);
extern SquadstackLeadOp *squadstack_parse_disable_elem(JsonbValue *elem, int pos);
extern SquadstackLeadOp *squadstack_parse_lead_id(JsonbValue *id);
extern Jsonb *squadstack_lead_id_payload(const char *lead_id, JsonbValue *id);

/* building payloads, and the order of a jsonb object's keys */
extern void squadstack_push_pair(JsonbParseState **state, const char *key,
								 JsonbValue *value);
extern void squadstack_push_string_pair(JsonbParseState **state, const char *key,
										const char *value);
extern int	squadstack_jsonb_key_cmp(const char *a, const char *b);

#endif							/* SQUADSTACK_LEAD_H */
