/*-------------------------------------------------------------------------
 *
 * limiter.c
 *		The rate limiter, the call log (squadstack.api_calls) and token
 *		pauses (squadstack.token_state).
 *
 * Campaigns backed off after errors in the extension itself are kept in
 * squadstack.campaign_state, here too.
 *
 * The limiter is a sliding-window log kept in squadstack.api_calls: a call
 * is admitted when fewer than rate_limit calls of the same budget started
 * within the window (plus a small margin).  A budget is a business, whose
 * tokens share it, or a token that is a business of its own (token.c).
 * Admission is serialised per budget by a row lock on
 * squadstack.budget_state, so every session and process that sends shares
 * one limit, and the log survives restarts.  Pauses (429, 503, 401, 403)
 * stay with the token that was answered so.
 *
 * Everything here runs inside SPI, in a short transaction of a process
 * that delivers.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type_d.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "storage/proc.h"
#include "utils/timestamp.h"

#include "backoff.h"
#include "limiter.h"
#include "compat.h"
#include "spi_util.h"
#include "token.h"
#include "token_file.h"

const char *
squadstack_admission_wait_text(SquadstackAdmission result)
{
	switch (result)
	{
		case SQUADSTACK_ADMITTED:
			break;
		case SQUADSTACK_NO_RATE_SLOT:
			return "a rate slot";
		case SQUADSTACK_TOKEN_PAUSED:
			return "a paused token";
		case SQUADSTACK_TOKEN_REFUSED:
			return "a token to be changed";
	}
	return "work";
}

/* the longest budget name: "business:" and a business name */
#define BUDGET_MAX (SQUADSTACK_BUSINESS_MAX + 16)

/* the budget found for a token in this transaction, for the call's row */
static LocalTransactionId budget_lxid = InvalidLocalTransactionId;
static char budget_token_id[BUDGET_MAX];
static char budget_name[BUDGET_MAX];

/*
 * The budget a token's calls count in (token.c), found once a transaction:
 * the call admitted is logged in the budget whose lock admitted it, even if
 * a token's business changes in between.
 */
static const char *
budget_of(const char *token_id)
{
	if (budget_lxid != squadstack_my_lxid() || strcmp(budget_token_id, token_id) != 0)
	{
		strlcpy(budget_name, squadstack_token_budget(token_id), sizeof(budget_name));
		strlcpy(budget_token_id, token_id, sizeof(budget_token_id));
		budget_lxid = squadstack_my_lxid();
	}
	return budget_name;
}

/*
 * Lock the token's budget and say whether a call may start now; if not,
 * admit says why and until when.  A token is paused by its own pause, or
 * by a 429 answered to any token of its business.
 */
SquadstackAdmission
squadstack_admit_call(const SquadstackConfig *cfg, const char *token_id, SquadstackAdmit *admit)
{
	Oid			argtypes[3] = {TEXTOID, INT8OID, INT4OID};
	Datum		args[3];
	bool		isnull;
	TimestampTz now = GetCurrentTimestamp();
	int64		window_ms = squadstack_window_with_margin_ms(cfg->rate_window_ms);
	Datum		budget = CStringGetTextDatum(budget_of(token_id));
	Oid			pause_types[2] = {TEXTOID, TEXTOID};

	memset(admit, 0, sizeof(*admit));
	args[0] = CStringGetTextDatum(token_id);
	SQUADSTACK_EXEC_KEPT("INSERT INTO squadstack.token_state (token_id) VALUES ($1) "
			 "ON CONFLICT DO NOTHING",
			 1, argtypes, args, NULL, SPI_OK_INSERT);
	args[1] = budget;
	SQUADSTACK_EXEC_KEPT("SELECT paused_until FROM squadstack.token_state "
			 "WHERE token_id IN ($1, $2) ORDER BY paused_until DESC NULLS LAST LIMIT 1",
			 2, pause_types, args, NULL, SPI_OK_SELECT);
	if (SPI_processed == 1)
	{
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull && DatumGetTimestampTz(d) > now)
		{
			if (TIMESTAMP_NOT_FINITE(DatumGetTimestampTz(d)))
				admit->result = SQUADSTACK_TOKEN_REFUSED;
			else
			{
				admit->result = SQUADSTACK_TOKEN_PAUSED;
				admit->until = DatumGetTimestampTz(d);
			}
			return admit->result;
		}
	}

	/* one admission at a time per budget, until this transaction ends */
	args[0] = budget;
	SQUADSTACK_EXEC_KEPT("INSERT INTO squadstack.budget_state (budget) VALUES ($1) "
			 "ON CONFLICT DO NOTHING",
			 1, argtypes, args, NULL, SPI_OK_INSERT);
	SQUADSTACK_EXEC_KEPT("SELECT FROM squadstack.budget_state WHERE budget = $1 FOR UPDATE",
			 1, argtypes, args, NULL, SPI_OK_SELECT);

	/* the limit-th most recent call must have left the window */
	args[1] = Int64GetDatum(window_ms);
	args[2] = Int32GetDatum(cfg->rate_limit);
	SQUADSTACK_EXEC_KEPT("SELECT count(*), min(started_at) FROM ("
			 "  SELECT started_at FROM squadstack.api_calls"
			 "  WHERE budget = $1"
			 "    AND started_at > clock_timestamp() - $2 * interval '1 millisecond'"
			 "  ORDER BY started_at DESC LIMIT $3) s",
			 3, argtypes, args, NULL, SPI_OK_SELECT);
	admit->used = (int) DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
													SPI_tuptable->tupdesc, 1, &isnull));
	if (admit->used < cfg->rate_limit)
	{
		admit->result = SQUADSTACK_ADMITTED;
		return admit->result;
	}
	admit->result = SQUADSTACK_NO_RATE_SLOT;
	admit->until = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0],
													 SPI_tuptable->tupdesc, 2, &isnull)) +
		window_ms * 1000;
	return admit->result;
}

/*
 * Write the api_calls row of an admitted call; the limiter counts it from
 * now on, whatever becomes of the call.  Returns its id.
 */
int64
squadstack_log_call_start(const char *token_id, const char *campaign, const char *op,
				   const char *method, int n_leads)
{
	Oid			argtypes[6] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT4OID, TEXTOID};
	Datum		args[6];
	bool		isnull;

	args[0] = CStringGetTextDatum(token_id);
	args[1] = CStringGetTextDatum(campaign);
	args[2] = CStringGetTextDatum(op);
	args[3] = CStringGetTextDatum(method);
	args[4] = Int32GetDatum(n_leads);
	args[5] = CStringGetTextDatum(budget_of(token_id));
	SQUADSTACK_EXEC_KEPT("INSERT INTO squadstack.api_calls "
			 "(token_id, campaign_id, op, method, n_leads, started_at, sender_pid, budget) "
			 "VALUES ($1, $2, $3, $4, $5, clock_timestamp(), pg_backend_pid(), $6) RETURNING id",
			 6, argtypes, args, NULL, SPI_OK_INSERT_RETURNING);
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/* Complete the api_calls row with the answer. */
void
squadstack_log_call_end(int64 call_id, const SquadstackHttpResult *res, const char *error)
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
	SQUADSTACK_EXEC_KEPT("UPDATE squadstack.api_calls SET duration_ms = $2, http_status = $3,"
			 " error = $4, retry_after = $5 * interval '1 millisecond' WHERE id = $1",
			 5, argtypes, args, nulls, SPI_OK_UPDATE);
}

/* Note on an api_calls row what went wrong in the extension itself. */
void
squadstack_log_call_error(int64 call_id, const char *error)
{
	Oid			argtypes[2] = {INT8OID, TEXTOID};
	Datum		args[2];

	args[0] = Int64GetDatum(call_id);
	args[1] = CStringGetTextDatum(error);
	SQUADSTACK_EXEC_KEPT("UPDATE squadstack.api_calls SET error = $2 WHERE id = $1 AND error IS NULL",
			 2, argtypes, args, NULL, SPI_OK_UPDATE);
}

static void
pause_token(const SquadstackConfig *cfg, const char *token_id, const SquadstackHttpResult *res,
			bool until_changed)
{
	Oid			argtypes[3] = {TEXTOID, INT8OID, TEXTOID};
	Datum		args[3];
	char		nulls[3] = {' ', ' ', ' '};

	args[0] = CStringGetTextDatum(token_id);
	if (until_changed)
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

			SQUADSTACK_EXEC_KEPT("SELECT pause_count FROM squadstack.token_state WHERE token_id = $1",
					 1, argtypes, args, NULL, SPI_OK_SELECT);
			pauses = SPI_processed ? DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
																  SPI_tuptable->tupdesc, 1,
																  &isnull)) : 0;
			/* at least the base delay, so a pause is never zero */
			ms = cfg->retry_base_ms +
				squadstack_backoff_ms(pauses + 1, cfg->retry_base_ms, cfg->retry_max_ms,
							   pg_prng_double(&pg_global_prng_state));
		}
		args[1] = Int64GetDatum(ms);
		args[2] = CStringGetTextDatum(psprintf("HTTP %ld: %s", res->status,
											   res->status == 429 ? "rate limited by the API" :
											   "the API is unavailable"));
	}
	SQUADSTACK_EXEC_KEPT("UPDATE squadstack.token_state SET"
			 " paused_until = CASE WHEN $2 IS NULL THEN 'infinity'::timestamptz"
			 "   ELSE clock_timestamp() + $2 * interval '1 millisecond' END,"
			 " pause_reason = $3, pause_count = pause_count + 1, updated_at = now() "
			 "WHERE token_id = $1",
			 3, argtypes, args, nulls, SPI_OK_UPDATE);

	/*
	 * SquadStack counts its limit per business: a 429 pauses every token of
	 * the business, through a row of the business in token_state.
	 */
	if (res->status == 429 && strncmp(budget_of(token_id), "business:", 9) == 0)
	{
		args[0] = CStringGetTextDatum(budget_of(token_id));
		SQUADSTACK_EXEC_KEPT("INSERT INTO squadstack.token_state AS s"
				 " (token_id, paused_until, pause_reason, pause_count)"
				 " VALUES ($1, clock_timestamp() + $2 * interval '1 millisecond', $3, 1)"
				 " ON CONFLICT (token_id) DO UPDATE SET"
				 "  paused_until = greatest(s.paused_until, excluded.paused_until),"
				 "  pause_reason = excluded.pause_reason, updated_at = now()",
				 3, argtypes, args, nulls, SPI_OK_INSERT);
	}
}

/*
 * Pause a token after an answer that says so (401/403 until it changes,
 * 429/503 for Retry-After or a backoff); false for any other answer.
 */
bool
squadstack_pause_token_if_needed(const SquadstackConfig *cfg, const char *token_id,
						  const SquadstackHttpResult *res)
{
	if (res->status == 401 || res->status == 403)
		pause_token(cfg, token_id, res, true);
	else if (res->status == 429 || res->status == 503)
		pause_token(cfg, token_id, res, false);
	else
		return false;
	return true;
}

/* The API accepted a call with the token: pauses start over from the base. */
void
squadstack_token_answered(const char *token_id)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];

	args[0] = CStringGetTextDatum(token_id);
	SQUADSTACK_EXEC_KEPT("UPDATE squadstack.token_state SET pause_count = 0 "
			 "WHERE token_id = $1 AND pause_count > 0",
			 1, argtypes, args, NULL, SPI_OK_UPDATE);
}

/*
 * An error in the extension itself struck a call of the campaign (see
 * deliver.c): back it off, exponentially from retry_base up to retry_max,
 * so that other campaigns go first.
 */
void
squadstack_campaign_backoff(const SquadstackConfig *cfg, const char *campaign, const char *error)
{
	Oid			argtypes[4] = {TEXTOID, TEXTOID, INT4OID, INT4OID};
	Datum		args[4];

	args[0] = CStringGetTextDatum(campaign);
	args[1] = CStringGetTextDatum(error);
	args[2] = Int32GetDatum(cfg->retry_base_ms);
	args[3] = Int32GetDatum(cfg->retry_max_ms);
	SQUADSTACK_EXEC_KEPT("INSERT INTO squadstack.campaign_state AS s"
			 " (campaign_id, failures, backoff_until, last_error)"
			 " VALUES ($1, 1, clock_timestamp() + $3 * interval '1 millisecond', $2)"
			 " ON CONFLICT (campaign_id) DO UPDATE SET"
			 "  failures = s.failures + 1,"
			 "  backoff_until = clock_timestamp()"
			 "    + least($3 * 2 ^ s.failures, $4) * interval '1 millisecond',"
			 "  last_error = $2, updated_at = now()",
			 4, argtypes, args, NULL, SPI_OK_INSERT);
}

/* The API answered the campaign's call: it is no longer backed off. */
void
squadstack_campaign_answered(const char *campaign)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];

	args[0] = CStringGetTextDatum(campaign);
	SQUADSTACK_EXEC_KEPT("DELETE FROM squadstack.campaign_state WHERE campaign_id = $1",
			 1, argtypes, args, NULL, SPI_OK_DELETE);
}

