/*-------------------------------------------------------------------------
 *
 * enqueue.h
 *		Queueing lead operations into the outbox (enqueue.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQUADSTACK_ENQUEUE_H
#define SQUADSTACK_ENQUEUE_H

#include "lead_list.h"
#include "op.h"
#include "squadstack.h"

/* queueing (enqueue.c) */
extern int64 squadstack_enqueue(const char *campaign, SquadstackOp op, List *ops,
						 bool skip_existing);
extern int64 squadstack_enqueue_arrays(const char *campaign, SquadstackOp op,
								SquadstackLeadArrays *ops, bool skip_existing);

#endif							/* SQUADSTACK_ENQUEUE_H */
