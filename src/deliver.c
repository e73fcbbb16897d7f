/*-------------------------------------------------------------------------
 *
 * deliver.c
 *		Send due outbox operations to the SquadStack API.
 *
 * Each call goes through three steps:
 *
 *	1. claim (one short transaction, claim.c): lease a call's worth of due
 *	   operations of one campaign whose token may make a call now;
 *	2. the HTTP call (http.c), with no transaction, snapshot or lock held;
 *	3. record (one short transaction, record.c): complete the api_calls row
 *	   and move the operations on according to the answer.
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
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "deliver.h"
#include "limiter.h"
#include "outbox.h"
#include "registry.h"
#include "spi_util.h"

const char *
squadstack_wait_text(SquadstackWait wait)
{
	switch (wait)
	{
		case SQUADSTACK_WAIT_WORK:
			return "work";
		case SQUADSTACK_WAIT_RETRY:
			return "a retry";
		case SQUADSTACK_WAIT_RATE_SLOT:
			return "a rate slot";
		case SQUADSTACK_WAIT_PAUSED_TOKEN:
			return "a paused token";
		case SQUADSTACK_WAIT_TOKEN_CHANGE:
			return "a token to be changed";
		case SQUADSTACK_WAIT_BACKOFF:
			return "a campaign to be retried after errors";
		case SQUADSTACK_WAIT_FULLER_BATCH:
			return "a fuller batch";
		case SQUADSTACK_WAIT_ERROR:
			return "a retry after an error";
	}
	return "work";
}

/*
 * Settings for a process that delivers (the worker, a flush or response
 * sync job), right after it connects, as a superuser.
 */
void
squadstack_set_delivery_session(int lock_timeout_ms)
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
squadstack_schema_is_current(void)
{
	bool		current;
	bool		isnull;
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];

	args[0] = CStringGetTextDatum(SQUADSTACK_VERSION);
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	squadstack_exec("SELECT extversion = $1"
			 " FROM pg_catalog.pg_extension WHERE extname = 'squadstack'",
			 1, argtypes, args, NULL, SPI_OK_SELECT);
	current = SPI_processed == 1 &&
		DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	PopActiveSnapshot();
	SPI_finish();
	return current;
}


/* the campaign being claimed, for the error handler (not palloc'd) */
static char current_campaign[SQUADSTACK_MAX_CAMPAIGN_LEN + 1];

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
record_failure(const SquadstackConfig *cfg, const SquadstackBatch *b, CallStage stage,
			   const char *campaign, const char *message)
{
	char	   *error;

	error = psprintf("could not %s: %s",
					 stage == STAGE_CLAIM ? "prepare a call" :
					 stage == STAGE_CALL ? "make the call" : "record the answer",
					 message);

	squadstack_begin_step("squadstack: recording an error");
	if (stage != STAGE_CLAIM && b->call_id != 0)
		squadstack_record_failed_call(cfg, b->call_id, error, stage == STAGE_RECORD);
	if (campaign[0] != '\0')
		squadstack_campaign_backoff(cfg, campaign, error);
	squadstack_end_step();
}

/*
 * After an ERROR in a delivery step: report it, roll back, and record it
 * (record_failure), itself guarded.  As autovacuum does after an error on
 * one table, so that one operation, payload or campaign cannot stop the
 * worker.
 */
static void
recover_from_error(const SquadstackConfig *cfg, const SquadstackBatch *b, CallStage stage,
				   MemoryContext errcxt)
{
	ErrorData  *edata;
	char		campaign[SQUADSTACK_MAX_CAMPAIGN_LEN + 1];
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
		squadstack_begin_step("squadstack: updating the lead registry");
		left = squadstack_registry_apply_pending();
		squadstack_end_step();
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
squadstack_deliver(const SquadstackConfig *cfg, int max_calls, SquadstackDeliveryResult *result)
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

	(void) squadstack_registry_take_deferred();
	result->records_pending = retry_pending_records(errcxt);

	while (max_calls <= 0 || result->calls < max_calls)
	{
		SquadstackBatch	b;
		SquadstackHttpResult res;
		volatile CallStage stage = STAGE_CLAIM;
		volatile bool claimed = false;
		volatile bool failed = false;

		CHECK_FOR_INTERRUPTS();
		MemoryContextReset(cxt);
		MemoryContextReset(errcxt);
		memset(&b, 0, sizeof(b));
		current_campaign[0] = '\0';
		result->next_wakeup = 0;
		result->waiting_for = SQUADSTACK_WAIT_WORK;
		result->nblocked = 0;
		result->blocked_overflow = false;

		PG_TRY();
		{
			squadstack_begin_step("squadstack: claiming operations");
			claimed = squadstack_claim(cfg, &b, result, cxt,
								current_campaign, sizeof(current_campaign));
			squadstack_end_step();

			if (claimed)
			{
				MemoryContext old;

				stage = STAGE_CALL;
				pgstat_report_activity(STATE_RUNNING, "squadstack: calling the API");
				old = MemoryContextSwitchTo(cxt);
				squadstack_http_call(b.method, b.url, b.token, b.body, cfg->request_timeout_ms, &res);
				MemoryContextSwitchTo(old);
				result->calls++;
				if (res.status < 200 || res.status >= 300)
					result->errors++;

				stage = STAGE_RECORD;
				squadstack_begin_step("squadstack: recording the answer");
				squadstack_record(cfg, &b, &res);
				squadstack_end_step();
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
				result->waiting_for = SQUADSTACK_WAIT_ERROR;
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
	result->records_pending |= squadstack_registry_take_deferred();
	MemoryContextDelete(cxt);
	MemoryContextDelete(errcxt);
}
