/*-------------------------------------------------------------------------
 *
 * intake.h
 *		The sync triggers' queue, squadstack.intake (intake.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQUADSTACK_INTAKE_H
#define SQUADSTACK_INTAKE_H

#include "op.h"
#include "squadstack.h"

/* the sync triggers' queue (intake.c) */
extern Oid	squadstack_intake_relid(void);
extern void squadstack_intake_insert(Oid relid, const char *campaign, SquadstackOp op,
							  const SquadstackLeadOp *lop);
extern void squadstack_lock_intake(void);
extern uint64 squadstack_absorb_intake(const char *campaign, int max);

#endif							/* SQUADSTACK_INTAKE_H */
