/*-------------------------------------------------------------------------
 *
 * trigger_args.h
 *		A sync trigger's arguments, parsed and cached per trigger and
 *		backend (trigger_args.c), for its row handling (trigger.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQUADSTACK_TRIGGER_ARGS_H
#define SQUADSTACK_TRIGGER_ARGS_H

#include "postgres.h"

#include "commands/trigger.h"
#include "fmgr.h"

/* how a column's value becomes a JSON value */
typedef enum SyncJsonKind
{
	SYNC_JSON_TEXT,				/* text, varchar: the string itself */
	SYNC_JSON_INT2,				/* integers: a number */
	SYNC_JSON_INT4,
	SYNC_JSON_INT8,
	SYNC_JSON_NUMERIC,			/* a number; NaN and infinities as strings */
	SYNC_JSON_FLOAT,			/* float4, float8: likewise */
	SYNC_JSON_BOOL,				/* a boolean */
	SYNC_JSON_DATETIME,			/* dates and times: ISO 8601, as to_jsonb */
	SYNC_JSON_OTHER				/* the type's text output, as a string */
} SyncJsonKind;

typedef enum SyncOnDelete
{
	SYNC_DELETE_DISABLE,
	SYNC_DELETE_DELETE,
	SYNC_DELETE_IGNORE
} SyncOnDelete;

/* one field=column mapping */
typedef struct SyncField
{
	char	   *field;			/* lead field name, the JSON key */
	char	   *column;
	char	   *arg;			/* the argument that made it, for messages */
	AttrNumber	attnum;
	Oid			typid;			/* the column's type when resolved */
	Oid			basetype;		/* its base type, for a domain */
	int16		typlen;
	bool		typbyval;
	SyncJsonKind kind;
	FmgrInfo	outfunc;		/* the type's output function */
} SyncField;

/*
 * A trigger's parsed arguments, resolved against its table.  Kept per
 * backend in sync_triggers, keyed by the trigger's OID, until an
 * invalidation of its table's relcache entry marks it stale.
 */
typedef struct SyncTrigger
{
	Oid			tgoid;
	MemoryContext cxt;			/* holds this struct and all it points to */
	bool		valid;			/* cleared by invalidations */
	Oid			relid;
	Oid			owner;			/* the trigger function's owner */
	uint32		func_hash;		/* its syscache hash, for invalidations */
	int			nargs;			/* the trigger's arguments, to compare */
	char	  **args;
	char	   *trigger_name;
	char	   *table_name;		/* schema-qualified, quoted as needed */
	char	   *campaign;
	SyncOnDelete on_delete;
	bool		skip_invalid;
	int			nfields;
	SyncField  *fields;
	int			lead_idx;		/* index of the lead_id mapping in fields */
	AttrNumber	max_attnum;		/* how far to deform a row */
} SyncTrigger;

extern SyncTrigger *squadstack_sync_trigger_get(FunctionCallInfo fcinfo, TriggerData *trigdata);

#endif							/* SQUADSTACK_TRIGGER_ARGS_H */
