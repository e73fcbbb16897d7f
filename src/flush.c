/*-------------------------------------------------------------------------
 *
 * flush.c
 *		squadstack_flush(): deliver what is due now, on behalf of the caller.
 *
 * A SQL function runs inside its caller's transaction, but every claim and
 * every outcome must commit on its own (other senders must see them, and
 * no transaction may stay open during an HTTP call).  So the calls are made
 * by a short-lived background worker started for this flush, with the
 * caller's settings; the caller waits for it and returns its count.  If
 * the caller is cancelled or terminated, the worker is stopped too, which
 * aborts a call in progress.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "tcop/tcopprot.h"
#include "utils/elog.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "squadstack.h"

PG_FUNCTION_INFO_V1(squadstack_flush);

PGDLLEXPORT void squadstack_flush_main(Datum arg);

/* what the caller and the flush worker share */
typedef struct FlushShared
{
	Oid			database;
	Oid			user;
	int			max_calls;
	SqsConfig	cfg;
	bool		done;
	int			calls;
	char		error[1024];
} FlushShared;

Datum
squadstack_flush(PG_FUNCTION_ARGS)
{
	int			max_calls = PG_ARGISNULL(0) ? 0 : PG_GETARG_INT32(0);
	dsm_segment *seg;
	FlushShared *shared;
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	BgwHandleStatus status;
	pid_t		pid;
	int			calls;

	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot flush the squadstack outbox during recovery"),
				 errhint("Delivery starts on the primary, or on this server after promotion.")));
	if (!PG_ARGISNULL(0) && max_calls < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_calls must be at least 1 or null, not %d", max_calls)));

	seg = dsm_create(sizeof(FlushShared), 0);
	shared = dsm_segment_address(seg);
	memset(shared, 0, sizeof(*shared));
	shared->database = MyDatabaseId;
	/* the function runs as the extension owner, who may read tokens */
	shared->user = GetUserId();
	shared->max_calls = max_calls;
	sqs_config_from_gucs(&shared->cfg);

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "squadstack");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "squadstack_flush_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "squadstack flush for PID %d", MyProcPid);
	snprintf(worker.bgw_type, BGW_MAXLEN, "squadstack flush");
	worker.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(seg));
	worker.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start a squadstack flush worker"),
				 errhint("Raise max_worker_processes; every squadstack_flush() needs one worker slot while it runs.")));

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
				 errmsg("postmaster exited during squadstack_flush()")));
	if (shared->error[0] != '\0')
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("squadstack flush failed: %s", shared->error)));
	if (!shared->done)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("squadstack flush worker stopped before it finished"),
				 errdetail("%d API calls had been made.", shared->calls)));
	calls = shared->calls;
	dsm_detach(seg);
	PG_RETURN_INT32(calls);
}

void
squadstack_flush_main(Datum arg)
{
	dsm_segment *seg;
	FlushShared *shared;
	SqsDeliveryResult result;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	seg = dsm_attach(DatumGetUInt32(arg));
	if (seg == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("could not attach to the squadstack flush request")));
	shared = dsm_segment_address(seg);

	BackgroundWorkerInitializeConnectionByOid(shared->database, shared->user, 0);
	/* the limiter relies on each statement seeing what others committed */
	SetConfigOption("default_transaction_isolation", "read committed",
					PGC_SUSET, PGC_S_OVERRIDE);

	PG_TRY();
	{
		sqs_deliver(&shared->cfg, shared->max_calls, &result);
		shared->calls = result.calls;
		shared->done = true;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		/* hand the message to the caller, then fail as usual */
		MemoryContextSwitchTo(TopMemoryContext);
		edata = CopyErrorData();
		strlcpy(shared->error, edata->message ? edata->message : "unknown error",
				sizeof(shared->error));
		FreeErrorData(edata);
		PG_RE_THROW();
	}
	PG_END_TRY();

	dsm_detach(seg);
	proc_exit(0);
}
