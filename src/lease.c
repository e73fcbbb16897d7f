/*-------------------------------------------------------------------------
 *
 * lease.c
 *		Leasing one call's operations of a campaign: the first sendable
 *		one, more of its kind as fit in a request, and the request itself.
 *
 * An operation is sendable when it is due and no earlier operation of the
 * same lead is still queued, being sent or in the intake.  Runs inside the
 * claim's transaction (claim.c), which has picked the campaign and taken
 * the lock that serialises claims; the rows found are locked FOR UPDATE.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "lease.h"
#include "spi_util.h"

/* most operations failed at once while looking for one to send */
#define MAX_FAIL_FAST 100

/* The URL of a call: <api_url>/leads/<operation>/<campaign>/ */
static char *
op_url(const SquadstackConfig *cfg, SquadstackOp op, const char *campaign)
{
	size_t		len = strlen(cfg->api_url);

	while (len > 0 && cfg->api_url[len - 1] == '/')
		len--;
	return psprintf("%.*s/leads/%s/%s/", (int) len, cfg->api_url, squadstack_op_name(op), campaign);
}

/*
 * The condition under which an operation o is held back: an earlier
 * operation of the same lead is queued or being sent, or still in the
 * intake.  A failed earlier operation holds nothing back (an update or
 * convert behind a failed create fails instead, see first_sendable).
 */
#define NOT_HELD_BACK \
	"  AND NOT EXISTS (SELECT 1 FROM squadstack.outbox e" \
	"                  WHERE e.campaign_id = o.campaign_id AND e.lead_id = o.lead_id" \
	"                    AND e.id < o.id AND e.state IN ('queued', 'sending')" \
	"                  OFFSET 0)" \
	"  AND NOT EXISTS (SELECT 1 FROM squadstack.intake i" \
	"                  WHERE i.campaign_id = o.campaign_id AND i.lead_id = o.lead_id" \
	"                    AND i.id < o.id" \
	"                  OFFSET 0) "

/*
 * The first sendable operation of the campaign, locked.  An update or
 * convert whose lead's create failed (and was not created since) is failed
 * at once, naming that create, and the next one is looked at.  Returns
 * false if there is none; *op and *batch_limit (0: none) describe it.
 */
static bool
first_sendable(const char *campaign, SquadstackOp *op, int *batch_limit)
{
	Oid			argtypes[3] = {TEXTOID, INT8OID, INT8OID};
	Datum		args[3];
	int			tries;

	args[0] = CStringGetTextDatum(campaign);
	for (tries = 0; tries < MAX_FAIL_FAST; tries++)
	{
		bool		isnull;
		Datum		failed_create;

		CHECK_FOR_INTERRUPTS();
		SQUADSTACK_EXEC_KEPT("SELECT o.op, o.batch_limit, o.id,"
				 "  CASE WHEN o.op IN ('update', 'convert') THEN ("
				 "    SELECT f.id FROM squadstack.outbox f"
				 "    WHERE f.campaign_id = o.campaign_id AND f.lead_id = o.lead_id"
				 "      AND f.id < o.id AND f.op = 'create' AND f.state = 'failed'"
				 "      AND NOT EXISTS (SELECT 1 FROM squadstack.leads l"
				 "                      WHERE l.campaign_id = o.campaign_id"
				 "                        AND l.lead_id = o.lead_id AND l.status <> 'failed')"
				 "    ORDER BY f.id DESC LIMIT 1) END "
				 "FROM squadstack.outbox o "
				 "WHERE o.campaign_id = $1 AND o.state = 'queued' AND o.next_attempt_at <= now() "
				 NOT_HELD_BACK
				 "ORDER BY o.next_attempt_at, o.id LIMIT 1 FOR UPDATE OF o SKIP LOCKED",
				 1, argtypes, args, NULL, SPI_OK_SELECT);
		if (SPI_processed == 0)
			return false;

		failed_create = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &isnull);
		if (isnull)
		{
			Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);

			*batch_limit = isnull ? 0 : DatumGetInt32(d);
			*op = squadstack_op_from_name(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
			return true;
		}
		args[1] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull);
		args[2] = failed_create;
		SQUADSTACK_EXEC_KEPT("UPDATE squadstack.outbox SET state = 'failed',"
				 " error = pg_catalog.format('not sent: the create of lead \"%s\" failed"
				 " (operation %s)', lead_id, $3::text) "
				 "WHERE id = $2",
				 3, argtypes, args, NULL, SPI_OK_UPDATE);
	}
	return false;
}

/* Mark operations that can never fit in a request failed, without a call. */
static void
fail_too_large(Datum id, int64 size, int max)
{
	Oid			argtypes[2] = {INT8OID, TEXTOID};
	Datum		args[2];

	args[0] = id;
	args[1] = CStringGetTextDatum(psprintf("the operation has " INT64_FORMAT " bytes as JSON, "
										   "more than squadstack.max_request_bytes (%d): not sent",
										   size, max));
	SQUADSTACK_EXEC_KEPT("UPDATE squadstack.outbox SET state = 'failed', error = $2 WHERE id = $1",
			 2, argtypes, args, NULL, SPI_OK_UPDATE);
}

/*
 * Lease the operations of one call for the campaign: the first sendable
 * operation and, for create and disable, more of the same kind up to the
 * batch size, as many as fit in max_request_bytes.  Operations split off a
 * failed batch, or re-sent after a crash, go only with others of the same
 * batch limit, so that halving converges.  Fills in b's operations, body,
 * method and URL, allocated in cxt, and returns true.
 *
 * While the budget is scarce (scarce), a partial batch whose oldest
 * operation is younger than the linger time is not sent yet: the calls
 * left are better spent on fuller batches.  Returns false then, with the
 * time the batch waits until in *linger_until; otherwise false with
 * *linger_until 0 when nothing can be sent.
 */
bool
squadstack_lease(const SquadstackConfig *cfg, const char *campaign, bool scarce,
				 MemoryContext cxt, SquadstackBatch *b, TimestampTz *linger_until)
{
	Oid			argtypes[4] = {TEXTOID, TEXTOID, INT4OID, INT4OID};
	Datum		args[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	SquadstackOp		op;
	int			batch_limit;
	int			limit;
	bool		batched;
	bool		cut = false;
	TimestampTz oldest = 0;
	int64		body_size;
	int			n = 0;
	uint64		i;
	uint64		found;
	SPITupleTable *cand;
	Datum	   *ids;
	int		   *attempts;
	bool	   *uncertain;
	MemoryContext old;

	*linger_until = 0;
	if (!first_sendable(campaign, &op, &batch_limit))
		return false;
	batched = squadstack_op_is_batched(op);
	limit = batched ? cfg->batch_size : 1;
	if (batch_limit > 0)
	{
		limit = Min(limit, batch_limit);
		args[2] = Int32GetDatum(batch_limit);
	}
	else
		nulls[2] = 'n';
	args[0] = CStringGetTextDatum(campaign);
	args[1] = CStringGetTextDatum(squadstack_op_name(op));
	args[3] = Int32GetDatum(limit);

	/* sizes first: the payloads are read only for what fits */
	SQUADSTACK_EXEC_KEPT("SELECT o.id, o.attempts, o.uncertain, octet_length(o.payload::text),"
			 "  o.created_at "
			 "FROM squadstack.outbox o "
			 "WHERE o.campaign_id = $1 AND o.op = $2 AND o.state = 'queued'"
			 "  AND o.next_attempt_at <= now()"
			 "  AND o.batch_limit IS NOT DISTINCT FROM $3"
			 NOT_HELD_BACK
			 "ORDER BY o.next_attempt_at, o.id LIMIT $4 FOR UPDATE OF o SKIP LOCKED",
			 4, argtypes, args, nulls, SPI_OK_SELECT);
	cand = SPI_tuptable;
	found = SPI_processed;
	if (found == 0)
		return false;

	old = MemoryContextSwitchTo(cxt);
	ids = palloc(sizeof(Datum) * found);
	attempts = palloc(sizeof(int) * found);
	uncertain = palloc(sizeof(bool) * found);
	MemoryContextSwitchTo(old);

	body_size = batched ? 2 : 0;	/* the brackets */
	for (i = 0; i < found; i++)
	{
		HeapTuple	tup = cand->vals[i];
		TupleDesc	td = cand->tupdesc;
		bool		isnull;
		Datum		id = SPI_getbinval(tup, td, 1, &isnull);
		int64		size = DatumGetInt32(SPI_getbinval(tup, td, 4, &isnull));
		TimestampTz created = DatumGetTimestampTz(SPI_getbinval(tup, td, 5, &isnull));

		if (size + (batched ? 2 : 0) > cfg->max_request_bytes)
		{
			fail_too_large(id, size, cfg->max_request_bytes);
			continue;
		}
		if (body_size + size + (n > 0 ? 1 : 0) > cfg->max_request_bytes)
		{
			cut = true;
			break;
		}
		body_size += size + (n > 0 ? 1 : 0);
		ids[n] = Int64GetDatum(DatumGetInt64(id));
		attempts[n] = DatumGetInt32(SPI_getbinval(tup, td, 2, &isnull));
		uncertain[n] = DatumGetBool(SPI_getbinval(tup, td, 3, &isnull));
		if (oldest == 0 || created < oldest)
			oldest = created;
		n++;
	}
	if (n == 0)
		return false;

	if (cfg->linger && scarce && batched && !cut && n < cfg->batch_size && batch_limit == 0)
	{
		TimestampTz until = oldest +
			(int64) cfg->rate_window_ms * 1000 / Max(cfg->rate_limit, 1);

		if (until > GetCurrentTimestamp())
		{
			*linger_until = until;
			return false;
		}
	}

	/* the payloads, in the order of the ids */
	{
		Oid			pargtypes[1] = {INT8ARRAYOID};
		Datum		pargs[1];
		StringInfoData body;

		pargs[0] = PointerGetDatum(construct_array_builtin(ids, n, INT8OID));
		SQUADSTACK_EXEC_KEPT("SELECT o.payload::text FROM unnest($1) WITH ORDINALITY AS u(id, n)"
				 " JOIN squadstack.outbox o ON o.id = u.id ORDER BY u.n",
				 1, pargtypes, pargs, NULL, SPI_OK_SELECT);
		if (SPI_processed != (uint64) n)
			elog(ERROR, "leased operations of campaign \"%s\" disappeared", campaign);

		old = MemoryContextSwitchTo(cxt);
		initStringInfo(&body);
		if (batched)
			appendStringInfoChar(&body, '[');
		for (i = 0; i < (uint64) n; i++)
		{
			if (i > 0)
				appendStringInfoChar(&body, ',');
			appendStringInfoString(&body, SPI_getvalue(SPI_tuptable->vals[i],
													   SPI_tuptable->tupdesc, 1));
		}
		if (batched)
			appendStringInfoChar(&body, ']');
		b->body = body.data;
		b->op = op;
		b->n = n;
		b->ids = ids;
		b->attempts = attempts;
		b->uncertain = uncertain;
		b->method = squadstack_op_method(op);
		b->url = op_url(cfg, op, campaign);
		MemoryContextSwitchTo(old);
	}
	return true;
}
