/*-------------------------------------------------------------------------
 *
 * registry.h
 *		The lead registry, squadstack.leads (registry.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQS_REGISTRY_H
#define SQS_REGISTRY_H

#include "postgres.h"

#include "datatype/timestamp.h"

#include "op.h"

/* after a call: what the API accepted (or refused, for a create) */
extern bool sqs_registry_record_answer(Datum ids, SqsOp op, bool accepted);
extern bool sqs_registry_apply_pending(void);
extern bool sqs_registry_take_deferred(void);

/* queueing: creates queued by a function (lead_ids is text[]) */
extern void sqs_registry_mark_queued(const char *campaign, Datum lead_ids);

/* outcomes */
extern bool sqs_registry_lock_is_deleted(const char *campaign, const char *lead_id);
extern void sqs_registry_note_outcome(const char *campaign, const char *lead_id,
									  const char *outcome, TimestampTz processed_at);

#endif							/* SQS_REGISTRY_H */
