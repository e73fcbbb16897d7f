/*-------------------------------------------------------------------------
 *
 * deliver.h
 *		Delivering the outbox: claim, call, record (deliver.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQS_DELIVER_H
#define SQS_DELIVER_H

#include "squadstack.h"

/* what a delivery waits for when nothing can be sent now */
typedef enum SqsWait
{
	SQS_WAIT_WORK,
	SQS_WAIT_RETRY,
	SQS_WAIT_RATE_SLOT,
	SQS_WAIT_PAUSED_TOKEN,
	SQS_WAIT_TOKEN_CHANGE,
	SQS_WAIT_BACKOFF,
	SQS_WAIT_FULLER_BATCH,
	SQS_WAIT_ERROR
} SqsWait;

#define SQS_MAX_BLOCKED 64

/* a campaign with due work that cannot be sent before a time (0: unknown) */
typedef struct SqsBlocked
{
	char		campaign[SQS_MAX_CAMPAIGN_LEN + 1];
	TimestampTz until;
} SqsBlocked;

/* delivery (deliver.c); runs in a process that may commit */
typedef struct SqsDeliveryResult
{
	int			calls;			/* HTTP calls made */
	int			errors;			/* calls that did not end in 2xx, and failures */
	bool		more;			/* stopped at max_calls with work left */
	TimestampTz next_wakeup;	/* when more work may become sendable, or 0 */
	SqsWait		waiting_for;	/* what next_wakeup waits for */
	bool		records_pending;	/* registry updates wait for a lock */
	/* when nothing could be sent: the campaigns that wait, and until when */
	int			nblocked;
	bool		blocked_overflow;	/* more than fit in blocked[] */
	SqsBlocked	blocked[SQS_MAX_BLOCKED];
} SqsDeliveryResult;

extern const char *sqs_wait_text(SqsWait wait);
extern void sqs_deliver(const SqsConfig *cfg, int max_calls,
						SqsDeliveryResult *result);

/* a delivering process's settings (deliver.c) */
extern void sqs_set_delivery_session(int lock_timeout_ms);
extern bool sqs_schema_is_current(void);

#endif							/* SQS_DELIVER_H */
