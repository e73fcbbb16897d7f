/*-------------------------------------------------------------------------
 *
 * responses.h
 *		Pulling outcomes from the responses endpoint (responses.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQS_RESPONSES_H
#define SQS_RESPONSES_H

#include "job.h"

/* pulling outcomes from the responses endpoint (responses.c) */
extern int64 sqs_sync_responses_run(const SqsConfig *cfg, const SqsJob *job);

#endif							/* SQS_RESPONSES_H */
