/*-------------------------------------------------------------------------
 *
 * retention.h
 *		Deleting old sent operations and call records (retention.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQS_RETENTION_H
#define SQS_RETENTION_H

#include "postgres.h"

extern void sqs_retention_run(int retention_s, int rate_window_ms);

#endif							/* SQS_RETENTION_H */
