/*-------------------------------------------------------------------------
 *
 * webhook.c
 *		SquadStack's "lead processed" webhook: payloads into tables.
 *
 * Every payload lands in squadstack.webhook_inbox, malformed ones
 * included.  A BEFORE INSERT trigger on the inbox validates it, records its
 * status, and applies it to squadstack.lead_outcomes (one row per lead: a
 * newer processed_at replaces the row, the same one is a duplicate, an
 * older one is stale).  squadstack_receive_webhook() and a direct INSERT
 * into the inbox therefore behave the same.
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

#include "outcome.h"
#include "squadstack.h"

PG_FUNCTION_INFO_V1(squadstack_receive_webhook);
PG_FUNCTION_INFO_V1(squadstack_webhook_inbox_apply);
PG_FUNCTION_INFO_V1(squadstack_reapply);

char	   *sqs_webhook_secret = NULL;
char	   *sqs_webhook_timezone = NULL;

/* inbox columns the trigger sets */
#define INBOX_NCOLS 7
static const char *const inbox_cols[INBOX_NCOLS] = {
	"id", "payload", "status", "error", "campaign_id", "lead_id", "processed_at"
};

static const char *const text_fields[SQS_NUM_TEXT_FIELDS] = {
	"phone_number", "contact_name", "lead_outcome", "latest_recording_url"
};

static SPIPlanPtr upsert_plan = NULL;
static SPIPlanPtr current_plan = NULL;
static SPIPlanPtr deleted_plan = NULL;
static SPIPlanPtr registry_plan = NULL;
static SPIPlanPtr insert_plan = NULL;

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
	if (DecodeDateTime(field, ftype, nf, &dtype, &tm, &fsec, &tz) != 0 || dtype != DTK_DATE)
		return false;
	if (!has_offset)
	{
		pg_tz	   *zone = pg_tzset(sqs_webhook_timezone ? sqs_webhook_timezone : "UTC");

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

	if (len == 0 || len > SQS_MAX_CAMPAIGN_LEN)
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
static const char *
validate(Jsonb *payload, SqsOutcome *o)
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
	if (o->lead_id[0] == '\0' || pg_mbstrlen(o->lead_id) > SQS_MAX_LEAD_ID_LEN)
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

/* ---------- applying ---------- */

/* Apply a valid payload; returns its status. */
static const char *
apply(SqsOutcome *o, int64 inbox_id)
{
	Datum		args[11];
	char		nulls[11];
	int			i;
	int			rc;
	bool		isnull;
	TimestampTz current;

	/* registry_plan is prepared last: if any prepare fails, all are retried */
	if (registry_plan == NULL)
	{
		Oid			types[11] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
		TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID, JSONBOID, INT8OID};
		Oid			rtypes[4] = {TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID};

		if (upsert_plan == NULL)
			upsert_plan = sqs_prepare_kept("INSERT INTO squadstack.lead_outcomes AS o"
								   " (campaign_id, lead_id, phone_number, contact_name, lead_outcome,"
								   "  latest_recording_url, latest_called_at, processed_at, created_at,"
								   "  lead_responses, inbox_id)"
								   " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
								   " ON CONFLICT (campaign_id, lead_id) DO UPDATE SET"
								   "  phone_number = excluded.phone_number,"
								   "  contact_name = excluded.contact_name,"
								   "  lead_outcome = excluded.lead_outcome,"
								   "  latest_recording_url = excluded.latest_recording_url,"
								   "  latest_called_at = excluded.latest_called_at,"
								   "  processed_at = excluded.processed_at,"
								   "  created_at = excluded.created_at,"
								   "  lead_responses = excluded.lead_responses,"
								   "  inbox_id = excluded.inbox_id,"
								   "  updated_at = now()"
								   " WHERE o.processed_at < excluded.processed_at",
								   11, types);
		if (current_plan == NULL)
			current_plan = sqs_prepare_kept("SELECT processed_at FROM squadstack.lead_outcomes"
									" WHERE campaign_id = $1 AND lead_id = $2",
									2, types);
		if (deleted_plan == NULL)
			deleted_plan = sqs_prepare_kept("SELECT status = 'deleted' FROM squadstack.leads"
									" WHERE campaign_id = $1 AND lead_id = $2 FOR UPDATE",
									2, types);
		registry_plan = sqs_prepare_kept("INSERT INTO squadstack.leads AS l"
									 " (campaign_id, lead_id, status, last_outcome, last_processed_at)"
									 " VALUES ($1, $2, 'created', $3, $4)"
									 " ON CONFLICT (campaign_id, lead_id) DO UPDATE SET"
									 "  last_outcome = excluded.last_outcome,"
									 "  last_processed_at = excluded.last_processed_at,"
									 "  status = CASE WHEN l.status IN ('queued', 'failed')"
									 "           THEN 'created' ELSE l.status END,"
									 "  updated_at = now()"
									 " WHERE l.last_processed_at IS NULL"
									 "    OR l.last_processed_at < excluded.last_processed_at",
									 4, rtypes);
	}

	memset(nulls, ' ', sizeof(nulls));
	args[0] = CStringGetTextDatum(o->campaign_id);
	args[1] = CStringGetTextDatum(o->lead_id);

	/*
	 * An outcome that arrives after SquadStack accepted the lead's delete
	 * (and the extension erased it) is applied without the personal data:
	 * phone, name, recording and responses, as the erasure left the row.
	 * The lock makes an outcome that comes while the delete's answer is
	 * being recorded wait for it, and see the lead deleted; one stored just
	 * before holds the lock, and the erasure waits for it instead.  (The
	 * registry upsert below takes the same lock: taking it here first, and
	 * not a weaker one, spares concurrent outcomes of one lead a deadlock
	 * upgrading it.)
	 */
	rc = SPI_execute_plan(deleted_plan, args, NULL, false, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read the lead registry: %s", SPI_result_code_string(rc));
	if (SPI_processed > 0 &&
		DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
	{
		o->erased = true;
		o->fields[SQS_FIELD_PHONE_NUMBER] = NULL;
		o->fields[SQS_FIELD_CONTACT_NAME] = NULL;
		o->fields[SQS_FIELD_LATEST_RECORDING_URL] = NULL;
		o->lead_responses = NULL;
	}

	for (i = 0; i < 4; i++)
	{
		if (o->fields[i] != NULL)
			args[2 + i] = CStringGetTextDatum(o->fields[i]);
		else
			nulls[2 + i] = 'n';
	}
	args[6] = TimestampTzGetDatum(o->latest_called_at);
	if (!o->has_latest_called_at)
		nulls[6] = 'n';
	args[7] = TimestampTzGetDatum(o->processed_at);
	args[8] = TimestampTzGetDatum(o->created_at);
	if (!o->has_created_at)
		nulls[8] = 'n';
	if (o->lead_responses != NULL)
		args[9] = JsonbPGetDatum(o->lead_responses);
	else
		nulls[9] = 'n';
	args[10] = Int64GetDatum(inbox_id);

	rc = SPI_execute_plan(upsert_plan, args, nulls, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "could not store lead outcome: %s", SPI_result_code_string(rc));
	if (SPI_processed == 0)
	{
		/* kept the row we had: same processed_at or an older one? */
		rc = SPI_execute_plan(current_plan, args, NULL, false, 1);
		if (rc != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "could not read lead outcome: %s", SPI_result_code_string(rc));
		current = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0],
													SPI_tuptable->tupdesc, 1, &isnull));
		return current == o->processed_at ? "duplicate" : "stale";
	}

	{
		Datum		rargs[4] = {args[0], args[1], args[4], args[7]};
		char		rnulls[4] = {' ', ' ', nulls[4], ' '};

		rc = SPI_execute_plan(registry_plan, rargs, rnulls, false, 0);
		if (rc != SPI_OK_INSERT)
			elog(ERROR, "could not update the lead registry: %s", SPI_result_code_string(rc));
	}
	return "applied";
}

/* apply()'s arguments and result, for sqs_try() */
typedef struct ApplyStep
{
	SqsOutcome *o;
	int64		inbox_id;
	const char *status;
} ApplyStep;

static void
apply_step(void *arg)
{
	ApplyStep  *a = arg;

	SPI_connect();
	a->status = apply(a->o, a->inbox_id);
	SPI_finish();
}

static void
writeback_step(void *arg)
{
	sqs_writeback_apply(((ApplyStep *) arg)->o);
}

/*
 * Apply a valid payload, and write an applied outcome back into CRM
 * tables, each in a subtransaction.  If either fails (a user's trigger on
 * lead_outcomes raised, a write-back broke a constraint of a CRM table),
 * what it did is undone, *error says why, a WARNING without personal data
 * is logged, and the status is apply_failed: the payload stays in the
 * inbox, the webhook is still answered 201, and squadstack_reapply()
 * applies it once the cause is fixed.  (If only the write-back failed, the
 * outcome stays in lead_outcomes; a reapply then finds it there, as a
 * duplicate, and writes it back.)
 */
static const char *
apply_guarded(SqsOutcome *o, int64 inbox_id, bool reapplying, char **error)
{
	ApplyStep	a = {o, inbox_id, NULL};

	*error = NULL;
	if (sqs_try(apply_step, &a, error) &&
		(strcmp(a.status, "applied") == 0 ||
		 (reapplying && strcmp(a.status, "duplicate") == 0)))
	{
		if (sqs_try(writeback_step, &a, error))
			return "applied";
	}
	if (*error == NULL)
		return a.status;
	ereport(WARNING,
			(errmsg("could not apply the outcome of lead \"%s\" in campaign \"%s\"",
					o->lead_id, o->campaign_id),
			 errdetail("%s", *error),
			 errhint("Fix the cause, then run squadstack_reapply().")));
	return "apply_failed";
}

/*
 * {"campaign_id": ..., "lead_id": ..., "erased": true}: what the erasure
 * after an accepted delete leaves of a webhook payload (deliver.c).
 */
static Jsonb *
erased_payload(const char *campaign_id, const char *lead_id)
{
	JsonbParseState *state = NULL;
	JsonbValue	erased;

	erased.type = jbvBool;
	erased.val.boolean = true;
	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	sqs_push_string_pair(&state, "campaign_id", campaign_id);
	sqs_push_string_pair(&state, "lead_id", lead_id);
	sqs_push_pair(&state, "erased", &erased);
	return JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL));
}

/*
 * BEFORE INSERT trigger on squadstack.webhook_inbox: fills in status,
 * error, campaign_id and lead_id, and applies a valid payload.
 */
Datum
squadstack_webhook_inbox_apply(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleDesc	tupdesc;
	HeapTuple	tuple;
	int			attnums[INBOX_NCOLS];
	Datum		values[INBOX_NCOLS];
	bool		nulls[INBOX_NCOLS];
	bool		isnull;
	Datum		d;
	SqsOutcome		o;
	const char *error = NULL;
	const char *status;
	int			i;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("squadstack_webhook_inbox_apply() must be a BEFORE INSERT row trigger")));

	tuple = trigdata->tg_trigtuple;
	tupdesc = RelationGetDescr(trigdata->tg_relation);
	for (i = 0; i < INBOX_NCOLS; i++)
	{
		attnums[i] = SPI_fnumber(tupdesc, inbox_cols[i]);
		if (attnums[i] <= 0)
			elog(ERROR, "webhook inbox has no column \"%s\"", inbox_cols[i]);
	}

	/*
	 * A row that a superuser inserts already processed, with a status other
	 * than the default and a processed_at, is kept as it is: that is how
	 * pg_restore writes the dumped inbox, whose outcomes lead_outcomes
	 * already has.  (This function is SECURITY DEFINER: the session's user
	 * is the outer one.)
	 */
	d = heap_getattr(tuple, attnums[2], tupdesc, &isnull);
	if (!isnull && superuser_arg(GetOuterUserId()) &&
		strcmp(TextDatumGetCString(d), "rejected") != 0)
	{
		(void) heap_getattr(tuple, attnums[6], tupdesc, &isnull);
		if (!isnull)
			return PointerGetDatum(tuple);
	}

	memset(&o, 0, sizeof(o));
	d = heap_getattr(tuple, attnums[1], tupdesc, &isnull);
	if (isnull)
		error = "the payload is null";
	else
		error = validate(DatumGetJsonbP(d), &o);

	if (error == NULL)
	{
		char	   *apply_error;

		status = apply_guarded(&o, DatumGetInt64(heap_getattr(tuple, attnums[0], tupdesc, &isnull)),
							   false, &apply_error);
		error = apply_error;
	}
	else
		status = "rejected";

	memset(nulls, true, sizeof(nulls));
	values[2] = CStringGetTextDatum(status);
	nulls[2] = false;
	if (error != NULL)
	{
		values[3] = CStringGetTextDatum(error);
		nulls[3] = false;
	}
	if (o.campaign_id != NULL)
	{
		values[4] = CStringGetTextDatum(o.campaign_id);
		nulls[4] = false;
	}
	if (o.lead_id != NULL)
	{
		values[5] = CStringGetTextDatum(o.lead_id);
		nulls[5] = false;
	}
	if (strcmp(status, "rejected") != 0 && strcmp(status, "apply_failed") != 0)
	{
		values[6] = TimestampTzGetDatum(o.processed_at);
		nulls[6] = false;
	}
	if (o.erased)
	{
		/* the inbox keeps what an erasure leaves of a payload */
		values[1] = JsonbPGetDatum(erased_payload(o.campaign_id, o.lead_id));
		nulls[1] = false;
		tuple = heap_modify_tuple_by_cols(tuple, tupdesc, 1, attnums + 1, values + 1, nulls + 1);
	}
	tuple = heap_modify_tuple_by_cols(tuple, tupdesc, 5, attnums + 2, values + 2, nulls + 2);
	return PointerGetDatum(tuple);
}

/* Compare secrets by their digests, in constant time. */
static bool
secret_matches(const char *given, const char *expected)
{
	uint8		a[PG_SHA256_DIGEST_LENGTH];
	uint8		b[PG_SHA256_DIGEST_LENGTH];
	const char *in[2] = {given, expected};
	uint8	   *out[2] = {a, b};
	int			i;
	uint8		diff = 0;

	for (i = 0; i < 2; i++)
	{
		pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);

		if (ctx == NULL || pg_cryptohash_init(ctx) < 0 ||
			pg_cryptohash_update(ctx, (const uint8 *) in[i], strlen(in[i])) < 0 ||
			pg_cryptohash_final(ctx, out[i], PG_SHA256_DIGEST_LENGTH) < 0)
		{
			pg_cryptohash_free(ctx);
			elog(ERROR, "could not compute SHA-256 digest");
		}
		pg_cryptohash_free(ctx);
	}
	for (i = 0; i < PG_SHA256_DIGEST_LENGTH; i++)
		diff |= a[i] ^ b[i];
	return diff == 0;
}

/*
 * squadstack_receive_webhook(payload, secret): store one webhook payload
 * and return the HTTP status the endpoint should answer: 201 stored
 * (applied, duplicate or stale), 400 malformed (stored as rejected), 403
 * wrong secret (nothing stored).
 */
Datum
squadstack_receive_webhook(PG_FUNCTION_ARGS)
{
	Datum		args[1];
	Oid			argtypes[1] = {JSONBOID};
	int			rc;
	bool		rejected;

	if (sqs_webhook_secret != NULL && sqs_webhook_secret[0] != '\0')
	{
		if (PG_ARGISNULL(1) ||
			!secret_matches(text_to_cstring(PG_GETARG_TEXT_PP(1)), sqs_webhook_secret))
			PG_RETURN_INT32(403);
	}

	args[0] = PG_ARGISNULL(0) ?
		DirectFunctionCall1(jsonb_in, CStringGetDatum("null")) : PG_GETARG_DATUM(0);

	SPI_connect();
	if (insert_plan == NULL)
		insert_plan = sqs_prepare_kept("INSERT INTO squadstack.webhook_inbox (payload) VALUES ($1)"
								   " RETURNING status",
								   1, argtypes);
	rc = SPI_execute_plan(insert_plan, args, NULL, false, 0);
	if (rc != SPI_OK_INSERT_RETURNING || SPI_processed != 1)
		elog(ERROR, "could not store webhook payload: %s", SPI_result_code_string(rc));
	rejected = strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1),
					  "rejected") == 0;
	SPI_finish();

	PG_RETURN_INT32(rejected ? 400 : 201);
}

/*
 * Apply one inbox row that failed to apply, again; true if it applied now
 * (its status is then what apply() says), false if it failed again (its
 * error is updated).
 */
static bool
reapply_row(int64 id, Jsonb *payload)
{
	SqsOutcome	o;
	const char *status;
	char	   *error;
	Oid			argtypes[4] = {INT8OID, TEXTOID, TEXTOID, TIMESTAMPTZOID};
	Datum		args[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};

	if (validate(payload, &o) != NULL)
		return false;			/* was valid when it came; cannot happen */
	status = apply_guarded(&o, id, true, &error);
	args[0] = Int64GetDatum(id);
	args[1] = CStringGetTextDatum(status);
	if (error != NULL)
		args[2] = CStringGetTextDatum(error);
	else
		nulls[2] = 'n';
	args[3] = TimestampTzGetDatum(o.processed_at);
	if (error != NULL)
		nulls[3] = 'n';
	sqs_exec("UPDATE squadstack.webhook_inbox SET status = $2, error = $3, processed_at = $4"
			 " WHERE id = $1",
			 4, argtypes, args, nulls, SPI_OK_UPDATE);
	return error == NULL;
}

/*
 * squadstack_reapply(inbox_id bigint) and squadstack_reapply(campaign
 * text): apply again the inbox rows whose apply failed (status
 * apply_failed), oldest first; returns how many applied this time.
 */
Datum
squadstack_reapply(PG_FUNCTION_ARGS)
{
	Oid			argtype = get_fn_expr_argtype(fcinfo->flinfo, 0);
	Datum		arg;
	SPITupleTable *rows;
	uint64		n;
	uint64		i;
	int64		applied = 0;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the inbox id or campaign must not be null")));
	arg = PG_GETARG_DATUM(0);
	SPI_connect();
	if (argtype == INT8OID)
		sqs_exec("SELECT id, payload FROM squadstack.webhook_inbox"
				 " WHERE id = $1 AND status = 'apply_failed' FOR UPDATE",
				 1, &argtype, &arg, NULL, SPI_OK_SELECT);
	else
	{
		char	   *campaign = TextDatumGetCString(arg);

		sqs_check_campaign(campaign);
		argtype = TEXTOID;
		sqs_exec("SELECT id, payload FROM squadstack.webhook_inbox"
				 " WHERE campaign_id = $1 AND status = 'apply_failed'"
				 " ORDER BY id FOR UPDATE",
				 1, &argtype, &arg, NULL, SPI_OK_SELECT);
	}
	rows = SPI_tuptable;
	n = SPI_processed;
	for (i = 0; i < n; i++)
	{
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(rows->vals[i], rows->tupdesc, 1, &isnull));
		Jsonb	   *payload = DatumGetJsonbP(SPI_getbinval(rows->vals[i], rows->tupdesc, 2, &isnull));

		CHECK_FOR_INTERRUPTS();
		if (reapply_row(id, payload))
			applied++;
	}
	SPI_finish();
	PG_RETURN_INT64(applied);
}
