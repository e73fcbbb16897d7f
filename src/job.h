/*-------------------------------------------------------------------------
 *
 * job.h
 *		API work run in a short-lived background worker for a session (job.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQUADSTACK_JOB_H
#define SQUADSTACK_JOB_H

#include "responses.h"
#include "squadstack.h"

/* API work run in a background worker for the calling session (flush.c) */
typedef enum SquadstackJobKind
{
	SQUADSTACK_JOB_FLUSH,
	SQUADSTACK_JOB_SYNC_RESPONSES
} SquadstackJobKind;

typedef struct SquadstackJob
{
	SquadstackJobKind	kind;
	int			max_calls;		/* flush: 0 for no limit */
	SquadstackResponsesRequest responses;	/* sync_responses */
} SquadstackJob;

extern int64 squadstack_run_job(const SquadstackJob *job);

#endif							/* SQUADSTACK_JOB_H */
