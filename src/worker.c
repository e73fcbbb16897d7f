/*-------------------------------------------------------------------------
 *
 * worker.c
 *		The background worker: delivers the outbox continuously.
 *
 * One worker, registered when the library is preloaded, connects to
 * squadstack.database_name.  It sleeps on its latch until a transaction
 * that queued work commits (see shmem.c), the next retry or rate slot is
 * due, or a signal arrives; it does not poll.  Each database step is its
 * own short transaction (deliver.c), so nothing is held during HTTP calls.
 *
 * It starts only once recovery has finished, so on a hot standby it stays
 * away until promotion, then delivers from the replicated outbox.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/twophase.h"
#include "access/xact.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/pmsignal.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "deliver.h"
#include "guc.h"
#include "retention.h"
#include "shmem.h"
#include "spi_util.h"
#include "worker.h"

PGDLLEXPORT void squadstack_worker_main(Datum arg);

PG_FUNCTION_INFO_V1(squadstack_worker_status);


/* calls per round: between rounds the worker re-reads its configuration */
#define CALLS_PER_ROUND 20
/* how often to look for the extension while it is not installed */
#define NO_EXTENSION_SLEEP_MS 10000
/* the longest sleep; also how often retention runs */
#define MAX_SLEEP_MS (5 * 60 * 1000)
/* the longest sleep while a prepared transaction may commit queued work */
#define PREPARED_SLEEP_MS 1000

void
squadstack_worker_register(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 1;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "squadstack");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "squadstack_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "squadstack worker");
	snprintf(worker.bgw_type, BGW_MAXLEN, "squadstack worker");
	RegisterBackgroundWorker(&worker);
}

/* whether the extension exists in this database, and if so, in which shape */
typedef enum SchemaState
{
	SCHEMA_MISSING,
	SCHEMA_OLDER,				/* ALTER EXTENSION UPDATE has not run yet */
	SCHEMA_CURRENT
} SchemaState;

static SchemaState
schema_state(void)
{
	SchemaState state = SCHEMA_MISSING;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (OidIsValid(get_extension_oid("squadstack", true)))
		state = squadstack_schema_is_current() ? SCHEMA_CURRENT : SCHEMA_OLDER;
	CommitTransactionCommand();
	return state;
}

/*
 * A worker whose postmaster has died commits nothing more.  A call cut
 * short by the death (http.c aborts the transfer) is then not recorded as a
 * failed attempt, and no further call is claimed: the worker exits at its
 * next commit, and after the restart its lease is given back like that of
 * any sender that stopped during a call.
 */
static void
worker_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_PRE_COMMIT && !PostmasterIsAlive())
		ereport(FATAL,
				(errcode(ERRCODE_ADMIN_SHUTDOWN),
				 errmsg("terminating squadstack worker because the postmaster died")));
}

/*
 * Whether a prepared transaction of this database is pending.  Its COMMIT
 * PREPARED, maybe from another session, wakes nobody, so while there is one
 * the worker looks for work at least every PREPARED_SLEEP_MS.
 */
static bool
prepared_xacts_pending(void)
{
	bool		pending;

	if (max_prepared_xacts == 0)
		return false;
	squadstack_begin_step("squadstack: looking for prepared transactions");
	squadstack_exec("SELECT 1 FROM pg_catalog.pg_prepared_xacts"
			 " WHERE database = pg_catalog.current_database() LIMIT 1",
			 0, NULL, NULL, NULL, SPI_OK_SELECT);
	pending = SPI_processed > 0;
	squadstack_end_step();
	return pending;
}

static long
ms_until(TimestampTz when)
{
	long		secs;
	int			usecs;

	TimestampDifference(GetCurrentTimestamp(), when, &secs, &usecs);
	return secs * 1000 + (usecs + 999) / 1000;
}

/*
 * Whether the work that arrived (notes) can wait: every campaign it was for
 * is known to wait for a rate slot, a paused token, a backoff or a fuller
 * batch (blocked, from the last delivery that found nothing to send).
 * Then the worker stays asleep instead of looking at the database on every
 * commit.
 */
static bool
work_can_wait(const SquadstackWorkNotes *notes, const SquadstackDeliveryResult *last)
{
	TimestampTz now = GetCurrentTimestamp();
	int			i;

	if (notes->all_work || last->blocked_overflow)
		return false;
	for (i = 0; i < notes->n; i++)
	{
		int			j;

		for (j = 0; j < last->nblocked; j++)
			if (strcmp(last->blocked[j].campaign, notes->campaigns[i]) == 0)
				break;
		if (j == last->nblocked)
			return false;		/* a campaign not known to wait */
		if (last->blocked[j].until != 0 && last->blocked[j].until <= now)
			return false;
	}
	return true;
}

void
squadstack_worker_main(Datum arg)
{
	TimestampTz last_retention = 0;
	SquadstackDeliveryResult result;
	bool		quiet = false;	/* result says what waits, and until when */

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(squadstack_database_name, NULL, 0);
	squadstack_set_delivery_session(squadstack_lock_timeout_ms);
	squadstack_worker_attach(MyDatabaseId);
	RegisterXactCallback(worker_xact_callback, NULL);
	pgstat_report_appname("squadstack worker");
	memset(&result, 0, sizeof(result));

	for (;;)
	{
		long		timeout;
		char		activity[128];
		SquadstackWorkNotes notes;
		SchemaState schema;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			squadstack_set_delivery_session(squadstack_lock_timeout_ms);
			quiet = false;		/* a token or a limit may have changed */
		}

		squadstack_worker_take_notes(&notes);
		if (quiet && result.next_wakeup != 0 &&
			GetCurrentTimestamp() < result.next_wakeup &&
			work_can_wait(&notes, &result))
		{
			/* nothing to do before the wait ends: no database work */
			timeout = Max(ms_until(result.next_wakeup), 1);
			timeout = Min(timeout, PREPARED_SLEEP_MS);
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 timeout, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			continue;
		}
		quiet = false;
		squadstack_worker_publish_waits(false, 0, NULL, NULL);

		schema = schema_state();
		if (schema != SCHEMA_CURRENT)
		{
			bool		missing = (schema == SCHEMA_MISSING);

			squadstack_worker_report(missing ? "the extension to be created" :
							  "the extension to be updated", 0, 0, 0);
			pgstat_report_activity(STATE_IDLE, missing ?
								   "waiting for CREATE EXTENSION squadstack" :
								   "waiting for ALTER EXTENSION squadstack UPDATE");
			timeout = NO_EXTENSION_SLEEP_MS;
		}
		else
		{
			SquadstackConfig	cfg;
			const char *waiting;

			squadstack_config_from_gucs(&cfg);
			cfg.linger = true;
			squadstack_deliver(&cfg, CALLS_PER_ROUND, &result);

			if (result.more)
				timeout = 0;
			else if (result.next_wakeup != 0)
				timeout = Max(ms_until(result.next_wakeup), 1);
			else
				timeout = MAX_SLEEP_MS;
			timeout = Min(timeout, MAX_SLEEP_MS);
			quiet = !result.more;
			/* answers whose registry update waits for a lock: look again soon */
			if (result.records_pending)
			{
				timeout = Min(timeout, PREPARED_SLEEP_MS);
				quiet = false;
			}
			if (timeout > PREPARED_SLEEP_MS && prepared_xacts_pending())
			{
				timeout = PREPARED_SLEEP_MS;
				quiet = false;
			}

			if (!result.more &&
				TimestampDifferenceExceeds(last_retention, GetCurrentTimestamp(), MAX_SLEEP_MS))
			{
				squadstack_retention_run(squadstack_retention_s, cfg.rate_window_ms);
				last_retention = GetCurrentTimestamp();
			}

			waiting = result.more ? "nothing: delivering" : squadstack_wait_text(result.waiting_for);
			squadstack_worker_report(waiting,
							  (result.more || result.next_wakeup == 0) ? 0 : result.next_wakeup,
							  result.calls, result.errors);
			/* not palloc'd: this loop runs in TopMemoryContext */
			snprintf(activity, sizeof(activity), "waiting for %s", waiting);
			pgstat_report_activity(STATE_IDLE, result.more ? "delivering" : activity);
		}

		if (quiet && !result.blocked_overflow)
		{
			const char *campaigns[SQUADSTACK_MAX_BLOCKED];
			TimestampTz until[SQUADSTACK_MAX_BLOCKED];
			int			i;

			for (i = 0; i < result.nblocked; i++)
			{
				campaigns[i] = result.blocked[i].campaign;
				until[i] = result.blocked[i].until;
			}
			squadstack_worker_publish_waits(true, result.nblocked, campaigns, until);
		}

		if (timeout > 0)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 timeout, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
	}
}

/*
 * squadstack_worker_status(): whether the worker runs, its pid and
 * database, what it waits for and until when, calls and errors since it
 * started.
 */
Datum
squadstack_worker_status(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[8];
	bool		nulls[8];
	SquadstackWorkerShared copy;
	SquadstackWorkerShared *shared = squadstack_worker_shared();

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);

	memset(nulls, true, sizeof(nulls));
	values[0] = BoolGetDatum(false);
	nulls[0] = false;

	if (shared != NULL)
	{
		SpinLockAcquire(&shared->mutex);
		memcpy(&copy, shared, sizeof(copy));
		SpinLockRelease(&shared->mutex);

		if (copy.pid != 0)
		{
			char	   *dbname = get_database_name(copy.database);

			values[0] = BoolGetDatum(true);
			values[1] = Int32GetDatum(copy.pid);
			nulls[1] = false;
			if (dbname != NULL)
			{
				values[2] = CStringGetTextDatum(dbname);
				nulls[2] = false;
			}
			if (copy.waiting_for[0] != '\0')
			{
				values[3] = CStringGetTextDatum(copy.waiting_for);
				nulls[3] = false;
			}
			if (copy.wait_until != 0)
			{
				values[4] = TimestampTzGetDatum(copy.wait_until);
				nulls[4] = false;
			}
			values[5] = Int64GetDatum(copy.calls);
			values[6] = Int64GetDatum(copy.errors);
			values[7] = TimestampTzGetDatum(copy.started_at);
			nulls[5] = nulls[6] = nulls[7] = false;
		}
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
