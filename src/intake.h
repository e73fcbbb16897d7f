/*-------------------------------------------------------------------------
 *
 * intake.h
 *		The sync triggers' queue, squadstack.intake (intake.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQS_INTAKE_H
#define SQS_INTAKE_H

#include "squadstack.h"

/* the sync triggers' queue (intake.c) */
extern Oid	sqs_intake_relid(void);
extern void sqs_intake_insert(Oid relid, const char *campaign, const char *op,
							  const SqsLeadOp *lop);
extern void sqs_lock_intake(void);
extern uint64 sqs_absorb_intake(const char *campaign, int max);

#endif							/* SQS_INTAKE_H */
