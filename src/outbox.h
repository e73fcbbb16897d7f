/*-------------------------------------------------------------------------
 *
 * outbox.h
 *		The outbox's state changes for one call: claiming its operations
 *		(claim.c) and recording the answer (record.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQUADSTACK_OUTBOX_H
#define SQUADSTACK_OUTBOX_H

#include "postgres.h"

#include "http.h"
#include "lease.h"
#include "op.h"
#include "squadstack.h"

/* what a delivery waits for when nothing can be sent now */
typedef enum SquadstackWait
{
	SQUADSTACK_WAIT_WORK,
	SQUADSTACK_WAIT_RETRY,
	SQUADSTACK_WAIT_RATE_SLOT,
	SQUADSTACK_WAIT_PAUSED_TOKEN,
	SQUADSTACK_WAIT_TOKEN_CHANGE,
	SQUADSTACK_WAIT_BACKOFF,
	SQUADSTACK_WAIT_FULLER_BATCH,
	SQUADSTACK_WAIT_ERROR
} SquadstackWait;

#define SQUADSTACK_MAX_BLOCKED 64

/* a campaign with due work that cannot be sent before a time (0: unknown) */
typedef struct SquadstackBlocked
{
	char		campaign[SQUADSTACK_MAX_CAMPAIGN_LEN + 1];
	TimestampTz until;
} SquadstackBlocked;

/* what a delivery did, and what it waits for (filled in by claim.c and deliver.c) */
typedef struct SquadstackDeliveryResult
{
	int			calls;			/* HTTP calls made */
	int			errors;			/* calls that did not end in 2xx, and failures */
	bool		more;			/* stopped at max_calls with work left */
	TimestampTz next_wakeup;	/* when more work may become sendable, or 0 */
	SquadstackWait		waiting_for;	/* what next_wakeup waits for */
	bool		records_pending;	/* registry updates wait for a lock */
	/* when nothing could be sent: the campaigns that wait, and until when */
	int			nblocked;
	bool		blocked_overflow;	/* more than fit in blocked[] */
	SquadstackBlocked	blocked[SQUADSTACK_MAX_BLOCKED];
} SquadstackDeliveryResult;

/* claim.c: one call's worth of work, leased; false if none can go now */
extern bool squadstack_claim(const SquadstackConfig *cfg, SquadstackBatch *b, SquadstackDeliveryResult *r,
					  MemoryContext cxt, char *campaign, size_t campaign_size);

/* record.c: the answer, and the operations moved on by it */
extern void squadstack_record(const SquadstackConfig *cfg, SquadstackBatch *b, const SquadstackHttpResult *res);

/* record.c: a call that failed in the extension itself */
extern void squadstack_record_failed_call(const SquadstackConfig *cfg, int64 call_id,
								   const char *error, bool uncertain);

#endif							/* SQUADSTACK_OUTBOX_H */
