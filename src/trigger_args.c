/*-------------------------------------------------------------------------
 *
 * trigger_args.c
 *		A sync trigger's arguments: parsed, checked against the table and
 *		cached per trigger and backend, until the table's relcache entry,
 *		its schema or the trigger function is invalidated.
 *
 * The first argument is the campaign id; each further one maps a lead field
 * to a column (field=column) or sets an option (on_delete=disable|delete|
 * ignore, on_invalid=error|skip; every argument starting with "on_" is an
 * option).  See trigger.c for what a row does with them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/xact.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type_d.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/syscache.h"

#include "lead.h"
#include "lead_text.h"
#include "spi_util.h"
#include "trigger_args.h"


typedef struct SyncTriggerEntry
{
	Oid			tgoid;
	SyncTrigger *st;
} SyncTriggerEntry;

/* tgoid -> SyncTrigger, for this backend's life */
static HTAB *sync_triggers = NULL;
static MemoryContext sync_trigger_cxt = NULL;
/* counts invalidations, so that one during a build is not lost */
static uint64 sync_trigger_invals = 0;

static SyncJsonKind
json_kind_for_type(Oid basetype)
{
	switch (basetype)
	{
		case TEXTOID:
		case VARCHAROID:
			return SYNC_JSON_TEXT;
		case INT2OID:
			return SYNC_JSON_INT2;
		case INT4OID:
			return SYNC_JSON_INT4;
		case INT8OID:
			return SYNC_JSON_INT8;
		case NUMERICOID:
			return SYNC_JSON_NUMERIC;
		case FLOAT4OID:
		case FLOAT8OID:
			return SYNC_JSON_FLOAT;
		case BOOLOID:
			return SYNC_JSON_BOOL;
		case DATEOID:
		case TIMEOID:
		case TIMETZOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			return SYNC_JSON_DATETIME;
		default:
			return SYNC_JSON_OTHER;
	}
}

static void
bad_argument(SyncTrigger *st, const char *arg, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid argument \"%s\" of trigger \"%s\" on table \"%s\"",
					arg, st->trigger_name, st->table_name),
			 errdetail_internal("%s", detail)));
}

/*
 * squadstack_check_campaign's message does not say where the campaign came from;
 * say it in ours.  Nothing happens between catching its error and raising
 * ours, so no subtransaction is needed.
 */
static void
check_campaign_arg(SyncTrigger *st, const char *campaign)
{
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		squadstack_check_campaign(campaign);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		ereport(ERROR,
				(errcode(edata->sqlerrcode),
				 errmsg("invalid campaign id \"%s\" in trigger \"%s\" on table \"%s\"",
						campaign, st->trigger_name, st->table_name),
				 edata->detail ? errdetail_internal("%s", edata->detail) : 0,
				 errhint("The first argument of squadstack_sync_trigger() is the campaign id.")));
	}
	PG_END_TRY();
}

/* Resolve one field=column argument against the table's columns. */
static void
resolve_field(SyncTrigger *st, SyncField *f, TupleDesc tupdesc, const char *arg)
{
	int			i;
	Oid			outfunc;
	bool		isvarlena;

	for (i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(tupdesc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), f->column) == 0)
			break;
	}
	if (i == tupdesc->natts)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of table \"%s\" does not exist",
						f->column, st->table_name),
				 errdetail("Argument \"%s\" of trigger \"%s\" maps lead field \"%s\" to it.",
						   arg, st->trigger_name, f->field),
				 errhint("Column names are matched exactly, case included.")));

	f->attnum = i + 1;
	f->typid = TupleDescAttr(tupdesc, i)->atttypid;
	f->typlen = TupleDescAttr(tupdesc, i)->attlen;
	f->typbyval = TupleDescAttr(tupdesc, i)->attbyval;
	f->basetype = getBaseType(f->typid);
	f->kind = json_kind_for_type(f->basetype);
	getTypeOutputInfo(f->typid, &outfunc, &isvarlena);
	fmgr_info_cxt(outfunc, &f->outfunc, st->cxt);
	st->max_attnum = Max(st->max_attnum, f->attnum);
}

static void
parse_option(SyncTrigger *st, const char *arg, const char *name,
			 const char *value, bool *seen_delete, bool *seen_invalid)
{
	if (strcmp(name, "on_delete") == 0)
	{
		if (*seen_delete)
			bad_argument(st, arg, "Option on_delete is given more than once.");
		*seen_delete = true;
		if (strcmp(value, "disable") == 0)
			st->on_delete = SYNC_DELETE_DISABLE;
		else if (strcmp(value, "delete") == 0)
			st->on_delete = SYNC_DELETE_DELETE;
		else if (strcmp(value, "ignore") == 0)
			st->on_delete = SYNC_DELETE_IGNORE;
		else
			bad_argument(st, arg, "Option on_delete is disable, delete or ignore.");
	}
	else if (strcmp(name, "on_invalid") == 0)
	{
		if (*seen_invalid)
			bad_argument(st, arg, "Option on_invalid is given more than once.");
		*seen_invalid = true;
		if (strcmp(value, "error") == 0)
			st->skip_invalid = false;
		else if (strcmp(value, "skip") == 0)
			st->skip_invalid = true;
		else
			bad_argument(st, arg, "Option on_invalid is error or skip.");
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown option \"%s\" in argument \"%s\" of trigger \"%s\" on table \"%s\"",
						name, arg, st->trigger_name, st->table_name),
				 errdetail("The options are on_delete and on_invalid; lead fields do not start with \"on_\".")));
}

static void
require_field(SyncTrigger *st, const char *field, const char *why)
{
	int			i;

	for (i = 0; i < st->nfields; i++)
		if (strcmp(st->fields[i].field, field) == 0)
			return;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("trigger \"%s\" on table \"%s\" does not map lead field \"%s\"",
					st->trigger_name, st->table_name, field),
			 errdetail_internal("%s", why),
			 errhint("Add an argument such as '%s=column_name'.", field)));
}


static int
field_order(const void *a, const void *b)
{
	return squadstack_jsonb_key_cmp(((const SyncField *) a)->field,
							 ((const SyncField *) b)->field);
}

/*
 * Parse the trigger's arguments and resolve them against its table.  All
 * the catalog lookups the trigger needs are made here.
 */
static SyncTrigger *
build_sync_trigger(TriggerData *trigdata, Oid funcoid, MemoryContext parent)
{
	Trigger    *trigger = trigdata->tg_trigger;
	Relation	rel = trigdata->tg_relation;
	TupleDesc	tupdesc = RelationGetDescr(rel);
	MemoryContext cxt;
	MemoryContext oldcxt;
	SyncTrigger *st;
	bool		seen_delete = false;
	bool		seen_invalid = false;
	int			i;

	cxt = AllocSetContextCreate(parent, "squadstack sync trigger",
								ALLOCSET_SMALL_SIZES);
	oldcxt = MemoryContextSwitchTo(cxt);

	st = palloc0(sizeof(SyncTrigger));
	st->cxt = cxt;
	st->tgoid = trigger->tgoid;
	st->relid = RelationGetRelid(rel);
	st->owner = squadstack_function_owner(funcoid);
	st->func_hash = GetSysCacheHashValue1(PROCOID, ObjectIdGetDatum(funcoid));
	st->nargs = trigger->tgnargs;
	st->args = palloc(sizeof(char *) * Max(trigger->tgnargs, 1));
	for (i = 0; i < trigger->tgnargs; i++)
		st->args[i] = pstrdup(trigger->tgargs[i]);
	st->trigger_name = pstrdup(trigger->tgname);
	st->table_name = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
												RelationGetRelationName(rel));
	st->on_delete = SYNC_DELETE_DISABLE;
	st->skip_invalid = false;
	st->lead_idx = -1;
	st->fields = palloc0(sizeof(SyncField) * Max(trigger->tgnargs, 1));

	if (trigger->tgnargs < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("trigger \"%s\" on table \"%s\" has no campaign id",
						st->trigger_name, st->table_name),
				 errhint("Give the campaign id and then field=column mappings, as in squadstack_sync_trigger('camp_1', 'lead_id=id', 'phone_number=mobile', 'contact_name=full_name').")));

	check_campaign_arg(st, trigger->tgargs[0]);
	st->campaign = pstrdup(trigger->tgargs[0]);

	for (i = 1; i < trigger->tgnargs; i++)
	{
		const char *arg = trigger->tgargs[i];
		const char *eq = strchr(arg, '=');
		char	   *name;
		const char *value;
		const char *reserved;
		int			j;

		if (eq == NULL || eq == arg || eq[1] == '\0')
			bad_argument(st, arg,
						 "Arguments after the campaign id have the form field=column or option=value.");
		name = pnstrdup(arg, eq - arg);
		value = eq + 1;

		if (strncmp(name, "on_", 3) == 0)
		{
			parse_option(st, arg, name, value, &seen_delete, &seen_invalid);
			continue;
		}

		reserved = squadstack_reserved_field_lookalike(name);
		if (reserved != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid argument \"%s\" of trigger \"%s\" on table \"%s\"",
							arg, st->trigger_name, st->table_name),
					 errdetail("Lead field \"%s\" differs from the field \"%s\" only in case or white space; it would be sent as a custom field.",
							   name, reserved),
					 errhint("Name the field \"%s\".", reserved)));

		for (j = 0; j < st->nfields; j++)
			if (strcmp(st->fields[j].field, name) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("lead field \"%s\" is mapped twice by trigger \"%s\" on table \"%s\"",
								name, st->trigger_name, st->table_name),
						 errdetail("Arguments \"%s\" and \"%s\" both map it.",
								   st->fields[j].arg, arg)));

		st->fields[st->nfields].field = name;
		st->fields[st->nfields].column = pstrdup(value);
		st->fields[st->nfields].arg = pstrdup(arg);
		resolve_field(st, &st->fields[st->nfields], tupdesc, arg);
		if (strcmp(name, "lead_id") == 0)
			st->lead_idx = st->nfields;
		st->nfields++;
	}

	require_field(st, "lead_id", "Every operation names its lead by lead_id.");
	if (TRIGGER_FOR_INSERT(trigger->tgtype))
	{
		require_field(st, "phone_number",
					  "The trigger fires on INSERT, which creates a lead, and a new lead needs a phone_number.");
		require_field(st, "contact_name",
					  "The trigger fires on INSERT, which creates a lead, and a new lead needs a contact_name.");
	}

	/* in the order of a jsonb object's keys, as validation reads a lead */
	qsort(st->fields, st->nfields, sizeof(SyncField), field_order);
	for (i = 0; i < st->nfields; i++)
		if (strcmp(st->fields[i].field, "lead_id") == 0)
			st->lead_idx = i;

	MemoryContextSwitchTo(oldcxt);
	return st;
}

/*
 * Whether a cached SyncTrigger still describes this trigger and table.
 * Invalidations clear valid when the table changes; the comparisons guard
 * against anything that changes without invalidating it, at a few
 * comparisons per row.
 */
static bool
sync_trigger_matches(SyncTrigger *st, TriggerData *trigdata)
{
	Trigger    *trigger = trigdata->tg_trigger;
	TupleDesc	tupdesc = RelationGetDescr(trigdata->tg_relation);
	int			i;

	if (!st->valid ||
		st->relid != RelationGetRelid(trigdata->tg_relation) ||
		st->nargs != trigger->tgnargs ||
		st->max_attnum > tupdesc->natts)
		return false;
	for (i = 0; i < st->nargs; i++)
		if (strcmp(st->args[i], trigger->tgargs[i]) != 0)
			return false;
	for (i = 0; i < st->nfields; i++)
	{
		Form_pg_attribute att = TupleDescAttr(tupdesc, st->fields[i].attnum - 1);

		if (att->attisdropped || att->atttypid != st->fields[i].typid)
			return false;
	}
	return true;
}

/*
 * Mark stale the entries of table relid or of the function whose syscache
 * hash is func_hash; all of them when both are unset.
 */
static void
mark_stale(Oid relid, uint32 func_hash)
{
	HASH_SEQ_STATUS status;
	SyncTriggerEntry *e;

	sync_trigger_invals++;
	hash_seq_init(&status, sync_triggers);
	while ((e = hash_seq_search(&status)) != NULL)
		if ((relid == InvalidOid && func_hash == 0) ||
			(relid != InvalidOid && e->st->relid == relid) ||
			(func_hash != 0 && e->st->func_hash == func_hash))
			e->st->valid = false;
}

static void
sync_trigger_relcache_callback(Datum arg, Oid relid)
{
	mark_stale(relid, 0);
}

/* schema names appear in messages: a renamed schema makes all stale */
static void
sync_trigger_namespace_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	mark_stale(InvalidOid, 0);
}

/* the function's owner runs the statements run as owner */
static void
sync_trigger_function_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	mark_stale(InvalidOid, hashvalue);
}

/*
 * Drop the stale entries (those of dropped triggers are never looked up
 * again).  Their memory goes with the transaction, since a caller further
 * up the stack may still use one.
 */
static void
sweep_sync_triggers(void)
{
	HASH_SEQ_STATUS status;
	SyncTriggerEntry *e;

	hash_seq_init(&status, sync_triggers);
	while ((e = hash_seq_search(&status)) != NULL)
	{
		Oid			tgoid = e->tgoid;

		if (e->st->valid)
			continue;
		MemoryContextSetParent(e->st->cxt, TopTransactionContext);
		(void) hash_search(sync_triggers, &tgoid, HASH_REMOVE, NULL);
	}
}

/*
 * The SyncTrigger for this call: the cached one if it is still good, else
 * a new one.  A stale one is not freed at once, since a caller further up
 * the stack may still use it; its memory goes with the transaction.
 */
SyncTrigger *
squadstack_sync_trigger_get(FunctionCallInfo fcinfo, TriggerData *trigdata)
{
	SyncTriggerEntry *e;
	bool		found;
	SyncTrigger *st;
	uint64		invals;

	if (sync_triggers == NULL)
	{
		HASHCTL		ctl;

		sync_trigger_cxt = AllocSetContextCreate(CacheMemoryContext,
												 "squadstack sync triggers",
												 ALLOCSET_SMALL_SIZES);
		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(SyncTriggerEntry);
		ctl.hcxt = sync_trigger_cxt;
		sync_triggers = hash_create("squadstack sync triggers", 16, &ctl,
									HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		CacheRegisterRelcacheCallback(sync_trigger_relcache_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(NAMESPACEOID, sync_trigger_namespace_callback,
									  (Datum) 0);
		CacheRegisterSyscacheCallback(PROCOID, sync_trigger_function_callback,
									  (Datum) 0);
	}

	e = hash_search(sync_triggers, &trigdata->tg_trigger->tgoid, HASH_FIND, &found);
	if (found)
	{
		if (sync_trigger_matches(e->st, trigdata))
			return e->st;
		e->st->valid = false;
	}

	sweep_sync_triggers();

	/*
	 * Built in the transaction's memory, so that an error (a bad argument)
	 * leaves neither an entry nor memory behind.  An invalidation during
	 * the build leaves the result stale, to be built again next time.
	 */
	invals = sync_trigger_invals;
	st = build_sync_trigger(trigdata, fcinfo->flinfo->fn_oid, TopTransactionContext);
	MemoryContextSetParent(st->cxt, sync_trigger_cxt);
	st->valid = (invals == sync_trigger_invals);
	e = hash_search(sync_triggers, &trigdata->tg_trigger->tgoid, HASH_ENTER, &found);
	e->st = st;
	return st;
}

/* A column value as a JSON value; text-like values point into the datum. */
