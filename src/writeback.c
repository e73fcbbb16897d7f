/*-------------------------------------------------------------------------
 *
 * writeback.c
 *		Outcomes written back into CRM tables: squadstack_writeback(),
 *		squadstack_drop_writeback(), and applying them to an outcome.
 *
 * A write-back maps outcome fields to columns of a user's table, in the
 * style of squadstack_sync_trigger()'s arguments:
 *
 *	 'id=lead_id', 'outcome=lead_outcome', 'interest=lead_responses.interest'
 *
 * The first names the key column, which matches lead_id.  Each applied
 * outcome of the campaign updates the row with that key (or, with
 * 'on_missing=insert', inserts one when there is none), converting each
 * value to the column's type as an explicit cast would.  It runs as the
 * table's owner, with privilege checks, and with the search_path of the
 * session that defined it, never as the extension's owner.
 *
 * Definitions live in squadstack.writebacks; the mapping is checked
 * against the table when it is defined and again when it is applied, so a
 * column dropped since is reported then.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "parser/parse_coerce.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "lead.h"
#include "spi_util.h"
#include "writeback.h"

PG_FUNCTION_INFO_V1(squadstack_writeback);
PG_FUNCTION_INFO_V1(squadstack_drop_writeback);

/* what an outcome offers to write back */
typedef enum Source
{
	SRC_LEAD_ID,
	SRC_LEAD_OUTCOME,
	SRC_LATEST_CALLED_AT,
	SRC_LATEST_RECORDING_URL,
	SRC_PROCESSED_AT,
	SRC_CREATED_AT,
	SRC_PHONE_NUMBER,
	SRC_CONTACT_NAME,
	SRC_LEAD_RESPONSES,			/* the whole object */
	SRC_RESPONSE_KEY			/* lead_responses.KEY, as text */
} Source;

static const struct
{
	const char *name;
	Source		source;
	Oid			type;
}			sources[] = {
	{"lead_id", SRC_LEAD_ID, TEXTOID},
	{"lead_outcome", SRC_LEAD_OUTCOME, TEXTOID},
	{"latest_called_at", SRC_LATEST_CALLED_AT, TIMESTAMPTZOID},
	{"latest_recording_url", SRC_LATEST_RECORDING_URL, TEXTOID},
	{"processed_at", SRC_PROCESSED_AT, TIMESTAMPTZOID},
	{"created_at", SRC_CREATED_AT, TIMESTAMPTZOID},
	{"phone_number", SRC_PHONE_NUMBER, TEXTOID},
	{"contact_name", SRC_CONTACT_NAME, TEXTOID},
	{"lead_responses", SRC_LEAD_RESPONSES, JSONBOID},
};

#define RESPONSES_PREFIX "lead_responses."

/* one column=source item */
typedef struct Mapping
{
	char	   *column;
	Oid			coltype;
	int32		coltypmod;
	Source		source;
	Oid			srctype;
	char	   *key;			/* SRC_RESPONSE_KEY */
} Mapping;

/* a parsed write-back */
typedef struct Writeback
{
	Oid			relid;
	int			n;				/* mappings[0] is the key */
	Mapping    *mappings;
	bool		insert_missing;
} Writeback;

static void
check_table(Oid relid, Oid role)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Form_pg_class cls;

	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table with OID %u does not exist", relid)));
	cls = (Form_pg_class) GETSTRUCT(tup);
	if (cls->relkind != RELKIND_RELATION && cls->relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", NameStr(cls->relname))));
	if (OidIsValid(role) && !has_privs_of_role(role, cls->relowner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of table %s", NameStr(cls->relname)),
				 errdetail("Outcomes are written back as the table's owner.")));
	ReleaseSysCache(tup);
}

/* Parse one "column=source" item against the table. */
static void
parse_mapping(const char *item, Oid relid, bool is_key, Mapping *m)
{
	const char *eq = strchr(item, '=');
	const char *source;
	AttrNumber	attnum;
	HeapTuple	tup;
	Form_pg_attribute att;
	size_t		i;

	if (eq == NULL || eq == item || eq[1] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid write-back mapping \"%s\"", item),
				 errhint("A mapping is column=field, such as \"outcome=lead_outcome\".")));
	m->column = pnstrdup(item, eq - item);
	source = eq + 1;

	m->key = NULL;
	for (i = 0; i < lengthof(sources); i++)
		if (strcmp(source, sources[i].name) == 0)
			break;
	if (i < lengthof(sources))
	{
		m->source = sources[i].source;
		m->srctype = sources[i].type;
	}
	else if (strncmp(source, RESPONSES_PREFIX, strlen(RESPONSES_PREFIX)) == 0 &&
			 source[strlen(RESPONSES_PREFIX)] != '\0')
	{
		m->source = SRC_RESPONSE_KEY;
		m->srctype = TEXTOID;
		m->key = pstrdup(source + strlen(RESPONSES_PREFIX));
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown outcome field \"%s\" in write-back mapping \"%s\"",
						source, item),
				 errhint("Fields are lead_id, lead_outcome, latest_called_at, latest_recording_url, processed_at, created_at, phone_number, contact_name, lead_responses and lead_responses.KEY.")));
	if (is_key && m->source != SRC_LEAD_ID)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the first write-back mapping must name the key column, as \"column=lead_id\""),
				 errdetail("It is \"%s\".", item)));

	attnum = get_attnum(relid, m->column);
	if (attnum == InvalidAttrNumber || attnum < 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of table %s does not exist",
						m->column, get_rel_name(relid))));
	tup = SearchSysCache2(ATTNUM, ObjectIdGetDatum(relid), Int16GetDatum(attnum));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for attribute %d of relation %u", attnum, relid);
	att = (Form_pg_attribute) GETSTRUCT(tup);
	if (att->attgenerated)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("column \"%s\" of table %s is generated", m->column, get_rel_name(relid))));
	m->coltype = att->atttypid;
	m->coltypmod = att->atttypmod;
	ReleaseSysCache(tup);

	if (!can_coerce_type(1, &m->srctype, &m->coltype, COERCION_EXPLICIT))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("outcome field \"%s\" cannot be written to column \"%s\" of type %s",
						source, m->column, format_type_be(m->coltype))));
}

/* Parse a write-back's arguments: mappings and the on_missing option. */
static Writeback *
parse_writeback(Oid relid, Datum *items, int nitems)
{
	Writeback  *wb = palloc0(sizeof(Writeback));
	int			i;

	wb->relid = relid;
	wb->mappings = palloc(sizeof(Mapping) * nitems);
	for (i = 0; i < nitems; i++)
	{
		char	   *item = TextDatumGetCString(items[i]);
		int			j;

		if (strncmp(item, "on_missing=", 11) == 0)
		{
			if (strcmp(item + 11, "insert") == 0)
				wb->insert_missing = true;
			else if (strcmp(item + 11, "skip") != 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid write-back option \"%s\"", item),
						 errhint("on_missing is skip (the default) or insert.")));
			continue;
		}
		parse_mapping(item, relid, wb->n == 0, &wb->mappings[wb->n]);
		for (j = 0; j < wb->n; j++)
			if (strcmp(wb->mappings[j].column, wb->mappings[wb->n].column) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_DUPLICATE_COLUMN),
						 errmsg("column \"%s\" is mapped twice", wb->mappings[j].column)));
		wb->n++;
	}
	if (wb->n < 2)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a write-back needs the key column and at least one column to write"),
				 errhint("For example: 'id=lead_id', 'outcome=lead_outcome'.")));
	return wb;
}

static char *
qualified_table(Oid relid)
{
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
									  get_rel_name(relid));
}

static char *
cast_param(int n, const Mapping *m)
{
	return psprintf("CAST($%d AS %s)", n,
					format_type_extended(m->coltype, m->coltypmod,
										 FORMAT_TYPE_TYPEMOD_GIVEN |
										 FORMAT_TYPE_FORCE_QUALIFY));
}

/* UPDATE target SET col = CAST($2 AS type), ... WHERE key = CAST($1 AS type) */
static char *
update_sql(const Writeback *wb)
{
	StringInfoData sql;
	int			i;

	initStringInfo(&sql);
	appendStringInfo(&sql, "UPDATE %s SET ", qualified_table(wb->relid));
	for (i = 1; i < wb->n; i++)
		appendStringInfo(&sql, "%s%s = %s", i > 1 ? ", " : "",
						 quote_identifier(wb->mappings[i].column),
						 cast_param(i + 1, &wb->mappings[i]));
	appendStringInfo(&sql, " WHERE %s OPERATOR(pg_catalog.=) %s",
					 quote_identifier(wb->mappings[0].column), cast_param(1, &wb->mappings[0]));
	return sql.data;
}

static char *
insert_sql(const Writeback *wb)
{
	StringInfoData sql;
	StringInfoData values;
	int			i;

	initStringInfo(&sql);
	initStringInfo(&values);
	appendStringInfo(&sql, "INSERT INTO %s (", qualified_table(wb->relid));
	for (i = 0; i < wb->n; i++)
	{
		appendStringInfo(&sql, "%s%s", i > 0 ? ", " : "",
						 quote_identifier(wb->mappings[i].column));
		appendStringInfo(&values, "%s%s", i > 0 ? ", " : "",
						 cast_param(i + 1, &wb->mappings[i]));
	}
	appendStringInfo(&sql, ") VALUES (%s)", values.data);
	return sql.data;
}

/* The value an outcome gives a mapping; *isnull where it has none. */
static Datum
source_value(const SquadstackOutcome *o, const Mapping *m, bool *isnull)
{
	*isnull = false;
	switch (m->source)
	{
		case SRC_LEAD_ID:
			return CStringGetTextDatum(o->lead_id);
		case SRC_LEAD_OUTCOME:
		case SRC_LATEST_RECORDING_URL:
		case SRC_PHONE_NUMBER:
		case SRC_CONTACT_NAME:
			{
				SquadstackOutcomeField f = m->source == SRC_LEAD_OUTCOME ? SQUADSTACK_FIELD_LEAD_OUTCOME :
					m->source == SRC_LATEST_RECORDING_URL ? SQUADSTACK_FIELD_LATEST_RECORDING_URL :
					m->source == SRC_PHONE_NUMBER ? SQUADSTACK_FIELD_PHONE_NUMBER :
					SQUADSTACK_FIELD_CONTACT_NAME;

				if (o->fields[f] == NULL)
					break;
				return CStringGetTextDatum(o->fields[f]);
			}
		case SRC_LATEST_CALLED_AT:
			if (!o->has_latest_called_at)
				break;
			return TimestampTzGetDatum(o->latest_called_at);
		case SRC_PROCESSED_AT:
			return TimestampTzGetDatum(o->processed_at);
		case SRC_CREATED_AT:
			if (!o->has_created_at)
				break;
			return TimestampTzGetDatum(o->created_at);
		case SRC_LEAD_RESPONSES:
			if (o->lead_responses == NULL)
				break;
			return JsonbPGetDatum(o->lead_responses);
		case SRC_RESPONSE_KEY:
			{
				JsonbValue	k;
				JsonbValue *v;

				if (o->lead_responses == NULL)
					break;
				k.type = jbvString;
				k.val.string.val = m->key;
				k.val.string.len = strlen(m->key);
				v = findJsonbValueFromContainer(&o->lead_responses->root, JB_FOBJECT, &k);
				if (v == NULL || v->type == jbvNull)
					break;
				if (v->type == jbvString)
					return PointerGetDatum(cstring_to_text_with_len(v->val.string.val,
																	v->val.string.len));
				{
					/* a number, a boolean or a container: its JSON text */
					Jsonb	   *j = JsonbValueToJsonb(v);

					return CStringGetTextDatum(JsonbToCString(NULL, &j->root, VARSIZE(j)));
				}
			}
	}
	*isnull = true;
	return (Datum) 0;
}

static void
writeback_context(void *arg)
{
	errcontext("write-back of an outcome into table %s", (const char *) arg);
}

/* Apply one write-back to an outcome, as the table's owner. */
static void
apply_one(const SquadstackOutcome *o, Writeback *wb, const char *search_path)
{
	Oid		   *types = palloc(sizeof(Oid) * wb->n);
	Datum	   *values = palloc(sizeof(Datum) * wb->n);
	char	   *nulls = palloc(wb->n + 1);
	HeapTuple	tup;
	Oid			owner;
	SquadstackRunAs	ctx;
	ErrorContextCallback errcallback;
	int			i;

	for (i = 0; i < wb->n; i++)
	{
		bool		isnull;

		types[i] = wb->mappings[i].srctype;
		values[i] = source_value(o, &wb->mappings[i], &isnull);
		nulls[i] = isnull ? 'n' : ' ';
	}
	nulls[wb->n] = '\0';

	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(wb->relid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", wb->relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);

	errcallback.callback = writeback_context;
	errcallback.arg = qualified_table(wb->relid);
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;

	squadstack_run_as(owner, search_path, &ctx);
	if (SPI_execute_with_args(update_sql(wb), wb->n, types, values, nulls,
							  false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not write an outcome back");
	if (SPI_processed == 0 && wb->insert_missing &&
		SPI_execute_with_args(insert_sql(wb), wb->n, types, values, nulls,
							  false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not write an outcome back");
	squadstack_end_run_as(&ctx);

	error_context_stack = errcallback.previous;
}

/*
 * Write an applied outcome into every write-back of its campaign.  Runs in
 * the webhook's apply step, inside its subtransaction: an error here fails
 * the apply, which keeps the payload as apply_failed.
 */
void
squadstack_writeback_apply(const SquadstackOutcome *o)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	SPITupleTable *defs;
	uint64		n;
	uint64		i;

	SPI_connect();
	args[0] = CStringGetTextDatum(o->campaign_id);
	squadstack_exec("SELECT target::oid, mapping, search_path FROM squadstack.writebacks"
			 " WHERE campaign_id = $1 ORDER BY created_at, target::oid",
			 1, argtypes, args, NULL, SPI_OK_SELECT);
	defs = SPI_tuptable;
	n = SPI_processed;
	for (i = 0; i < n; i++)
	{
		bool		isnull;
		Oid			relid = DatumGetObjectId(SPI_getbinval(defs->vals[i], defs->tupdesc, 1, &isnull));
		ArrayType  *mapping = DatumGetArrayTypeP(SPI_getbinval(defs->vals[i], defs->tupdesc, 2, &isnull));
		char	   *search_path = SPI_getvalue(defs->vals[i], defs->tupdesc, 3);
		Datum	   *items;
		int			nitems;

		deconstruct_array_builtin(mapping, TEXTOID, &items, NULL, &nitems);
		apply_one(o, parse_writeback(relid, items, nitems), search_path);
	}
	SPI_finish();
}

/*
 * squadstack_writeback(campaign, target, VARIADIC mapping): define (or
 * replace) the write-back of a campaign's outcomes into target.  The
 * caller must own target.  Runs as the caller, and stores the definition
 * as the function's owner.
 */
Datum
squadstack_writeback(PG_FUNCTION_ARGS)
{
	char	   *campaign;
	Oid			relid;
	ArrayType  *mapping;
	Datum	   *items;
	bool	   *item_nulls;
	int			nitems;
	int			i;
	const char *search_path = GetConfigOption("search_path", false, false);
	Oid			argtypes[5] = {TEXTOID, OIDOID, TEXTARRAYOID, TEXTOID, OIDOID};
	Datum		args[5];
	SquadstackRunAs	ctx;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("campaign, target and mapping must not be null")));
	campaign = text_to_cstring(PG_GETARG_TEXT_PP(0));
	squadstack_check_campaign(campaign);
	relid = PG_GETARG_OID(1);
	mapping = PG_GETARG_ARRAYTYPE_P(2);
	deconstruct_array_builtin(mapping, TEXTOID, &items, &item_nulls, &nitems);
	for (i = 0; i < nitems; i++)
		if (item_nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("a write-back mapping must not be null")));

	check_table(relid, GetUserId());
	/* checked now, and again whenever it is applied */
	(void) parse_writeback(relid, items, nitems);

	args[0] = CStringGetTextDatum(campaign);
	args[1] = ObjectIdGetDatum(relid);
	args[2] = PointerGetDatum(mapping);
	args[3] = CStringGetTextDatum(search_path ? search_path : "");
	args[4] = ObjectIdGetDatum(GetUserId());
	SPI_connect();
	squadstack_run_as(squadstack_function_owner(fcinfo->flinfo->fn_oid), "pg_catalog, pg_temp", &ctx);
	squadstack_exec("INSERT INTO squadstack.writebacks AS w"
			 " (campaign_id, target, mapping, search_path, defined_by)"
			 " VALUES ($1, $2::regclass, $3, $4, $5::regrole)"
			 " ON CONFLICT (campaign_id, target) DO UPDATE SET"
			 "  mapping = excluded.mapping, search_path = excluded.search_path,"
			 "  defined_by = excluded.defined_by, created_at = now()",
			 5, argtypes, args, NULL, SPI_OK_INSERT);
	squadstack_end_run_as(&ctx);
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * squadstack_drop_writeback(campaign, target): remove a write-back; true
 * if there was one.  The caller must own target.
 */
Datum
squadstack_drop_writeback(PG_FUNCTION_ARGS)
{
	char	   *campaign;
	Oid			relid;
	Oid			argtypes[2] = {TEXTOID, OIDOID};
	Datum		args[2];
	SquadstackRunAs	ctx;
	bool		dropped;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("campaign and target must not be null")));
	campaign = text_to_cstring(PG_GETARG_TEXT_PP(0));
	squadstack_check_campaign(campaign);
	relid = PG_GETARG_OID(1);
	check_table(relid, GetUserId());

	args[0] = CStringGetTextDatum(campaign);
	args[1] = ObjectIdGetDatum(relid);
	SPI_connect();
	squadstack_run_as(squadstack_function_owner(fcinfo->flinfo->fn_oid), "pg_catalog, pg_temp", &ctx);
	squadstack_exec("DELETE FROM squadstack.writebacks WHERE campaign_id = $1 AND target = $2::regclass",
			 2, argtypes, args, NULL, SPI_OK_DELETE);
	dropped = SPI_processed > 0;
	squadstack_end_run_as(&ctx);
	SPI_finish();
	PG_RETURN_BOOL(dropped);
}
