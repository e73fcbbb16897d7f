/*-------------------------------------------------------------------------
 *
 * trigger.c
 *		squadstack_sync_trigger(): a row trigger that keeps SquadStack in
 *		step with a CRM table.
 *
 *		CREATE TRIGGER to_squadstack
 *			AFTER INSERT OR UPDATE OR DELETE ON crm.customers
 *			FOR EACH ROW EXECUTE FUNCTION squadstack_sync_trigger(
 *				'camp_1', 'lead_id=id', 'phone_number=mobile',
 *				'contact_name=full_name', 'is_KYC=kyc_status',
 *				'on_delete=disable', 'on_invalid=error');
 *
 * The first argument is the campaign id; each further one maps a lead field
 * to a column (field=column) or sets an option (on_delete=disable|delete|
 * ignore, on_invalid=error|skip; every argument starting with "on_" is an
 * option).  An INSERT queues a create, an UPDATE an update of the mapped
 * fields that changed, a DELETE a disable or a delete.  Operations are
 * validated exactly as the squadstack_* functions validate them and queued
 * in the CRM statement's transaction.
 *
 * This runs on every write to the CRM table, so the arguments are parsed
 * and the columns resolved once per trigger and backend and kept until the
 * table's relcache entry is invalidated (ALTER TABLE, CREATE OR REPLACE
 * TRIGGER, ...); a row then costs converting the mapped columns to JSON
 * values, validating them as a lead (lead.c, which builds the payload) and
 * appending that to squadstack.intake (intake.c).
 *
 * The function is not SECURITY DEFINER: it runs as whoever writes the CRM
 * table, which needs no privilege on any squadstack table, because the
 * intake is written without privilege checks.  The rare statements it runs
 * through SPI (recording a skipped row) run as the function's owner with a
 * safe search_path, as a SECURITY DEFINER function would.
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

#include "squadstack.h"

PG_FUNCTION_INFO_V1(squadstack_sync_trigger);

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

/* what the error context callback reports */
typedef struct SyncErrorContext
{
	const char *trigger_name;
	const char *table_name;
	const char *what;
} SyncErrorContext;

static void
sync_error_callback(void *arg)
{
	SyncErrorContext *ec = (SyncErrorContext *) arg;

	errcontext("%s of squadstack sync trigger \"%s\" on table \"%s\"",
			   ec->what, ec->trigger_name, ec->table_name);
}

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
 * sqs_check_campaign's message does not say where the campaign came from;
 * say it in ours.  Nothing happens between catching its error and raising
 * ours, so no subtransaction is needed.
 */
static void
check_campaign_arg(SyncTrigger *st, const char *campaign)
{
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		sqs_check_campaign(campaign);
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

static Oid
function_owner(Oid funcoid)
{
	HeapTuple	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(funcoid));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for function %u", funcoid);
	owner = ((Form_pg_proc) GETSTRUCT(tup))->proowner;
	ReleaseSysCache(tup);
	return owner;
}

static int
field_order(const void *a, const void *b)
{
	return sqs_jsonb_key_cmp(((const SyncField *) a)->field,
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
	st->owner = function_owner(funcoid);
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
static SyncTrigger *
get_sync_trigger(FunctionCallInfo fcinfo, TriggerData *trigdata)
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
static void
column_json(SyncField *f, Datum d, bool isnull, JsonbValue *v)
{
	char	   *str;

	if (isnull)
	{
		v->type = jbvNull;
		return;
	}
	switch (f->kind)
	{
		case SYNC_JSON_TEXT:
			{
				text	   *t = DatumGetTextPP(d);

				v->type = jbvString;
				v->val.string.val = VARDATA_ANY(t);
				v->val.string.len = VARSIZE_ANY_EXHDR(t);
				return;
			}
		case SYNC_JSON_INT2:
			v->type = jbvNumeric;
			v->val.numeric = int64_to_numeric(DatumGetInt16(d));
			return;
		case SYNC_JSON_INT4:
			v->type = jbvNumeric;
			v->val.numeric = int64_to_numeric(DatumGetInt32(d));
			return;
		case SYNC_JSON_INT8:
			v->type = jbvNumeric;
			v->val.numeric = int64_to_numeric(DatumGetInt64(d));
			return;
		case SYNC_JSON_NUMERIC:
			{
				Numeric		n = DatumGetNumeric(d);

				/* JSON has no NaN or infinity: send those as to_jsonb does */
				if (!numeric_is_nan(n) && !numeric_is_inf(n))
				{
					v->type = jbvNumeric;
					v->val.numeric = n;
					return;
				}
				break;
			}
		case SYNC_JSON_FLOAT:
			{
				double		x = f->basetype == FLOAT4OID ?
					(double) DatumGetFloat4(d) : DatumGetFloat8(d);

				if (isnan(x) || isinf(x))
					break;

				/*
				 * Through the shortest exact text form, as to_jsonb does;
				 * float8_numeric would round to DBL_DIG digits.
				 */
				str = OutputFunctionCall(&f->outfunc, d);
				v->type = jbvNumeric;
				v->val.numeric = DatumGetNumeric(DirectFunctionCall3(numeric_in,
																	 CStringGetDatum(str),
																	 ObjectIdGetDatum(InvalidOid),
																	 Int32GetDatum(-1)));
				return;
			}
		case SYNC_JSON_BOOL:
			v->type = jbvBool;
			v->val.boolean = DatumGetBool(d);
			return;
		case SYNC_JSON_DATETIME:
			/* independent of DateStyle, which is the session's */
			str = JsonEncodeDateTime(NULL, d, f->basetype, NULL);
			v->type = jbvString;
			v->val.string.val = str;
			v->val.string.len = strlen(str);
			return;
		case SYNC_JSON_OTHER:
			break;
	}
	str = OutputFunctionCall(&f->outfunc, d);
	v->type = jbvString;
	v->val.string.val = str;
	v->val.string.len = strlen(str);
}

/* One field of the lead as validation takes it: its key and JSON value. */
static void
set_field(SqsLeadField *out, SyncField *f, Datum d, bool isnull)
{
	out->key = f->field;
	column_json(f, d, isnull, &out->value);
}

/* The lead_id of a row as text, for messages and squadstack.sync_skipped. */
static char *
row_lead_label(SyncTrigger *st, TupleTableSlot *slot)
{
	SyncField  *f = &st->fields[st->lead_idx];

	if (slot->tts_isnull[f->attnum - 1])
		return NULL;
	return OutputFunctionCall(&f->outfunc, slot->tts_values[f->attnum - 1]);
}

/* what run_as_owner() changed, to put back */
typedef struct OwnerContext
{
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
} OwnerContext;

/*
 * Run the following SPI statements as the trigger function's owner with
 * search_path = pg_catalog, pg_temp, as a SECURITY DEFINER function would.
 * An error undoes both with the (sub)transaction.
 */
static void
run_as_owner(SyncTrigger *st, OwnerContext *oc)
{
	GetUserIdAndSecContext(&oc->save_userid, &oc->save_sec_context);
	SetUserIdAndSecContext(st->owner,
						   oc->save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
	oc->save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
}

static void
end_run_as_owner(OwnerContext *oc)
{
	AtEOXact_GUC(true, oc->save_nestlevel);
	SetUserIdAndSecContext(oc->save_userid, oc->save_sec_context);
}

/*
 * Record a row that on_invalid=skip leaves out, and warn.  Exceptional, so
 * it may plan its statement each time.
 */
static void
record_skip(SyncTrigger *st, const char *op, TupleTableSlot *slot,
			ErrorData *edata, ErrorContextCallback *errcallback)
{
	char	   *lead = row_lead_label(st, slot);
	Oid			rowtype = slot->tts_tupleDescriptor->tdtypeid;
	Datum		row = ExecFetchSlotHeapTupleDatum(slot);
	Oid			argtypes[8] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
	TEXTOID, TEXTOID, JSONBOID};
	Datum		args[8];
	char		nulls[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	OwnerContext oc;
	bool		isnull;

	args[0] = CStringGetTextDatum(st->table_name);
	args[1] = CStringGetTextDatum(st->trigger_name);
	args[2] = CStringGetTextDatum(op);
	args[3] = CStringGetTextDatum(st->campaign);
	if (lead != NULL)
		args[4] = CStringGetTextDatum(lead);
	else
	{
		args[4] = (Datum) 0;
		nulls[4] = 'n';
	}
	args[5] = CStringGetTextDatum(unpack_sql_state(edata->sqlerrcode));
	args[6] = CStringGetTextDatum(edata->message);

	/*
	 * The row as jsonb is made as the writer: to_jsonb() may call casts to
	 * json that the table's column types bring, which must not run as the
	 * owner.  Only the insert runs as the owner.
	 */
	SPI_connect();
	sqs_exec("SELECT pg_catalog.to_jsonb($1)", 1, &rowtype, &row, NULL, SPI_OK_SELECT);
	args[7] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	run_as_owner(st, &oc);
	sqs_exec("INSERT INTO squadstack.sync_skipped "
			 "(table_name, trigger_name, operation, campaign_id, lead_id, "
			 " sqlstate, error, row_data) "
			 "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
			 8, argtypes, args, nulls, SPI_OK_INSERT);
	end_run_as_owner(&oc);
	SPI_finish();

	/* the warning names trigger and table itself; no context line needed */
	error_context_stack = errcallback->previous;
	ereport(WARNING,
			(errcode(edata->sqlerrcode),
			 lead != NULL ?
			 errmsg("trigger \"%s\" on table \"%s\" skipped lead \"%s\": %s",
					st->trigger_name, st->table_name, lead, edata->message) :
			 errmsg("trigger \"%s\" on table \"%s\" skipped a row without lead_id: %s",
					st->trigger_name, st->table_name, edata->message),
			 edata->detail != NULL ? errdetail_internal("%s", edata->detail) : 0,
			 errhint("The trigger has on_invalid=skip; the row is recorded in squadstack.sync_skipped.")));
	error_context_stack = errcallback;
}

typedef enum SyncParse
{
	SYNC_PARSE_CREATE,
	SYNC_PARSE_UPDATE,
	SYNC_PARSE_LEAD_ID
} SyncParse;

/*
 * Validate the lead's fields as the squadstack_* functions validate a lead
 * object (a create, an update, or a lead_id alone for a disable or a
 * delete), without building that object first.
 */
static List *
parse_ops(SyncParse how, SqsLeadField *fields, int n)
{
	switch (how)
	{
		case SYNC_PARSE_CREATE:
			return list_make1(sqs_parse_lead_fields(fields, n, false));
		case SYNC_PARSE_UPDATE:
			return list_make1(sqs_parse_lead_fields(fields, n, true));
		case SYNC_PARSE_LEAD_ID:
			break;
	}
	return list_make1(sqs_parse_lead_id(&fields[0].value));
}

/*
 * Queue validated operations: append them to the intake, or, where the
 * extension's schema predates the intake, insert them into the outbox as
 * the squadstack_* functions do.
 */
static void
queue_ops(SyncTrigger *st, const char *op, List *ops)
{
	Oid			intake = sqs_intake_relid();
	ListCell   *lc;

	if (OidIsValid(intake))
	{
		/* each insert also wakes the worker for the campaign at commit */
		foreach(lc, ops)
			sqs_intake_insert(intake, st->campaign, op, lfirst(lc));
	}
	else
	{
		OwnerContext oc;

		run_as_owner(st, &oc);
		sqs_enqueue(st->campaign, op, ops, false);
		end_run_as_owner(&oc);
	}
}

/*
 * Validate an operation and queue it.  With on_invalid=skip a lead that
 * fails validation (a data exception) is recorded and skipped instead: the
 * validation then runs in a subtransaction, as a PL/pgSQL exception block
 * would, so that its error can be caught.  The default path pays nothing
 * for that.
 */
static void
validate_and_queue(SyncTrigger *st, const char *op, SyncParse how,
				   SqsLeadField *fields, int n,
				   TupleTableSlot *slot, ErrorContextCallback *errcallback)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	List	   *volatile ops = NIL;
	ErrorData  *volatile edata = NULL;

	if (!st->skip_invalid)
	{
		queue_ops(st, op, parse_ops(how, fields, n));
		return;
	}

	BeginInternalSubTransaction(NULL);
	/* keep the result in the row's context, beyond the subtransaction */
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		ops = parse_ops(how, fields, n);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;

		/* only an invalid lead is skipped; a cancel or a bug is not */
		if (ERRCODE_TO_CATEGORY(edata->sqlerrcode) != ERRCODE_DATA_EXCEPTION)
			ReThrowError(edata);
	}
	PG_END_TRY();

	if (edata != NULL)
		record_skip(st, op, slot, edata, errcallback);
	else
		queue_ops(st, op, ops);
}

static void
sync_insert(SyncTrigger *st, TupleTableSlot *slot, ErrorContextCallback *errcallback)
{
	SqsLeadField *fields = palloc(sizeof(SqsLeadField) * st->nfields);
	int			i;

	for (i = 0; i < st->nfields; i++)
	{
		AttrNumber	a = st->fields[i].attnum - 1;

		set_field(&fields[i], &st->fields[i], slot->tts_values[a], slot->tts_isnull[a]);
	}
	validate_and_queue(st, "create", SYNC_PARSE_CREATE, fields, st->nfields,
					   slot, errcallback);
}

static bool
column_changed(SyncField *f, TupleTableSlot *oldslot, TupleTableSlot *newslot)
{
	AttrNumber	a = f->attnum - 1;

	if (oldslot->tts_isnull[a] || newslot->tts_isnull[a])
		return oldslot->tts_isnull[a] != newslot->tts_isnull[a];

	/*
	 * Binary comparison, which detoasts as needed.  Values that are equal
	 * but stored differently (numeric 1.0 and 1.00) count as changed; their
	 * JSON differs too, so the update is not wasted.
	 */
	return !datum_image_eq(oldslot->tts_values[a], newslot->tts_values[a],
						   f->typbyval, f->typlen);
}

static void
sync_update(SyncTrigger *st, TupleTableSlot *oldslot, TupleTableSlot *newslot,
			ErrorContextCallback *errcallback)
{
	SyncField  *lead = &st->fields[st->lead_idx];
	SqsLeadField *fields = palloc(sizeof(SqsLeadField) * st->nfields);
	int			n = 0;
	bool		any = false;
	int			i;

	if (column_changed(lead, oldslot, newslot))
	{
		char	   *old_lead = row_lead_label(st, oldslot);
		char	   *new_lead = row_lead_label(st, newslot);

		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot change the lead_id of lead \"%s\" in table \"%s\"",
						old_lead ? old_lead : "(null)", st->table_name),
				 errdetail("Column \"%s\" would change from %s to %s, but trigger \"%s\" sends it as the lead's lead_id, which SquadStack cannot change.",
						   lead->column,
						   old_lead ? quote_literal_cstr(old_lead) : "NULL",
						   new_lead ? quote_literal_cstr(new_lead) : "NULL",
						   st->trigger_name),
				 errhint("Delete the row and insert it again with the new id.")));
	}

	/* the lead_id and the fields that changed, in key order */
	for (i = 0; i < st->nfields; i++)
	{
		SyncField  *f = &st->fields[i];
		AttrNumber	a = f->attnum - 1;

		if (i != st->lead_idx)
		{
			if (!column_changed(f, oldslot, newslot))
				continue;
			any = true;
		}
		set_field(&fields[n++], f, newslot->tts_values[a], newslot->tts_isnull[a]);
	}
	/* nothing SquadStack knows of changed */
	if (!any)
		return;
	validate_and_queue(st, "update", SYNC_PARSE_UPDATE, fields, n, newslot, errcallback);
}

static void
sync_delete(SyncTrigger *st, TupleTableSlot *slot, ErrorContextCallback *errcallback)
{
	SyncField  *lead = &st->fields[st->lead_idx];
	SqsLeadField field;

	set_field(&field, lead, slot->tts_values[lead->attnum - 1],
			  slot->tts_isnull[lead->attnum - 1]);
	validate_and_queue(st, st->on_delete == SYNC_DELETE_DELETE ? "delete" : "disable",
					   SYNC_PARSE_LEAD_ID, &field, 1, slot, errcallback);
}

Datum
squadstack_sync_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TriggerEvent event;
	SyncTrigger *st;
	ErrorContextCallback errcallback;
	SyncErrorContext ec;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("squadstack_sync_trigger: not called by trigger manager")));
	event = trigdata->tg_event;
	if (!TRIGGER_FIRED_AFTER(event) || !TRIGGER_FIRED_FOR_ROW(event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("trigger \"%s\" on table \"%s\" must be an AFTER ... FOR EACH ROW trigger",
						trigdata->tg_trigger->tgname,
						quote_qualified_identifier(get_namespace_name(RelationGetNamespace(trigdata->tg_relation)),
												   RelationGetRelationName(trigdata->tg_relation))),
				 errdetail("squadstack_sync_trigger() queues each row's change once the row is written.")));

	st = get_sync_trigger(fcinfo, trigdata);

	if (TRIGGER_FIRED_BY_DELETE(event) && st->on_delete == SYNC_DELETE_IGNORE)
		return PointerGetDatum(NULL);

	ec.trigger_name = st->trigger_name;
	ec.table_name = st->table_name;
	errcallback.callback = sync_error_callback;
	errcallback.arg = &ec;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;

	slot_getsomeattrs(trigdata->tg_trigslot, st->max_attnum);
	if (TRIGGER_FIRED_BY_INSERT(event))
	{
		ec.what = "create";
		sync_insert(st, trigdata->tg_trigslot, &errcallback);
	}
	else if (TRIGGER_FIRED_BY_UPDATE(event))
	{
		ec.what = "update";
		slot_getsomeattrs(trigdata->tg_newslot, st->max_attnum);
		sync_update(st, trigdata->tg_trigslot, trigdata->tg_newslot, &errcallback);
	}
	else if (TRIGGER_FIRED_BY_DELETE(event))
	{
		ec.what = st->on_delete == SYNC_DELETE_DELETE ? "delete" : "disable";
		sync_delete(st, trigdata->tg_trigslot, &errcallback);
	}

	error_context_stack = errcallback.previous;
	return PointerGetDatum(NULL);
}
