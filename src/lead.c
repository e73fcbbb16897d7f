/*-------------------------------------------------------------------------
 *
 * lead.c
 *		Validation of campaigns and leads given to the squadstack_* functions.
 *
 * Every check runs before anything is queued, so a call with one bad lead
 * queues nothing.  Messages name the lead (by lead_id, or by its position
 * when it has none) and the field.  Each field is checked in lead_field.c,
 * a lead's size and text in lead_text.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "catalog/pg_type_d.h"
#include "common/hashfn.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

#include "lead.h"
#include "lead_text.h"

/* one key/value pair of a lead object (SquadstackLeadField, lead_field.h) */
typedef SquadstackLeadField LeadField;

void
squadstack_check_campaign(const char *campaign)
{
	size_t		len = strlen(campaign);
	const char *p;

	if (len > SQUADSTACK_MAX_CAMPAIGN_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("campaign id is too long: %zu characters", len),
				 errdetail("A campaign id has at most %d characters.",
						   SQUADSTACK_MAX_CAMPAIGN_LEN)));
	for (p = campaign; *p; p++)
	{
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			  (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'))
			break;
	}
	if (len == 0 || *p != '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid campaign id \"%s\"", campaign),
				 errdetail("A campaign id consists of 1 to %d letters, digits, underscores and dashes.",
						   SQUADSTACK_MAX_CAMPAIGN_LEN)));
}

char *
squadstack_campaign_arg(FunctionCallInfo fcinfo, int argno, bool allow_all)
{
	char	   *campaign;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("campaign must not be null")));
	campaign = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	if (!allow_all || strcmp(campaign, "*") != 0)
		squadstack_check_campaign(campaign);
	return campaign;
}

/*
 * The text form of a lead_id given as a JSON string or integer; ERROR for
 * anything else.  context names the lead for messages ("lead at position 3").
 */
char *
squadstack_lead_id_from_jsonb(JsonbValue *v, const char *context)
{
	char	   *id;
	int			len;
	int			i;
	int			nchars;

	if (v->type == jbvNull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("missing \"lead_id\" for %s", context),
				 errdetail("Every lead needs a lead_id.")));
	if (v->type == jbvString)
		id = pnstrdup(v->val.string.val, v->val.string.len);
	else if (v->type == jbvNumeric)
	{
		id = DatumGetCString(DirectFunctionCall1(numeric_out,
												 NumericGetDatum(v->val.numeric)));
		if (strchr(id, '.') != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid \"lead_id\" for %s: %s", context, id),
					 errdetail("A lead_id is a string or an integer.")));
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid \"lead_id\" for %s", context),
				 errdetail("A lead_id is a string or an integer, not a JSON %s.",
						   squadstack_jsonb_type_name(v))));

	if (id[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("empty \"lead_id\" for %s", context),
				 errdetail("A lead_id has 1 to %d characters.", SQUADSTACK_MAX_LEAD_ID_LEN)));

	/*
	 * One pass counts the characters and looks for controls, which would
	 * turn up in URLs, logs and messages (a line break in a log line).
	 */
	len = strlen(id);
	for (i = 0, nchars = 0; i < len; nchars++)
	{
		pg_wchar	c;

		i += squadstack_next_char(id + i, len - i, &c);
		if (c < 0x20 || (c >= 0x7F && c <= 0x9F))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid \"lead_id\" for %s", context),
					 errdetail("A lead_id has no control characters; character %d is U+%04X.",
							   nchars + 1, (unsigned int) c)));
	}
	if (nchars > SQUADSTACK_MAX_LEAD_ID_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("\"lead_id\" is too long for %s", context),
				 errdetail("A lead_id has at most %d characters; this one has %d.",
						   SQUADSTACK_MAX_LEAD_ID_LEN, nchars)));
	return id;
}

/* The JSON value for the lead's container at position pos, which must be an object. */
JsonbContainer *
squadstack_lead_object(JsonbValue *elem, int pos)
{
	if (elem->type != jbvBinary || !JsonContainerIsObject(elem->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("lead at position %d is not a JSON object", pos),
				 errdetail("Got a JSON %s; a lead is an object such as {\"lead_id\": \"L1\", \"phone_number\": \"9876543210\", \"contact_name\": \"Asha Rao\"}.",
						   squadstack_jsonb_type_name(elem))));
	return elem->val.binary.data;
}

/* Push "key": value into the object being built. */
void
squadstack_push_pair(JsonbParseState **state, const char *key, JsonbValue *value)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	pushJsonbValue(state, WJB_KEY, &k);
	pushJsonbValue(state, WJB_VALUE, value);
}

/* Push "key": "value" into the object being built. */
void
squadstack_push_string_pair(JsonbParseState **state, const char *key, const char *value)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = (char *) value;
	v.val.string.len = strlen(value);
	squadstack_push_pair(state, key, &v);
}

/*
 * Validate one lead, given as its fields in the order of a jsonb object's
 * keys, and build its payload.  For a create every required field must be
 * there; for an update lead_id and at least one other field.
 */
static SquadstackLeadOp *
parse_fields(LeadField *fields, int n, int pos, bool is_update)
{
	JsonbValue *v;
	JsonbParseState *state = NULL;
	JsonbValue *res;
	SquadstackLeadOp  *op = palloc(sizeof(SquadstackLeadOp));
	char		context[32];
	int64		bytes = 2;		/* {} */
	int			i;

	snprintf(context, sizeof(context), "lead at position %d", pos);
	v = squadstack_find_lead_field(fields, n, "lead_id");
	if (v == NULL)
	{
		squadstack_check_field_names(fields, n, NULL, pos);
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("missing \"lead_id\" for %s", context),
				 errdetail("Every lead needs a lead_id.")));
	}
	op->lead_id = squadstack_lead_id_from_jsonb(v, context);
	squadstack_check_field_names(fields, n, op->lead_id, pos);

	if (!is_update)
	{
		v = squadstack_find_lead_field(fields, n, "phone_number");
		if (v == NULL || v->type == jbvNull)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("missing \"phone_number\" for lead \"%s\"", op->lead_id),
					 errdetail("A new lead needs a phone_number.")));
		v = squadstack_find_lead_field(fields, n, "contact_name");
		if (v == NULL || v->type == jbvNull)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("missing \"contact_name\" for lead \"%s\"", op->lead_id),
					 errdetail("A new lead needs a contact_name.")));
	}
	else if (n < 2)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("nothing to update for lead \"%s\"", op->lead_id),
				 errdetail("An update needs lead_id and at least one field to change.")));

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	for (i = 0; i < n; i++)
	{
		LeadField  *f = &fields[i];
		JsonbValue	val = f->value;

		CHECK_FOR_INTERRUPTS();
		if (strcmp(f->key, "phone_number") == 0)
		{
			if (val.type == jbvNull)
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("\"phone_number\" of lead \"%s\" must not be null", op->lead_id)));
			val = squadstack_check_phone(&f->value, op->lead_id);
		}
		else if (strcmp(f->key, "contact_name") == 0)
		{
			if (val.type == jbvNull)
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("\"contact_name\" of lead \"%s\" must not be null", op->lead_id)));
			squadstack_check_contact_name(&f->value, op->lead_id);
		}
		else if (strcmp(f->key, "lead_id") != 0)
			squadstack_check_custom_field(f, op->lead_id);

		bytes += squadstack_json_pair_bytes(f->key, strlen(f->key), &val, i == 0);
		squadstack_push_pair(&state, f->key, &val);
	}
	squadstack_check_lead_size(op->lead_id, bytes);
	res = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	op->payload = JsonbValueToJsonb(res);
	return op;
}

/* Validate one lead object and build its payload. */
SquadstackLeadOp *
squadstack_parse_lead(JsonbContainer *obj, int pos, bool is_update)
{
	LeadField  *fields;
	int			n = squadstack_lead_fields(obj, &fields);

	return parse_fields(fields, n, pos, is_update);
}

/*
 * A lead given as its fields, in the order of a jsonb object's keys (as a
 * sync trigger has them), validated as squadstack_create_leads() or
 * squadstack_update_lead() validate one lead object, without building and
 * reading back that object.
 */
SquadstackLeadOp *
squadstack_parse_lead_fields(SquadstackLeadField *fields, int n, bool is_update)
{
	return parse_fields(fields, n, 1, is_update);
}

/* Whether key a comes before key b in a jsonb object: shorter first. */
int
squadstack_jsonb_key_cmp(const char *a, const char *b)
{
	size_t		la = strlen(a);
	size_t		lb = strlen(b);

	if (la != lb)
		return la < lb ? -1 : 1;
	return memcmp(a, b, la);
}

/* A payload of just {"lead_id": ...}, keeping the id's JSON type. */
Jsonb *
squadstack_lead_id_payload(const char *lead_id, JsonbValue *id)
{
	JsonbParseState *state = NULL;

	/* {"lead_id": <id>} */
	squadstack_check_lead_size(lead_id, 2 + squadstack_json_pair_bytes("lead_id", 7, id, true));
	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	squadstack_push_pair(&state, "lead_id", id);
	return JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL));
}

/* A lead to disable: "L1", 17 or {"lead_id": "L1"}. */
SquadstackLeadOp *
squadstack_parse_disable_elem(JsonbValue *elem, int pos)
{
	SquadstackLeadOp  *op = palloc(sizeof(SquadstackLeadOp));
	char	   *context = psprintf("lead at position %d", pos);
	JsonbValue *id = elem;

	if (elem->type == jbvBinary)
	{
		LeadField  *fields;
		int			n;
		int			i;

		n = squadstack_lead_fields(squadstack_lead_object(elem, pos), &fields);
		id = squadstack_find_lead_field(fields, n, "lead_id");
		if (id == NULL)
			squadstack_check_field_names(fields, n, NULL, pos);
		if (id == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("missing \"lead_id\" for %s", context),
					 errdetail("Every lead needs a lead_id.")));
		for (i = 0; i < n; i++)
			if (strcmp(fields[i].key, "lead_id") != 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("unexpected field \"%s\" for %s", fields[i].key, context),
						 errdetail("A lead to disable is given by its lead_id alone.")));
	}
	op->lead_id = squadstack_lead_id_from_jsonb(id, context);
	op->payload = squadstack_lead_id_payload(op->lead_id, id);
	return op;
}

/*
 * A lead given by its lead_id value alone, as a sync trigger has it for a
 * disable or a delete; validated as {"lead_id": ...} is.
 */
SquadstackLeadOp *
squadstack_parse_lead_id(JsonbValue *id)
{
	SquadstackLeadOp  *op = palloc(sizeof(SquadstackLeadOp));

	op->lead_id = squadstack_lead_id_from_jsonb(id, "lead at position 1");
	op->payload = squadstack_lead_id_payload(op->lead_id, id);
	return op;
}

SquadstackLeadOp *
squadstack_parse_update_lead(Jsonb *lead)
{
	JsonbValue	v;

	if (!JB_ROOT_IS_OBJECT(lead))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("lead must be a JSON object, not a JSON %s",
						squadstack_jsonb_root_type_name(lead)),
				 errdetail("An update is an object with lead_id and the fields to change.")));
	v.type = jbvBinary;
	v.val.binary.data = &lead->root;
	v.val.binary.len = VARSIZE(lead) - VARHDRSZ;
	return squadstack_parse_lead(v.val.binary.data, 1, true);
}
