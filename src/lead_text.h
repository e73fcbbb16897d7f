/*-------------------------------------------------------------------------
 *
 * lead_text.h
 *		Text checks for leads: blanks, reserved field names in disguise,
 *		JSON type names for messages, a lead's size as JSON (lead_text.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQUADSTACK_LEAD_TEXT_H
#define SQUADSTACK_LEAD_TEXT_H

#include "postgres.h"

#include "mb/pg_wchar.h"
#include "utils/jsonb.h"

extern const char *squadstack_jsonb_type_name(const JsonbValue *v);
extern const char *squadstack_jsonb_root_type_name(Jsonb *jb);
extern int	squadstack_next_char(const char *s, int len, pg_wchar *c);
extern bool squadstack_text_is_blank(const char *s, int len);
extern const char *squadstack_reserved_field_lookalike(const char *key);

/* a lead's size as JSON text, against squadstack.max_lead_bytes */
extern int64 squadstack_json_pair_bytes(const char *key, int keylen,
										const JsonbValue *v, bool first);
extern void squadstack_check_lead_size(const char *lead_id, int64 bytes);
extern void squadstack_check_lead_bytes(const char *lead_id, Jsonb *payload);

#endif							/* SQUADSTACK_LEAD_TEXT_H */
