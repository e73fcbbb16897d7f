/*-------------------------------------------------------------------------
 *
 * retention.h
 *		Deleting old sent operations and call records (retention.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQUADSTACK_RETENTION_H
#define SQUADSTACK_RETENTION_H

#include "postgres.h"

extern void squadstack_retention_run(int retention_s, int rate_window_ms);

#endif							/* SQUADSTACK_RETENTION_H */
