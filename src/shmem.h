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
extern void squadstack_worker_report(const char *waiting_for, TimestampTz until,
							  int calls, int errors);

/* waking the background worker (shmem.c) */
extern void squadstack_wake_worker_at_commit(void);
extern void squadstack_note_work(const char *campaign);

#endif
