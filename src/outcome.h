/*-------------------------------------------------------------------------
 *
 * outcome.h
 *		One "lead processed" outcome, as a valid webhook payload holds it
 *		(validated in webhook_payload.c, written back into CRM tables by
 *		writeback.c and writeback_map.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQUADSTACK_OUTCOME_H
#define SQUADSTACK_OUTCOME_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "utils/jsonb.h"

/* the payload's text fields, in SquadstackOutcome.fields[] */
typedef enum SquadstackOutcomeField
{
	SQUADSTACK_FIELD_PHONE_NUMBER,
	SQUADSTACK_FIELD_CONTACT_NAME,
	SQUADSTACK_FIELD_LEAD_OUTCOME,
	SQUADSTACK_FIELD_LATEST_RECORDING_URL,
	SQUADSTACK_NUM_TEXT_FIELDS
} SquadstackOutcomeField;

typedef struct SquadstackOutcome
{
	char	   *campaign_id;
	char	   *lead_id;
	char	   *fields[SQUADSTACK_NUM_TEXT_FIELDS];	/* NULL where absent */
	TimestampTz processed_at;
	TimestampTz latest_called_at;
	bool		has_latest_called_at;
	TimestampTz created_at;
	bool		has_created_at;
	Jsonb	   *lead_responses;
	bool		erased;			/* the lead was deleted: keep no personal data */
} SquadstackOutcome;

#endif							/* SQUADSTACK_OUTCOME_H */
