/*-------------------------------------------------------------------------
 *
 * enqueue.c
 *		SQL functions that queue lead operations and retry failed ones.
 *
 * Operations are rows of squadstack.outbox written in the caller's
 * transaction: nothing is sent unless that transaction commits.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "enqueue.h"
#include "grants.h"
#include "intake.h"
#include "lead.h"
#include "lead_text.h"
#include "registry.h"
#include "shmem.h"
#include "spi_util.h"

PG_FUNCTION_INFO_V1(squadstack_create_leads);
PG_FUNCTION_INFO_V1(squadstack_disable_leads);
PG_FUNCTION_INFO_V1(squadstack_update_lead);
PG_FUNCTION_INFO_V1(squadstack_delete_lead);
PG_FUNCTION_INFO_V1(squadstack_convert_lead);
PG_FUNCTION_INFO_V1(squadstack_retry);

static SPIPlanPtr insert_plan = NULL;
static SPIPlanPtr create_plan = NULL;
static SPIPlanPtr create_skip_plan = NULL;
static bool create_skip_plan_has_intake = false;
static SPIPlanPtr one_plan = NULL;

static void
check_not_null(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", argname)));
}

/* Validate the campaign argument and return it as a C string. */
static char *
campaign_arg(FunctionCallInfo fcinfo)
{
	char	   *campaign = squadstack_campaign_arg(fcinfo, 0, false);

	squadstack_require_campaign(campaign, squadstack_calling_role());
	return campaign;
}

/*
 * One operation without skip_existing, as the sync trigger queues for each
 * row: single-row statements, whose executor start costs a fraction of the
 * unnest() form's.
 */
static int64
enqueue_one(const char *campaign, SquadstackOp op, SquadstackLeadOp *lop)
{
	Oid			argtypes[4] = {TEXTOID, TEXTOID, TEXTOID, JSONBOID};
	Datum		args[4];
	int			rc;

	SPI_connect();
	if (one_plan == NULL)
		one_plan = squadstack_prepare_kept("INSERT INTO squadstack.outbox (campaign_id, lead_id, op, payload) "
								"VALUES ($1, $2, $3, $4)",
								4, argtypes);
	args[0] = CStringGetTextDatum(campaign);
	args[1] = CStringGetTextDatum(lop->lead_id);
	args[2] = CStringGetTextDatum(squadstack_op_name(op));
	args[3] = JsonbPGetDatum(lop->payload);
	rc = SPI_execute_plan(one_plan, args, NULL, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "could not queue lead operation: %s", SPI_result_code_string(rc));
	if (op == SQUADSTACK_OP_CREATE)
		squadstack_registry_mark_queued(campaign,
								 PointerGetDatum(construct_array_builtin(&args[1], 1, TEXTOID)));
	SPI_finish();
	squadstack_note_work(campaign);
	return 1;
}

/*
 * Insert one outbox row per operation, in list order; see
 * squadstack_enqueue_arrays().
 */
int64
squadstack_enqueue(const char *campaign, SquadstackOp op, List *ops, bool skip_existing)
{
	int			n = list_length(ops);
	Datum	   *ids;
	Datum	   *payloads;
	SquadstackLeadArrays arrays;
	ListCell   *lc;
	int			i = 0;

	if (n == 1 && !skip_existing)
		return enqueue_one(campaign, op, linitial(ops));

	ids = palloc(sizeof(Datum) * n);
	payloads = palloc(sizeof(Datum) * n);
	foreach(lc, ops)
	{
		SquadstackLeadOp  *lop = lfirst(lc);

		CHECK_FOR_INTERRUPTS();
		ids[i] = CStringGetTextDatum(lop->lead_id);
		payloads[i] = JsonbPGetDatum(lop->payload);
		i++;
	}
	arrays.n = n;
	arrays.lead_ids = PointerGetDatum(construct_array_builtin(ids, n, TEXTOID));
	arrays.payloads = PointerGetDatum(construct_array(payloads, n, JSONBOID, -1, false,
													  TYPALIGN_INT));
	return squadstack_enqueue_arrays(campaign, op, &arrays, skip_existing);
}

/*
 * The statement that queues creates: with skip_existing, leads that are
 * known are left out.  Known leads: those in the registry, and creates
 * from sync triggers, which enter the registry only once answered: those
 * still in the intake and those moved to the outbox but not yet sent.
 * Each is looked up by its lead_id, through the index on (campaign_id,
 * lead_id, ...) of each table, so the cost follows the call's leads, not
 * the size of the queue.  Where the schema predates the intake, the same
 * without it.
 */
static char *
create_sql(bool skip_existing, bool has_intake)
{
	return psprintf("WITH u AS ("
					"  SELECT u.lead_id, u.payload, u.n"
					"  FROM unnest($2, $4) WITH ORDINALITY AS u(lead_id, payload, n)"
					"  %s%s),"
					"ins AS ("
					"  INSERT INTO squadstack.outbox (campaign_id, lead_id, op, payload)"
					"  SELECT $1, u.lead_id, $3, u.payload FROM u ORDER BY u.n"
					"  RETURNING lead_id) "
					"SELECT count(*), array_agg(lead_id) FROM ins",
					!skip_existing ? "" :
					"WHERE NOT EXISTS ("
					"    SELECT 1 FROM squadstack.leads l"
					"    WHERE l.campaign_id = $1 AND l.lead_id = u.lead_id"
					"      AND l.status <> ALL ('{deleted,failed}'))"
					"  AND NOT EXISTS ("
					"    SELECT 1 FROM squadstack.outbox o"
					"    WHERE o.campaign_id = $1 AND o.lead_id = u.lead_id"
					"      AND o.state IN ('queued', 'sending') AND o.op = 'create')",
					!(skip_existing && has_intake) ? "" :
					/* a create a sync trigger queued counts as queued */
					"  AND NOT EXISTS ("
					"    SELECT 1 FROM squadstack.intake i"
					"    WHERE i.campaign_id = $1 AND i.lead_id = u.lead_id"
					"      AND i.op = 'create')");
}

/*
 * Insert one outbox row per operation, in the arrays' order, so ids follow
 * the order the caller gave.  A create also enters the lead in the
 * registry (squadstack.leads) as queued (registry.c); with skip_existing, a lead the
 * registry already knows (queued, created, disabled or converted) is left
 * out.  Returns the number of operations queued.
 */
int64
squadstack_enqueue_arrays(const char *campaign, SquadstackOp op, SquadstackLeadArrays *ops,
				   bool skip_existing)
{
	Datum		args[4];
	Oid			argtypes[4] = {TEXTOID, TEXTARRAYOID, TEXTOID, JSONBARRAYOID};
	SPIPlanPtr	plan;
	int			rc;
	int64		queued;
	bool		is_create = op == SQUADSTACK_OP_CREATE;

	SPI_connect();
	if (!is_create)
	{
		if (insert_plan == NULL)
			insert_plan = squadstack_prepare_kept("INSERT INTO squadstack.outbox (campaign_id, lead_id, op, payload) "
										   "SELECT $1, u.lead_id, $3, u.payload "
										   "FROM unnest($2, $4) WITH ORDINALITY AS u(lead_id, payload, n) "
										   "ORDER BY u.n",
										   4, argtypes);
		plan = insert_plan;
	}
	else if (!skip_existing)
	{
		if (create_plan == NULL)
			create_plan = squadstack_prepare_kept(create_sql(false, false), 4, argtypes);
		plan = create_plan;
	}
	else
	{
		bool		has_intake = OidIsValid(squadstack_intake_relid());

		if (create_skip_plan != NULL && create_skip_plan_has_intake != has_intake)
		{
			SPI_freeplan(create_skip_plan);
			create_skip_plan = NULL;
		}
		if (create_skip_plan == NULL)
		{
			create_skip_plan = squadstack_prepare_kept(create_sql(true, has_intake), 4, argtypes);
			create_skip_plan_has_intake = has_intake;
		}
		plan = create_skip_plan;
	}

	args[0] = CStringGetTextDatum(campaign);
	args[1] = ops->lead_ids;
	args[2] = CStringGetTextDatum(squadstack_op_name(op));
	args[3] = ops->payloads;
	rc = SPI_execute_plan(plan, args, NULL, false, 0);
	if (is_create)
	{
		bool		isnull;

		if (rc != SPI_OK_SELECT)
			elog(ERROR, "could not queue lead operations: %s", SPI_result_code_string(rc));
		queued = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		if (queued > 0)
			squadstack_registry_mark_queued(campaign, SPI_getbinval(SPI_tuptable->vals[0],
															 SPI_tuptable->tupdesc, 2, &isnull));
	}
	else
	{
		if (rc != SPI_OK_INSERT)
			elog(ERROR, "could not queue lead operations: %s", SPI_result_code_string(rc));
		queued = (int64) SPI_processed;
	}
	SPI_finish();
	if (queued > 0)
		squadstack_note_work(campaign);
	return queued;
}

Datum
squadstack_create_leads(PG_FUNCTION_ARGS)
{
	char	   *campaign = campaign_arg(fcinfo);
	SquadstackLeadArrays *ops;

	bool		skip_existing = PG_NARGS() < 3 || PG_ARGISNULL(2) || PG_GETARG_BOOL(2);

	check_not_null(fcinfo, 1, "leads");
	ops = squadstack_parse_create_leads(PG_GETARG_JSONB_P(1));
	PG_RETURN_INT64(squadstack_enqueue_arrays(campaign, SQUADSTACK_OP_CREATE, ops, skip_existing));
}

Datum
squadstack_disable_leads(PG_FUNCTION_ARGS)
{
	char	   *campaign = campaign_arg(fcinfo);
	SquadstackLeadArrays *ops;

	check_not_null(fcinfo, 1, "lead_ids");
	ops = squadstack_parse_disable_leads(PG_GETARG_JSONB_P(1));
	PG_RETURN_INT64(squadstack_enqueue_arrays(campaign, SQUADSTACK_OP_DISABLE, ops, false));
}

Datum
squadstack_update_lead(PG_FUNCTION_ARGS)
{
	char	   *campaign = campaign_arg(fcinfo);

	check_not_null(fcinfo, 1, "lead");
	PG_RETURN_INT64(squadstack_enqueue(campaign, SQUADSTACK_OP_UPDATE,
								list_make1(squadstack_parse_update_lead(PG_GETARG_JSONB_P(1))),
								false));
}

/* A lead_id given as a text argument, as a lead operation with that id. */
static SquadstackLeadOp *
lead_id_arg(FunctionCallInfo fcinfo, int argno)
{
	SquadstackLeadOp  *op = palloc(sizeof(SquadstackLeadOp));
	JsonbValue	v;

	check_not_null(fcinfo, argno, "lead_id");
	op->lead_id = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	v.type = jbvString;
	v.val.string.val = op->lead_id;
	v.val.string.len = strlen(op->lead_id);
	(void) squadstack_lead_id_from_jsonb(&v, "the lead");
	op->payload = NULL;
	return op;
}

/* Build {"lead_id": id[, "detail": detail]} through the jsonb input path. */
static Jsonb *
simple_payload(const char *lead_id, const char *detail)
{
	JsonbParseState *state = NULL;

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	squadstack_push_string_pair(&state, "lead_id", lead_id);
	if (detail != NULL)
		squadstack_push_string_pair(&state, "detail", detail);
	return JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL));
}

Datum
squadstack_delete_lead(PG_FUNCTION_ARGS)
{
	char	   *campaign = campaign_arg(fcinfo);
	SquadstackLeadOp  *op = lead_id_arg(fcinfo, 1);

	op->payload = simple_payload(op->lead_id, NULL);
	squadstack_check_lead_bytes(op->lead_id, op->payload);
	PG_RETURN_INT64(squadstack_enqueue(campaign, SQUADSTACK_OP_DELETE, list_make1(op), false));
}

Datum
squadstack_convert_lead(PG_FUNCTION_ARGS)
{
	char	   *campaign = campaign_arg(fcinfo);
	SquadstackLeadOp  *op = lead_id_arg(fcinfo, 1);
	char	   *detail;
	int			len;

	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("missing \"detail\" for lead \"%s\"", op->lead_id),
				 errdetail("A conversion needs a detail of 1 to %d characters.",
						   SQUADSTACK_MAX_DETAIL_LEN)));
	detail = text_to_cstring(PG_GETARG_TEXT_PP(2));
	len = pg_mbstrlen(detail);
	if (squadstack_text_is_blank(detail, strlen(detail)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("empty \"detail\" for lead \"%s\"", op->lead_id),
				 errdetail("A conversion needs a detail of 1 to %d characters, not only spaces or invisible characters.",
						   SQUADSTACK_MAX_DETAIL_LEN)));
	if (len > SQUADSTACK_MAX_DETAIL_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("\"detail\" is too long for lead \"%s\"", op->lead_id),
				 errdetail("A conversion detail has at most %d characters; this one has %d.",
						   SQUADSTACK_MAX_DETAIL_LEN, len)));

	op->payload = simple_payload(op->lead_id, detail);
	squadstack_check_lead_bytes(op->lead_id, op->payload);
	PG_RETURN_INT64(squadstack_enqueue(campaign, SQUADSTACK_OP_CONVERT, list_make1(op), false));
}

/*
 * Put failed operations back in the queue, oldest first, with a fresh count
 * of attempts.  NULL arguments match everything the caller may use.
 */
Datum
squadstack_retry(PG_FUNCTION_ARGS)
{
	Datum		args[3];
	char		nulls[3] = {' ', ' ', ' '};
	Oid			argtypes[3] = {TEXTOID, TEXTOID, OIDOID};
	uint64		n;
	Oid			role = squadstack_restricted_role(squadstack_calling_role());

	if (!PG_ARGISNULL(0))
	{
		char	   *campaign = text_to_cstring(PG_GETARG_TEXT_PP(0));

		squadstack_check_campaign(campaign);
		squadstack_require_campaign(campaign, squadstack_calling_role());
		args[0] = CStringGetTextDatum(campaign);
	}
	else
	{
		args[0] = (Datum) 0;
		nulls[0] = 'n';
	}
	if (!PG_ARGISNULL(1))
		args[1] = PG_GETARG_DATUM(1);
	else
	{
		args[1] = (Datum) 0;
		nulls[1] = 'n';
	}

	args[2] = ObjectIdGetDatum(role);

	SPI_connect();
	squadstack_exec("UPDATE squadstack.outbox "
			 "SET state = 'queued', attempts = 0, next_attempt_at = now() "
			 "WHERE state = 'failed' "
			 "AND ($1 IS NULL OR campaign_id = $1) "
			 "AND ($2 IS NULL OR lead_id = $2) "
			 "AND ($3 = 0 OR " SQUADSTACK_GRANTED_SQL("outbox.campaign_id", "$3") ")",
			 3, argtypes, args, nulls, SPI_OK_UPDATE);
	n = SPI_processed;
	SPI_finish();
	if (n > 0)
		squadstack_wake_worker_at_commit();
	PG_RETURN_INT64((int64) n);
}
