/*-------------------------------------------------------------------------
 *
 * webhook_payload.c
 *		Validating a "lead processed" payload into an outcome: its ids,
 *		timestamps (ISO 8601 or Unix epoch; without an offset, in
 *		squadstack.webhook_timezone) and fields.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_type_d.h"
#include "commands/trigger.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "guc.h"
#include "webhook_payload.h"


static const char *const text_fields[SQUADSTACK_NUM_TEXT_FIELDS] = {
	"phone_number", "contact_name", "lead_outcome", "latest_recording_url"
};

/* ---------- timestamps ---------- */

/* digits at s[0..n-1] */
static bool
digits(const char *s, int n)
{
	int			i;

	for (i = 0; i < n; i++)
		if (!isdigit((unsigned char) s[i]))
			return false;
	return true;
}

/*
 * Check that s is ISO-8601 (date, optional time, optional offset) and say
 * whether it carries an offset.  Only this shape goes on to PostgreSQL's
 * date parser, so words like "now" or "epoch" are not accepted.
 */
static bool
iso8601_shape(const char *s, bool *has_offset)
{
	const char *p = s;

	*has_offset = false;
	if (!(digits(p, 4) && p[4] == '-' && digits(p + 5, 2) && p[7] == '-' && digits(p + 8, 2)))
		return false;
	p += 10;
	if (*p == '\0')
		return true;
	if (*p != 'T' && *p != 't' && *p != ' ')
		return false;
	p++;
	if (!(digits(p, 2) && p[2] == ':' && digits(p + 3, 2)))
		return false;
	p += 5;
	if (*p == ':')
	{
		if (!digits(p + 1, 2))
			return false;
		p += 3;
		if (*p == '.')
		{
			int			n = 0;

			p++;
			while (isdigit((unsigned char) p[n]))
				n++;
			if (n == 0 || n > 9)
				return false;
			p += n;
		}
	}
	if (*p == '\0')
		return true;
	*has_offset = true;
	if ((*p == 'Z' || *p == 'z') && p[1] == '\0')
		return true;
	if ((*p == '+' || *p == '-') && digits(p + 1, 2))
	{
		p += 3;
		if (*p == ':')
			p++;
		if (*p == '\0')
			return true;
		if (digits(p, 2) && p[2] == '\0')
			return true;
	}
	return false;
}

static bool
parse_iso8601(const char *s, TimestampTz *result)
{
	char		workbuf[MAXDATELEN + 1];
	char	   *field[MAXDATEFIELDS];
	int			ftype[MAXDATEFIELDS];
	int			nf;
	int			dtype;
	struct pg_tm tm;
	fsec_t		fsec;
	int			tz = 0;
	bool		has_offset;

	if (strlen(s) > MAXDATELEN || !iso8601_shape(s, &has_offset))
		return false;
	if (ParseDateTime(s, workbuf, sizeof(workbuf), field, ftype, MAXDATEFIELDS, &nf) != 0)
		return false;
	if (squadstack_DecodeDateTime(field, ftype, nf, &dtype, &tm, &fsec, &tz) != 0 || dtype != DTK_DATE)
		return false;
	if (!has_offset)
	{
		pg_tz	   *zone = pg_tzset(squadstack_webhook_timezone ? squadstack_webhook_timezone : "UTC");

		if (zone == NULL)
			return false;
		tz = DetermineTimeZoneOffset(&tm, zone);
	}
	return tm2timestamp(&tm, fsec, &tz, result) == 0 && IS_VALID_TIMESTAMP(*result);
}

/* Unix epoch seconds (or milliseconds, for values past the year 5138). */
static bool
epoch_to_timestamptz(double secs, TimestampTz *result)
{
	if (isnan(secs) || isinf(secs))
		return false;
	if (secs > 1e11)
		secs /= 1000.0;
	if (secs < -1e11 || secs > 1e11)
		return false;
	*result = (TimestampTz) (secs * USECS_PER_SEC) -
		((POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY);
	return IS_VALID_TIMESTAMP(*result);
}

/* A timestamp field: ISO-8601 string, or epoch number (also as a string). */
static const char *
parse_timestamp(JsonbValue *v, const char *name, TimestampTz *result)
{
	if (v->type == jbvNumeric)
	{
		double		secs = DatumGetFloat8(DirectFunctionCall1(numeric_float8_no_overflow,
															  NumericGetDatum(v->val.numeric)));

		if (epoch_to_timestamptz(secs, result))
			return NULL;
	}
	else if (v->type == jbvString)
	{
		char	   *s = pnstrdup(v->val.string.val, v->val.string.len);
		char	   *end;
		double		secs;

		if (parse_iso8601(s, result))
			return NULL;
		secs = strtod(s, &end);
		if (*s != '\0' && *end == '\0' && digits(s, 1) && epoch_to_timestamptz(secs, result))
			return NULL;
	}
	return psprintf("\"%s\" is not an ISO-8601 timestamp or an epoch number", name);
}

/* ---------- validation ---------- */

static JsonbValue *
get_field(Jsonb *payload, const char *key)
{
	return getKeyJsonValueFromContainer(&payload->root, key, strlen(key), NULL);
}

static char *
scalar_text(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvString:
			return pnstrdup(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out,
													   NumericGetDatum(v->val.numeric)));
		case jbvBool:
			return pstrdup(v->val.boolean ? "true" : "false");
		default:
			return NULL;
	}
}

static bool
valid_campaign(const char *s)
{
	size_t		len = strlen(s);
	const char *p;

	if (len == 0 || len > SQUADSTACK_MAX_CAMPAIGN_LEN)
		return false;
	for (p = s; *p; p++)
		if (!(isalnum((unsigned char) *p) || *p == '_' || *p == '-'))
			return false;
	return true;
}

/*
 * Pick out the lead's identity first (so even a rejected payload can be
 * found, and erased, by lead), then check the rest.  Returns NULL if valid,
 * else the reason.
 */
const char *
squadstack_webhook_validate(Jsonb *payload, SquadstackOutcome *o)
{
	JsonbValue *v;
	const char *err;
	size_t		i;

	memset(o, 0, sizeof(*o));
	if (!JB_ROOT_IS_OBJECT(payload))
		return "the payload is not a JSON object";

	v = get_field(payload, "campaign_id");
	if (v != NULL && v->type == jbvString)
		o->campaign_id = pnstrdup(v->val.string.val, v->val.string.len);
	else if (v != NULL && v->type != jbvNull)
		return "\"campaign_id\" must be a string";
	v = get_field(payload, "lead_id");
	if (v != NULL && v->type == jbvString)
		o->lead_id = pnstrdup(v->val.string.val, v->val.string.len);
	else if (v != NULL && v->type == jbvNumeric)
	{
		o->lead_id = scalar_text(v);
		if (strchr(o->lead_id, '.') != NULL)
		{
			o->lead_id = NULL;
			return "\"lead_id\" must be a string or an integer";
		}
	}
	else if (v != NULL && v->type != jbvNull)
		return "\"lead_id\" must be a string or an integer";

	if (o->campaign_id == NULL)
		return "missing \"campaign_id\"";
	if (!valid_campaign(o->campaign_id))
	{
		o->campaign_id = NULL;
		return "\"campaign_id\" must be 1 to 64 letters, digits, underscores or dashes";
	}
	if (o->lead_id == NULL)
		return "missing \"lead_id\"";
	if (o->lead_id[0] == '\0' || pg_mbstrlen(o->lead_id) > SQUADSTACK_MAX_LEAD_ID_LEN)
		return "\"lead_id\" must have 1 to 255 characters";

	v = get_field(payload, "processed_at");
	if (v == NULL || v->type == jbvNull)
		return "missing \"processed_at\"";
	if ((err = parse_timestamp(v, "processed_at", &o->processed_at)) != NULL)
		return err;

	v = get_field(payload, "latest_called_at");
	if (v != NULL && v->type != jbvNull)
	{
		if ((err = parse_timestamp(v, "latest_called_at", &o->latest_called_at)) != NULL)
			return err;
		o->has_latest_called_at = true;
	}
	v = get_field(payload, "created_at");
	if (v != NULL && v->type != jbvNull)
	{
		if ((err = parse_timestamp(v, "created_at", &o->created_at)) != NULL)
			return err;
		o->has_created_at = true;
	}

	v = get_field(payload, "lead_responses");
	if (v != NULL && v->type != jbvNull)
	{
		if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
			return "\"lead_responses\" must be a JSON object";
		o->lead_responses = JsonbValueToJsonb(v);
	}

	for (i = 0; i < lengthof(text_fields); i++)
	{
		v = get_field(payload, text_fields[i]);
		if (v == NULL || v->type == jbvNull)
			continue;
		o->fields[i] = scalar_text(v);
		if (o->fields[i] == NULL)
			return psprintf("\"%s\" must be a string", text_fields[i]);
	}
	return NULL;
}

