/*-------------------------------------------------------------------------
 *
 * flush.c
 *		SQL functions that call the API now, for the calling session:
 *		squadstack_flush() and squadstack_sync_responses().  Both run their
 *		work in a short-lived background worker (job.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "grants.h"
#include "job.h"
#include "lead.h"

PG_FUNCTION_INFO_V1(squadstack_flush);
PG_FUNCTION_INFO_V1(squadstack_sync_responses);

Datum
squadstack_flush(PG_FUNCTION_ARGS)
{
	SquadstackJob		job;

	memset(&job, 0, sizeof(job));
	job.kind = SQUADSTACK_JOB_FLUSH;
	/* a role without every campaign flushes its own */
	job.only_role = squadstack_restricted_role(squadstack_calling_role());
	if (!PG_ARGISNULL(0))
	{
		job.max_calls = PG_GETARG_INT32(0);
		if (job.max_calls < 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("max_calls must be at least 1 or null, not %d", job.max_calls)));
	}
	PG_RETURN_INT32((int32) squadstack_run_job(&job));
}

/*
 * squadstack_sync_responses(campaign, since): pull outcomes from the
 * responses endpoint into the webhook inbox; returns how many were stored.
 */
Datum
squadstack_sync_responses(PG_FUNCTION_ARGS)
{
	SquadstackJob		job;
	char	   *campaign;

	campaign = squadstack_campaign_arg(fcinfo, 0, false);
	squadstack_require_campaign(campaign, squadstack_calling_role());

	memset(&job, 0, sizeof(job));
	job.kind = SQUADSTACK_JOB_SYNC_RESPONSES;
	strlcpy(job.responses.campaign, campaign, sizeof(job.responses.campaign));
	if (!PG_ARGISNULL(1))
	{
		job.responses.has_since = true;
		job.responses.since = PG_GETARG_TIMESTAMPTZ(1);
	}
	PG_RETURN_INT64(squadstack_run_job(&job));
}

