/*-------------------------------------------------------------------------
 *
 * worker.h
 *		The background worker and the state it shares.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQS_WORKER_H
#define SQS_WORKER_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "storage/latch.h"
#include "storage/spin.h"

#include "squadstack.h"

#define SQS_WORKER_NOTES 32

typedef struct SqsWorkerShared
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
	char		noted[SQS_WORKER_NOTES][SQS_MAX_CAMPAIGN_LEN + 1];
} SqsWorkerShared;

/* what the worker was woken for (sqs_worker_take_notes) */
typedef struct SqsWorkNotes
{
	int			n;
	bool		all_work;
	char		campaigns[SQS_WORKER_NOTES][SQS_MAX_CAMPAIGN_LEN + 1];
} SqsWorkNotes;

/* shmem.c */
extern void sqs_shmem_init(void);
extern SqsWorkerShared *sqs_worker_shared(void);
extern void sqs_worker_attach(Oid database);
extern void sqs_worker_take_notes(SqsWorkNotes *notes);
extern void sqs_worker_report(const char *waiting_for, TimestampTz until,
							  int calls, int errors);

/* worker.c */
extern char *sqs_database_name;
extern int	sqs_retention_s;
extern void sqs_worker_register(void);

/* retention.c */
extern void sqs_retention_run(int retention_s, int rate_window_ms);

#endif
