/*-------------------------------------------------------------------------
 *
 * deliver.c
 *		Send due outbox operations to the SquadStack API.
 *
 * Each call goes through three steps:
 *
 *	1. claim (one short transaction): give back leases of senders that died,
 *	   pick a campaign with due work that is not backed off and whose token
 *	   is neither paused nor out of rate budget (limiter.c), move its oldest
 *	   operations from the intake into the outbox, and lease the operations
 *	   of the call, as many as fit in squadstack.max_request_bytes;
 *	2. the HTTP call, with no transaction, snapshot or lock held;
 *	3. record (one short transaction): complete the api_calls row and move
 *	   the operations on according to the answer; the lead registry and the
 *	   erasure of a deleted lead follow in a subtransaction, so that a user's
 *	   transaction holding a registry row delays them, not the outbox.
 *
 * An ERROR in any step is caught: it is recorded on the call's operations
 * and in api_calls, the campaign is backed off (squadstack.campaign_state),
 * and delivery goes on with the next campaign.  The processes that deliver
 * run with squadstack.lock_timeout, so no lock is waited for long.
 *
 * Must run in a process outside any transaction (a background worker).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type_d.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "backoff.h"
#include "erase.h"
#include "http.h"
#include "limiter.h"
#include "squadstack.h"
#include "version.h"

/* how a call's answer moves its operations on */
typedef enum CallOutcome
{
	OUTCOME_SENT,				/* 2xx */
	OUTCOME_ALREADY_DONE,		/* re-sent after an uncertain attempt, and done */
	OUTCOME_FAILED,				/* permanent: 400 on one lead, 404, 405 */
	OUTCOME_SPLIT,				/* 400 or 413 on several leads: retry in halves */
	OUTCOME_AUTH_PAUSE,			/* 401/403: pause the token until it changes */
	OUTCOME_PAUSE,				/* 429/503: pause the token for a while */
	OUTCOME_RETRY				/* 5xx, network trouble */
} CallOutcome;

/* one claimed call */
typedef struct Batch
{
	int64		call_id;
	char	   *campaign;
	char	   *op;
	char	   *method;
	char	   *url;
	char	   *token;
	char	   *token_id;
	char	   *body;
	int			n;
	Datum	   *ids;			/* int8 datums */
	int		   *attempts;
	bool	   *uncertain;
} Batch;

/* what lease_operations() found for a campaign */
typedef enum LeaseResult
{
	LEASE_NONE,					/* nothing sendable now */
	LEASE_LEASED,				/* a call's worth, in the Batch */
	LEASE_LINGER				/* a partial batch, worth waiting for more */
} LeaseResult;

#define LEASE_SLACK_MS 60000
#define MAX_ERROR_TEXT 8192
/* most operations moved from the intake for one call */
#define MAX_INTAKE_MOVE 10000
/* most operations failed at once while looking for one to send */
#define MAX_FAIL_FAST 100
/* most answers whose registry update waits, applied in one step */
#define MAX_PENDING_RECORDS 100

/*
 * How long the registry update of an answer waits for a row lock before it
 * is left for later (record_pending): a user's open transaction that
 * queued a create of the lead holds it.  Short, since it delays every
 * campaign; the wait is tried again at every round.
 */
#define REGISTRY_LOCK_TIMEOUT "500ms"

/* set when an answer's registry update was left for later */
static bool registry_deferred = false;

/* the campaign being claimed, for the error handler (not palloc'd) */
static char current_campaign[SQS_MAX_CAMPAIGN_LEN + 1];

const char *
sqs_wait_text(SqsWait wait)
{
	switch (wait)
	{
		case SQS_WAIT_WORK:
			return "work";
		case SQS_WAIT_RETRY:
			return "a retry";
		case SQS_WAIT_RATE_SLOT:
			return "a rate slot";
		case SQS_WAIT_PAUSED_TOKEN:
			return "a paused token";
		case SQS_WAIT_TOKEN_CHANGE:
			return "a token to be changed";
		case SQS_WAIT_BACKOFF:
			return "a campaign to be retried after errors";
		case SQS_WAIT_FULLER_BATCH:
			return "a fuller batch";
		case SQS_WAIT_ERROR:
			return "a retry after an error";
	}
	return "work";
}

static const char *
op_method(const char *op)
{
	return strcmp(op, "update") == 0 ? "PATCH" : "POST";
}

static bool
op_is_batched(const char *op)
{
	return strcmp(op, "create") == 0 || strcmp(op, "disable") == 0;
}

static char *
op_url(const SqsConfig *cfg, const char *op, const char *campaign)
{
	size_t		len = strlen(cfg->api_url);

	while (len > 0 && cfg->api_url[len - 1] == '/')
		len--;
	return psprintf("%.*s/leads/%s/%s/", (int) len, cfg->api_url, op, campaign);
}

/*
 * Settings for a process that delivers (the worker, a flush or response
 * sync job), right after it connects, as a superuser.
 */
void
sqs_set_delivery_session(int lock_timeout_ms)
{
	char		timeout[32];

	/*
	 * Its statements name functions and operators without a schema: only
	 * pg_catalog's may be found, never an overload that a role with CREATE
	 * on some schema in the default search_path has put there.
	 */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
	/* the limiter relies on each statement seeing what others committed */
	SetConfigOption("default_transaction_isolation", "read committed",
					PGC_SUSET, PGC_S_OVERRIDE);

	/*
	 * The statements touch a few rows each, but with a large outbox their
	 * estimated cost (before LIMIT) passes jit_above_cost: compiling them
	 * would cost far more than running them, on every call, and the memory
	 * JIT takes is not all given back.
	 */
	SetConfigOption("jit", "off", PGC_SUSET, PGC_S_OVERRIDE);

	/* a user's open transaction may delay a step, never stop delivery */
	snprintf(timeout, sizeof(timeout), "%d", lock_timeout_ms);
	SetConfigOption("lock_timeout", timeout, PGC_SUSET, PGC_S_OVERRIDE);
}

/*
 * Whether the extension's schema in this database is the one this library
 * delivers with (between installing a new version and ALTER EXTENSION
 * UPDATE it is older).  Must run in a transaction.
 */
bool
sqs_schema_is_current(void)
{
	bool		current;
	bool		isnull;
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];

	args[0] = CStringGetTextDatum(SQS_VERSION);
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	sqs_exec("SELECT extversion = $1"
			 " FROM pg_catalog.pg_extension WHERE extname = 'squadstack'",
			 1, argtypes, args, NULL, SPI_OK_SELECT);
	current = SPI_processed == 1 &&
		DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	PopActiveSnapshot();
	SPI_finish();
	return current;
}

/* Note a time when something may become sendable, and why. */
static void
consider(SqsDeliveryResult *r, TimestampTz when, SqsWait why)
{
	if (r->next_wakeup == 0 || when < r->next_wakeup)
	{
		r->next_wakeup = when;
		r->waiting_for = why;
	}
}

/* Note a campaign with due work that cannot be sent before a time. */
static void
note_blocked(SqsDeliveryResult *r, const char *campaign, TimestampTz until)
{
	if (r->nblocked == SQS_MAX_BLOCKED)
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
	sqs_exec("WITH r AS ("
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
first_sendable(const char *campaign, char **op, int *batch_limit, MemoryContext cxt)
{
	Oid			argtypes[3] = {TEXTOID, INT8OID, INT8OID};
	Datum		args[3];
	int			tries;

	args[0] = CStringGetTextDatum(campaign);
	for (tries = 0; tries < MAX_FAIL_FAST; tries++)
	{
		bool		isnull;
		Datum		failed_create;
		MemoryContext old;

		CHECK_FOR_INTERRUPTS();
		sqs_exec("SELECT o.op, o.batch_limit, o.id,"
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
			old = MemoryContextSwitchTo(cxt);
			*op = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
			MemoryContextSwitchTo(old);
			return true;
		}
		args[1] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull);
		args[2] = failed_create;
		sqs_exec("UPDATE squadstack.outbox SET state = 'failed',"
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
	sqs_exec("UPDATE squadstack.outbox SET state = 'failed', error = $2 WHERE id = $1",
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
lease_operations(const SqsConfig *cfg, const char *campaign, Batch *b,
				 bool scarce, SqsDeliveryResult *r, MemoryContext cxt)
{
	Oid			argtypes[4] = {TEXTOID, TEXTOID, INT4OID, INT4OID};
	Datum		args[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	char	   *op;
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

	if (!first_sendable(campaign, &op, &batch_limit, cxt))
		return LEASE_NONE;
	batched = op_is_batched(op);
	limit = batched ? cfg->batch_size : 1;
	if (batch_limit > 0)
	{
		limit = Min(limit, batch_limit);
		args[2] = Int32GetDatum(batch_limit);
	}
	else
		nulls[2] = 'n';
	args[0] = CStringGetTextDatum(campaign);
	args[1] = CStringGetTextDatum(op);
	args[3] = Int32GetDatum(limit);

	/* sizes first: the payloads are read only for what fits */
	sqs_exec("SELECT o.id, o.attempts, o.uncertain, octet_length(o.payload::text),"
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
			consider(r, until, SQS_WAIT_FULLER_BATCH);
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
		sqs_exec("SELECT o.payload::text FROM unnest($1) WITH ORDINALITY AS u(id, n)"
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
		b->method = pstrdup(op_method(op));
		b->url = op_url(cfg, op, campaign);
		MemoryContextSwitchTo(old);
	}
	return LEASE_LEASED;
}

/* Write the api_calls row that admits the call, and lease its operations. */
static void
start_call(const SqsConfig *cfg, Batch *b)
{
	Oid			largtypes[3] = {INT8OID, INT8ARRAYOID, INT8OID};
	Datum		largs[3];

	b->call_id = sqs_log_call_start(b->token_id, b->campaign, b->op, b->method, b->n);

	largs[0] = Int64GetDatum(b->call_id);
	largs[1] = PointerGetDatum(construct_array_builtin(b->ids, b->n, INT8OID));
	largs[2] = Int64GetDatum((int64) cfg->request_timeout_ms + LEASE_SLACK_MS);
	sqs_exec("UPDATE squadstack.outbox SET state = 'sending', call_id = $1,"
			 " lease_pid = pg_backend_pid(), leased_at = now(),"
			 " lease_expires_at = clock_timestamp() + $3 * interval '1 millisecond' "
			 "WHERE id = ANY ($2)",
			 3, largtypes, largs, NULL, SPI_OK_UPDATE);
}

/* a token refused in this claim, and until when */
typedef struct Refused
{
	char	   *token_id;
	SqsAdmit	admit;
} Refused;

static SqsWait
admission_wait(SqsAdmission a)
{
	switch (a)
	{
		case SQS_NO_RATE_SLOT:
			return SQS_WAIT_RATE_SLOT;
		case SQS_TOKEN_PAUSED:
			return SQS_WAIT_PAUSED_TOKEN;
		case SQS_TOKEN_REFUSED:
			return SQS_WAIT_TOKEN_CHANGE;
		case SQS_ADMITTED:
			break;
	}
	return SQS_WAIT_WORK;
}

/*
 * Claim one call's worth of work.  Campaigns are tried least recently
 * served first, so one with a large backlog does not starve the others on
 * the same token; a backed-off campaign waits its turn.  Returns false
 * when nothing can be sent now; r then says when something may become
 * sendable (0 if unknown), why, and which campaigns wait for what.
 */
static bool
claim(const SqsConfig *cfg, Batch *b, SqsDeliveryResult *r, MemoryContext cxt)
{
	uint64		ncampaigns;
	SPITupleTable *found;
	List	   *refused = NIL;
	uint64		i;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	MemoryContext old;

	sqs_lock_intake();
	recover_leases();

	sqs_exec("WITH RECURSIVE q(campaign_id) AS ("
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
		SqsAdmit	admit;
		ListCell   *lc;
		Refused    *was_refused = NULL;
		LeaseResult leased;

		CHECK_FOR_INTERRUPTS();
		strlcpy(current_campaign, campaign, sizeof(current_campaign));
		if (!isnull && DatumGetTimestampTz(backoff) > now)
		{
			consider(r, DatumGetTimestampTz(backoff), SQS_WAIT_BACKOFF);
			note_blocked(r, campaign, DatumGetTimestampTz(backoff));
			continue;
		}
		if (due > now)
		{
			consider(r, due, SQS_WAIT_RETRY);
			continue;
		}
		token = sqs_campaign_token(campaign, cfg);
		if (token == NULL)
		{
			/* shown as paused in queue_status; a new token wakes the worker */
			note_blocked(r, campaign, 0);
			continue;
		}
		token_id = sqs_token_id(token);

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
		if (sqs_admit_call(cfg, token_id, &admit) != SQS_ADMITTED)
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

		/* the intake's oldest operations join the outbox as the call needs them */
		sqs_absorb_intake(campaign, Min(Max(cfg->batch_size * 2, 100), MAX_INTAKE_MOVE));

		leased = lease_operations(cfg, campaign, b,
								  admit.used * 2 >= cfg->rate_limit, r, cxt);
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
	current_campaign[0] = '\0';
	return false;
}

/*
 * Whether a 400 answer's body says the lead exists, by
 * squadstack.duplicate_create_pattern (checked when it was set).
 */
static bool
says_lead_exists(const SqsConfig *cfg, const SqsHttpResult *res)
{
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		args[2];
	bool		isnull;

	if (cfg->duplicate_create_pattern[0] == '\0')
		return false;
	args[0] = CStringGetTextDatum(sqs_clean_text(res->body, res->body_len, MAX_ERROR_TEXT));
	args[1] = CStringGetTextDatum(cfg->duplicate_create_pattern);
	sqs_exec("SELECT $1 ~* $2", 2, argtypes, args, NULL, SPI_OK_SELECT);
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

static CallOutcome
classify(const SqsConfig *cfg, const Batch *b, const SqsHttpResult *res)
{
	long		s = res->status;

	/* an accepted call is never sent again, whatever its answer says */
	if (s >= 200 && s < 300)
		return OUTCOME_SENT;
	if (s == 400 || s == 413)
	{
		if (b->n > 1)
			return OUTCOME_SPLIT;
		if (s == 400 && b->uncertain[0] && strcmp(b->op, "create") == 0 &&
			says_lead_exists(cfg, res))
			return OUTCOME_ALREADY_DONE;
		return OUTCOME_FAILED;
	}
	if (s == 404 && b->n == 1 && b->uncertain[0] &&
		(strcmp(b->op, "delete") == 0 || strcmp(b->op, "disable") == 0))
		return OUTCOME_ALREADY_DONE;
	if (s == 401 || s == 403)
		return OUTCOME_AUTH_PAUSE;
	if (s == 429 || s == 503)
		return OUTCOME_PAUSE;
	if (s == 408 || s == 0 || s >= 500 || s < 200)
		return OUTCOME_RETRY;
	if (s >= 300 && s < 400)
		return OUTCOME_RETRY;
	/* 404, 405 and the remaining 4xx will not get better by retrying */
	return OUTCOME_FAILED;
}

/*
 * Whether the API may have done what the call asked although we do not
 * know: no answer (a timeout, a cut connection) or a server error other
 * than 503, which says the request was not handled.
 */
static bool
answer_is_uncertain(const SqsHttpResult *res)
{
	return res->status == 0 || (res->status >= 500 && res->status != 503);
}

/* What to keep as the error: the API's body verbatim, or what went wrong. */
static char *
error_text(const SqsHttpResult *res, CallOutcome outcome)
{
	switch (outcome)
	{
		case OUTCOME_SENT:
			if (res->body_len == 0 || sqs_json_is_valid(res->body, res->body_len))
				return NULL;
			return psprintf("HTTP %ld with an answer that is not JSON, taken as accepted: %s",
							res->status, sqs_clean_text(res->body, res->body_len, 200));
		case OUTCOME_ALREADY_DONE:
			return psprintf("already done: re-sent after an uncertain attempt, the API answered HTTP %ld: %s",
							res->status, sqs_clean_text(res->body, res->body_len, 500));
		case OUTCOME_FAILED:
		case OUTCOME_SPLIT:
			if (res->status == 413)
				return psprintf("HTTP 413: the API refused the request as too large: %s",
								sqs_clean_text(res->body, res->body_len, 500));
			return sqs_clean_text(res->body, res->body_len, MAX_ERROR_TEXT);
		default:
			break;
	}
	if (res->status == 0)
		return pstrdup(res->error ? res->error : "no answer");
	return psprintf("HTTP %ld: %s", res->status,
					sqs_clean_text(res->body, res->body_len, 500));
}

/*
 * Keep the lead registry in step with what the API accepted (or refused,
 * for a create), for the operations ids of kind op; erase a deleted lead.
 */
static void
record_registry(Datum ids, const char *op, bool accepted)
{
	Oid			argtypes[3] = {INT8ARRAYOID, TEXTOID, BOOLOID};
	Datum		args[3];
	const char *status;
	bool		overwrite = true;

	args[0] = ids;
	if (!accepted)
	{
		if (strcmp(op, "create") != 0)
			return;
		/* a sync trigger's create enters the registry only now */
		sqs_exec("INSERT INTO squadstack.leads AS l (campaign_id, lead_id, status) "
				 "SELECT campaign_id, lead_id, 'failed' FROM squadstack.outbox "
				 "WHERE id = ANY ($1) AND state = 'failed' "
				 "ON CONFLICT (campaign_id, lead_id) DO UPDATE"
				 " SET status = 'failed', updated_at = now()"
				 " WHERE l.status = 'queued'",
				 1, argtypes, args, NULL, SPI_OK_INSERT);
		return;
	}

	if (strcmp(op, "create") == 0)
		status = "created";
	else if (strcmp(op, "disable") == 0)
		status = "disabled";
	else if (strcmp(op, "convert") == 0)
		status = "converted";
	else if (strcmp(op, "delete") == 0)
		status = "deleted";
	else
	{
		/* an update says the lead exists, nothing more */
		status = "created";
		overwrite = false;
	}
	args[1] = CStringGetTextDatum(status);
	args[2] = BoolGetDatum(overwrite);
	sqs_exec("INSERT INTO squadstack.leads AS l (campaign_id, lead_id, status) "
			 "SELECT campaign_id, lead_id, $2 FROM squadstack.outbox WHERE id = ANY ($1) "
			 "ON CONFLICT (campaign_id, lead_id) DO UPDATE"
			 " SET status = CASE WHEN $3 OR l.status IN ('queued', 'failed')"
			 "                   THEN $2 ELSE l.status END,"
			 "     updated_at = now()",
			 3, argtypes, args, NULL, SPI_OK_INSERT);
	if (strcmp(op, "delete") == 0)
		sqs_erase_deleted_leads(ids);
}

/* record_registry()'s arguments, for sqs_try() */
typedef struct RegistryUpdate
{
	Datum		ids;
	const char *op;
	bool		accepted;
} RegistryUpdate;

static void
record_registry_step(void *arg)
{
	RegistryUpdate *u = arg;

	/* ended with the subtransaction, or with the transaction */
	if (sqs_lock_timeout_ms > 500)
		(void) set_config_option("lock_timeout", REGISTRY_LOCK_TIMEOUT,
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
static bool
try_record_registry(Datum ids, const char *op, bool accepted)
{
	RegistryUpdate u = {ids, op, accepted};
	char	   *error;
	Oid			argtypes[1] = {INT8ARRAYOID};

	if (sqs_try(record_registry_step, &u, &error))
		return true;

	ereport(WARNING,
			(errmsg("could not update the lead registry after a %s call: %s", op, error),
			 errdetail("It will be updated when the lock is free.")));
	sqs_exec("UPDATE squadstack.outbox SET record_pending = true WHERE id = ANY ($1)",
			 1, argtypes, &ids, NULL, SPI_OK_UPDATE);
	registry_deferred = true;
	return false;
}

/*
 * Apply registry updates that waited for a lock (try_record_registry),
 * a few at a time, each in its own subtransaction.
 */
static bool
apply_pending_records(void)
{
	SPITupleTable *pending;
	uint64		n;
	uint64		i;
	bool		left = false;

	sqs_exec("SELECT id, op, state FROM squadstack.outbox WHERE record_pending"
			 " ORDER BY id LIMIT " CppAsString2(MAX_PENDING_RECORDS),
			 0, NULL, NULL, NULL, SPI_OK_SELECT);
	pending = SPI_tuptable;
	n = SPI_processed;
	for (i = 0; i < n; i++)
	{
		bool		isnull;
		Datum		id = SPI_getbinval(pending->vals[i], pending->tupdesc, 1, &isnull);
		char	   *op = SPI_getvalue(pending->vals[i], pending->tupdesc, 2);
		char	   *state = SPI_getvalue(pending->vals[i], pending->tupdesc, 3);
		Datum		ids = PointerGetDatum(construct_array_builtin(&id, 1, INT8OID));

		CHECK_FOR_INTERRUPTS();
		if (try_record_registry(ids, op, strcmp(state, "sent") == 0))
		{
			Oid			argtypes[1] = {INT8OID};

			sqs_exec("UPDATE squadstack.outbox SET record_pending = false WHERE id = $1",
					 1, argtypes, &id, NULL, SPI_OK_UPDATE);
		}
		else
			left = true;
	}
	return left || n == MAX_PENDING_RECORDS;
}

/* The API answered the campaign's call: it is no longer backed off. */
static void
campaign_answered(const char *campaign)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];

	args[0] = CStringGetTextDatum(campaign);
	sqs_exec("DELETE FROM squadstack.campaign_state WHERE campaign_id = $1",
			 1, argtypes, args, NULL, SPI_OK_DELETE);
}

/* Step 3: complete the call's record and move its operations on. */
static void
record(const SqsConfig *cfg, Batch *b, const SqsHttpResult *res)
{
	CallOutcome outcome = classify(cfg, b, res);
	char	   *error = error_text(res, outcome);
	Datum	   *states = palloc(sizeof(Datum) * b->n);
	Datum	   *add_attempt = palloc(sizeof(Datum) * b->n);
	Datum	   *delay_ms = palloc(sizeof(Datum) * b->n);
	Datum		ids = PointerGetDatum(construct_array_builtin(b->ids, b->n, INT8OID));
	bool		uncertain = answer_is_uncertain(res);
	int			i;

	sqs_log_call_end(b->call_id, res, error);

	for (i = 0; i < b->n; i++)
	{
		const char *state = "queued";
		int			add = 0;
		double		delay = 0;

		switch (outcome)
		{
			case OUTCOME_SENT:
			case OUTCOME_ALREADY_DONE:
				state = "sent";
				break;
			case OUTCOME_FAILED:
				state = "failed";
				add = 1;
				break;
			case OUTCOME_SPLIT:
			case OUTCOME_AUTH_PAUSE:
			case OUTCOME_PAUSE:
				/* not the operation's fault: no attempt is counted */
				break;
			case OUTCOME_RETRY:
				add = 1;
				if (b->attempts[i] + 1 >= cfg->max_attempts)
					state = "failed";
				else
					delay = (double) sqs_backoff_ms(b->attempts[i] + 1, cfg->retry_base_ms,
													cfg->retry_max_ms,
													pg_prng_double(&pg_global_prng_state));
				break;
		}
		states[i] = CStringGetTextDatum(state);
		add_attempt[i] = Int32GetDatum(add);
		delay_ms[i] = Float8GetDatum(delay);
	}

	{
		Oid			argtypes[9] = {INT8ARRAYOID, TEXTARRAYOID, INT4ARRAYOID, FLOAT8ARRAYOID,
		INT4OID, TEXTOID, INT4OID, INT8OID, BOOLOID};
		Datum		args[9];
		char		nulls[9] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};

		args[0] = ids;
		args[1] = PointerGetDatum(construct_array_builtin(states, b->n, TEXTOID));
		args[2] = PointerGetDatum(construct_array_builtin(add_attempt, b->n, INT4OID));
		args[3] = PointerGetDatum(construct_array(delay_ms, b->n, FLOAT8OID, sizeof(float8),
												  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		args[4] = Int32GetDatum((int32) res->status);
		if (res->status == 0)
			nulls[4] = 'n';
		if (error != NULL)
			args[5] = CStringGetTextDatum(error);
		else
			nulls[5] = 'n';
		if (outcome == OUTCOME_SPLIT)
			args[6] = Int32GetDatum((b->n + 1) / 2);
		else
			nulls[6] = 'n';
		args[7] = Int64GetDatum(b->call_id);
		args[8] = BoolGetDatum(uncertain);

		/* only if the lease is still ours: a recovered lease was re-queued */
		sqs_exec("UPDATE squadstack.outbox o SET"
				 " state = u.state,"
				 " attempts = o.attempts + u.add_attempt,"
				 " next_attempt_at = CASE WHEN u.state = 'queued'"
				 "   THEN clock_timestamp() + u.delay_ms * interval '1 millisecond'"
				 "   ELSE o.next_attempt_at END,"
				 " sent_at = CASE WHEN u.state = 'sent' THEN clock_timestamp() END,"
				 " http_status = $5, error = $6,"
				 " batch_limit = COALESCE($7, o.batch_limit),"
				 " uncertain = o.uncertain OR $9,"
				 " lease_pid = NULL, leased_at = NULL, lease_expires_at = NULL "
				 "FROM unnest($1, $2, $3, $4) AS u(id, state, add_attempt, delay_ms) "
				 "WHERE o.id = u.id AND o.state = 'sending' AND o.call_id = $8",
				 9, argtypes, args, nulls, SPI_OK_UPDATE);
	}

	/* later operations of these leads may be sendable now */
	sqs_note_work(b->campaign);

	if (outcome == OUTCOME_AUTH_PAUSE || outcome == OUTCOME_PAUSE)
		(void) sqs_pause_token_if_needed(cfg, b->token_id, res);
	else if (outcome != OUTCOME_RETRY)
	{
		if (outcome == OUTCOME_SENT || outcome == OUTCOME_ALREADY_DONE)
			sqs_token_answered(b->token_id);
		campaign_answered(b->campaign);
	}

	if (outcome == OUTCOME_SENT || outcome == OUTCOME_ALREADY_DONE)
		(void) try_record_registry(ids, b->op, true);
	else if (outcome == OUTCOME_FAILED ||
			 (outcome == OUTCOME_RETRY && strcmp(b->op, "create") == 0))
		(void) try_record_registry(ids, b->op, false);
}

/* where in a call an error struck */
typedef enum CallStage
{
	STAGE_CLAIM,				/* nothing of the call was committed */
	STAGE_CALL,					/* leased, not yet answered */
	STAGE_RECORD				/* answered, the answer not recorded */
} CallStage;

/*
 * Record an error that struck one call (stage says where) after the
 * failed transaction was rolled back: the call's operations go back to the
 * queue with an attempt counted (failed after max_attempts; uncertain if
 * the API may have seen them), the api_calls row and the operations say
 * what happened, and the campaign is backed off.  Anything that fails here
 * is left to lease recovery.
 */
static void
record_failure(const SqsConfig *cfg, const Batch *b, CallStage stage,
			   const char *campaign, const char *message)
{
	char	   *error;

	error = psprintf("could not %s: %s",
					 stage == STAGE_CLAIM ? "prepare a call" :
					 stage == STAGE_CALL ? "make the call" : "record the answer",
					 message);

	sqs_begin_step("squadstack: recording an error");
	if (stage != STAGE_CLAIM && b->call_id != 0)
	{
		Oid			argtypes[6] = {INT8OID, TEXTOID, INT4OID, INT4OID, INT4OID, BOOLOID};
		Datum		args[6];

		args[0] = Int64GetDatum(b->call_id);
		args[1] = CStringGetTextDatum(error);
		args[2] = Int32GetDatum(cfg->max_attempts);
		args[3] = Int32GetDatum(cfg->retry_base_ms);
		args[4] = Int32GetDatum(cfg->retry_max_ms);
		args[5] = BoolGetDatum(stage == STAGE_RECORD);
		sqs_exec("UPDATE squadstack.outbox SET"
				 " state = CASE WHEN attempts + 1 >= $3 THEN 'failed' ELSE 'queued' END,"
				 " attempts = attempts + 1,"
				 " next_attempt_at = clock_timestamp() + least($4 * 2 ^ attempts, $5)"
				 "   * interval '1 millisecond',"
				 " uncertain = uncertain OR $6, error = $2,"
				 " lease_pid = NULL, leased_at = NULL, lease_expires_at = NULL "
				 "WHERE call_id = $1 AND state = 'sending'",
				 6, argtypes, args, NULL, SPI_OK_UPDATE);
		sqs_log_call_error(b->call_id, error);
	}
	if (campaign[0] != '\0')
	{
		Oid			argtypes[4] = {TEXTOID, TEXTOID, INT4OID, INT4OID};
		Datum		args[4];

		args[0] = CStringGetTextDatum(campaign);
		args[1] = CStringGetTextDatum(error);
		args[2] = Int32GetDatum(cfg->retry_base_ms);
		args[3] = Int32GetDatum(cfg->retry_max_ms);
		sqs_exec("INSERT INTO squadstack.campaign_state AS s"
				 " (campaign_id, failures, backoff_until, last_error)"
				 " VALUES ($1, 1, clock_timestamp() + $3 * interval '1 millisecond', $2)"
				 " ON CONFLICT (campaign_id) DO UPDATE SET"
				 "  failures = s.failures + 1,"
				 "  backoff_until = clock_timestamp()"
				 "    + least($3 * 2 ^ s.failures, $4) * interval '1 millisecond',"
				 "  last_error = $2, updated_at = now()",
				 4, argtypes, args, NULL, SPI_OK_INSERT);
	}
	sqs_end_step();
}

/*
 * After an ERROR in a delivery step: report it, roll back, and record it
 * (record_failure), itself guarded.  As autovacuum does after an error on
 * one table, so that one operation, payload or campaign cannot stop the
 * worker.
 */
static void
recover_from_error(const SqsConfig *cfg, const Batch *b, CallStage stage,
				   MemoryContext errcxt)
{
	ErrorData  *edata;
	char		campaign[SQS_MAX_CAMPAIGN_LEN + 1];
	char	   *message;

	HOLD_INTERRUPTS();
	MemoryContextSwitchTo(errcxt);
	edata = CopyErrorData();
	EmitErrorReport();
	AbortOutOfAnyTransaction();
	FlushErrorState();
	RESUME_INTERRUPTS();

	strlcpy(campaign, stage == STAGE_CLAIM ? current_campaign :
			(b->campaign ? b->campaign : ""), sizeof(campaign));
	message = pstrdup(edata->message ? edata->message : "unknown error");
	FreeErrorData(edata);

	PG_TRY();
	{
		record_failure(cfg, b, stage, campaign, message);
	}
	PG_CATCH();
	{
		HOLD_INTERRUPTS();
		EmitErrorReport();
		AbortOutOfAnyTransaction();
		FlushErrorState();
		RESUME_INTERRUPTS();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(errcxt);
}

/*
 * Registry updates that waited for a lock, guarded like a call.  Returns
 * whether some are left.
 */
static bool
retry_pending_records(MemoryContext errcxt)
{
	volatile bool left = true;

	PG_TRY();
	{
		sqs_begin_step("squadstack: updating the lead registry");
		left = apply_pending_records();
		sqs_end_step();
	}
	PG_CATCH();
	{
		HOLD_INTERRUPTS();
		MemoryContextSwitchTo(errcxt);
		EmitErrorReport();
		AbortOutOfAnyTransaction();
		FlushErrorState();
		RESUME_INTERRUPTS();
	}
	PG_END_TRY();
	return left;
}

void
sqs_deliver(const SqsConfig *cfg, int max_calls, SqsDeliveryResult *result)
{
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext,
											  "squadstack delivery",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext errcxt = AllocSetContextCreate(TopMemoryContext,
												 "squadstack delivery errors",
												 ALLOCSET_DEFAULT_SIZES);
	int			failures = 0;

	Assert(!IsTransactionState());
	memset(result, 0, sizeof(*result));

	registry_deferred = false;
	result->records_pending = retry_pending_records(errcxt);

	while (max_calls <= 0 || result->calls < max_calls)
	{
		Batch		b;
		SqsHttpResult res;
		volatile CallStage stage = STAGE_CLAIM;
		volatile bool claimed = false;
		volatile bool failed = false;

		CHECK_FOR_INTERRUPTS();
		MemoryContextReset(cxt);
		MemoryContextReset(errcxt);
		memset(&b, 0, sizeof(b));
		current_campaign[0] = '\0';
		result->next_wakeup = 0;
		result->waiting_for = SQS_WAIT_WORK;
		result->nblocked = 0;
		result->blocked_overflow = false;

		PG_TRY();
		{
			sqs_begin_step("squadstack: claiming operations");
			claimed = claim(cfg, &b, result, cxt);
			sqs_end_step();

			if (claimed)
			{
				MemoryContext old;

				stage = STAGE_CALL;
				pgstat_report_activity(STATE_RUNNING, "squadstack: calling the API");
				old = MemoryContextSwitchTo(cxt);
				sqs_http_call(b.method, b.url, b.token, b.body, cfg->request_timeout_ms, &res);
				MemoryContextSwitchTo(old);
				result->calls++;
				if (res.status < 200 || res.status >= 300)
					result->errors++;

				stage = STAGE_RECORD;
				sqs_begin_step("squadstack: recording the answer");
				record(cfg, &b, &res);
				sqs_end_step();
			}
		}
		PG_CATCH();
		{
			recover_from_error(cfg, &b, stage, errcxt);
			failed = true;
		}
		PG_END_TRY();

		if (failed)
		{
			result->errors++;
			if (stage != STAGE_CLAIM)
				result->calls += (stage == STAGE_CALL);

			/*
			 * The campaign is backed off now, so the next claim goes to
			 * others; an error outside any campaign (or errors in a row)
			 * ends this round, to be tried again after a pause.
			 */
			if ((stage == STAGE_CLAIM && current_campaign[0] == '\0') || ++failures >= 10)
			{
				result->more = false;
				result->next_wakeup = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
																  cfg->retry_base_ms);
				result->waiting_for = SQS_WAIT_ERROR;
				result->blocked_overflow = true;
				break;
			}
			result->more = true;
			continue;
		}
		if (!claimed)
		{
			result->more = false;
			break;
		}
		result->more = true;
	}
	result->records_pending |= registry_deferred;
	MemoryContextDelete(cxt);
	MemoryContextDelete(errcxt);
}
