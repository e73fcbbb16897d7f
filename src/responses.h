/*-------------------------------------------------------------------------
 *
 * responses.h
 *		Pulling outcomes from the responses endpoint (responses.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQUADSTACK_RESPONSES_H
#define SQUADSTACK_RESPONSES_H

#include "squadstack.h"

/* pulling outcomes from the responses endpoint (responses.c) */
/* what to pull: a campaign's outcomes, since a time or where the last sync stopped */
typedef struct SquadstackResponsesRequest
{
	char		campaign[SQUADSTACK_MAX_CAMPAIGN_LEN + 1];
	bool		has_since;
	TimestampTz since;
} SquadstackResponsesRequest;

extern int64 squadstack_sync_responses_run(const SquadstackConfig *cfg, const SquadstackResponsesRequest *req);

#endif							/* SQUADSTACK_RESPONSES_H */
