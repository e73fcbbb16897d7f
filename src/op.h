/*-------------------------------------------------------------------------
 *
 * op.h
 *		The kinds of lead operation and what each means for a call (op.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQS_OP_H
#define SQS_OP_H

#include "postgres.h"

typedef enum SqsOp
{
	SQS_OP_CREATE,
	SQS_OP_UPDATE,
	SQS_OP_DISABLE,
	SQS_OP_DELETE,
	SQS_OP_CONVERT
} SqsOp;

extern const char *sqs_op_name(SqsOp op);
extern SqsOp sqs_op_from_name(const char *name);
extern const char *sqs_op_method(SqsOp op);
extern bool sqs_op_is_batched(SqsOp op);

#endif							/* SQS_OP_H */
