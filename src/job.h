/*-------------------------------------------------------------------------
 *
 * job.h
 *		API work run in a short-lived background worker for a session (job.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQS_JOB_H
#define SQS_JOB_H

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
	char		campaign[SQS_MAX_CAMPAIGN_LEN + 1]; /* sync_responses */
	bool		has_since;
	TimestampTz since;
} SqsJob;

extern int64 sqs_run_job(const SqsJob *job);

#endif							/* SQS_JOB_H */
