/*-------------------------------------------------------------------------
 *
 * worker.h
 *		The background worker (worker.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQS_WORKER_H
#define SQS_WORKER_H

#include "postgres.h"

extern void sqs_worker_register(void);

#endif							/* SQS_WORKER_H */
