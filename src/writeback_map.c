/*-------------------------------------------------------------------------
 *
 * writeback_map.c
 *		A write-back's mapping of outcome fields to columns: parsed and
 *		checked against its table, the statements that write an outcome
 *		into that table, and the values an outcome gives them.
 *
 * Each item is column=field ('outcome=lead_outcome'); the first names the
 * key column, which matches lead_id.  Each value is converted to the
 * column's type as an explicit cast would convert it (writeback.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type_d.h"
#include "lib/stringinfo.h"
#include "parser/parse_coerce.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "writeback_map.h"

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
struct SquadstackWritebackMapping
{
	char	   *column;
	Oid			coltype;
	int32		coltypmod;
	Source		source;
	Oid			srctype;
	char	   *key;			/* SRC_RESPONSE_KEY */
};

typedef SquadstackWritebackMapping Mapping;
typedef SquadstackWriteback Writeback;

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

/*
 * Parse a write-back's arguments, mappings and the on_missing option,
 * against its table.
 */
Writeback *
squadstack_writeback_parse(Oid relid, Datum *items, int nitems)
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
	wb->table = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
										   get_rel_name(relid));
	return wb;
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
char *
squadstack_writeback_update_sql(const Writeback *wb)
{
	StringInfoData sql;
	int			i;

	initStringInfo(&sql);
	appendStringInfo(&sql, "UPDATE %s SET ", wb->table);
	for (i = 1; i < wb->n; i++)
		appendStringInfo(&sql, "%s%s = %s", i > 1 ? ", " : "",
						 quote_identifier(wb->mappings[i].column),
						 cast_param(i + 1, &wb->mappings[i]));
	appendStringInfo(&sql, " WHERE %s OPERATOR(pg_catalog.=) %s",
					 quote_identifier(wb->mappings[0].column), cast_param(1, &wb->mappings[0]));
	return sql.data;
}

/* INSERT INTO target (key, col, ...) VALUES (CAST($1 AS type), ...) */
char *
squadstack_writeback_insert_sql(const Writeback *wb)
{
	StringInfoData sql;
	StringInfoData values;
	int			i;

	initStringInfo(&sql);
	initStringInfo(&values);
	appendStringInfo(&sql, "INSERT INTO %s (", wb->table);
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

/*
 * The statements' parameters for an outcome: the type, value and null flag
 * of each mapping, nulls as SPI_execute_with_args() takes them.
 */
void
squadstack_writeback_params(const Writeback *wb, const SquadstackOutcome *o,
							Oid *types, Datum *values, char *nulls)
{
	int			i;

	for (i = 0; i < wb->n; i++)
	{
		bool		isnull;

		types[i] = wb->mappings[i].srctype;
		values[i] = source_value(o, &wb->mappings[i], &isnull);
		nulls[i] = isnull ? 'n' : ' ';
	}
	nulls[wb->n] = '\0';
}
