/*-------------------------------------------------------------------------
 *
 * writeback_map.h
 *		A write-back's mapping of outcome fields to columns (writeback_map.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQUADSTACK_WRITEBACK_MAP_H
#define SQUADSTACK_WRITEBACK_MAP_H

#include "postgres.h"

#include "outcome.h"

/* one column=field item, parsed */
typedef struct SquadstackWritebackMapping SquadstackWritebackMapping;

/* a parsed write-back */
typedef struct SquadstackWriteback
{
	Oid			relid;
	char	   *table;			/* schema-qualified, quoted as needed */
	int			n;				/* mappings[0] is the key */
	SquadstackWritebackMapping *mappings;
	bool		insert_missing;
} SquadstackWriteback;

extern SquadstackWriteback *squadstack_writeback_parse(Oid relid, Datum *items, int nitems);

/* statements with a parameter per mapping, in order; $1 is the key */
extern char *squadstack_writeback_update_sql(const SquadstackWriteback *wb);
extern char *squadstack_writeback_insert_sql(const SquadstackWriteback *wb);
extern void squadstack_writeback_params(const SquadstackWriteback *wb,
										const SquadstackOutcome *o,
										Oid *types, Datum *values, char *nulls);

#endif							/* SQUADSTACK_WRITEBACK_MAP_H */
