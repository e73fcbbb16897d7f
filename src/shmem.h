/*-------------------------------------------------------------------------
 *
 * shmem.h
 *		What the background worker shares with other backends (shmem.c):
 *		its latch, woken at commit, and what it is doing.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQUADSTACK_SHMEM_H
#define SQUADSTACK_SHMEM_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "storage/latch.h"
#include "storage/spin.h"

#include "squadstack.h"

#define SQUADSTACK_WORKER_NOTES 32

typedef struct SquadstackWorkerShared
{
	slock_t		mutex;
	pid_t		pid;			/* 0 while no worker runs */
	Latch	   *latch;
	Oid			database;
	TimestampTz started_at;
	int64		calls;
	int64		errors;
	char		waiting_for[96];
	TimestampTz wait_until;

	/*
	 * Campaigns with new work since the worker last looked, so that it can
	 * stay asleep while all of them wait for a rate slot or a token pause.
	 * all_work: work of any campaign, or more campaigns than fit here.
	 */
	int			nnoted;
	bool		all_work;
	char		noted[SQUADSTACK_WORKER_NOTES][SQUADSTACK_MAX_CAMPAIGN_LEN + 1];

	/*
	 * While quiet, the worker has nothing to send before a time: the
	 * campaigns listed wait (for a rate slot, a paused token, a backoff or a
	 * fuller batch) until waiting_until (0: until something else changes).
	 * A commit of work for these campaigns only is noted without waking it.
	 */
	bool		quiet;
	int			nwaiting;
	char		waiting[SQUADSTACK_WORKER_NOTES][SQUADSTACK_MAX_CAMPAIGN_LEN + 1];
	TimestampTz waiting_until[SQUADSTACK_WORKER_NOTES];
} SquadstackWorkerShared;

/* what the worker was woken for (squadstack_worker_take_notes) */
typedef struct SquadstackWorkNotes
{
	int			n;
	bool		all_work;
	char		campaigns[SQUADSTACK_WORKER_NOTES][SQUADSTACK_MAX_CAMPAIGN_LEN + 1];
} SquadstackWorkNotes;

/* shmem.c */
extern void squadstack_shmem_init(void);
extern SquadstackWorkerShared *squadstack_worker_shared(void);
extern void squadstack_worker_attach(Oid database);
extern void squadstack_worker_take_notes(SquadstackWorkNotes *notes);
extern void squadstack_worker_publish_waits(bool quiet, int n,
											const char *const *campaigns,
											const TimestampTz *until);
extern void squadstack_worker_report(const char *waiting_for, TimestampTz until,
							  int calls, int errors);

/* waking the background worker (shmem.c) */
extern void squadstack_wake_worker_at_commit(void);
extern void squadstack_note_work(const char *campaign);

#endif
