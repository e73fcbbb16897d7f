/*-------------------------------------------------------------------------
 *
 * webhook_payload.h
 *		Validating a "lead processed" payload (webhook_payload.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQUADSTACK_WEBHOOK_PAYLOAD_H
#define SQUADSTACK_WEBHOOK_PAYLOAD_H

#include "postgres.h"

#include "outcome.h"

/* NULL if valid (o filled in), else why not */
extern const char *squadstack_webhook_validate(Jsonb *payload, SquadstackOutcome *o);

#endif							/* SQUADSTACK_WEBHOOK_PAYLOAD_H */
