/*-------------------------------------------------------------------------
 *
 * claim.c
 *		Step 1 of a call: claim one call's worth of due operations.
 *
 * In one short transaction: give back leases of senders that died, pick a
 * campaign with due work that is not backed off and whose token is
 * neither paused nor out of rate budget (limiter.c), move its oldest
 * operations from the intake into the outbox, lease the operations of the
 * call, as many as fit in squadstack.max_request_bytes, and admit the
 * call by writing its api_calls row.
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

#include "intake.h"
#include "limiter.h"
#include "outbox.h"
#include "spi_util.h"
#include "token.h"

/* what lease_operations() found for a campaign */
typedef enum LeaseResult
{
	LEASE_NONE,					/* nothing sendable now */
	LEASE_LEASED,				/* a call's worth, in the batch */
	LEASE_LINGER				/* a partial batch, worth waiting for more */
} LeaseResult;

/* the time a lease runs beyond the call's timeout */
#define LEASE_SLACK_MS 60000
/* most operations moved from the intake for one call */
#define MAX_INTAKE_MOVE 10000
/* most operations failed at once while looking for one to send */
#define MAX_FAIL_FAST 100

static char *
op_url(const SquadstackConfig *cfg, SquadstackOp op, const char *campaign)
{
	size_t		len = strlen(cfg->api_url);

	while (len > 0 && cfg->api_url[len - 1] == '/')
		len--;
	return psprintf("%.*s/leads/%s/%s/", (int) len, cfg->api_url, squadstack_op_name(op), campaign);
}

/* Note a time when something may become sendable, and why. */
static void
consider(SquadstackDeliveryResult *r, TimestampTz when, SquadstackWait why)
{
	if (r->next_wakeup == 0 || when < r->next_wakeup)
	{
		r->next_wakeup = when;
		r->waiting_for = why;
	}
}

/* Note a campaign with due work that cannot be sent before a time. */
static void
note_blocked(SquadstackDeliveryResult *r, const char *campaign, TimestampTz until)
{
	if (r->nblocked == SQUADSTACK_MAX_BLOCKED)
	{
		r->blocked_overflow = true;
		return;
	}
	strlcpy(r->blocked[r->nblocked].campaign, campaign, sizeof(r->blocked[0].campaign));
	r->blocked[r->nblocked].until = until;
	r->nblocked++;
}

/*
 * Give back the operations of calls whose sender is gone: its process no
 * longer runs (or is a newer one with the same pid), or its lease ran out.
 * Such a call may or may not have reached the API: its operations are
 * marked uncertain and re-sent one lead per call, so a lead the API
 * already accepted is recognised alone (OUTCOME_ALREADY_DONE).
 */
static void
recover_leases(void)
{
	SQUADSTACK_EXEC_KEPT("WITH r AS ("
			 "  UPDATE squadstack.outbox o"
			 "  SET state = 'queued', batch_limit = 1, next_attempt_at = now(), uncertain = true,"
			 "      lease_pid = NULL, leased_at = NULL, lease_expires_at = NULL"
			 "  WHERE o.state = 'sending'"
			 "    AND (o.lease_expires_at < now()"
			 "         OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity a"
			 "                        WHERE a.pid = o.lease_pid"
			 "                          AND a.backend_start <= o.leased_at))"
			 "  RETURNING o.call_id)"
			 "UPDATE squadstack.api_calls c"
			 "   SET error = 'no answer recorded: the sender stopped during the call'"
			 "  FROM (SELECT DISTINCT call_id FROM r) r"
			 " WHERE c.id = r.call_id AND c.http_status IS NULL AND c.error IS NULL",
			 0, NULL, NULL, NULL, SPI_OK_UPDATE);
}

/*
 * The condition under which an operation o is held back: an earlier
 * operation of the same lead is queued or being sent, or still in the
 * intake.  A failed earlier operation holds nothing back (an update or
 * convert behind a failed create fails instead, see lease_operations).
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
 * batch limit, so that halving converges.
 *
 * While the budget is scarce (scarce), a partial batch whose oldest
 * operation is younger than the linger time is not sent yet: the calls
 * left are better spent on fuller batches.
 */
static LeaseResult
lease_operations(const SquadstackConfig *cfg, const char *campaign, SquadstackBatch *b,
				 bool scarce, SquadstackDeliveryResult *r, MemoryContext cxt)
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

	if (!first_sendable(campaign, &op, &batch_limit))
		return LEASE_NONE;
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
		return LEASE_NONE;

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
		return LEASE_NONE;

	if (cfg->linger && scarce && batched && !cut && n < cfg->batch_size && batch_limit == 0)
	{
		TimestampTz until = oldest +
			(int64) cfg->rate_window_ms * 1000 / Max(cfg->rate_limit, 1);

		if (until > GetCurrentTimestamp())
		{
			consider(r, until, SQUADSTACK_WAIT_FULLER_BATCH);
			note_blocked(r, campaign, until);
			return LEASE_LINGER;
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
	return LEASE_LEASED;
}

/* Write the api_calls row that admits the call, and lease its operations. */
static void
start_call(const SquadstackConfig *cfg, SquadstackBatch *b)
{
	Oid			largtypes[3] = {INT8OID, INT8ARRAYOID, INT8OID};
	Datum		largs[3];

	b->call_id = squadstack_log_call_start(b->token_id, b->campaign, squadstack_op_name(b->op),
								   b->method, b->n);

	largs[0] = Int64GetDatum(b->call_id);
	largs[1] = PointerGetDatum(construct_array_builtin(b->ids, b->n, INT8OID));
	largs[2] = Int64GetDatum((int64) cfg->request_timeout_ms + LEASE_SLACK_MS);
	SQUADSTACK_EXEC_KEPT("UPDATE squadstack.outbox SET state = 'sending', call_id = $1,"
			 " lease_pid = pg_backend_pid(), leased_at = now(),"
			 " lease_expires_at = clock_timestamp() + $3 * interval '1 millisecond' "
			 "WHERE id = ANY ($2)",
			 3, largtypes, largs, NULL, SPI_OK_UPDATE);
}

/* a token refused in this claim, and until when */
typedef struct Refused
{
	char	   *token_id;
	SquadstackAdmit	admit;
} Refused;

static SquadstackWait
admission_wait(SquadstackAdmission a)
{
	switch (a)
	{
		case SQUADSTACK_NO_RATE_SLOT:
			return SQUADSTACK_WAIT_RATE_SLOT;
		case SQUADSTACK_TOKEN_PAUSED:
			return SQUADSTACK_WAIT_PAUSED_TOKEN;
		case SQUADSTACK_TOKEN_REFUSED:
			return SQUADSTACK_WAIT_TOKEN_CHANGE;
		case SQUADSTACK_ADMITTED:
			break;
	}
	return SQUADSTACK_WAIT_WORK;
}

/*
 * Claim one call's worth of work.  Campaigns are tried least recently
 * served first, so one with a large backlog does not starve the others on
 * the same token; a backed-off campaign waits its turn.  Returns false
 * when nothing can be sent now; r then says when something may become
 * sendable (0 if unknown), why, and which campaigns wait for what.
 */
bool
squadstack_claim(const SquadstackConfig *cfg, SquadstackBatch *b, SquadstackDeliveryResult *r, MemoryContext cxt,
		  char *campaign_out, size_t campaign_size)
{
	uint64		ncampaigns;
	SPITupleTable *found;
	List	   *refused = NIL;
	uint64		i;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	MemoryContext old;

	squadstack_lock_intake();
	recover_leases();

	SQUADSTACK_EXEC_KEPT("WITH RECURSIVE q(campaign_id) AS ("
			 "  (SELECT campaign_id FROM squadstack.outbox WHERE state = 'queued'"
			 "   ORDER BY campaign_id LIMIT 1)"
			 "  UNION ALL"
			 "  SELECT (SELECT o.campaign_id FROM squadstack.outbox o"
			 "          WHERE o.state = 'queued' AND o.campaign_id > q.campaign_id"
			 "          ORDER BY o.campaign_id LIMIT 1)"
			 "  FROM q WHERE q.campaign_id IS NOT NULL),"
			 "i(campaign_id) AS ("
			 "  (SELECT campaign_id FROM squadstack.intake ORDER BY campaign_id LIMIT 1)"
			 "  UNION ALL"
			 "  SELECT (SELECT n.campaign_id FROM squadstack.intake n"
			 "          WHERE n.campaign_id > i.campaign_id"
			 "          ORDER BY n.campaign_id LIMIT 1)"
			 "  FROM i WHERE i.campaign_id IS NOT NULL),"
			 "c AS (SELECT campaign_id FROM q WHERE campaign_id IS NOT NULL"
			 "      UNION SELECT campaign_id FROM i WHERE campaign_id IS NOT NULL) "
			 "SELECT c.campaign_id,"
			 "  CASE WHEN EXISTS (SELECT 1 FROM squadstack.intake n"
			 "                    WHERE n.campaign_id = c.campaign_id) THEN now()"
			 "  ELSE (SELECT min(o.next_attempt_at) FROM squadstack.outbox o"
			 "        WHERE o.state = 'queued' AND o.campaign_id = c.campaign_id) END,"
			 "  s.backoff_until "
			 "FROM c LEFT JOIN squadstack.campaign_state s ON s.campaign_id = c.campaign_id "
			 "ORDER BY (SELECT max(a.started_at) FROM squadstack.api_calls a"
			 "          WHERE a.campaign_id = c.campaign_id) NULLS FIRST, c.campaign_id",
			 0, NULL, NULL, NULL, SPI_OK_SELECT);
	found = SPI_tuptable;
	ncampaigns = SPI_processed;

	for (i = 0; i < ncampaigns; i++)
	{
		HeapTuple	tup = found->vals[i];
		bool		isnull;
		char	   *campaign = SPI_getvalue(tup, found->tupdesc, 1);
		TimestampTz due = DatumGetTimestampTz(SPI_getbinval(tup, found->tupdesc, 2, &isnull));
		Datum		backoff = SPI_getbinval(tup, found->tupdesc, 3, &isnull);
		char	   *token;
		char	   *token_id;
		SquadstackAdmit	admit;
		ListCell   *lc;
		Refused    *was_refused = NULL;
		LeaseResult leased;
		bool		scarce;

		CHECK_FOR_INTERRUPTS();
		strlcpy(campaign_out, campaign, campaign_size);
		if (!isnull && DatumGetTimestampTz(backoff) > now)
		{
			consider(r, DatumGetTimestampTz(backoff), SQUADSTACK_WAIT_BACKOFF);
			note_blocked(r, campaign, DatumGetTimestampTz(backoff));
			continue;
		}
		if (due > now)
		{
			consider(r, due, SQUADSTACK_WAIT_RETRY);
			continue;
		}
		token = squadstack_campaign_token(campaign, cfg);
		if (token == NULL)
		{
			/* shown as paused in queue_status; a new token wakes the worker */
			note_blocked(r, campaign, 0);
			continue;
		}
		token_id = squadstack_token_id(token);

		/*
		 * A token refused once stays refused in this claim: a slot that
		 * frees meanwhile goes to the campaign whose turn it was, next time.
		 */
		foreach(lc, refused)
		{
			Refused    *rf = lfirst(lc);

			if (strcmp(rf->token_id, token_id) == 0)
				was_refused = rf;
		}
		if (was_refused != NULL)
		{
			note_blocked(r, campaign, was_refused->admit.until);
			continue;
		}
		if (squadstack_admit_call(cfg, token_id, &admit) != SQUADSTACK_ADMITTED)
		{
			Refused    *rf = palloc(sizeof(Refused));

			rf->token_id = token_id;
			rf->admit = admit;
			refused = lappend(refused, rf);
			if (admit.until != 0)
				consider(r, admit.until, admission_wait(admit.result));
			else if (r->next_wakeup == 0)
				r->waiting_for = admission_wait(admit.result);
			note_blocked(r, campaign, admit.until);
			continue;
		}

		/*
		 * The intake's oldest operations join the outbox as calls need them:
		 * what this call needs while the budget is scarce, what the calls
		 * of the next moments need while it is not (each move reads the
		 * campaign's whole intake to find its oldest rows).
		 */
		scarce = admit.used * 2 >= cfg->rate_limit;
		squadstack_absorb_intake(campaign,
								 Min(Max(cfg->batch_size * (scarce ? 2 : 20), 100),
									 MAX_INTAKE_MOVE));

		leased = lease_operations(cfg, campaign, b, scarce, r, cxt);
		if (leased != LEASE_LEASED)
			continue;

		old = MemoryContextSwitchTo(cxt);
		b->campaign = pstrdup(campaign);
		b->token = pstrdup(token);
		b->token_id = pstrdup(token_id);
		MemoryContextSwitchTo(old);
		start_call(cfg, b);
		return true;
	}
	campaign_out[0] = '\0';
	return false;
}
