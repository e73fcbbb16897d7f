/*-------------------------------------------------------------------------
 *
 * job.h
 *		API work run in a short-lived background worker for a session (job.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQS_JOB_H
#define SQS_JOB_H

#include "responses.h"
#include "squadstack.h"

/* API work run in a background worker for the calling session (flush.c) */
typedef enum SqsJobKind
{
	SQS_JOB_FLUSH,
	SQS_JOB_SYNC_RESPONSES
} SqsJobKind;

typedef struct SqsJob
{
	SqsJobKind	kind;
	int			max_calls;		/* flush: 0 for no limit */
	SqsResponsesRequest responses;	/* sync_responses */
} SqsJob;

extern int64 sqs_run_job(const SqsJob *job);

#endif							/* SQS_JOB_H */
