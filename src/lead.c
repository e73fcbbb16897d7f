/*-------------------------------------------------------------------------
 *
 * lead.c
 *		Validation of campaigns and leads given to the squadstack_* functions.
 *
 * Every check runs before anything is queued, so a call with one bad lead
 * queues nothing.  Messages name the lead (by lead_id, or by its position
 * when it has none) and the field.
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

#include "guc.h"
#include "lead.h"
#include "phone.h"
#include "squadstack.h"

/* one key/value pair of a lead object (SqsLeadField, squadstack.h) */
typedef SqsLeadField LeadField;

/* the fields SquadStack itself reads; any other key is a custom field */
static const char *const reserved_fields[] = {
	"lead_id", "phone_number", "contact_name"
};

/*
 * A one-dimensional array without NULLs being filled one element at a
 * time: its final form from the start, so no element is copied twice.
 */
typedef struct ArrayBuf
{
	char	   *data;			/* an ArrayType, header filled at the end */
	Size		len;			/* bytes used */
	Size		cap;			/* bytes allocated */
	int			n;				/* elements */
} ArrayBuf;

/* a lead_id seen earlier in the same call, found by its bytes */
typedef struct SeenLead
{
	uint32		offset;			/* of its text in the lead_ids array */
	uint32		hash;
	int32		position;
	char		status;
} SeenLead;

static inline uint32 seen_hash_key(void *ids, uint32 offset);
static inline bool seen_equal(void *ids, uint32 a, uint32 b);

#define SH_PREFIX			seen
#define SH_ELEMENT_TYPE		SeenLead
#define SH_KEY_TYPE			uint32
#define SH_KEY				offset
#define SH_HASH_KEY(tb, key)	seen_hash_key((tb)->private_data, key)
#define SH_EQUAL(tb, a, b)	seen_equal((tb)->private_data, a, b)
#define SH_STORE_HASH
#define SH_GET_HASH(tb, a)	((a)->hash)
#define SH_SCOPE			static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

static const char *
jsonb_type_name(const JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return "null";
		case jbvString:
			return "string";
		case jbvNumeric:
			return "number";
		case jbvBool:
			return "boolean";
		case jbvBinary:
			return JsonContainerIsArray(v->val.binary.data) ? "array" : "object";
		case jbvArray:
			return "array";
		case jbvObject:
			return "object";
		default:
			return "value";
	}
}

static const char *
jsonb_root_type_name(Jsonb *jb)
{
	if (JB_ROOT_IS_SCALAR(jb))
	{
		JsonbValue	v;

		if (JsonbExtractScalar(&jb->root, &v))
			return jsonb_type_name(&v);
		return "scalar";
	}
	return JB_ROOT_IS_OBJECT(jb) ? "object" : "array";
}

/*
 * Characters that show nothing: Unicode's White_Space, the controls, and
 * the zero-width format characters that editors and spreadsheets leave
 * behind.
 */
static bool
unicode_is_blank(pg_wchar c)
{
	if (c <= 0x20 || (c >= 0x7F && c <= 0xA0))
		return true;
	switch (c)
	{
		case 0x1680:
		case 0x180E:
		case 0x2028:
		case 0x2029:
		case 0x202F:
		case 0x205F:
		case 0x2060:
		case 0x3000:
		case 0xFEFF:
			return true;
		default:
			return c >= 0x2000 && c <= 0x200D;
	}
}

/*
 * The length in bytes of the character at s, and its code point in *c;
 * where the server encoding is not UTF-8, only ASCII characters are told
 * apart (others are returned as U+FFFD, which is neither blank nor a
 * control).
 */
static int
next_char(const char *s, int len, pg_wchar *c)
{
	unsigned char b = (unsigned char) s[0];
	int			l;

	if (b < 0x80)
	{
		*c = b;
		return 1;
	}
	if (GetDatabaseEncoding() != PG_UTF8)
	{
		*c = 0xFFFD;
		return Min(pg_mblen(s), len);
	}
	l = pg_utf_mblen((const unsigned char *) s);
	if (l > len)
	{
		*c = 0xFFFD;
		return len;
	}
	*c = utf8_to_unicode((const unsigned char *) s);
	return l;
}

/*
 * Whether a string shows nothing: empty, or only white space, controls or
 * zero-width characters (a name of only no-break or ideographic spaces).
 */
bool
sqs_text_is_blank(const char *s, int len)
{
	int			i = 0;

	while (i < len)
	{
		pg_wchar	c;

		i += next_char(s + i, len - i, &c);
		if (!unicode_is_blank(c))
			return false;
	}
	return true;
}

/*
 * The reserved field that key is mistaken for, if it differs from one only
 * in case or blank characters ("Phone_Number", "phone_number "), else NULL.
 * SquadStack would take such a key as a custom field and the lead would
 * lack, or silently keep, the field meant.
 */
const char *
sqs_reserved_field_lookalike(const char *key)
{
	char		folded[32];
	int			n = 0;
	int			len = strlen(key);
	int			i = 0;
	int			r;

	while (i < len)
	{
		pg_wchar	c;

		i += next_char(key + i, len - i, &c);
		if (unicode_is_blank(c))
			continue;
		if (c >= 0x80 || n >= (int) sizeof(folded) - 1)
			return NULL;
		folded[n++] = pg_ascii_tolower((unsigned char) c);
	}
	folded[n] = '\0';
	for (r = 0; r < (int) lengthof(reserved_fields); r++)
		if (strcmp(folded, reserved_fields[r]) == 0 &&
			strcmp(key, reserved_fields[r]) != 0)
			return reserved_fields[r];
	return NULL;
}

/*
 * Sizes of a payload as JSON text, as jsonb's output function writes it
 * ({"key": value, ...}) and as it is sent, without writing it.
 */
static int64
json_string_bytes(const char *s, int len)
{
	int64		bytes = 2;
	int			i;

	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c == '"' || c == '\\' || c == '\b' || c == '\f' ||
			c == '\n' || c == '\r' || c == '\t')
			bytes += 2;
		else if (c < ' ')
			bytes += 6;			/* \u00XX */
		else
			bytes += 1;
	}
	return bytes;
}

static int64
json_value_bytes(const JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return 4;
		case jbvBool:
			return v->val.boolean ? 4 : 5;
		case jbvString:
			return json_string_bytes(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			{
				char	   *s = DatumGetCString(DirectFunctionCall1(numeric_out,
																	NumericGetDatum(v->val.numeric)));
				int64		bytes = strlen(s);

				pfree(s);
				return bytes;
			}
		default:
			elog(ERROR, "unexpected JSON %s in a lead payload", jsonb_type_name(v));
	}
	return 0;					/* keep compiler quiet */
}

/* "key": value, preceded by ", " unless it is the object's first pair */
static int64
json_pair_bytes(const char *key, int keylen, const JsonbValue *v, bool first)
{
	return (first ? 0 : 2) + json_string_bytes(key, keylen) + 2 + json_value_bytes(v);
}

static void
check_lead_bytes(const char *lead_id, int64 bytes)
{
	if (bytes > sqs_max_lead_bytes)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("lead \"%s\" is too large", lead_id),
				 errdetail("Lead \"%s\" has %lld bytes as JSON; squadstack.max_lead_bytes allows %d.",
						   lead_id, (long long) bytes, sqs_max_lead_bytes)));
}

/*
 * Refuse a payload (a flat JSON object) larger than squadstack.max_lead_bytes
 * as JSON text.
 */
void
sqs_check_lead_bytes(const char *lead_id, Jsonb *payload)
{
	JsonbIterator *it = JsonbIteratorInit(&payload->root);
	JsonbValue	v;
	JsonbIteratorToken tok;
	int64		bytes = 0;
	bool		first = true;
	const char *key = NULL;
	int			keylen = 0;

	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		switch (tok)
		{
			case WJB_BEGIN_OBJECT:
			case WJB_END_OBJECT:
				bytes += 1;
				break;
			case WJB_KEY:
				key = v.val.string.val;
				keylen = v.val.string.len;
				break;
			case WJB_VALUE:
				bytes += json_pair_bytes(key, keylen, &v, first);
				first = false;
				break;
			default:
				elog(ERROR, "a lead payload is not a JSON object");
		}
	}
	check_lead_bytes(lead_id, bytes);
}

void
sqs_check_campaign(const char *campaign)
{
	size_t		len = strlen(campaign);
	const char *p;

	if (len > SQS_MAX_CAMPAIGN_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("campaign id is too long: %zu characters", len),
				 errdetail("A campaign id has at most %d characters.",
						   SQS_MAX_CAMPAIGN_LEN)));
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
						   SQS_MAX_CAMPAIGN_LEN)));
}

/*
 * The text form of a lead_id given as a JSON string or integer; ERROR for
 * anything else.  context names the lead for messages ("lead at position 3").
 */
char *
sqs_lead_id_from_jsonb(JsonbValue *v, const char *context)
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
						   jsonb_type_name(v))));

	if (id[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("empty \"lead_id\" for %s", context),
				 errdetail("A lead_id has 1 to %d characters.", SQS_MAX_LEAD_ID_LEN)));

	/*
	 * One pass counts the characters and looks for controls, which would
	 * turn up in URLs, logs and messages (a line break in a log line).
	 */
	len = strlen(id);
	for (i = 0, nchars = 0; i < len; nchars++)
	{
		pg_wchar	c;

		i += next_char(id + i, len - i, &c);
		if (c < 0x20 || (c >= 0x7F && c <= 0x9F))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid \"lead_id\" for %s", context),
					 errdetail("A lead_id has no control characters; character %d is U+%04X.",
							   nchars + 1, (unsigned int) c)));
	}
	if (nchars > SQS_MAX_LEAD_ID_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("\"lead_id\" is too long for %s", context),
				 errdetail("A lead_id has at most %d characters; this one has %d.",
						   SQS_MAX_LEAD_ID_LEN, nchars)));
	return id;
}

/*
 * Collect the top-level fields of a lead object.  Returns the number of
 * fields; *fields is palloc'd.
 */
static int
lead_fields(JsonbContainer *obj, LeadField **fields)
{
	JsonbIterator *it = JsonbIteratorInit(obj);
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			n = 0;
	int			cap = Max(JsonContainerSize(obj), 1);
	LeadField  *out = palloc(sizeof(LeadField) * cap);
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

static JsonbValue *
find_field(LeadField *fields, int n, const char *key)
{
	int			i;

	for (i = 0; i < n; i++)
		if (strcmp(fields[i].key, key) == 0)
			return &fields[i].value;
	return NULL;
}

/* The JSON value for the lead's container at position pos, which must be an object. */
static JsonbContainer *
lead_object(JsonbValue *elem, int pos)
{
	if (elem->type != jbvBinary || !JsonContainerIsObject(elem->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("lead at position %d is not a JSON object", pos),
				 errdetail("Got a JSON %s; a lead is an object such as {\"lead_id\": \"L1\", \"phone_number\": \"9876543210\", \"contact_name\": \"Asha Rao\"}.",
						   jsonb_type_name(elem))));
	return elem->val.binary.data;
}

/*
 * Validate and normalise a phone number field; returns the JSON value to
 * send.  Messages never quote the number: they land in the server log,
 * where erasing a lead cannot reach them.
 */
static JsonbValue
check_phone(JsonbValue *v, const char *lead_id)
{
	char		digits[SQS_PHONE_BUFSIZE];
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
						   jsonb_type_name(v))));

	if (!sqs_phone_normalise(given, strlen(given), digits))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid phone number for lead \"%s\"", lead_id),
				 errdetail("An Indian phone number has exactly 10 digits, the first not 0, after removing spaces, tabs, dashes, dots, parentheses and one prefix +91, 0091, 91 or 0.")));

	out.type = jbvString;
	switch (sqs_phone_format)
	{
		case SQS_PHONE_NATIONAL:
			out.val.string.val = pstrdup(digits);
			break;
		case SQS_PHONE_AS_GIVEN:
			out.val.string.val = given;
			break;
		default:
			out.val.string.val = psprintf("+91%s", digits);
			break;
	}
	out.val.string.len = strlen(out.val.string.val);
	return out;
}

static void
check_contact_name(JsonbValue *v, const char *lead_id)
{
	if (v->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid \"contact_name\" for lead \"%s\"", lead_id),
				 errdetail("A contact name is a non-empty JSON string, not a JSON %s.",
						   jsonb_type_name(v))));
	if (sqs_text_is_blank(v->val.string.val, v->val.string.len))
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
static void
check_field_names(LeadField *fields, int n, const char *lead_id, int pos)
{
	int			i;

	for (i = 0; i < n; i++)
	{
		const char *reserved = sqs_reserved_field_lookalike(fields[i].key);

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

static void
check_custom_field(LeadField *f, const char *lead_id)
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
						   jsonb_type_name(&f->value))));
}

/* Push "key": value into the object being built. */
void
sqs_push_pair(JsonbParseState **state, const char *key, JsonbValue *value)
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
sqs_push_string_pair(JsonbParseState **state, const char *key, const char *value)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = (char *) value;
	v.val.string.len = strlen(value);
	sqs_push_pair(state, key, &v);
}

/*
 * Validate one lead, given as its fields in the order of a jsonb object's
 * keys, and build its payload.  For a create every required field must be
 * there; for an update lead_id and at least one other field.
 */
static SqsLeadOp *
parse_fields(LeadField *fields, int n, int pos, bool is_update)
{
	JsonbValue *v;
	JsonbParseState *state = NULL;
	JsonbValue *res;
	SqsLeadOp  *op = palloc(sizeof(SqsLeadOp));
	char		context[32];
	int64		bytes = 2;		/* {} */
	int			i;

	snprintf(context, sizeof(context), "lead at position %d", pos);
	v = find_field(fields, n, "lead_id");
	if (v == NULL)
	{
		check_field_names(fields, n, NULL, pos);
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("missing \"lead_id\" for %s", context),
				 errdetail("Every lead needs a lead_id.")));
	}
	op->lead_id = sqs_lead_id_from_jsonb(v, context);
	check_field_names(fields, n, op->lead_id, pos);

	if (!is_update)
	{
		v = find_field(fields, n, "phone_number");
		if (v == NULL || v->type == jbvNull)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("missing \"phone_number\" for lead \"%s\"", op->lead_id),
					 errdetail("A new lead needs a phone_number.")));
		v = find_field(fields, n, "contact_name");
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
			val = check_phone(&f->value, op->lead_id);
		}
		else if (strcmp(f->key, "contact_name") == 0)
		{
			if (val.type == jbvNull)
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("\"contact_name\" of lead \"%s\" must not be null", op->lead_id)));
			check_contact_name(&f->value, op->lead_id);
		}
		else if (strcmp(f->key, "lead_id") != 0)
			check_custom_field(f, op->lead_id);

		bytes += json_pair_bytes(f->key, strlen(f->key), &val, i == 0);
		sqs_push_pair(&state, f->key, &val);
	}
	check_lead_bytes(op->lead_id, bytes);
	res = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	op->payload = JsonbValueToJsonb(res);
	return op;
}

/* Validate one lead object and build its payload. */
static SqsLeadOp *
parse_lead(JsonbContainer *obj, int pos, bool is_update)
{
	LeadField  *fields;
	int			n = lead_fields(obj, &fields);

	return parse_fields(fields, n, pos, is_update);
}

/*
 * A lead given as its fields, in the order of a jsonb object's keys (as a
 * sync trigger has them), validated as squadstack_create_leads() or
 * squadstack_update_lead() validate one lead object, without building and
 * reading back that object.
 */
SqsLeadOp *
sqs_parse_lead_fields(SqsLeadField *fields, int n, bool is_update)
{
	return parse_fields(fields, n, 1, is_update);
}

/* Whether key a comes before key b in a jsonb object: shorter first. */
int
sqs_jsonb_key_cmp(const char *a, const char *b)
{
	size_t		la = strlen(a);
	size_t		lb = strlen(b);

	if (la != lb)
		return la < lb ? -1 : 1;
	return memcmp(a, b, la);
}

/* A payload of just {"lead_id": ...}, keeping the id's JSON type. */
static Jsonb *
lead_id_payload(const char *lead_id, JsonbValue *id)
{
	JsonbParseState *state = NULL;

	/* {"lead_id": <id>} */
	check_lead_bytes(lead_id, 2 + json_pair_bytes("lead_id", 7, id, true));
	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	sqs_push_pair(&state, "lead_id", id);
	return JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL));
}

/*
 * Arrays filled in place.  The capacity given is a guess: memory allocated
 * but never written costs nothing, and growing copies.
 */
static void
abuf_init(ArrayBuf *b, Size cap)
{
	b->len = ARR_OVERHEAD_NONULLS(1);
	b->cap = Min(Max(cap, b->len + 256), MaxAllocSize);
	b->data = palloc(b->cap);
	memset(b->data, 0, b->len);
	b->n = 0;
}

/* Make room for an element of size bytes; returns where it goes. */
static char *
abuf_reserve(ArrayBuf *b, Size size)
{
	Size		need = INTALIGN(b->len + size);
	char	   *at;

	if (need > b->cap)
	{
		Size		cap = Max(need, b->cap * 2);

		if (need > MaxAllocSize)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("the leads of one call are too large"),
					 errdetail("Their lead ids or payloads together exceed %zu bytes.",
							   (Size) MaxAllocSize),
					 errhint("Queue the leads in several calls.")));
		b->cap = Min(cap, MaxAllocSize);
		b->data = repalloc(b->data, b->cap);
	}
	at = b->data + b->len;
	/* the alignment padding, zeroed as construct_array() leaves it */
	memset(at + size, 0, need - b->len - size);
	b->len = need;
	b->n++;
	return at;
}

/* Append a varlena with a 4-byte header (a jsonb that was just built). */
static void
abuf_add(ArrayBuf *b, const struct varlena *v)
{
	Size		size = VARSIZE(v);

	memcpy(abuf_reserve(b, size), v, size);
}

/* Append a C string as text; returns its offset. */
static uint32
abuf_add_text(ArrayBuf *b, const char *s)
{
	Size		len = strlen(s);
	char	   *at = abuf_reserve(b, VARHDRSZ + len);

	SET_VARSIZE(at, VARHDRSZ + len);
	memcpy(at + VARHDRSZ, s, len);
	return (uint32) (at - b->data);
}

static Datum
abuf_finish(ArrayBuf *b, Oid elemtype)
{
	ArrayType  *a = (ArrayType *) b->data;

	if (b->n == 0)
		return PointerGetDatum(construct_empty_array(elemtype));
	SET_VARSIZE(a, b->len);
	a->ndim = 1;
	a->dataoffset = 0;
	a->elemtype = elemtype;
	ARR_DIMS(a)[0] = b->n;
	ARR_LBOUND(a)[0] = 1;
	return PointerGetDatum(a);
}

static inline uint32
seen_hash_key(void *ids, uint32 offset)
{
	const char *t = ((ArrayBuf *) ids)->data + offset;

	return hash_bytes((const unsigned char *) VARDATA(t), VARSIZE(t) - VARHDRSZ);
}

static inline bool
seen_equal(void *ids, uint32 a, uint32 b)
{
	const char *data = ((ArrayBuf *) ids)->data;
	const char *ta = data + a;
	const char *tb = data + b;

	return VARSIZE(ta) == VARSIZE(tb) &&
		memcmp(VARDATA(ta), VARDATA(tb), VARSIZE(ta) - VARHDRSZ) == 0;
}

/*
 * Walk the leads argument: an array of elements or one element.  fn
 * validates each, given its 1-based position, and returns its lead_id and
 * payload, which go into the arrays the queueing statement takes.
 *
 * Everything fn allocates lives in a context reset after each lead, so a
 * call's memory is its input, the two arrays and a small hash table of the
 * lead ids, whatever the leads' validation needs on the way.
 */
typedef SqsLeadOp *(*lead_elem_fn) (JsonbValue *elem, int pos);

static void
add_lead(ArrayBuf *ids, ArrayBuf *payloads,
		 seen_hash *seen, MemoryContext lead_cxt, lead_elem_fn fn,
		 JsonbValue *elem, int pos)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(lead_cxt);
	SqsLeadOp  *op = fn(elem, pos);
	uint32		offset;

	MemoryContextSwitchTo(oldcxt);
	offset = abuf_add_text(ids, op->lead_id);
	if (seen != NULL)
	{
		bool		found;
		SeenLead   *e = seen_insert(seen, offset, &found);

		if (found)
			ereport(ERROR,
					(errcode(ERRCODE_UNIQUE_VIOLATION),
					 errmsg("duplicate lead_id \"%s\" at positions %d and %d",
							op->lead_id, e->position, pos),
					 errdetail("A lead_id may appear only once in one call.")));
		e->position = pos;
	}
	abuf_add(payloads, (struct varlena *) op->payload);
	MemoryContextReset(lead_cxt);
}

static SqsLeadArrays *
parse_lead_list(Jsonb *leads, const char *argname, bool scalars_ok,
				lead_elem_fn fn)
{
	SqsLeadArrays *out = palloc0(sizeof(SqsLeadArrays));
	MemoryContext lead_cxt;
	ArrayBuf	ids;
	ArrayBuf	payloads;
	seen_hash  *seen = NULL;
	JsonbValue	v;
	int			count = 1;
	int			pos = 0;

	if (JB_ROOT_IS_SCALAR(leads))
	{
		if (!scalars_ok)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s must be a JSON array or object, not a JSON %s",
							argname, jsonb_root_type_name(leads))));
	}
	else if (JB_ROOT_IS_ARRAY(leads))
	{
		count = JsonContainerSize(&leads->root);
		if (count == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s must not be an empty array", argname)));
	}

	lead_cxt = AllocSetContextCreate(CurrentMemoryContext, "squadstack lead",
									 ALLOCSET_DEFAULT_SIZES);
	/* a payload is about as large as its lead in the input */
	abuf_init(&ids, (Size) count * 16);
	abuf_init(&payloads, VARSIZE(leads) + (Size) count * 16);

	if (JB_ROOT_IS_SCALAR(leads))
	{
		JsonbExtractScalar(&leads->root, &v);
		add_lead(&ids, &payloads, NULL, lead_cxt, fn, &v, 1);
	}
	else if (JB_ROOT_IS_OBJECT(leads))
	{
		v.type = jbvBinary;
		v.val.binary.data = &leads->root;
		v.val.binary.len = VARSIZE(leads) - VARHDRSZ;
		add_lead(&ids, &payloads, NULL, lead_cxt, fn, &v, 1);
	}
	else
	{
		JsonbIterator *it = JsonbIteratorInit(&leads->root);
		JsonbIteratorToken tok;

		seen = seen_create(CurrentMemoryContext, count, &ids);
		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			CHECK_FOR_INTERRUPTS();
			if (tok != WJB_ELEM)
				continue;
			pos++;
			add_lead(&ids, &payloads, seen, lead_cxt, fn, &v, pos);
		}
		seen_destroy(seen);
	}
	MemoryContextDelete(lead_cxt);

	out->n = ids.n;
	out->lead_ids = abuf_finish(&ids, TEXTOID);
	out->payloads = abuf_finish(&payloads, JSONBOID);
	return out;
}

static SqsLeadOp *
create_elem(JsonbValue *elem, int pos)
{
	return parse_lead(lead_object(elem, pos), pos, false);
}

SqsLeadArrays *
sqs_parse_create_leads(Jsonb *leads)
{
	return parse_lead_list(leads, "leads", false, create_elem);
}

/* A lead to disable: "L1", 17 or {"lead_id": "L1"}. */
static SqsLeadOp *
disable_elem(JsonbValue *elem, int pos)
{
	SqsLeadOp  *op = palloc(sizeof(SqsLeadOp));
	char	   *context = psprintf("lead at position %d", pos);
	JsonbValue *id = elem;

	if (elem->type == jbvBinary)
	{
		LeadField  *fields;
		int			n;
		int			i;

		n = lead_fields(lead_object(elem, pos), &fields);
		id = find_field(fields, n, "lead_id");
		if (id == NULL)
			check_field_names(fields, n, NULL, pos);
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
	op->lead_id = sqs_lead_id_from_jsonb(id, context);
	op->payload = lead_id_payload(op->lead_id, id);
	return op;
}

/*
 * A lead given by its lead_id value alone, as a sync trigger has it for a
 * disable or a delete; validated as {"lead_id": ...} is.
 */
SqsLeadOp *
sqs_parse_lead_id(JsonbValue *id)
{
	SqsLeadOp  *op = palloc(sizeof(SqsLeadOp));

	op->lead_id = sqs_lead_id_from_jsonb(id, "lead at position 1");
	op->payload = lead_id_payload(op->lead_id, id);
	return op;
}

SqsLeadArrays *
sqs_parse_disable_leads(Jsonb *lead_ids)
{
	return parse_lead_list(lead_ids, "lead_ids", true, disable_elem);
}

SqsLeadOp *
sqs_parse_update_lead(Jsonb *lead)
{
	JsonbValue	v;

	if (!JB_ROOT_IS_OBJECT(lead))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("lead must be a JSON object, not a JSON %s",
						jsonb_root_type_name(lead)),
				 errdetail("An update is an object with lead_id and the fields to change.")));
	v.type = jbvBinary;
	v.val.binary.data = &lead->root;
	v.val.binary.len = VARSIZE(lead) - VARHDRSZ;
	return parse_lead(v.val.binary.data, 1, true);
}
