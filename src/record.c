/*-------------------------------------------------------------------------
 *
 * record.c
 *		Step 3 of a call: record the answer and move the operations on.
 *
 * In one short transaction: complete the api_calls row, then move the
 * call's operations on according to the answer (sent, failed, queued
 * again with or without an attempt counted, split in halves), pause the
 * token if the answer says so, and keep the lead registry in step
 * (registry.c, which may leave that part for later when a user's
 * transaction holds a registry row).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type_d.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "backoff.h"
#include "limiter.h"
#include "outbox.h"
#include "registry.h"
#include "shmem.h"
#include "spi_util.h"

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

/*
 * Whether a 400 answer's body says the lead exists, by
 * squadstack.duplicate_create_pattern (checked when it was set).
 */
static bool
says_lead_exists(const SquadstackConfig *cfg, const SquadstackHttpResult *res)
{
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		args[2];
	bool		isnull;

	if (cfg->duplicate_create_pattern[0] == '\0')
		return false;
	args[0] = CStringGetTextDatum(squadstack_clean_text(res->body, res->body_len, SQUADSTACK_MAX_ERROR_TEXT));
	args[1] = CStringGetTextDatum(cfg->duplicate_create_pattern);
	SQUADSTACK_EXEC_KEPT("SELECT $1 ~* $2", 2, argtypes, args, NULL, SPI_OK_SELECT);
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

static CallOutcome
classify(const SquadstackConfig *cfg, const SquadstackBatch *b, const SquadstackHttpResult *res)
{
	long		s = res->status;

	/* an accepted call is never sent again, whatever its answer says */
	if (s >= 200 && s < 300)
		return OUTCOME_SENT;
	if (s == 400 || s == 413)
	{
		if (b->n > 1)
			return OUTCOME_SPLIT;
		if (s == 400 && b->uncertain[0] && b->op == SQUADSTACK_OP_CREATE &&
			says_lead_exists(cfg, res))
			return OUTCOME_ALREADY_DONE;
		return OUTCOME_FAILED;
	}
	if (s == 404 && b->n == 1 && b->uncertain[0] &&
		(b->op == SQUADSTACK_OP_DELETE || b->op == SQUADSTACK_OP_DISABLE))
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
answer_is_uncertain(const SquadstackHttpResult *res)
{
	return res->status == 0 || (res->status >= 500 && res->status != 503);
}

/* What to keep as the error: the API's body verbatim, or what went wrong. */
static char *
error_text(const SquadstackHttpResult *res, CallOutcome outcome)
{
	switch (outcome)
	{
		case OUTCOME_SENT:
			if (res->body_len == 0 || squadstack_json_is_valid(res->body, res->body_len))
				return NULL;
			return psprintf("HTTP %ld with an answer that is not JSON, taken as accepted: %s",
							res->status, squadstack_clean_text(res->body, res->body_len, 200));
		case OUTCOME_ALREADY_DONE:
			return psprintf("already done: re-sent after an uncertain attempt, the API answered HTTP %ld: %s",
							res->status, squadstack_clean_text(res->body, res->body_len, 500));
		case OUTCOME_FAILED:
		case OUTCOME_SPLIT:
			if (res->status == 413)
				return psprintf("HTTP 413: the API refused the request as too large: %s",
								squadstack_clean_text(res->body, res->body_len, 500));
			return squadstack_clean_text(res->body, res->body_len, SQUADSTACK_MAX_ERROR_TEXT);
		default:
			break;
	}
	if (res->status == 0)
		return pstrdup(res->error ? res->error : "no answer");
	return psprintf("HTTP %ld: %s", res->status,
					squadstack_clean_text(res->body, res->body_len, 500));
}

/* Step 3: complete the call's record and move its operations on. */
void
squadstack_record(const SquadstackConfig *cfg, SquadstackBatch *b, const SquadstackHttpResult *res)
{
	CallOutcome outcome = classify(cfg, b, res);
	char	   *error = error_text(res, outcome);
	Datum	   *states = palloc(sizeof(Datum) * b->n);
	Datum	   *add_attempt = palloc(sizeof(Datum) * b->n);
	Datum	   *delay_ms = palloc(sizeof(Datum) * b->n);
	Datum		ids = PointerGetDatum(construct_array_builtin(b->ids, b->n, INT8OID));
	bool		uncertain = answer_is_uncertain(res);
	int			i;

	squadstack_log_call_end(b->call_id, res, error);

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
					delay = (double) squadstack_backoff_ms(b->attempts[i] + 1, cfg->retry_base_ms,
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
		SQUADSTACK_EXEC_KEPT("UPDATE squadstack.outbox o SET"
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
	squadstack_note_work(b->campaign);

	if (outcome == OUTCOME_AUTH_PAUSE || outcome == OUTCOME_PAUSE)
		(void) squadstack_pause_token_if_needed(cfg, b->token_id, res);
	else if (outcome != OUTCOME_RETRY)
	{
		if (outcome == OUTCOME_SENT || outcome == OUTCOME_ALREADY_DONE)
			squadstack_token_answered(b->token_id);
		squadstack_campaign_answered(b->campaign);
	}

	if (outcome == OUTCOME_SENT || outcome == OUTCOME_ALREADY_DONE)
		(void) squadstack_registry_record_answer(ids, b->op, true);
	else if (outcome == OUTCOME_FAILED ||
			 (outcome == OUTCOME_RETRY && b->op == SQUADSTACK_OP_CREATE))
		(void) squadstack_registry_record_answer(ids, b->op, false);
}

/*
 * A call that failed in the extension itself (see deliver.c): its
 * operations go back to the queue with an attempt counted and a backoff
 * (failed after max_attempts; uncertain if the API may have seen them),
 * and the call and the operations say what happened.
 */
void
squadstack_record_failed_call(const SquadstackConfig *cfg, int64 call_id, const char *error,
					   bool uncertain)
{
	Oid			argtypes[6] = {INT8OID, TEXTOID, INT4OID, INT4OID, INT4OID, BOOLOID};
	Datum		args[6];

	args[0] = Int64GetDatum(call_id);
	args[1] = CStringGetTextDatum(error);
	args[2] = Int32GetDatum(cfg->max_attempts);
	args[3] = Int32GetDatum(cfg->retry_base_ms);
	args[4] = Int32GetDatum(cfg->retry_max_ms);
	args[5] = BoolGetDatum(uncertain);
	SQUADSTACK_EXEC_KEPT("UPDATE squadstack.outbox SET"
			 " state = CASE WHEN attempts + 1 >= $3 THEN 'failed' ELSE 'queued' END,"
			 " attempts = attempts + 1,"
			 " next_attempt_at = clock_timestamp() + least($4 * 2 ^ attempts, $5)"
			 "   * interval '1 millisecond',"
			 " uncertain = uncertain OR $6, error = $2,"
			 " lease_pid = NULL, leased_at = NULL, lease_expires_at = NULL "
			 "WHERE call_id = $1 AND state = 'sending'",
			 6, argtypes, args, NULL, SPI_OK_UPDATE);
	squadstack_log_call_error(call_id, error);
}
