/*-------------------------------------------------------------------------
 *
 * outcome.h
 *		One "lead processed" outcome, as a valid webhook payload holds it
 *		(validated in webhook.c, written back into CRM tables by
 *		writeback.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQS_OUTCOME_H
#define SQS_OUTCOME_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "utils/jsonb.h"

/* the payload's text fields, in SqsOutcome.fields[] */
typedef enum SqsOutcomeField
{
	SQS_FIELD_PHONE_NUMBER,
	SQS_FIELD_CONTACT_NAME,
	SQS_FIELD_LEAD_OUTCOME,
	SQS_FIELD_LATEST_RECORDING_URL,
	SQS_NUM_TEXT_FIELDS
} SqsOutcomeField;

typedef struct SqsOutcome
{
	char	   *campaign_id;
	char	   *lead_id;
	char	   *fields[SQS_NUM_TEXT_FIELDS];	/* NULL where absent */
	TimestampTz processed_at;
	TimestampTz latest_called_at;
	bool		has_latest_called_at;
	TimestampTz created_at;
	bool		has_created_at;
	Jsonb	   *lead_responses;
	bool		erased;			/* the lead was deleted: keep no personal data */
} SqsOutcome;

/* writeback.c: write an applied outcome into the campaign's CRM tables */
extern void sqs_writeback_apply(const SqsOutcome *o);

#endif							/* SQS_OUTCOME_H */
