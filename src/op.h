/*-------------------------------------------------------------------------
 *
 * op.h
 *		The kinds of lead operation and what each means for a call (op.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQUADSTACK_OP_H
#define SQUADSTACK_OP_H

#include "postgres.h"

typedef enum SquadstackOp
{
	SQUADSTACK_OP_CREATE,
	SQUADSTACK_OP_UPDATE,
	SQUADSTACK_OP_DISABLE,
	SQUADSTACK_OP_DELETE,
	SQUADSTACK_OP_CONVERT
} SquadstackOp;

extern const char *squadstack_op_name(SquadstackOp op);
extern SquadstackOp squadstack_op_from_name(const char *name);
extern const char *squadstack_op_method(SquadstackOp op);
extern bool squadstack_op_is_batched(SquadstackOp op);

#endif							/* SQUADSTACK_OP_H */
