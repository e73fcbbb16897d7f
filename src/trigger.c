/*-------------------------------------------------------------------------
 *
 * trigger.c
 *		squadstack_sync_trigger(): a row trigger that keeps SquadStack in
 *		step with a CRM table.
 *
 *		CREATE TRIGGER to_squadstack
 *			AFTER INSERT OR UPDATE OR DELETE ON crm.customers
 *			FOR EACH ROW EXECUTE FUNCTION squadstack_sync_trigger(
 *				'camp_1', 'lead_id=id', 'phone_number=mobile',
 *				'contact_name=full_name', 'is_KYC=kyc_status',
 *				'on_delete=disable', 'on_invalid=error');
 *
 * The first argument is the campaign id; each further one maps a lead field
 * to a column (field=column) or sets an option (on_delete=disable|delete|
 * ignore, on_invalid=error|skip; every argument starting with "on_" is an
 * option).  An INSERT queues a create, an UPDATE an update of the mapped
 * fields that changed, a DELETE a disable or a delete.  Operations are
 * validated exactly as the squadstack_* functions validate them and queued
 * in the CRM statement's transaction.
 *
 * This runs on every write to the CRM table, so the arguments are parsed
 * and the columns resolved once per trigger and backend and kept until the
 * table's relcache entry is invalidated (ALTER TABLE, CREATE OR REPLACE
 * TRIGGER, ...; trigger_args.c); a row then costs converting the mapped
 * columns to JSON values (trigger_row.c), validating them as a lead (lead.c,
 * which builds the payload) and appending that to squadstack.intake
 * (intake.c).
 *
 * The function is not SECURITY DEFINER: it runs as whoever writes the CRM
 * table, which needs no privilege on any squadstack table, because the
 * intake is written without privilege checks.  The rare statements it runs
 * through SPI (recording a skipped row) run as the function's owner with a
 * safe search_path, as a SECURITY DEFINER function would.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type_d.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/syscache.h"

#include "enqueue.h"
#include "grants.h"
#include "intake.h"
#include "lead.h"
#include "lead_field.h"
#include "op.h"
#include "spi_util.h"
#include "trigger_args.h"
#include "trigger_row.h"

PG_FUNCTION_INFO_V1(squadstack_sync_trigger);

/* what the error context callback reports */
typedef struct SyncErrorContext
{
	const char *trigger_name;
	const char *table_name;
	SquadstackOp op;
} SyncErrorContext;

static void
sync_error_callback(void *arg)
{
	SyncErrorContext *ec = (SyncErrorContext *) arg;

	errcontext("%s of squadstack sync trigger \"%s\" on table \"%s\"",
			   squadstack_op_name(ec->op), ec->trigger_name, ec->table_name);
}

/*
 * Record a row that on_invalid=skip leaves out, and warn.  Exceptional, so
 * it may plan its statement each time.
 */
static void
record_skip(SyncTrigger *st, SquadstackOp op, TupleTableSlot *slot,
			ErrorData *edata, ErrorContextCallback *errcallback)
{
	char	   *lead = squadstack_sync_row_lead_id(st, slot);
	Oid			rowtype = slot->tts_tupleDescriptor->tdtypeid;
	Datum		row = ExecFetchSlotHeapTupleDatum(slot);
	Oid			argtypes[8] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
	TEXTOID, TEXTOID, JSONBOID};
	Datum		args[8];
	char		nulls[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	SquadstackRunAs	oc;
	bool		isnull;

	args[0] = CStringGetTextDatum(st->table_name);
	args[1] = CStringGetTextDatum(st->trigger_name);
	args[2] = CStringGetTextDatum(squadstack_op_name(op));
	args[3] = CStringGetTextDatum(st->campaign);
	if (lead != NULL)
		args[4] = CStringGetTextDatum(lead);
	else
	{
		args[4] = (Datum) 0;
		nulls[4] = 'n';
	}
	args[5] = CStringGetTextDatum(unpack_sql_state(edata->sqlerrcode));
	args[6] = CStringGetTextDatum(edata->message);

	/*
	 * The row as jsonb is made as the writer: to_jsonb() may call casts to
	 * json that the table's column types bring, which must not run as the
	 * owner.  Only the insert runs as the owner.
	 */
	SPI_connect();
	squadstack_exec("SELECT pg_catalog.to_jsonb($1)", 1, &rowtype, &row, NULL, SPI_OK_SELECT);
	args[7] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	squadstack_run_as(st->owner, "pg_catalog, pg_temp", &oc);
	squadstack_exec("INSERT INTO squadstack.sync_skipped "
			 "(table_name, trigger_name, operation, campaign_id, lead_id, "
			 " sqlstate, error, row_data) "
			 "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
			 8, argtypes, args, nulls, SPI_OK_INSERT);
	squadstack_end_run_as(&oc);
	SPI_finish();

	/* the warning names trigger and table itself; no context line needed */
	error_context_stack = errcallback->previous;
	ereport(WARNING,
			(errcode(edata->sqlerrcode),
			 lead != NULL ?
			 errmsg("trigger \"%s\" on table \"%s\" skipped lead \"%s\": %s",
					st->trigger_name, st->table_name, lead, edata->message) :
			 errmsg("trigger \"%s\" on table \"%s\" skipped a row without lead_id: %s",
					st->trigger_name, st->table_name, edata->message),
			 edata->detail != NULL ? errdetail_internal("%s", edata->detail) : 0,
			 errhint("The trigger has on_invalid=skip; the row is recorded in squadstack.sync_skipped.")));
	error_context_stack = errcallback;
}

typedef enum SyncParse
{
	SYNC_PARSE_CREATE,
	SYNC_PARSE_UPDATE,
	SYNC_PARSE_LEAD_ID
} SyncParse;

/*
 * Validate the lead's fields as the squadstack_* functions validate a lead
 * object (a create, an update, or a lead_id alone for a disable or a
 * delete), without building that object first.
 */
static List *
parse_ops(SyncParse how, SquadstackLeadField *fields, int n)
{
	switch (how)
	{
		case SYNC_PARSE_CREATE:
			return list_make1(squadstack_parse_lead_fields(fields, n, false));
		case SYNC_PARSE_UPDATE:
			return list_make1(squadstack_parse_lead_fields(fields, n, true));
		case SYNC_PARSE_LEAD_ID:
			break;
	}
	return list_make1(squadstack_parse_lead_id(&fields[0].value));
}

/*
 * Queue validated operations: append them to the intake, or, where the
 * extension's schema predates the intake, insert them into the outbox as
 * the squadstack_* functions do.
 */
static void
queue_ops(SyncTrigger *st, SquadstackOp op, List *ops)
{
	Oid			intake = squadstack_intake_relid();
	ListCell   *lc;
	Oid			writer = GetUserId();
	SquadstackRunAs grants_as;

	/* the writer needs a grant of the campaign; the grants are the owner's */
	if (!squadstack_campaign_known(st->campaign, writer))
	{
		squadstack_run_as(st->owner, "pg_catalog, pg_temp", &grants_as);
		squadstack_require_campaign(st->campaign, writer);
		squadstack_end_run_as(&grants_as);
	}

	if (OidIsValid(intake))
	{
		/* each insert also wakes the worker for the campaign at commit */
		foreach(lc, ops)
			squadstack_intake_insert(intake, st->campaign, op, lfirst(lc));
	}
	else
	{
		SquadstackRunAs	oc;

		squadstack_run_as(st->owner, "pg_catalog, pg_temp", &oc);
		squadstack_enqueue(st->campaign, op, ops, false);
		squadstack_end_run_as(&oc);
	}
}

/*
 * Validate an operation and queue it.  With on_invalid=skip a lead that
 * fails validation (a data exception) is recorded and skipped instead: the
 * validation then runs in a subtransaction, as a PL/pgSQL exception block
 * would, so that its error can be caught.  The default path pays nothing
 * for that.
 */
static void
validate_and_queue(SyncTrigger *st, SquadstackOp op, SyncParse how,
				   SquadstackLeadField *fields, int n,
				   TupleTableSlot *slot, ErrorContextCallback *errcallback)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	List	   *volatile ops = NIL;
	ErrorData  *volatile edata = NULL;

	if (!st->skip_invalid)
	{
		queue_ops(st, op, parse_ops(how, fields, n));
		return;
	}

	BeginInternalSubTransaction(NULL);
	/* keep the result in the row's context, beyond the subtransaction */
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		ops = parse_ops(how, fields, n);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;

		/*
		 * Only an invalid lead is skipped (a value's error, or a lead over
		 * squadstack.max_lead_bytes); a cancel or a bug is not.
		 */
		if (ERRCODE_TO_CATEGORY(edata->sqlerrcode) != ERRCODE_DATA_EXCEPTION &&
			edata->sqlerrcode != ERRCODE_PROGRAM_LIMIT_EXCEEDED)
			ReThrowError(edata);
	}
	PG_END_TRY();

	if (edata != NULL)
		record_skip(st, op, slot, edata, errcallback);
	else
		queue_ops(st, op, ops);
}

static void
sync_insert(SyncTrigger *st, TupleTableSlot *slot, ErrorContextCallback *errcallback)
{
	SquadstackLeadField *fields = palloc(sizeof(SquadstackLeadField) * st->nfields);
	int			i;

	for (i = 0; i < st->nfields; i++)
		squadstack_sync_row_field(&fields[i], &st->fields[i], slot);
	validate_and_queue(st, SQUADSTACK_OP_CREATE, SYNC_PARSE_CREATE, fields, st->nfields,
					   slot, errcallback);
}

static void
sync_update(SyncTrigger *st, TupleTableSlot *oldslot, TupleTableSlot *newslot,
			ErrorContextCallback *errcallback)
{
	SyncField  *lead = &st->fields[st->lead_idx];
	SquadstackLeadField *fields = palloc(sizeof(SquadstackLeadField) * st->nfields);
	int			n = 0;
	bool		any = false;
	int			i;

	if (squadstack_sync_column_changed(lead, oldslot, newslot))
	{
		char	   *old_lead = squadstack_sync_row_lead_id(st, oldslot);
		char	   *new_lead = squadstack_sync_row_lead_id(st, newslot);

		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot change the lead_id of lead \"%s\" in table \"%s\"",
						old_lead ? old_lead : "(null)", st->table_name),
				 errdetail("Column \"%s\" would change from %s to %s, but trigger \"%s\" sends it as the lead's lead_id, which SquadStack cannot change.",
						   lead->column,
						   old_lead ? quote_literal_cstr(old_lead) : "NULL",
						   new_lead ? quote_literal_cstr(new_lead) : "NULL",
						   st->trigger_name),
				 errhint("Delete the row and insert it again with the new id.")));
	}

	/* the lead_id and the fields that changed, in key order */
	for (i = 0; i < st->nfields; i++)
	{
		SyncField  *f = &st->fields[i];

		if (i != st->lead_idx)
		{
			if (!squadstack_sync_column_changed(f, oldslot, newslot))
				continue;
			any = true;
		}
		squadstack_sync_row_field(&fields[n++], f, newslot);
	}
	/* nothing SquadStack knows of changed */
	if (!any)
		return;
	validate_and_queue(st, SQUADSTACK_OP_UPDATE, SYNC_PARSE_UPDATE, fields, n, newslot, errcallback);
}

/* op: a disable or a delete, as on_delete says */
static void
sync_delete(SyncTrigger *st, SquadstackOp op, TupleTableSlot *slot,
			ErrorContextCallback *errcallback)
{
	SquadstackLeadField field;

	squadstack_sync_row_field(&field, &st->fields[st->lead_idx], slot);
	validate_and_queue(st, op, SYNC_PARSE_LEAD_ID, &field, 1, slot, errcallback);
}

Datum
squadstack_sync_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TriggerEvent event;
	SyncTrigger *st;
	ErrorContextCallback errcallback;
	SyncErrorContext ec;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("squadstack_sync_trigger: not called by trigger manager")));
	event = trigdata->tg_event;
	if (!TRIGGER_FIRED_AFTER(event) || !TRIGGER_FIRED_FOR_ROW(event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("trigger \"%s\" on table \"%s\" must be an AFTER ... FOR EACH ROW trigger",
						trigdata->tg_trigger->tgname,
						quote_qualified_identifier(get_namespace_name(RelationGetNamespace(trigdata->tg_relation)),
												   RelationGetRelationName(trigdata->tg_relation))),
				 errdetail("squadstack_sync_trigger() queues each row's change once the row is written.")));

	st = squadstack_sync_trigger_get(fcinfo, trigdata);

	if (TRIGGER_FIRED_BY_DELETE(event) && st->on_delete == SYNC_DELETE_IGNORE)
		return PointerGetDatum(NULL);

	ec.trigger_name = st->trigger_name;
	ec.table_name = st->table_name;
	errcallback.callback = sync_error_callback;
	errcallback.arg = &ec;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;

	slot_getsomeattrs(trigdata->tg_trigslot, st->max_attnum);
	if (TRIGGER_FIRED_BY_INSERT(event))
	{
		ec.op = SQUADSTACK_OP_CREATE;
		sync_insert(st, trigdata->tg_trigslot, &errcallback);
	}
	else if (TRIGGER_FIRED_BY_UPDATE(event))
	{
		ec.op = SQUADSTACK_OP_UPDATE;
		slot_getsomeattrs(trigdata->tg_newslot, st->max_attnum);
		sync_update(st, trigdata->tg_trigslot, trigdata->tg_newslot, &errcallback);
	}
	else if (TRIGGER_FIRED_BY_DELETE(event))
	{
		ec.op = st->on_delete == SYNC_DELETE_DELETE ?
			SQUADSTACK_OP_DELETE : SQUADSTACK_OP_DISABLE;
		sync_delete(st, ec.op, trigdata->tg_trigslot, &errcallback);
	}

	error_context_stack = errcallback.previous;
	return PointerGetDatum(NULL);
}
