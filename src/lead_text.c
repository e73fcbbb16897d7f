/*-------------------------------------------------------------------------
 *
 * lead_text.c
 *		Text checks for leads: Unicode blanks, reserved field names given
 *		with another case or spacing, JSON type names for messages, and a
 *		lead's size as JSON, counted without writing the text out
 *		(squadstack.max_lead_bytes).
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
#include "lead_text.h"

/* the fields SquadStack itself reads; any other key is a custom field */
static const char *const reserved_fields[] = {
	"lead_id", "phone_number", "contact_name"
};

const char *
squadstack_jsonb_type_name(const JsonbValue *v)
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

const char *
squadstack_jsonb_root_type_name(Jsonb *jb)
{
	if (JB_ROOT_IS_SCALAR(jb))
	{
		JsonbValue	v;

		if (JsonbExtractScalar(&jb->root, &v))
			return squadstack_jsonb_type_name(&v);
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
int
squadstack_next_char(const char *s, int len, pg_wchar *c)
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
squadstack_text_is_blank(const char *s, int len)
{
	int			i = 0;

	while (i < len)
	{
		pg_wchar	c;

		i += squadstack_next_char(s + i, len - i, &c);
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
squadstack_reserved_field_lookalike(const char *key)
{
	char		folded[32];
	int			n = 0;
	int			len = strlen(key);
	int			i = 0;
	int			r;

	while (i < len)
	{
		pg_wchar	c;

		i += squadstack_next_char(key + i, len - i, &c);
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
			elog(ERROR, "unexpected JSON %s in a lead payload", squadstack_jsonb_type_name(v));
	}
	return 0;					/* keep compiler quiet */
}

/* "key": value, preceded by ", " unless it is the object's first pair */
int64
squadstack_json_pair_bytes(const char *key, int keylen, const JsonbValue *v, bool first)
{
	return (first ? 0 : 2) + json_string_bytes(key, keylen) + 2 + json_value_bytes(v);
}

void
squadstack_check_lead_size(const char *lead_id, int64 bytes)
{
	if (bytes > squadstack_max_lead_bytes)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("lead \"%s\" is too large", lead_id),
				 errdetail("Lead \"%s\" has %lld bytes as JSON; squadstack.max_lead_bytes allows %d.",
						   lead_id, (long long) bytes, squadstack_max_lead_bytes)));
}

/*
 * Refuse a payload (a flat JSON object) larger than squadstack.max_lead_bytes
 * as JSON text.
 */
void
squadstack_check_lead_bytes(const char *lead_id, Jsonb *payload)
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
				bytes += squadstack_json_pair_bytes(key, keylen, &v, first);
				first = false;
				break;
			default:
				elog(ERROR, "a lead payload is not a JSON object");
		}
	}
	squadstack_check_lead_size(lead_id, bytes);
}
