/*-------------------------------------------------------------------------
 *
 * writeback.h
 *		Outcomes written back into CRM tables (writeback.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQUADSTACK_WRITEBACK_H
#define SQUADSTACK_WRITEBACK_H

#include "postgres.h"

#include "outcome.h"

/* write an applied outcome into the campaign's CRM tables */
extern void squadstack_writeback_apply(const SquadstackOutcome *o);

#endif							/* SQUADSTACK_WRITEBACK_H */
