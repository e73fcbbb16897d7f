/*-------------------------------------------------------------------------
 *
 * responses.h
 *		Pulling outcomes from the responses endpoint (responses.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQS_RESPONSES_H
#define SQS_RESPONSES_H

#include "squadstack.h"

/* pulling outcomes from the responses endpoint (responses.c) */
/* what to pull: a campaign's outcomes, since a time or where the last sync stopped */
typedef struct SqsResponsesRequest
{
	char		campaign[SQS_MAX_CAMPAIGN_LEN + 1];
	bool		has_since;
	TimestampTz since;
} SqsResponsesRequest;

extern int64 sqs_sync_responses_run(const SqsConfig *cfg, const SqsResponsesRequest *req);

#endif							/* SQS_RESPONSES_H */
