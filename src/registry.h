/*-------------------------------------------------------------------------
 *
 * registry.h
 *		The lead registry, squadstack.leads (registry.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQUADSTACK_REGISTRY_H
#define SQUADSTACK_REGISTRY_H

#include "postgres.h"

#include "datatype/timestamp.h"

#include "op.h"

/* after a call: what the API accepted (or refused, for a create) */
extern bool squadstack_registry_record_answer(Datum ids, SquadstackOp op, bool accepted);
extern bool squadstack_registry_apply_pending(void);
extern bool squadstack_registry_take_deferred(void);

/* queueing: creates queued by a function (lead_ids is text[]) */
extern void squadstack_registry_mark_queued(const char *campaign, Datum lead_ids);

/* outcomes */
extern bool squadstack_registry_lock_is_deleted(const char *campaign, const char *lead_id);
extern void squadstack_registry_note_outcome(const char *campaign, const char *lead_id,
									  const char *outcome, TimestampTz processed_at);

#endif							/* SQUADSTACK_REGISTRY_H */
