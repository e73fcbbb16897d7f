/*-------------------------------------------------------------------------
 *
 * outbox.h
 *		The outbox's state changes for one call: claiming its operations
 *		(claim.c) and recording the answer (record.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQUADSTACK_OUTBOX_H
#define SQUADSTACK_OUTBOX_H

#include "postgres.h"

#include "deliver.h"
#include "http.h"
#include "op.h"
#include "squadstack.h"

/* one claimed call */
typedef struct SquadstackBatch
{
	int64		call_id;		/* 0 until the call is admitted */
	char	   *campaign;
	SquadstackOp		op;
	const char *method;
	char	   *url;
	char	   *token;
	char	   *token_id;
	char	   *body;
	int			n;
	Datum	   *ids;			/* int8 datums */
	int		   *attempts;
	bool	   *uncertain;
} SquadstackBatch;

/* claim.c: one call's worth of work, leased; false if none can go now */
extern bool squadstack_claim(const SquadstackConfig *cfg, SquadstackBatch *b, SquadstackDeliveryResult *r,
					  MemoryContext cxt, char *campaign, size_t campaign_size);

/* record.c: the answer, and the operations moved on by it */
extern void squadstack_record(const SquadstackConfig *cfg, SquadstackBatch *b, const SquadstackHttpResult *res);

/* record.c: a call that failed in the extension itself */
extern void squadstack_record_failed_call(const SquadstackConfig *cfg, int64 call_id,
								   const char *error, bool uncertain);

#endif							/* SQUADSTACK_OUTBOX_H */
