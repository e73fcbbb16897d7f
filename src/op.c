/*-------------------------------------------------------------------------
 *
 * op.c
 *		The kinds of lead operation: their names in the outbox and in the
 *		API's URLs, their HTTP method, and whether calls batch them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "op.h"

static const struct
{
	const char *name;
	const char *method;
	bool		batched;
}			ops[] = {
	[SQS_OP_CREATE] = {"create", "POST", true},
	[SQS_OP_UPDATE] = {"update", "PATCH", false},
	[SQS_OP_DISABLE] = {"disable", "POST", true},
	[SQS_OP_DELETE] = {"delete", "POST", false},
	[SQS_OP_CONVERT] = {"convert", "POST", false},
};

const char *
sqs_op_name(SqsOp op)
{
	return ops[op].name;
}

/* The outbox's op column holds only these names (squadstack.op_name). */
SqsOp
sqs_op_from_name(const char *name)
{
	size_t		i;

	for (i = 0; i < lengthof(ops); i++)
		if (strcmp(ops[i].name, name) == 0)
			return (SqsOp) i;
	elog(ERROR, "unknown lead operation \"%s\"", name);
	return SQS_OP_CREATE;		/* keep compiler quiet */
}

const char *
sqs_op_method(SqsOp op)
{
	return ops[op].method;
}

bool
sqs_op_is_batched(SqsOp op)
{
	return ops[op].batched;
}
