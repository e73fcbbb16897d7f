/*-------------------------------------------------------------------------
 *
 * enqueue.h
 *		Queueing lead operations into the outbox (enqueue.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQS_ENQUEUE_H
#define SQS_ENQUEUE_H

#include "lead.h"

/* queueing (enqueue.c) */
extern int64 sqs_enqueue(const char *campaign, const char *op, List *ops,
						 bool skip_existing);
extern int64 sqs_enqueue_arrays(const char *campaign, const char *op,
								SqsLeadArrays *ops, bool skip_existing);

#endif							/* SQS_ENQUEUE_H */
