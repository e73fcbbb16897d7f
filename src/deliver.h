/*-------------------------------------------------------------------------
 *
 * deliver.h
 *		Delivering the outbox: claim, call, record (deliver.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQUADSTACK_DELIVER_H
#define SQUADSTACK_DELIVER_H

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

/* delivery (deliver.c); runs in a process that may commit */
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

extern const char *squadstack_wait_text(SquadstackWait wait);
extern void squadstack_deliver(const SquadstackConfig *cfg, int max_calls,
						SquadstackDeliveryResult *result);

/* a delivering process's settings (deliver.c) */
extern void squadstack_set_delivery_session(int lock_timeout_ms);
extern bool squadstack_schema_is_current(void);

#endif							/* SQUADSTACK_DELIVER_H */
