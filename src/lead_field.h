/*-------------------------------------------------------------------------
 *
 * lead_field.h
 *		A lead's fields, collected and checked one by one (lead_field.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQUADSTACK_LEAD_FIELD_H
#define SQUADSTACK_LEAD_FIELD_H

#include "postgres.h"

#include "utils/jsonb.h"

/* one key/value pair of a lead object, as found at its top level */
typedef struct SquadstackLeadField
{
	char	   *key;
	JsonbValue	value;			/* scalar, or jbvBinary for a container */
} SquadstackLeadField;

extern int	squadstack_lead_fields(JsonbContainer *obj, SquadstackLeadField **fields);
extern JsonbValue *squadstack_find_lead_field(SquadstackLeadField *fields, int n,
											  const char *key);

extern JsonbValue squadstack_check_phone(JsonbValue *v, const char *lead_id);
extern void squadstack_check_contact_name(JsonbValue *v, const char *lead_id);
extern void squadstack_check_custom_field(SquadstackLeadField *f, const char *lead_id);
extern void squadstack_check_field_names(SquadstackLeadField *fields, int n,
										 const char *lead_id, int pos);

#endif							/* SQUADSTACK_LEAD_FIELD_H */
