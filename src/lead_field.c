/*-------------------------------------------------------------------------
 *
 * lead_field.c
 *		A lead's fields: collected from a lead object, found by key, and
 *		checked one by one: the phone number (normalised as
 *		squadstack.phone_format says), the contact name, custom fields, and
 *		names that look like a reserved field's.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/numeric.h"

#include "guc.h"
#include "lead_field.h"
#include "lead_text.h"
#include "phone.h"

/*
 * Collect the top-level fields of a lead object.  Returns the number of
 * fields; *fields is palloc'd.
 */
int
squadstack_lead_fields(JsonbContainer *obj, SquadstackLeadField **fields)
{
	JsonbIterator *it = JsonbIteratorInit(obj);
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			n = 0;
	int			cap = Max(JsonContainerSize(obj), 1);
	SquadstackLeadField *out = palloc(sizeof(SquadstackLeadField) * cap);
	char	   *key = NULL;

	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		CHECK_FOR_INTERRUPTS();
		if (tok == WJB_KEY)
			key = pnstrdup(v.val.string.val, v.val.string.len);
		else if (tok == WJB_VALUE)
		{
			Assert(n < cap);
			out[n].key = key;
			out[n].value = v;
			n++;
		}
	}
	*fields = out;
	return n;
}

/* The value of the field named key, or NULL if the lead has none. */
JsonbValue *
squadstack_find_lead_field(SquadstackLeadField *fields, int n, const char *key)
{
	int			i;

	for (i = 0; i < n; i++)
		if (strcmp(fields[i].key, key) == 0)
			return &fields[i].value;
	return NULL;
}

/*
 * Validate and normalise a phone number field; returns the JSON value to
 * send.  Messages never quote the number: they land in the server log,
 * where erasing a lead cannot reach them.
 */
JsonbValue
squadstack_check_phone(JsonbValue *v, const char *lead_id)
{
	char		digits[SQUADSTACK_PHONE_BUFSIZE];
	char	   *given;
	JsonbValue	out;

	if (v->type == jbvString)
		given = pnstrdup(v->val.string.val, v->val.string.len);
	else if (v->type == jbvNumeric)
	{
		const char *p;

		given = DatumGetCString(DirectFunctionCall1(numeric_out,
													NumericGetDatum(v->val.numeric)));

		/*
		 * A sign or a fraction is no part of a phone number, though
		 * dropping the separators would make one of -98765.43210.
		 */
		for (p = given; *p; p++)
			if (*p < '0' || *p > '9')
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid \"phone_number\" for lead \"%s\"", lead_id),
						 errdetail("A phone number given as a JSON number is a whole number without a sign or a decimal point."),
						 errhint("Give the phone number as a JSON string to keep its formatting.")));
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid \"phone_number\" for lead \"%s\"", lead_id),
				 errdetail("A phone number is a JSON string or number, not a JSON %s.",
						   squadstack_jsonb_type_name(v))));

	if (!squadstack_phone_normalise(given, strlen(given), digits))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid phone number for lead \"%s\"", lead_id),
				 errdetail("An Indian phone number has exactly 10 digits, the first not 0, after removing spaces, tabs, dashes, dots, parentheses and one prefix +91, 0091, 91 or 0.")));

	out.type = jbvString;
	switch (squadstack_phone_format)
	{
		case SQUADSTACK_PHONE_NATIONAL:
			out.val.string.val = pstrdup(digits);
			break;
		case SQUADSTACK_PHONE_AS_GIVEN:
			out.val.string.val = given;
			break;
		default:
			out.val.string.val = psprintf("+91%s", digits);
			break;
	}
	out.val.string.len = strlen(out.val.string.val);
	return out;
}

void
squadstack_check_contact_name(JsonbValue *v, const char *lead_id)
{
	if (v->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid \"contact_name\" for lead \"%s\"", lead_id),
				 errdetail("A contact name is a non-empty JSON string, not a JSON %s.",
						   squadstack_jsonb_type_name(v))));
	if (squadstack_text_is_blank(v->val.string.val, v->val.string.len))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("empty \"contact_name\" for lead \"%s\"", lead_id),
				 errdetail("A contact name is a non-empty JSON string, not only spaces or invisible characters.")));
}

/*
 * Refuse a key that looks like a reserved field but is not one, before a
 * required field is missed because of it.  lead_id is NULL while the lead
 * has none; the lead is then named by its position.
 */
void
squadstack_check_field_names(SquadstackLeadField *fields, int n, const char *lead_id, int pos)
{
	int			i;

	for (i = 0; i < n; i++)
	{
		const char *reserved = squadstack_reserved_field_lookalike(fields[i].key);

		if (reserved == NULL)
			continue;
		if (lead_id != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid field name \"%s\" for lead \"%s\"",
							fields[i].key, lead_id),
					 errdetail("The name differs from the field \"%s\" only in case or white space; it would be sent as a custom field.",
							   reserved),
					 errhint("Name the field \"%s\".", reserved)));
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid field name \"%s\" for lead at position %d",
							fields[i].key, pos),
					 errdetail("The name differs from the field \"%s\" only in case or white space; it would be sent as a custom field.",
							   reserved),
					 errhint("Name the field \"%s\".", reserved)));
	}
}

void
squadstack_check_custom_field(SquadstackLeadField *f, const char *lead_id)
{
	if (f->key[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("empty field name for lead \"%s\"", lead_id),
				 errdetail("Custom field names must not be empty.")));
	if (f->value.type == jbvBinary)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid custom field \"%s\" for lead \"%s\"", f->key, lead_id),
				 errdetail("Custom field values are JSON strings, numbers, booleans or null, not a JSON %s.",
						   squadstack_jsonb_type_name(&f->value))));
}
