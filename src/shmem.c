/*-------------------------------------------------------------------------
 *
 * shmem.c
 *		State shared between the background worker and other backends:
 *		where to find the worker's latch (for wake-up at commit) and what
 *		the worker is doing (for squadstack_worker_status()).
 *
 * Exists only when the library is in shared_preload_libraries; everything
 * here is a no-op otherwise.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "shmem.h"


static SquadstackWorkerShared *shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/*
 * Set when this transaction queued work, reset at its end; the campaigns it
 * queued for (all_work: some it did not name, or more than fit).
 */
static bool wake_at_commit = false;
static bool xact_callback_registered = false;
static int	nnoted = 0;
static bool noted_all = false;
static char noted[SQUADSTACK_WORKER_NOTES][SQUADSTACK_MAX_CAMPAIGN_LEN + 1];

static void
squadstack_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(SquadstackWorkerShared)));
}

static void
squadstack_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("squadstack worker", sizeof(SquadstackWorkerShared), &found);
	if (!found)
	{
		memset(shared, 0, sizeof(*shared));
		SpinLockInit(&shared->mutex);
	}
	LWLockRelease(AddinShmemInitLock);
}

void
squadstack_shmem_init(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = squadstack_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = squadstack_shmem_startup;
}

SquadstackWorkerShared *
squadstack_worker_shared(void)
{
	return shared;
}

/*
 * Whether the worker, quiet, waits for this campaign anyway (with the
 * mutex held).
 */
static bool
campaign_waits(const char *campaign, TimestampTz now)
{
	int			j;

	for (j = 0; j < shared->nwaiting; j++)
		if (strcmp(shared->waiting[j], campaign) == 0)
			return shared->waiting_until[j] == 0 || shared->waiting_until[j] > now;
	return false;
}

/*
 * Hand this transaction's notes to the worker, and set its latch unless it
 * is quiet and every campaign noted waits anyway: then it finds the notes
 * when its wait ends, and CRM writers committing thousands of times a
 * second do not wake it every time.
 */
static void
wake_worker(void)
{
	Latch	   *latch = NULL;
	TimestampTz now = GetCurrentTimestamp();
	int			i;

	if (shared == NULL)
		return;
	SpinLockAcquire(&shared->mutex);
	if (shared->pid != 0 && shared->pid != MyProcPid)
	{
		bool		wake = !shared->quiet || noted_all;

		for (i = 0; i < nnoted && !wake; i++)
			wake = !campaign_waits(noted[i], now);
		if (wake)
			latch = shared->latch;
		if (noted_all)
			shared->all_work = true;
		for (i = 0; i < nnoted && !shared->all_work; i++)
		{
			int			j;

			for (j = 0; j < shared->nnoted; j++)
				if (strcmp(shared->noted[j], noted[i]) == 0)
					break;
			if (j < shared->nnoted)
				continue;
			if (shared->nnoted == SQUADSTACK_WORKER_NOTES)
				shared->all_work = true;
			else
				strlcpy(shared->noted[shared->nnoted++], noted[i],
						sizeof(shared->noted[0]));
		}
	}
	SpinLockRelease(&shared->mutex);
	if (latch != NULL)
		SetLatch(latch);
}

static void
forget_notes(void)
{
	wake_at_commit = false;
	noted_all = false;
	nnoted = 0;
}

static void
xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
			if (wake_at_commit)
				wake_worker();
			forget_notes();
			break;
		case XACT_EVENT_PREPARE:

			/*
			 * Its COMMIT PREPARED will wake nobody: wake the worker now, so
			 * that it sees the prepared transaction and looks for work
			 * every second until it is gone (worker.c).
			 */
			if (wake_at_commit)
			{
				noted_all = true;
				wake_worker();
			}
			forget_notes();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			forget_notes();
			break;
		default:
			break;
	}
}

static bool
prepare_wake(void)
{
	if (shared == NULL)
		return false;
	if (!xact_callback_registered)
	{
		RegisterXactCallback(xact_callback, NULL);
		xact_callback_registered = true;
	}
	wake_at_commit = true;
	return true;
}

/*
 * Wake the worker when the current transaction commits, so work it queued
 * is sent at once; nothing happens if it aborts.  The worker then looks at
 * every campaign.
 */
void
squadstack_wake_worker_at_commit(void)
{
	if (prepare_wake())
		noted_all = true;
}

/*
 * The same for work of one campaign: a worker that knows the campaign
 * waits for a rate slot or a paused token stays asleep.  Cheap enough for
 * every row a sync trigger queues.
 */
void
squadstack_note_work(const char *campaign)
{
	int			i;

	if (!prepare_wake() || noted_all)
		return;
	for (i = nnoted - 1; i >= 0; i--)
		if (strcmp(noted[i], campaign) == 0)
			return;
	if (nnoted == SQUADSTACK_WORKER_NOTES)
		noted_all = true;
	else
		strlcpy(noted[nnoted++], campaign, sizeof(noted[0]));
}

/* The worker announces itself; cleared again when it exits. */
static void
worker_detach(int code, Datum arg)
{
	SpinLockAcquire(&shared->mutex);
	shared->pid = 0;
	shared->latch = NULL;
	SpinLockRelease(&shared->mutex);
}

void
squadstack_worker_attach(Oid database)
{
	SpinLockAcquire(&shared->mutex);
	shared->pid = MyProcPid;
	shared->latch = MyLatch;
	shared->database = database;
	shared->started_at = GetCurrentTimestamp();
	shared->calls = 0;
	shared->errors = 0;
	shared->waiting_for[0] = '\0';
	shared->wait_until = 0;
	shared->nnoted = 0;
	shared->all_work = true;	/* look at everything first */
	shared->quiet = false;
	shared->nwaiting = 0;
	SpinLockRelease(&shared->mutex);
	before_shmem_exit(worker_detach, (Datum) 0);
}

/* What work arrived since the last call; forgets it. */
void
squadstack_worker_take_notes(SquadstackWorkNotes *notes)
{
	SpinLockAcquire(&shared->mutex);
	notes->n = shared->nnoted;
	notes->all_work = shared->all_work;
	memcpy(notes->campaigns, shared->noted, sizeof(notes->campaigns));
	shared->nnoted = 0;
	shared->all_work = false;
	SpinLockRelease(&shared->mutex);
}

/*
 * The worker says whether it is quiet, and which campaigns wait until
 * when; more than fit means not quiet.
 */
void
squadstack_worker_publish_waits(bool quiet, int n, const char *const *campaigns,
								const TimestampTz *until)
{
	int			i;

	if (n > SQUADSTACK_WORKER_NOTES)
		quiet = false;
	SpinLockAcquire(&shared->mutex);
	shared->quiet = quiet;
	shared->nwaiting = quiet ? n : 0;
	for (i = 0; i < shared->nwaiting; i++)
	{
		strlcpy(shared->waiting[i], campaigns[i], sizeof(shared->waiting[0]));
		shared->waiting_until[i] = until[i];
	}
	SpinLockRelease(&shared->mutex);
}

void
squadstack_worker_report(const char *waiting_for, TimestampTz until, int calls, int errors)
{
	SpinLockAcquire(&shared->mutex);
	strlcpy(shared->waiting_for, waiting_for, sizeof(shared->waiting_for));
	shared->wait_until = until;
	shared->calls += calls;
	shared->errors += errors;
	SpinLockRelease(&shared->mutex);
}

