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

#include "erase.h"
#include "grants.h"
#include "lead.h"
#include "registry.h"
#include "spi_util.h"
#include "webhook_payload.h"
#include "webhook_secret.h"
#include "writeback.h"

PG_FUNCTION_INFO_V1(squadstack_receive_webhook);
PG_FUNCTION_INFO_V1(squadstack_webhook_inbox_apply);
PG_FUNCTION_INFO_V1(squadstack_reapply);


/* inbox columns the trigger sets */
#define INBOX_NCOLS 7
static const char *const inbox_cols[INBOX_NCOLS] = {
	"id", "payload", "status", "error", "campaign_id", "lead_id", "processed_at"
};


static SPIPlanPtr upsert_plan = NULL;
static SPIPlanPtr current_plan = NULL;
static SPIPlanPtr insert_plan = NULL;

/* ---------- applying ---------- */

/* Apply a valid payload; returns its status. */
static const char *
apply(SquadstackOutcome *o, int64 inbox_id)
{
	Datum		args[11];
	char		nulls[11];
	int			i;
	int			rc;
	bool		isnull;
	TimestampTz current;

	/* current_plan is prepared last: if any prepare fails, all are retried */
	if (current_plan == NULL)
	{
		Oid			types[11] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
		TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID, JSONBOID, INT8OID};

		if (upsert_plan == NULL)
			upsert_plan = squadstack_prepare_kept("INSERT INTO squadstack.lead_outcomes AS o"
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
		current_plan = squadstack_prepare_kept("SELECT processed_at FROM squadstack.lead_outcomes"
										" WHERE campaign_id = $1 AND lead_id = $2",
										2, types);
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
	if (squadstack_registry_lock_is_deleted(o->campaign_id, o->lead_id))
		squadstack_erase_outcome(o);

	for (i = 0; i < SQUADSTACK_NUM_TEXT_FIELDS; i++)
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

	squadstack_registry_note_outcome(o->campaign_id, o->lead_id,
							  o->fields[SQUADSTACK_FIELD_LEAD_OUTCOME], o->processed_at);
	return "applied";
}

/* apply()'s arguments and result, for squadstack_try() */
typedef struct ApplyStep
{
	SquadstackOutcome *o;
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
	squadstack_writeback_apply(((ApplyStep *) arg)->o);
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
apply_guarded(SquadstackOutcome *o, int64 inbox_id, bool reapplying, char **error)
{
	ApplyStep	a = {o, inbox_id, NULL};

	*error = NULL;
	if (squadstack_try(apply_step, &a, error) &&
		(strcmp(a.status, "applied") == 0 ||
		 (reapplying && strcmp(a.status, "duplicate") == 0)))
	{
		if (squadstack_try(writeback_step, &a, error))
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
	SquadstackOutcome		o;
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
		error = squadstack_webhook_validate(DatumGetJsonbP(d), &o);

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
		values[1] = JsonbPGetDatum(squadstack_erased_inbox_payload(o.campaign_id, o.lead_id));
		nulls[1] = false;
		tuple = heap_modify_tuple_by_cols(tuple, tupdesc, 1, attnums + 1, values + 1, nulls + 1);
	}
	tuple = heap_modify_tuple_by_cols(tuple, tupdesc, 5, attnums + 2, values + 2, nulls + 2);
	return PointerGetDatum(tuple);
}

/*
 * squadstack_receive_webhook(payload, secret): store one webhook payload
 * and return the HTTP status the endpoint should answer: 201 stored
 * (applied, duplicate or stale), 400 malformed (stored as rejected), 403
 * wrong secret (nothing stored).  The secret is the one of the payload's
 * campaign (squadstack_set_webhook_secret()).
 */
Datum
squadstack_receive_webhook(PG_FUNCTION_ARGS)
{
	Datum		args[1];
	Oid			argtypes[1] = {JSONBOID};
	int			rc;
	bool		rejected;
	SquadstackOutcome o;
	const char *campaign = NULL;

	args[0] = PG_ARGISNULL(0) ?
		DirectFunctionCall1(jsonb_in, CStringGetDatum("null")) : PG_GETARG_DATUM(0);
	if (squadstack_webhook_validate(DatumGetJsonbP(args[0]), &o) == NULL)
		campaign = o.campaign_id;

	SPI_connect();
	if (!squadstack_webhook_secret_ok(campaign,
									  PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1))))
	{
		SPI_finish();
		PG_RETURN_INT32(403);
	}

	if (insert_plan == NULL)
		insert_plan = squadstack_prepare_kept("INSERT INTO squadstack.webhook_inbox (payload) VALUES ($1)"
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
	SquadstackOutcome	o;
	const char *status;
	char	   *error;
	Oid			argtypes[4] = {INT8OID, TEXTOID, TEXTOID, TIMESTAMPTZOID};
	Datum		args[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};

	if (squadstack_webhook_validate(payload, &o) != NULL)
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
	squadstack_exec("UPDATE squadstack.webhook_inbox SET status = $2, error = $3, processed_at = $4"
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
	{
		Oid			types[2] = {INT8OID, OIDOID};
		Datum		args[2];

		/*
		 * A row of a campaign the caller may not use is not found, as in
		 * the views: nothing of it is locked or named.
		 */
		args[0] = arg;
		args[1] = ObjectIdGetDatum(squadstack_restricted_role(squadstack_calling_role()));
		squadstack_exec("SELECT id, payload FROM squadstack.webhook_inbox i"
				 " WHERE id = $1 AND status = 'apply_failed'"
				 " AND ($2 = 0 OR (i.campaign_id IS NOT NULL AND "
				 SQUADSTACK_GRANTED_SQL("i.campaign_id", "$2") "))"
				 " FOR UPDATE",
				 2, types, args, NULL, SPI_OK_SELECT);
	}
	else
	{
		char	   *campaign = TextDatumGetCString(arg);

		squadstack_check_campaign(campaign);
		squadstack_require_campaign(campaign, squadstack_calling_role());
		argtype = TEXTOID;
		squadstack_exec("SELECT id, payload FROM squadstack.webhook_inbox"
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
