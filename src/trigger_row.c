/*-------------------------------------------------------------------------
 *
 * trigger_row.c
 *		A CRM row as a sync trigger sends it: its mapped columns as a
 *		lead's fields, each value as the JSON value to_jsonb() makes of
 *		it; which columns an UPDATE changed; the row's lead_id as text.
 *
 * This runs for every row written to a CRM table with a sync trigger, so
 * values become JSON values directly, never through to_jsonb() or the JSON
 * parser.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type_d.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "trigger_row.h"

/* A column's value as a JSON value, as to_jsonb() would make it. */
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

/*
 * One field of the lead as validation takes it, from the row in slot: its
 * key and JSON value.
 */
void
squadstack_sync_row_field(SquadstackLeadField *out, SyncField *f, TupleTableSlot *slot)
{
	AttrNumber	a = f->attnum - 1;

	out->key = f->field;
	column_json(f, slot->tts_values[a], slot->tts_isnull[a], &out->value);
}

/* The lead_id of a row as text, for messages and squadstack.sync_skipped. */
char *
squadstack_sync_row_lead_id(SyncTrigger *st, TupleTableSlot *slot)
{
	SyncField  *f = &st->fields[st->lead_idx];

	if (slot->tts_isnull[f->attnum - 1])
		return NULL;
	return OutputFunctionCall(&f->outfunc, slot->tts_values[f->attnum - 1]);
}

/* Whether the column of f differs between the old row and the new. */
bool
squadstack_sync_column_changed(SyncField *f, TupleTableSlot *oldslot, TupleTableSlot *newslot)
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
