/*-------------------------------------------------------------------------
 *
 * registry.c
 *		The lead registry, squadstack.leads: every change of a lead's
 *		status is made here.
 *
 *	queued		a create is waiting to be sent (queued by a function)
 *	created		SquadStack accepted the create, an update, or reported an
 *				outcome of the lead
 *	failed		the create was refused; a later create may queue it again
 *	disabled, converted, deleted: the accepted operation of that name
 *
 * A delivery's update waits at most a short lock timeout for a registry
 * row a user's open transaction holds (one that queued a create of the
 * lead, or stored an outcome of it); it is then left for later
 * (outbox.record_pending) and applied at a later round.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "erase.h"
#include "guc.h"
#include "registry.h"
#include "spi_util.h"

/* most answers whose registry update waits, applied in one step */
#define MAX_PENDING_RECORDS 100

/*
 * How long the registry update of an answer waits for a row lock before it
 * is left for later (record_pending): a user's open transaction that
 * queued a create of the lead holds it.  Short, since it delays every
 * campaign; the wait is tried again at every round.
 */
#define REGISTRY_LOCK_TIMEOUT_MS 500

/* set when an answer's registry update was left for later */
static bool registry_deferred = false;

/*
 * Keep the lead registry in step with what the API accepted (or refused,
 * for a create), for the operations ids of kind op; erase a deleted lead.
 */
static void
record_registry(Datum ids, SquadstackOp op, bool accepted)
{
	Oid			argtypes[3] = {INT8ARRAYOID, TEXTOID, BOOLOID};
	Datum		args[3];
	const char *status;
	bool		overwrite = true;

	args[0] = ids;
	if (!accepted)
	{
		if (op != SQUADSTACK_OP_CREATE)
			return;
		/* a sync trigger's create enters the registry only now */
		SQUADSTACK_EXEC_KEPT("INSERT INTO squadstack.leads AS l (campaign_id, lead_id, status) "
				 "SELECT campaign_id, lead_id, 'failed' FROM squadstack.outbox "
				 "WHERE id = ANY ($1) AND state = 'failed' "
				 "ON CONFLICT (campaign_id, lead_id) DO UPDATE"
				 " SET status = 'failed', updated_at = now()"
				 " WHERE l.status = 'queued'",
				 1, argtypes, args, NULL, SPI_OK_INSERT);
		return;
	}

	switch (op)
	{
		case SQUADSTACK_OP_CREATE:
			status = "created";
			break;
		case SQUADSTACK_OP_DISABLE:
			status = "disabled";
			break;
		case SQUADSTACK_OP_CONVERT:
			status = "converted";
			break;
		case SQUADSTACK_OP_DELETE:
			status = "deleted";
			break;
		case SQUADSTACK_OP_UPDATE:
		default:
			/* an update says the lead exists, nothing more */
			status = "created";
			overwrite = false;
			break;
	}
	args[1] = CStringGetTextDatum(status);
	args[2] = BoolGetDatum(overwrite);
	SQUADSTACK_EXEC_KEPT("INSERT INTO squadstack.leads AS l (campaign_id, lead_id, status) "
			 "SELECT campaign_id, lead_id, $2 FROM squadstack.outbox WHERE id = ANY ($1) "
			 "ON CONFLICT (campaign_id, lead_id) DO UPDATE"
			 " SET status = CASE WHEN $3 OR l.status IN ('queued', 'failed')"
			 "                   THEN $2 ELSE l.status END,"
			 "     updated_at = now()",
			 3, argtypes, args, NULL, SPI_OK_INSERT);
	if (op == SQUADSTACK_OP_DELETE)
		squadstack_erase_deleted_leads(ids);
}

/* record_registry()'s arguments, for squadstack_try() */
typedef struct RegistryUpdate
{
	Datum		ids;
	SquadstackOp		op;
	bool		accepted;
} RegistryUpdate;

static void
record_registry_step(void *arg)
{
	RegistryUpdate *u = arg;

	/* ended with the subtransaction, or with the transaction */
	if (squadstack_lock_timeout_ms > REGISTRY_LOCK_TIMEOUT_MS)
		(void) set_config_option("lock_timeout",
								 CppAsString2(REGISTRY_LOCK_TIMEOUT_MS) "ms",
								 PGC_SUSET, PGC_S_SESSION, GUC_ACTION_LOCAL,
								 true, 0, false);
	record_registry(u->ids, u->op, u->accepted);
}

/*
 * record_registry() in a subtransaction.  If it fails (a user's open
 * transaction holds a registry row past the lock timeout, say), the
 * operations are marked record_pending and a later step applies it; the
 * rest of the answer stays recorded.  Returns whether it was applied.
 */
bool
squadstack_registry_record_answer(Datum ids, SquadstackOp op, bool accepted)
{
	RegistryUpdate u = {ids, op, accepted};
	char	   *error;
	Oid			argtypes[1] = {INT8ARRAYOID};

	if (squadstack_try(record_registry_step, &u, &error))
		return true;

	ereport(WARNING,
			(errmsg("could not update the lead registry after a %s call: %s",
					squadstack_op_name(op), error),
			 errdetail("It will be updated when the lock is free.")));
	SQUADSTACK_EXEC_KEPT("UPDATE squadstack.outbox SET record_pending = true WHERE id = ANY ($1)",
			 1, argtypes, &ids, NULL, SPI_OK_UPDATE);
	registry_deferred = true;
	return false;
}

/*
 * Apply registry updates that waited for a lock, a few at a time, each in
 * its own subtransaction.  Returns whether some are left.
 */
bool
squadstack_registry_apply_pending(void)
{
	SPITupleTable *pending;
	uint64		n;
	uint64		i;
	bool		left = false;

	SQUADSTACK_EXEC_KEPT("SELECT id, op, state FROM squadstack.outbox WHERE record_pending"
			 " ORDER BY id LIMIT " CppAsString2(MAX_PENDING_RECORDS),
			 0, NULL, NULL, NULL, SPI_OK_SELECT);
	pending = SPI_tuptable;
	n = SPI_processed;
	for (i = 0; i < n; i++)
	{
		bool		isnull;
		Datum		id = SPI_getbinval(pending->vals[i], pending->tupdesc, 1, &isnull);
		SquadstackOp		op = squadstack_op_from_name(SPI_getvalue(pending->vals[i], pending->tupdesc, 2));
		char	   *state = SPI_getvalue(pending->vals[i], pending->tupdesc, 3);
		Datum		ids = PointerGetDatum(construct_array_builtin(&id, 1, INT8OID));

		CHECK_FOR_INTERRUPTS();
		if (squadstack_registry_record_answer(ids, op, strcmp(state, "sent") == 0))
		{
			Oid			argtypes[1] = {INT8OID};

			SQUADSTACK_EXEC_KEPT("UPDATE squadstack.outbox SET record_pending = false WHERE id = $1",
					 1, argtypes, &id, NULL, SPI_OK_UPDATE);
		}
		else
			left = true;
	}
	return left || n == MAX_PENDING_RECORDS;
}


/* Whether an update was left for later since the last call; forgets it. */
bool
squadstack_registry_take_deferred(void)
{
	bool		deferred = registry_deferred;

	registry_deferred = false;
	return deferred;
}

/*
 * Lock the lead's registry row and say whether SquadStack accepted its
 * delete.  An outcome that arrives after that is applied without the
 * personal data (erase.c).  The lock makes an outcome that comes while the
 * delete's answer is being recorded wait for it, and see the lead deleted;
 * one stored just before holds the lock, and the erasure waits for it
 * instead.  (squadstack_registry_note_outcome() takes the same lock: taking it
 * here first, and not a weaker one, spares concurrent outcomes of one lead
 * a deadlock upgrading it.)
 */
bool
squadstack_registry_lock_is_deleted(const char *campaign, const char *lead_id)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		args[2];
	bool		isnull;

	if (plan == NULL)
		plan = squadstack_prepare_kept("SELECT status = 'deleted' FROM squadstack.leads"
								" WHERE campaign_id = $1 AND lead_id = $2 FOR UPDATE",
								2, argtypes);
	args[0] = CStringGetTextDatum(campaign);
	args[1] = CStringGetTextDatum(lead_id);
	squadstack_exec_plan(plan, args, NULL, SPI_OK_SELECT);
	return SPI_processed > 0 &&
		DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * An outcome of the lead was applied: it exists at SquadStack (created,
 * unless the registry knows better), with this latest outcome.
 */
void
squadstack_registry_note_outcome(const char *campaign, const char *lead_id,
						  const char *outcome, TimestampTz processed_at)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[4] = {TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID};
	Datum		args[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};

	if (plan == NULL)
		plan = squadstack_prepare_kept("INSERT INTO squadstack.leads AS l"
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
								4, argtypes);
	args[0] = CStringGetTextDatum(campaign);
	args[1] = CStringGetTextDatum(lead_id);
	if (outcome != NULL)
		args[2] = CStringGetTextDatum(outcome);
	else
		nulls[2] = 'n';
	args[3] = TimestampTzGetDatum(processed_at);
	squadstack_exec_plan(plan, args, nulls, SPI_OK_INSERT);
}

/*
 * Creates were queued by a function for these leads (text[]): the
 * registry knows them as queued, and again as queued where it knew them
 * as failed or deleted.
 */
void
squadstack_registry_mark_queued(const char *campaign, Datum lead_ids)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[2] = {TEXTOID, TEXTARRAYOID};
	Datum		args[2];

	if (plan == NULL)
		plan = squadstack_prepare_kept("INSERT INTO squadstack.leads AS l (campaign_id, lead_id, status)"
								" SELECT $1, u.lead_id, 'queued' FROM unnest($2) AS u(lead_id)"
								" ON CONFLICT (campaign_id, lead_id) DO UPDATE"
								" SET status = 'queued', updated_at = now()"
								" WHERE l.status = ANY ('{deleted,failed}')",
								2, argtypes);
	args[0] = CStringGetTextDatum(campaign);
	args[1] = lead_ids;
	squadstack_exec_plan(plan, args, NULL, SPI_OK_INSERT);
}
