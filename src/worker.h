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
} SqsWorkerShared;

/* shmem.c */
extern void sqs_shmem_init(void);
extern SqsWorkerShared *sqs_worker_shared(void);
extern void sqs_worker_attach(Oid database);
extern void sqs_worker_report(const char *waiting_for, TimestampTz until,
							  int calls, int errors);

/* worker.c */
extern char *sqs_database_name;
extern int	sqs_retention_s;
extern void sqs_worker_register(void);

/* retention.c */
extern void sqs_retention_run(int retention_s, int rate_window_ms);

#endif
