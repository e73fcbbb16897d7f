/*-------------------------------------------------------------------------
 *
 * deliver.c
 *		Send due outbox operations to the SquadStack API.
 *
 * Each call goes through three steps:
 *
 *	1. claim (one short transaction): give back leases of senders that died,
 *	   pick a campaign with due work whose token is neither paused nor out of
 *	   rate budget, admit one call for that token (an api_calls row, which is
 *	   what the limiter counts), and lease the operations of the call;
 *	2. the HTTP call, with no transaction, snapshot or lock held;
 *	3. record (one short transaction): complete the api_calls row and move
 *	   the operations on according to the answer.
 *
 * The limiter is a sliding-window log kept in squadstack.api_calls: a call
 * is admitted when fewer than rate_limit calls with the same token started
 * within the window (plus a small margin).  Admission is serialised per
 * token by a row lock on squadstack.token_state, so every session and
 * process that sends shares one limit, and the log survives restarts.
 *
 * Must run in a process outside any transaction (a background worker).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type_d.h"
#include "common/pg_prng.h"
#include "mb/pg_wchar.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "backoff.h"
#include "http.h"
#include "squadstack.h"

/* how a call's answer moves its operations on */
typedef enum Outcome
{
	OUTCOME_SENT,				/* 2xx */
	OUTCOME_FAILED,				/* permanent: 400 on one lead, 404, 405 */
	OUTCOME_SPLIT,				/* 400 on several leads: retry in halves */
	OUTCOME_AUTH_PAUSE,			/* 401/403: pause the token until it changes */
	OUTCOME_PAUSE,				/* 429/503: pause the token for a while */
	OUTCOME_RETRY				/* 5xx, network trouble, non-JSON 2xx */
} Outcome;

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
} Batch;

#define LEASE_SLACK_MS 60000

const char *const SQS_WAIT_RATE_SLOT = "a rate slot";

static void pause_token(const SqsConfig *cfg, const char *token_id,
						const SqsHttpResult *res, Outcome outcome);
#define MAX_ERROR_TEXT 8192

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
sqs_set_delivery_session(void)
{
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
}

void
sqs_begin_step(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

void
sqs_end_step(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * Run one statement with parameters inside SPI; an unexpected result is an
 * internal error (the statements are the extension's own).
 */
void
sqs_exec(const char *sql, int nargs, Oid *argtypes, Datum *args,
		 const char *nulls, int expected)
{
	int			rc = SPI_execute_with_args(sql, nargs, argtypes, args, nulls, false, 0);

	if (rc != expected)
		elog(ERROR, "squadstack query failed (%s): %s",
			 SPI_result_code_string(rc), sql);
}

/* Note a time when something may become sendable, and why. */
static void
consider(SqsDeliveryResult *r, TimestampTz when, const char *why)
{
	if (r->next_wakeup == 0 || when < r->next_wakeup)
	{
		r->next_wakeup = when;
		r->waiting_for = why;
	}
}

/*
 * Give back the operations of calls whose sender is gone: its process no
 * longer runs (or is a newer one with the same pid), or its lease ran out.
 * Such a call may or may not have reached the API, so its operations are
 * re-sent one lead per call: a lead the API already accepted then fails
 * alone instead of failing its whole batch.
 */
static void
recover_leases(void)
{
	sqs_exec("WITH r AS ("
				"  UPDATE squadstack.outbox o"
				"  SET state = 'queued', batch_limit = 1, next_attempt_at = now(),"
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
 * Lock the token's state row and say whether a call may start now.  If
 * not, r notes when one may.
 */
bool
sqs_admit_call(const SqsConfig *cfg, const char *token_id, SqsDeliveryResult *r)
{
	Oid			argtypes[3] = {TEXTOID, INT8OID, INT4OID};
	Datum		args[3];
	bool		isnull;
	TimestampTz now = GetCurrentTimestamp();
	int64		window_ms = sqs_window_with_margin_ms(cfg->rate_window_ms);

	args[0] = CStringGetTextDatum(token_id);
	sqs_exec("INSERT INTO squadstack.token_state (token_id) VALUES ($1) "
				"ON CONFLICT DO NOTHING",
				1, argtypes, args, NULL, SPI_OK_INSERT);
	sqs_exec("SELECT paused_until FROM squadstack.token_state "
				"WHERE token_id = $1 FOR UPDATE",
				1, argtypes, args, NULL, SPI_OK_SELECT);
	if (SPI_processed == 1)
	{
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull && DatumGetTimestampTz(d) > now)
		{
			if (!TIMESTAMP_NOT_FINITE(DatumGetTimestampTz(d)))
				consider(r, DatumGetTimestampTz(d), "a paused token");
			else if (r->next_wakeup == 0)
				r->waiting_for = "a token to be changed";
			return false;
		}
	}

	/* the limit-th most recent call must have left the window */
	args[1] = Int64GetDatum(window_ms);
	args[2] = Int32GetDatum(cfg->rate_limit);
	sqs_exec("SELECT count(*), min(started_at) FROM ("
				"  SELECT started_at FROM squadstack.api_calls"
				"  WHERE token_id = $1"
				"    AND started_at > clock_timestamp() - $2 * interval '1 millisecond'"
				"  ORDER BY started_at DESC LIMIT $3) s",
				3, argtypes, args, NULL, SPI_OK_SELECT);
	if (DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)) <
		cfg->rate_limit)
		return true;

	consider(r,
			 DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0],
											   SPI_tuptable->tupdesc, 2, &isnull)) +
			 window_ms * 1000,
			 SQS_WAIT_RATE_SLOT);
	return false;
}

/*
 * Lease the operations of one call for the campaign: the first sendable
 * operation and, for create and disable, more of the same kind up to the
 * batch size.  An operation is sendable when it is due and no earlier
 * operation of the same lead is unfinished.  Returns false if there is none.
 */
static bool
lease_operations(const SqsConfig *cfg, const char *campaign, Batch *b,
				 MemoryContext cxt)
{
	Oid			argtypes[4] = {TEXTOID, TEXTOID, INT4OID, INT4OID};
	Datum		args[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	bool		isnull;
	Datum		d;
	int			limit;
	StringInfoData body;
	MemoryContext old;
	uint64		i;

	args[0] = CStringGetTextDatum(campaign);
	sqs_exec("SELECT o.op, o.batch_limit FROM squadstack.outbox o "
				"WHERE o.campaign_id = $1 AND o.state = 'queued' AND o.next_attempt_at <= now() "
				"  AND NOT EXISTS (SELECT 1 FROM squadstack.outbox e"
				"                  WHERE e.campaign_id = o.campaign_id AND e.lead_id = o.lead_id"
				"                    AND e.id < o.id AND e.state IN ('queued', 'sending', 'failed')"
				"                  OFFSET 0) "
				"ORDER BY o.next_attempt_at, o.id LIMIT 1 FOR UPDATE SKIP LOCKED",
				1, argtypes, args, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return false;

	old = MemoryContextSwitchTo(cxt);
	b->op = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	MemoryContextSwitchTo(old);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	limit = op_is_batched(b->op) ? cfg->batch_size : 1;
	if (!isnull)
	{
		limit = Min(limit, DatumGetInt32(d));
		args[2] = d;
	}
	else
		nulls[2] = 'n';
	args[1] = CStringGetTextDatum(b->op);
	args[3] = Int32GetDatum(limit);

	/*
	 * Operations split off a failed batch, or re-sent after a crash, go only
	 * with others of the same batch limit, so that halving converges.
	 */
	sqs_exec("SELECT o.id, o.payload::text, o.attempts FROM squadstack.outbox o "
				"WHERE o.campaign_id = $1 AND o.op = $2 AND o.state = 'queued'"
				"  AND o.next_attempt_at <= now()"
				"  AND o.batch_limit IS NOT DISTINCT FROM $3"
				"  AND NOT EXISTS (SELECT 1 FROM squadstack.outbox e"
				"                  WHERE e.campaign_id = o.campaign_id AND e.lead_id = o.lead_id"
				"                    AND e.id < o.id AND e.state IN ('queued', 'sending', 'failed')"
				"                  OFFSET 0) "
				"ORDER BY o.next_attempt_at, o.id LIMIT $4 FOR UPDATE SKIP LOCKED",
				4, argtypes, args, nulls, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return false;

	old = MemoryContextSwitchTo(cxt);
	b->n = (int) SPI_processed;
	b->ids = palloc(sizeof(Datum) * b->n);
	b->attempts = palloc(sizeof(int) * b->n);
	initStringInfo(&body);
	if (op_is_batched(b->op))
		appendStringInfoChar(&body, '[');
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	td = SPI_tuptable->tupdesc;

		b->ids[i] = Int64GetDatum(DatumGetInt64(SPI_getbinval(tup, td, 1, &isnull)));
		b->attempts[i] = DatumGetInt32(SPI_getbinval(tup, td, 3, &isnull));
		if (i > 0)
			appendStringInfoChar(&body, ',');
		appendStringInfoString(&body, SPI_getvalue(tup, td, 2));
	}
	if (op_is_batched(b->op))
		appendStringInfoChar(&body, ']');
	b->body = body.data;
	b->method = pstrdup(op_method(b->op));
	b->url = op_url(cfg, b->op, campaign);
	MemoryContextSwitchTo(old);
	return true;
}

/*
 * Write the api_calls row of an admitted call; the limiter counts it from
 * now on, whatever becomes of the call.  Returns its id.
 */
int64
sqs_log_call_start(const char *token_id, const char *campaign, const char *op,
				   const char *method, int n_leads)
{
	Oid			argtypes[5] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT4OID};
	Datum		args[5];
	bool		isnull;

	args[0] = CStringGetTextDatum(token_id);
	args[1] = CStringGetTextDatum(campaign);
	args[2] = CStringGetTextDatum(op);
	args[3] = CStringGetTextDatum(method);
	args[4] = Int32GetDatum(n_leads);
	sqs_exec("INSERT INTO squadstack.api_calls "
				"(token_id, campaign_id, op, method, n_leads, started_at, sender_pid) "
				"VALUES ($1, $2, $3, $4, $5, clock_timestamp(), pg_backend_pid()) RETURNING id",
				5, argtypes, args, NULL, SPI_OK_INSERT_RETURNING);
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/* Complete the api_calls row with the answer. */
void
sqs_log_call_end(int64 call_id, const SqsHttpResult *res, const char *error)
{
	Oid			argtypes[5] = {INT8OID, FLOAT8OID, INT4OID, TEXTOID, INT8OID};
	Datum		args[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};

	args[0] = Int64GetDatum(call_id);
	args[1] = Float8GetDatum(res->duration_ms);
	args[2] = Int32GetDatum((int32) res->status);
	if (res->status == 0)
		nulls[2] = 'n';
	if (error != NULL)
		args[3] = CStringGetTextDatum(error);
	else
		nulls[3] = 'n';
	args[4] = Int64GetDatum(res->retry_after_ms);
	if (res->retry_after_ms < 0)
		nulls[4] = 'n';
	sqs_exec("UPDATE squadstack.api_calls SET duration_ms = $2, http_status = $3,"
				" error = $4, retry_after = $5 * interval '1 millisecond' WHERE id = $1",
				5, argtypes, args, nulls, SPI_OK_UPDATE);
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

/*
 * Claim one call's worth of work.  Campaigns are tried least recently
 * served first, so one with a large backlog does not starve the others on
 * the same token.  Returns false when nothing can be sent now; r then says
 * when something may become sendable (0 if unknown) and why.
 */
static bool
claim(const SqsConfig *cfg, Batch *b, SqsDeliveryResult *r, MemoryContext cxt)
{
	uint64		ncampaigns;
	char	  **campaigns;
	List	   *refused = NIL;
	uint64		i;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	MemoryContext old;

	/* what sync triggers queued joins the outbox first */
	sqs_absorb_intake();
	recover_leases();

	sqs_exec("WITH RECURSIVE c(campaign_id) AS ("
				"  (SELECT campaign_id FROM squadstack.outbox WHERE state = 'queued'"
				"   ORDER BY campaign_id LIMIT 1)"
				"  UNION ALL"
				"  SELECT (SELECT o.campaign_id FROM squadstack.outbox o"
				"          WHERE o.state = 'queued' AND o.campaign_id > c.campaign_id"
				"          ORDER BY o.campaign_id LIMIT 1)"
				"  FROM c WHERE c.campaign_id IS NOT NULL) "
				"SELECT c.campaign_id,"
				"  (SELECT min(o.next_attempt_at) FROM squadstack.outbox o"
				"   WHERE o.state = 'queued' AND o.campaign_id = c.campaign_id) AS next_due "
				"FROM c WHERE c.campaign_id IS NOT NULL "
				"ORDER BY (SELECT max(a.started_at) FROM squadstack.api_calls a"
				"          WHERE a.campaign_id = c.campaign_id) NULLS FIRST, c.campaign_id",
				0, NULL, NULL, NULL, SPI_OK_SELECT);

	ncampaigns = SPI_processed;
	campaigns = palloc(sizeof(char *) * (ncampaigns + 1));
	for (i = 0; i < ncampaigns; i++)
	{
		bool		isnull;
		TimestampTz due = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[i],
															SPI_tuptable->tupdesc, 2, &isnull));

		if (due > now)
		{
			consider(r, due, "a retry");
			campaigns[i] = NULL;
		}
		else
			campaigns[i] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
	}

	for (i = 0; i < ncampaigns; i++)
	{
		char	   *token;
		char	   *token_id;

		if (campaigns[i] == NULL)
			continue;
		token = sqs_campaign_token(campaigns[i], cfg);
		if (token == NULL)
			continue;			/* shown as paused in queue_status */
		token_id = sqs_token_id(token);

		/*
		 * A token refused once stays refused in this claim: a slot that
		 * frees meanwhile goes to the campaign whose turn it was, next time.
		 */
		if (list_member(refused, makeString(token_id)))
			continue;
		if (!sqs_admit_call(cfg, token_id, r))
		{
			refused = lappend(refused, makeString(token_id));
			continue;
		}
		if (!lease_operations(cfg, campaigns[i], b, cxt))
			continue;

		old = MemoryContextSwitchTo(cxt);
		b->campaign = pstrdup(campaigns[i]);
		b->token = pstrdup(token);
		b->token_id = pstrdup(token_id);
		MemoryContextSwitchTo(old);
		start_call(cfg, b);
		return true;
	}
	return false;
}

/*
 * Pause a token after an answer that says so (401/403 until it changes,
 * 429/503 for Retry-After or a backoff); false for any other answer.
 */
bool
sqs_pause_token_if_needed(const SqsConfig *cfg, const char *token_id,
						  const SqsHttpResult *res)
{
	if (res->status == 401 || res->status == 403)
		pause_token(cfg, token_id, res, OUTCOME_AUTH_PAUSE);
	else if (res->status == 429 || res->status == 503)
		pause_token(cfg, token_id, res, OUTCOME_PAUSE);
	else
		return false;
	return true;
}

static Outcome
classify(const SqsHttpResult *res, int n)
{
	long		s = res->status;

	if (s >= 200 && s < 300)
		return (res->body_len == 0 || sqs_json_is_valid(res->body, res->body_len)) ?
			OUTCOME_SENT : OUTCOME_RETRY;
	if (s == 400)
		return n > 1 ? OUTCOME_SPLIT : OUTCOME_FAILED;
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
 * Text from the API fit for a text column: at most max bytes, cut at a
 * character boundary, with bytes that are not valid in the database
 * encoding replaced by '?'.
 */
char *
sqs_clean_text(const char *s, size_t len, size_t max)
{
	char	   *out = palloc(Min(len, max) + 1);
	size_t		i = 0;
	size_t		n = 0;

	while (i < len && s[i] != '\0')
	{
		int			l = pg_encoding_verifymbchar(GetDatabaseEncoding(), s + i, len - i);

		if (l < 1)
		{
			if (n + 1 > max)
				break;
			out[n++] = '?';
			i++;
			continue;
		}
		if (n + l > max)
			break;
		memcpy(out + n, s + i, l);
		n += l;
		i += l;
	}
	out[n] = '\0';
	return out;
}

/* What to keep as the error: the API's body verbatim, or what went wrong. */
static char *
error_text(const SqsHttpResult *res, Outcome outcome)
{
	if (outcome == OUTCOME_SENT)
		return NULL;
	if (res->status == 0)
		return pstrdup(res->error ? res->error : "no answer");
	if (res->status >= 200 && res->status < 300)
		return psprintf("HTTP %ld with an answer that is not JSON: %s",
						res->status, sqs_clean_text(res->body, res->body_len, 200));
	if (outcome == OUTCOME_FAILED || outcome == OUTCOME_SPLIT)
		return sqs_clean_text(res->body, res->body_len, MAX_ERROR_TEXT);
	return psprintf("HTTP %ld: %s", res->status,
					sqs_clean_text(res->body, res->body_len, 500));
}

static void
pause_token(const SqsConfig *cfg, const char *token_id, const SqsHttpResult *res,
			Outcome outcome)
{
	Oid			argtypes[3] = {TEXTOID, INT8OID, TEXTOID};
	Datum		args[3];
	char		nulls[3] = {' ', ' ', ' '};

	args[0] = CStringGetTextDatum(token_id);
	if (outcome == OUTCOME_AUTH_PAUSE)
	{
		nulls[1] = 'n';
		args[1] = (Datum) 0;
		args[2] = CStringGetTextDatum(psprintf("HTTP %ld: the API rejected the access token; "
											   "paused until the token is changed",
											   res->status));
	}
	else
	{
		int64		ms = res->retry_after_ms;

		if (ms < 0)
		{
			int			pauses;
			bool		isnull;

			sqs_exec("SELECT pause_count FROM squadstack.token_state WHERE token_id = $1",
						1, argtypes, args, NULL, SPI_OK_SELECT);
			pauses = SPI_processed ? DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
																  SPI_tuptable->tupdesc, 1,
																  &isnull)) : 0;
			/* at least the base delay, so a pause is never zero */
			ms = cfg->retry_base_ms +
				sqs_backoff_ms(pauses + 1, cfg->retry_base_ms, cfg->retry_max_ms,
							   pg_prng_double(&pg_global_prng_state));
		}
		args[1] = Int64GetDatum(ms);
		args[2] = CStringGetTextDatum(psprintf("HTTP %ld: %s", res->status,
											   res->status == 429 ? "rate limited by the API" :
											   "the API is unavailable"));
	}
	sqs_exec("UPDATE squadstack.token_state SET"
				" paused_until = CASE WHEN $2 IS NULL THEN 'infinity'::timestamptz"
				"   ELSE clock_timestamp() + $2 * interval '1 millisecond' END,"
				" pause_reason = $3, pause_count = pause_count + 1, updated_at = now() "
				"WHERE token_id = $1",
				3, argtypes, args, nulls, SPI_OK_UPDATE);
}

/*
 * Keep the lead registry in step with what the API accepted (or refused,
 * for a create).
 */
static void
update_registry(Batch *b, Outcome outcome)
{
	Oid			argtypes[3] = {INT8ARRAYOID, TEXTOID, BOOLOID};
	Datum		args[3];
	const char *status;
	bool		overwrite = true;

	/* a create refused, or out of attempts */
	if ((outcome == OUTCOME_FAILED || outcome == OUTCOME_RETRY) &&
		strcmp(b->op, "create") == 0)
	{
		args[0] = PointerGetDatum(construct_array_builtin(b->ids, b->n, INT8OID));
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
	if (outcome != OUTCOME_SENT)
		return;

	if (strcmp(b->op, "create") == 0)
		status = "created";
	else if (strcmp(b->op, "disable") == 0)
		status = "disabled";
	else if (strcmp(b->op, "convert") == 0)
		status = "converted";
	else if (strcmp(b->op, "delete") == 0)
		status = "deleted";
	else
	{
		/* an update says the lead exists, nothing more */
		status = "created";
		overwrite = false;
	}
	args[0] = PointerGetDatum(construct_array_builtin(b->ids, b->n, INT8OID));
	args[1] = CStringGetTextDatum(status);
	args[2] = BoolGetDatum(overwrite);
	sqs_exec("INSERT INTO squadstack.leads AS l (campaign_id, lead_id, status) "
				"SELECT campaign_id, lead_id, $2 FROM squadstack.outbox WHERE id = ANY ($1) "
				"ON CONFLICT (campaign_id, lead_id) DO UPDATE"
				" SET status = CASE WHEN $3 OR l.status IN ('queued', 'failed')"
				"                   THEN $2 ELSE l.status END,"
				"     updated_at = now()",
				3, argtypes, args, NULL, SPI_OK_INSERT);
}

/*
 * The API's error texts in api_calls may quote what was sent.  Replace each
 * value the lead's operations carried (phone, also in its 10-digit form,
 * name, custom fields: strings of at least 3 characters, numbers of at
 * least 6 digits, not shorter ones, which would mangle status codes) where
 * it stands as a whole word in the errors of the campaign's calls since
 * its first operation: "Ram" goes, "Ramesh" (another lead's) stays.
 */
static void
erase_from_call_errors(Datum ids)
{
	Oid			idtype = INT8ARRAYOID;
	Oid			argtypes[3] = {TEXTOID, TIMESTAMPTZOID, TEXTOID};
	Datum		args[3];
	SPITupleTable *values;
	uint64		n;
	uint64		i;

	/*
	 * As regular expressions, every character but letters, digits, "_" and
	 * spaces escaped; longest first, so "+919812345678" goes whole.
	 */
	sqs_exec("SELECT campaign_id, since,"
			 "  '(?<![[:alnum:]_])'"
			 "  || regexp_replace(value, '([^[:alnum:]_[:space:]])', '\\\\\\1', 'g')"
			 "  || '(?![[:alnum:]_])' "
			 "FROM ("
			 "  SELECT DISTINCT d.campaign_id,"
			 "    min(o.created_at) OVER (PARTITION BY d.campaign_id) AS since, s.value"
			 "  FROM squadstack.outbox d"
			 "  JOIN squadstack.outbox o ON o.campaign_id = d.campaign_id"
			 "    AND o.lead_id = d.lead_id AND o.id <= d.id"
			 "  CROSS JOIN LATERAL jsonb_each(o.payload) t"
			 "  CROSS JOIN LATERAL (VALUES (t.value #>> '{}'),"
			 "    (CASE WHEN t.key = 'phone_number' THEN right(t.value #>> '{}', 10) END)) s(value)"
			 "  WHERE d.id = ANY ($1) AND t.key <> 'lead_id'"
			 "    AND ((jsonb_typeof(t.value) = 'string' AND length(s.value) >= 3)"
			 "      OR (jsonb_typeof(t.value) = 'number' AND length(s.value) >= 6))) v "
			 "ORDER BY length(value) DESC, value",
			 1, &idtype, &ids, NULL, SPI_OK_SELECT);
	values = SPI_tuptable;
	n = SPI_processed;
	for (i = 0; i < n; i++)
	{
		bool		isnull;

		args[0] = SPI_getbinval(values->vals[i], values->tupdesc, 1, &isnull);
		args[1] = SPI_getbinval(values->vals[i], values->tupdesc, 2, &isnull);
		args[2] = SPI_getbinval(values->vals[i], values->tupdesc, 3, &isnull);
		sqs_exec("UPDATE squadstack.api_calls"
				 " SET error = regexp_replace(error, $3, '[erased]', 'g') "
				 "WHERE campaign_id = $1 AND started_at >= $2 AND error ~ $3",
				 3, argtypes, args, NULL, SPI_OK_UPDATE);
	}
}

/*
 * SquadStack accepted a delete: erase the lead's personal data that the
 * extension itself holds.  Operations keep only their lead_id (and a
 * conversion its detail); outcomes lose phone, name, recording and
 * responses; webhook payloads keep only campaign and lead ids.  What was
 * queued after the delete belongs to a new lead of the same id and is kept.
 */
static void
erase_lead(Batch *b)
{
	static const char *const queries[] = {
		/* operations queued after the delete (a new create) are the new lead's */
		"UPDATE squadstack.outbox o SET error = NULL,"
		" payload = jsonb_build_object('lead_id', o.payload->'lead_id')"
		"   || CASE WHEN o.op = 'convert' THEN jsonb_build_object('detail', o.payload->'detail')"
		"      ELSE '{}' END "
		"FROM squadstack.outbox d "
		"WHERE d.id = ANY ($1) AND o.campaign_id = d.campaign_id AND o.lead_id = d.lead_id"
		"  AND o.id <= d.id",
		"UPDATE squadstack.lead_outcomes SET phone_number = NULL, contact_name = NULL,"
		" latest_recording_url = NULL, lead_responses = NULL, updated_at = now() "
		"WHERE (campaign_id, lead_id) IN (SELECT campaign_id, lead_id FROM squadstack.outbox"
		"                                 WHERE id = ANY ($1))",
		"UPDATE squadstack.webhook_inbox SET"
		" payload = jsonb_build_object('campaign_id', campaign_id, 'lead_id', lead_id, 'erased', true) "
		"WHERE (campaign_id, lead_id) IN (SELECT campaign_id, lead_id FROM squadstack.outbox"
		"                                 WHERE id = ANY ($1))",
		"UPDATE squadstack.sync_skipped SET row_data = NULL, error = 'erased' "
		"WHERE (campaign_id, lead_id) IN (SELECT campaign_id, lead_id FROM squadstack.outbox"
		"                                 WHERE id = ANY ($1))"
	};
	Oid			argtypes[1] = {INT8ARRAYOID};
	Datum		args[1];
	size_t		i;

	args[0] = PointerGetDatum(construct_array_builtin(b->ids, b->n, INT8OID));
	/* first, while the payloads still say what was sent */
	erase_from_call_errors(args[0]);

	/*
	 * An earlier operation of the lead still in the intake (one that
	 * committed late) is erased before the outbox: if a claim is moving it
	 * right now, this waits for that claim, and the outbox update, with a
	 * snapshot taken after it, then finds it there.
	 */
	if (OidIsValid(sqs_intake_relid()))
		sqs_exec("UPDATE squadstack.intake i SET"
				 " payload = jsonb_build_object('lead_id', i.payload->'lead_id') "
				 "FROM squadstack.outbox d "
				 "WHERE d.id = ANY ($1) AND i.campaign_id = d.campaign_id"
				 "  AND i.lead_id = d.lead_id AND i.id <= d.id",
				 1, argtypes, args, NULL, SPI_OK_UPDATE);
	for (i = 0; i < lengthof(queries); i++)
		sqs_exec(queries[i], 1, argtypes, args, NULL, SPI_OK_UPDATE);
}

/* Step 3: complete the call's record and move its operations on. */
static void
record(const SqsConfig *cfg, Batch *b, const SqsHttpResult *res)
{
	Outcome		outcome = classify(res, b->n);
	char	   *error = error_text(res, outcome);
	Datum	   *states = palloc(sizeof(Datum) * b->n);
	Datum	   *add_attempt = palloc(sizeof(Datum) * b->n);
	Datum	   *delay_ms = palloc(sizeof(Datum) * b->n);
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
		Oid			argtypes[8] = {INT8ARRAYOID, TEXTARRAYOID, INT4ARRAYOID, FLOAT8ARRAYOID,
		INT4OID, TEXTOID, INT4OID, INT8OID};
		Datum		args[8];
		char		nulls[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};

		args[0] = PointerGetDatum(construct_array_builtin(b->ids, b->n, INT8OID));
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
					" lease_pid = NULL, leased_at = NULL, lease_expires_at = NULL "
					"FROM unnest($1, $2, $3, $4) AS u(id, state, add_attempt, delay_ms) "
					"WHERE o.id = u.id AND o.state = 'sending' AND o.call_id = $8",
					8, argtypes, args, nulls, SPI_OK_UPDATE);
	}

	update_registry(b, outcome);
	if (outcome == OUTCOME_SENT && strcmp(b->op, "delete") == 0)
		erase_lead(b);

	/* later operations of these leads may be sendable now */
	sqs_wake_worker_at_commit();

	if (outcome == OUTCOME_AUTH_PAUSE || outcome == OUTCOME_PAUSE)
		pause_token(cfg, b->token_id, res, outcome);
	else if (outcome == OUTCOME_SENT)
	{
		Oid			argtypes[1] = {TEXTOID};
		Datum		args[1];

		args[0] = CStringGetTextDatum(b->token_id);
		sqs_exec("UPDATE squadstack.token_state SET pause_count = 0 "
					"WHERE token_id = $1 AND pause_count > 0",
					1, argtypes, args, NULL, SPI_OK_UPDATE);
	}
}

void
sqs_deliver(const SqsConfig *cfg, int max_calls, SqsDeliveryResult *result)
{
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext,
											  "squadstack delivery",
											  ALLOCSET_DEFAULT_SIZES);

	Assert(!IsTransactionState());
	memset(result, 0, sizeof(*result));

	while (max_calls <= 0 || result->calls < max_calls)
	{
		Batch		b;
		SqsHttpResult res;
		bool		claimed;
		MemoryContext old;

		CHECK_FOR_INTERRUPTS();
		MemoryContextReset(cxt);
		memset(&b, 0, sizeof(b));
		result->next_wakeup = 0;
		result->waiting_for = "work";

		sqs_begin_step("squadstack: claiming operations");
		claimed = claim(cfg, &b, result, cxt);
		sqs_end_step();
		if (!claimed)
		{
			result->more = false;
			break;
		}
		result->more = true;

		pgstat_report_activity(STATE_RUNNING, "squadstack: calling the API");
		old = MemoryContextSwitchTo(cxt);
		sqs_http_call(b.method, b.url, b.token, b.body, cfg->request_timeout_ms, &res);
		MemoryContextSwitchTo(old);
		result->calls++;
		if (res.status < 200 || res.status >= 300)
			result->errors++;

		sqs_begin_step("squadstack: recording the answer");
		record(cfg, &b, &res);
		sqs_end_step();
	}
	MemoryContextDelete(cxt);
}
