/*-------------------------------------------------------------------------
 *
 * job.c
 *		Run API work on behalf of the calling session, in a short-lived
 *		background worker: a flush or a responses sync.
 *
 * A SQL function runs inside its caller's transaction, but every claim and
 * every outcome must commit on its own (other senders must see them, and
 * no transaction may stay open during an HTTP call).  So the calls are made
 * by a short-lived background worker started for the job, with the
 * caller's settings; the caller waits for it and returns its result.  If
 * the caller is cancelled or terminated, the worker is stopped too, which
 * aborts a call in progress.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/elog.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "backoff.h"
#include "deliver.h"
#include "guc.h"
#include "job.h"

PGDLLEXPORT void squadstack_job_main(Datum arg);

/* what the caller and the job's worker share */
typedef struct JobShared
{
	Oid			database;
	Oid			user;
	SquadstackJob		job;
	SquadstackConfig	cfg;
	bool		done;
	int64		result;
	/* the error that ended the job, re-raised in the caller */
	int			sqlerrcode;
	char		error[1024];
	char		detail[1024];
	char		hint[512];
} JobShared;

static const char *
job_name(SquadstackJobKind kind)
{
	return kind == SQUADSTACK_JOB_FLUSH ? "flush" : "response sync";
}

int64
squadstack_run_job(const SquadstackJob *job)
{
	dsm_segment *seg;
	JobShared  *shared;
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	BgwHandleStatus status;
	pid_t		pid;
	int64		result;

	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot call the SquadStack API during recovery"),
				 errhint("Delivery starts on the primary, or on this server after promotion.")));

	seg = dsm_create(sizeof(JobShared), 0);
	shared = dsm_segment_address(seg);
	memset(shared, 0, sizeof(*shared));
	shared->database = MyDatabaseId;
	/* the SQL functions run as the extension owner, who may read tokens */
	shared->user = GetUserId();
	shared->job = *job;
	squadstack_config_from_gucs(&shared->cfg);

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "squadstack");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "squadstack_job_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "squadstack %s for PID %d",
			 job_name(job->kind), MyProcPid);
	snprintf(worker.bgw_type, BGW_MAXLEN, "squadstack %s", job_name(job->kind));
	worker.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(seg));
	worker.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start a squadstack %s worker", job_name(job->kind)),
				 errhint("Raise max_worker_processes; every squadstack_flush() or squadstack_sync_responses() needs one worker slot while it runs.")));

	PG_TRY();
	{
		status = WaitForBackgroundWorkerStartup(handle, &pid);
		if (status == BGWH_STARTED)
			status = WaitForBackgroundWorkerShutdown(handle);
	}
	PG_CATCH();
	{
		/* cancelled while waiting: stop the worker and its HTTP call */
		TerminateBackgroundWorker(handle);
		PG_RE_THROW();
	}
	PG_END_TRY();

	if (status == BGWH_POSTMASTER_DIED)
		ereport(FATAL,
				(errcode(ERRCODE_ADMIN_SHUTDOWN),
				 errmsg("postmaster exited during a squadstack %s", job_name(job->kind))));
	if (shared->error[0] != '\0')
		ereport(ERROR,
				(errcode(shared->sqlerrcode ? shared->sqlerrcode : ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("squadstack %s failed: %s", job_name(job->kind), shared->error),
				 shared->detail[0] ? errdetail_internal("%s", shared->detail) : 0,
				 shared->hint[0] ? errhint("%s", shared->hint) : 0));
	if (!shared->done)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("squadstack %s worker stopped before it finished", job_name(job->kind))));
	result = shared->result;
	dsm_detach(seg);
	return result;
}

/*
 * Deliver what is due.  A flush does not wait for rate budget, with one
 * exception: a slot that frees within the limiter's safety margin is
 * waited for, so that a flush scheduled once per window (pg_cron's every
 * minute) finds the budget of the previous run free again instead of
 * missing it by the margin.
 */
static int64
flush_run(const SquadstackConfig *cfg, int max_calls)
{
	int64		calls = 0;
	int			waits;
	int64		margin_ms = squadstack_window_with_margin_ms(cfg->rate_window_ms) - cfg->rate_window_ms;

	for (waits = 0; waits < 1000; waits++)
	{
		SquadstackDeliveryResult result;
		long		secs;
		int			usecs;
		int64		ms;

		if (max_calls > 0 && calls >= max_calls)
			break;
		squadstack_deliver(cfg, max_calls > 0 ? max_calls - (int) calls : 0, &result);
		calls += result.calls;
		if (result.more || result.next_wakeup == 0 ||
			result.waiting_for != SQUADSTACK_WAIT_RATE_SLOT)
			break;
		TimestampDifference(GetCurrentTimestamp(), result.next_wakeup, &secs, &usecs);
		ms = (int64) secs * 1000 + usecs / 1000 + 1;
		if (ms > margin_ms + 100)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	return calls;
}

void
squadstack_job_main(Datum arg)
{
	dsm_segment *seg;
	JobShared  *shared;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	seg = dsm_attach(DatumGetUInt32(arg));
	if (seg == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("could not attach to the squadstack job request")));
	shared = dsm_segment_address(seg);

	BackgroundWorkerInitializeConnectionByOid(shared->database, shared->user, 0);

	/*
	 * The caller waits for this worker on a latch, which the deadlock
	 * detector does not see.  If the caller's transaction holds a lock this
	 * worker needs (say it queued, in the same transaction, a create of a
	 * lead whose earlier operation this worker sends), both would wait for
	 * ever: lock_timeout makes this worker give up on the lock instead.
	 */
	squadstack_set_delivery_session(Min(shared->cfg.lock_timeout_ms,
								 shared->cfg.request_timeout_ms));
	squadstack_config_to_session(&shared->cfg);

	PG_TRY();
	{
		bool		current;

		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		current = squadstack_schema_is_current();
		CommitTransactionCommand();
		if (!current)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the squadstack extension in this database is older than its library"),
					 errhint("Run ALTER EXTENSION squadstack UPDATE.")));
		if (shared->job.kind == SQUADSTACK_JOB_FLUSH)
			shared->result = flush_run(&shared->cfg, shared->job.max_calls);
		else
			shared->result = squadstack_sync_responses_run(&shared->cfg, &shared->job.responses);
		shared->done = true;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		/* hand the message to the caller, then fail as usual */
		MemoryContextSwitchTo(TopMemoryContext);
		edata = CopyErrorData();
		shared->sqlerrcode = edata->sqlerrcode;
		strlcpy(shared->error, edata->message ? edata->message : "unknown error",
				sizeof(shared->error));
		if (edata->detail)
			strlcpy(shared->detail, edata->detail, sizeof(shared->detail));
		if (edata->hint)
			strlcpy(shared->hint, edata->hint, sizeof(shared->hint));
		FreeErrorData(edata);
		PG_RE_THROW();
	}
	PG_END_TRY();

	dsm_detach(seg);
	proc_exit(0);
}
