/*-------------------------------------------------------------------------
 *
 * outbox.h
 *		The outbox's state changes for one call: claiming its operations
 *		(claim.c) and recording the answer (record.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQS_OUTBOX_H
#define SQS_OUTBOX_H

#include "postgres.h"

#include "deliver.h"
#include "http.h"
#include "op.h"
#include "squadstack.h"

/* one claimed call */
typedef struct SqsBatch
{
	int64		call_id;		/* 0 until the call is admitted */
	char	   *campaign;
	SqsOp		op;
	const char *method;
	char	   *url;
	char	   *token;
	char	   *token_id;
	char	   *body;
	int			n;
	Datum	   *ids;			/* int8 datums */
	int		   *attempts;
	bool	   *uncertain;
} SqsBatch;

/* claim.c: one call's worth of work, leased; false if none can go now */
extern bool sqs_claim(const SqsConfig *cfg, SqsBatch *b, SqsDeliveryResult *r,
					  MemoryContext cxt, char *campaign, size_t campaign_size);

/* record.c: the answer, and the operations moved on by it */
extern void sqs_record(const SqsConfig *cfg, SqsBatch *b, const SqsHttpResult *res);

/* record.c: a call that failed in the extension itself */
extern void sqs_record_failed_call(const SqsConfig *cfg, int64 call_id,
								   const char *error, bool uncertain);

#endif							/* SQS_OUTBOX_H */
