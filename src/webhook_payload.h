/*-------------------------------------------------------------------------
 *
 * webhook_payload.h
 *		Validating a "lead processed" payload (webhook_payload.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQS_WEBHOOK_PAYLOAD_H
#define SQS_WEBHOOK_PAYLOAD_H

#include "postgres.h"

#include "outcome.h"

/* NULL if valid (o filled in), else why not */
extern const char *sqs_webhook_validate(Jsonb *payload, SqsOutcome *o);

#endif							/* SQS_WEBHOOK_PAYLOAD_H */
