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
	[SQUADSTACK_OP_CREATE] = {"create", "POST", true},
	[SQUADSTACK_OP_UPDATE] = {"update", "PATCH", false},
	[SQUADSTACK_OP_DISABLE] = {"disable", "POST", true},
	[SQUADSTACK_OP_DELETE] = {"delete", "POST", false},
	[SQUADSTACK_OP_CONVERT] = {"convert", "POST", false},
};

const char *
squadstack_op_name(SquadstackOp op)
{
	return ops[op].name;
}

/* The outbox's op column holds only these names (squadstack.op_name). */
SquadstackOp
squadstack_op_from_name(const char *name)
{
	size_t		i;

	for (i = 0; i < lengthof(ops); i++)
		if (strcmp(ops[i].name, name) == 0)
			return (SquadstackOp) i;
	elog(ERROR, "unknown lead operation \"%s\"", name);
	return SQUADSTACK_OP_CREATE;		/* keep compiler quiet */
}

const char *
squadstack_op_method(SquadstackOp op)
{
	return ops[op].method;
}

bool
squadstack_op_is_batched(SquadstackOp op)
{
	return ops[op].batched;
}
