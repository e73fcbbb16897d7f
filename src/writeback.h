/*-------------------------------------------------------------------------
 *
 * writeback.h
 *		Outcomes written back into CRM tables (writeback.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQS_WRITEBACK_H
#define SQS_WRITEBACK_H

#include "postgres.h"

#include "outcome.h"

/* write an applied outcome into the campaign's CRM tables */
extern void sqs_writeback_apply(const SqsOutcome *o);

#endif							/* SQS_WRITEBACK_H */
