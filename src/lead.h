/*-------------------------------------------------------------------------
 *
 * lead.h
 *		Validating campaigns and leads (lead.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQUADSTACK_LEAD_H
#define SQUADSTACK_LEAD_H

#include "mb/pg_wchar.h"

#include "squadstack.h"

/* campaign and lead validation (lead.c) */
extern void squadstack_check_campaign(const char *campaign);
extern char *squadstack_lead_id_from_jsonb(JsonbValue *v, const char *context);

/* one key/value pair of a lead object, as found at its top level */
typedef struct SquadstackLeadField
{
	char	   *key;
	JsonbValue	value;			/* scalar, or jbvBinary for a container */
} SquadstackLeadField;



extern void squadstack_push_pair(JsonbParseState **state, const char *key,
						  JsonbValue *value);
extern void squadstack_push_string_pair(JsonbParseState **state, const char *key,
								 const char *value);
/*
 * The operations of one call, validated, as the arrays its queueing
 * statement takes: built in place, one lead at a time.
 */
typedef struct SquadstackLeadArrays
{
	int			n;				/* operations */
	Datum		lead_ids;		/* text[] */
	Datum		payloads;		/* jsonb[] */
} SquadstackLeadArrays;

extern SquadstackLeadArrays *squadstack_parse_create_leads(Jsonb *leads);
extern SquadstackLeadArrays *squadstack_parse_disable_leads(Jsonb *lead_ids);
extern void squadstack_check_lead_bytes(const char *lead_id, Jsonb *payload);

/* one lead object, validated (lead.c), for lead_list.c */
extern JsonbContainer *squadstack_lead_object(JsonbValue *elem, int pos);
extern SquadstackLeadOp *squadstack_parse_lead(JsonbContainer *obj, int pos, bool is_update);
extern Jsonb *squadstack_lead_id_payload(const char *lead_id, JsonbValue *id);
extern SquadstackLeadOp *squadstack_parse_disable_elem(JsonbValue *elem, int pos);

/* lead_text.c */
extern const char *squadstack_jsonb_type_name(const JsonbValue *v);
extern const char *squadstack_jsonb_root_type_name(Jsonb *jb);
extern int	squadstack_next_char(const char *s, int len, pg_wchar *c);
extern int64 squadstack_json_pair_bytes(const char *key, int keylen, const JsonbValue *v, bool first);
extern void squadstack_check_lead_size(const char *lead_id, int64 bytes);
extern bool squadstack_text_is_blank(const char *s, int len);
extern const char *squadstack_reserved_field_lookalike(const char *key);
extern SquadstackLeadOp *squadstack_parse_update_lead(Jsonb *lead);
extern SquadstackLeadOp *squadstack_parse_lead_fields(SquadstackLeadField *fields, int n, bool is_update);
extern SquadstackLeadOp *squadstack_parse_lead_id(JsonbValue *id);
extern int	squadstack_jsonb_key_cmp(const char *a, const char *b);

#endif							/* SQUADSTACK_LEAD_H */
