/*-------------------------------------------------------------------------
 *
 * trigger_row.h
 *		A CRM row's mapped columns as a lead's fields, for the sync
 *		trigger (trigger_row.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQUADSTACK_TRIGGER_ROW_H
#define SQUADSTACK_TRIGGER_ROW_H

#include "postgres.h"

#include "executor/tuptable.h"

#include "lead_field.h"
#include "trigger_args.h"

extern void squadstack_sync_row_field(SquadstackLeadField *out, SyncField *f,
									  TupleTableSlot *slot);
extern char *squadstack_sync_row_lead_id(SyncTrigger *st, TupleTableSlot *slot);
extern bool squadstack_sync_column_changed(SyncField *f, TupleTableSlot *oldslot,
										   TupleTableSlot *newslot);

#endif							/* SQUADSTACK_TRIGGER_ROW_H */
