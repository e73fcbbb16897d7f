/*-------------------------------------------------------------------------
 *
 * erase.c
 *		Erase a lead's personal data once SquadStack accepted its delete.
 *
 * Operations keep only their lead_id (and a conversion its detail);
 * outcomes lose phone, name, recording and responses; webhook payloads
 * keep only campaign and lead ids; rows a sync trigger skipped lose their
 * data; and the values the lead's operations carried are replaced in the
 * API's error texts kept in squadstack.api_calls.  What was queued after
 * the delete belongs to a new lead of the same id and is kept.
 *
 * The replacement in error texts is literal, in C: no pattern is built
 * from the values, so a long value or one full of regular-expression
 * characters cannot make it fail.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "erase.h"
#include "squadstack.h"

#define ERASED "[erased]"
/* as deliver.c keeps at most: a longer value cannot stand whole in an error */
#define MAX_ERASED_VALUE 8192

static bool
is_word_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		(c >= '0' && c <= '9') || c == '_';
}

/*
 * text with every occurrence of word that stands as a whole word (no
 * letter, digit or "_" right before or after it) replaced by with.
 * *changed says whether anything was replaced.
 */
char *
sqs_replace_words(const char *text, const char *word, const char *with,
				  bool *changed)
{
	size_t		wlen = strlen(word);
	const char *p = text;
	StringInfoData out;

	*changed = false;
	if (wlen == 0)
		return pstrdup(text);
	initStringInfo(&out);
	for (;;)
	{
		const char *hit = strstr(p, word);

		if (hit == NULL)
			break;
		if ((hit > text && is_word_char(hit[-1])) || is_word_char(hit[wlen]))
		{
			/* part of a longer word: keep its first byte and look on */
			appendBinaryStringInfo(&out, p, hit - p + 1);
			p = hit + 1;
			continue;
		}
		appendBinaryStringInfo(&out, p, hit - p);
		appendStringInfoString(&out, with);
		p = hit + wlen;
		*changed = true;
	}
	appendStringInfoString(&out, p);
	return out.data;
}

/*
 * Replace each value the lead's operations carried (phone, also in its
 * 10-digit form, name, custom fields: strings of at least 3 characters,
 * numbers of at least 6 digits, not shorter ones, which would mangle
 * status codes) where it stands as a whole word in the errors of the
 * campaign's calls since its first operation: "Ram" goes, "Ramesh"
 * (another lead's) stays.  Longest first, so "+919812345678" goes whole.
 */
static void
erase_from_call_errors(Datum ids)
{
	Oid			idtype = INT8ARRAYOID;
	SPITupleTable *values;
	SPITupleTable *calls;
	uint64		nvalues;
	uint64		ncalls;
	uint64		i;
	bool		isnull;
	Datum		campaign;
	Datum		since;
	Oid			argtypes[2] = {TEXTOID, TIMESTAMPTZOID};
	Datum		args[2];

	sqs_exec("SELECT DISTINCT d.campaign_id,"
			 "  min(o.created_at) OVER (PARTITION BY d.campaign_id) AS since, s.value,"
			 "  octet_length(s.value) AS len "
			 "FROM squadstack.outbox d"
			 "  JOIN squadstack.outbox o ON o.campaign_id = d.campaign_id"
			 "    AND o.lead_id = d.lead_id AND o.id <= d.id"
			 "  CROSS JOIN LATERAL jsonb_each(o.payload) t"
			 "  CROSS JOIN LATERAL (VALUES (t.value #>> '{}'),"
			 "    (CASE WHEN t.key = 'phone_number' THEN right(t.value #>> '{}', 10) END)) s(value) "
			 "WHERE d.id = ANY ($1) AND t.key <> 'lead_id'"
			 "  AND octet_length(s.value) <= " CppAsString2(MAX_ERASED_VALUE)
			 "  AND ((jsonb_typeof(t.value) = 'string' AND length(s.value) >= 3)"
			 "    OR (jsonb_typeof(t.value) = 'number' AND length(s.value) >= 6)) "
			 "ORDER BY len DESC, value",
			 1, &idtype, &ids, NULL, SPI_OK_SELECT);
	values = SPI_tuptable;
	nvalues = SPI_processed;
	if (nvalues == 0)
		return;

	/* a delete is a call of its own: one campaign */
	campaign = SPI_getbinval(values->vals[0], values->tupdesc, 1, &isnull);
	since = SPI_getbinval(values->vals[0], values->tupdesc, 2, &isnull);
	args[0] = campaign;
	args[1] = since;
	sqs_exec("SELECT id, error FROM squadstack.api_calls "
			 "WHERE campaign_id = $1 AND started_at >= $2 AND error IS NOT NULL",
			 2, argtypes, args, NULL, SPI_OK_SELECT);
	calls = SPI_tuptable;
	ncalls = SPI_processed;

	for (i = 0; i < ncalls; i++)
	{
		char	   *error = SPI_getvalue(calls->vals[i], calls->tupdesc, 2);
		bool		any = false;
		uint64		v;

		CHECK_FOR_INTERRUPTS();
		for (v = 0; v < nvalues; v++)
		{
			char	   *value = SPI_getvalue(values->vals[v], values->tupdesc, 3);
			bool		changed;
			char	   *erased = sqs_replace_words(error, value, ERASED, &changed);

			if (changed)
			{
				pfree(error);
				error = erased;
				any = true;
			}
			else
				pfree(erased);
			pfree(value);
		}
		if (any)
		{
			Oid			uargtypes[2] = {INT8OID, TEXTOID};
			Datum		uargs[2];

			uargs[0] = SPI_getbinval(calls->vals[i], calls->tupdesc, 1, &isnull);
			uargs[1] = CStringGetTextDatum(error);
			sqs_exec("UPDATE squadstack.api_calls SET error = $2 WHERE id = $1",
					 2, uargtypes, uargs, NULL, SPI_OK_UPDATE);
		}
		pfree(error);
	}
}

/*
 * SquadStack accepted the deletes whose outbox ids are given: erase those
 * leads' personal data that the extension itself holds.
 */
void
sqs_erase_deleted_leads(Datum delete_ids)
{
	static const char *const queries[] = {
		/* operations queued after the delete (a new create) are the new lead's */
		"UPDATE squadstack.outbox o SET error = NULL,"
		" payload = jsonb_build_object('lead_id', o.payload->'lead_id')"
		"   || CASE WHEN o.op = 'convert' THEN jsonb_build_object('detail', o.payload->'detail')"
		"      ELSE '{}' END "
		"FROM squadstack.outbox d "
		"WHERE d.id = ANY ($1) AND o.campaign_id = d.campaign_id AND o.lead_id = d.lead_id"
		"  AND o.id <= d.id",
		"UPDATE squadstack.lead_outcomes SET phone_number = NULL, contact_name = NULL,"
		" latest_recording_url = NULL, lead_responses = NULL, updated_at = now() "
		"WHERE (campaign_id, lead_id) IN (SELECT campaign_id, lead_id FROM squadstack.outbox"
		"                                 WHERE id = ANY ($1))",
		"UPDATE squadstack.webhook_inbox SET"
		" payload = jsonb_build_object('campaign_id', campaign_id, 'lead_id', lead_id, 'erased', true) "
		"WHERE (campaign_id, lead_id) IN (SELECT campaign_id, lead_id FROM squadstack.outbox"
		"                                 WHERE id = ANY ($1))",
		"UPDATE squadstack.sync_skipped SET row_data = NULL, error = 'erased' "
		"WHERE (campaign_id, lead_id) IN (SELECT campaign_id, lead_id FROM squadstack.outbox"
		"                                 WHERE id = ANY ($1))"
	};
	Oid			argtypes[1] = {INT8ARRAYOID};
	Datum		args[1];
	size_t		i;

	args[0] = delete_ids;
	/* first, while the payloads still say what was sent */
	erase_from_call_errors(delete_ids);

	/*
	 * An earlier operation of the lead still in the intake is erased there
	 * too: the intake may hold operations that no call has needed yet.
	 */
	if (OidIsValid(sqs_intake_relid()))
		sqs_exec("UPDATE squadstack.intake i SET"
				 " payload = jsonb_build_object('lead_id', i.payload->'lead_id') "
				 "FROM squadstack.outbox d "
				 "WHERE d.id = ANY ($1) AND i.campaign_id = d.campaign_id"
				 "  AND i.lead_id = d.lead_id AND i.id <= d.id",
				 1, argtypes, args, NULL, SPI_OK_UPDATE);
	for (i = 0; i < lengthof(queries); i++)
		sqs_exec(queries[i], 1, argtypes, args, NULL, SPI_OK_UPDATE);
}
