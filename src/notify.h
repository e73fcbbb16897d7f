/*-------------------------------------------------------------------------
 *
 * notify.h
 *		Waking the background worker at commit (shmem.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQS_NOTIFY_H
#define SQS_NOTIFY_H

#include "postgres.h"

/* waking the background worker (shmem.c) */
extern void sqs_wake_worker_at_commit(void);
extern void sqs_note_work(const char *campaign);

#endif							/* SQS_NOTIFY_H */
