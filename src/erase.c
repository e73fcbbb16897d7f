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
#include "intake.h"
#include "lead.h"
#include "spi_util.h"

#define ERASED "[erased]"

static bool
is_word_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		(c >= '0' && c <= '9') || c == '_';
}

/*
 * text with every occurrence of word that stands as a whole word (no
 * letter, digit or "_" right before or after it) replaced by with.  If
 * cut_tail, text was cut short at its end: a beginning of word (at least
 * 3 bytes) that runs to the end of text is replaced too.  *changed says
 * whether anything was replaced.
 */
char *
squadstack_replace_words(const char *text, const char *word, const char *with,
				  bool cut_tail, bool *changed)
{
	size_t		wlen = strlen(word);
	size_t		tlen = strlen(text);
	size_t		nlen = Min(wlen, 64);
	const char *p = text;
	StringInfoData out;

	*changed = false;
	if (wlen == 0)
		return pstrdup(text);
	initStringInfo(&out);
	for (;;)
	{
		const char *hit;
		size_t		common;

		/* look for the word's first bytes, then see how far it matches */
		if (nlen == wlen || !cut_tail)
			hit = strstr(p, word);
		else
		{
			char	   *needle = pnstrdup(word, nlen);

			hit = strstr(p, needle);
			pfree(needle);
		}
		if (hit == NULL)
		{
			/* the text may end inside the word's first bytes */
			const char *tail;

			if (!cut_tail)
				break;
			for (tail = Max(p, text + tlen - Min(tlen, nlen)); *tail; tail++)
			{
				size_t		rest = text + tlen - tail;

				if (rest >= 3 && rest < nlen && strncmp(tail, word, rest) == 0 &&
					(tail == text || !is_word_char(tail[-1])))
					break;
			}
			if (*tail == '\0')
				break;
			appendBinaryStringInfo(&out, p, tail - p);
			appendStringInfoString(&out, with);
			*changed = true;
			return out.data;
		}
		for (common = 0; common < wlen && hit[common] == word[common]; common++)
			;
		if (hit > text && is_word_char(hit[-1]))
			common = 0;
		else if (common == wlen && is_word_char(hit[wlen]))
			common = 0;
		else if (common < wlen && !(cut_tail && hit[common] == '\0' && common >= 3))
			common = 0;
		if (common == 0)
		{
			/* not this one: keep its first byte and look on */
			appendBinaryStringInfo(&out, p, hit - p + 1);
			p = hit + 1;
			continue;
		}
		appendBinaryStringInfo(&out, p, hit - p);
		appendStringInfoString(&out, with);
		p = hit + common;
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

	squadstack_exec("SELECT DISTINCT d.campaign_id,"
			 "  min(o.created_at) OVER (PARTITION BY d.campaign_id) AS since, f.value,"
			 "  octet_length(f.value) AS len "
			 "FROM squadstack.outbox d"
			 "  JOIN squadstack.outbox o ON o.campaign_id = d.campaign_id"
			 "    AND o.lead_id = d.lead_id AND o.id <= d.id"
			 "  CROSS JOIN LATERAL jsonb_each(o.payload) t"
			 "  CROSS JOIN LATERAL (VALUES (t.value #>> '{}'),"
			 "    (CASE WHEN t.key = 'phone_number' THEN right(t.value #>> '{}', 10) END)) s(value)"
			 /* as the API's JSON answers quote it, too */
			 "  CROSS JOIN LATERAL (VALUES (s.value),"
			 "    (CASE WHEN jsonb_typeof(t.value) = 'string'"
			 "          THEN btrim(to_jsonb(s.value)::text, '\"') END)) f(value) "
			 "WHERE d.id = ANY ($1) AND t.key <> 'lead_id' AND f.value IS NOT NULL"
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
	squadstack_exec("SELECT id, error FROM squadstack.api_calls "
			 "WHERE campaign_id = $1 AND started_at >= $2 AND error IS NOT NULL",
			 2, argtypes, args, NULL, SPI_OK_SELECT);
	calls = SPI_tuptable;
	ncalls = SPI_processed;

	for (i = 0; i < ncalls; i++)
	{
		char	   *error = SPI_getvalue(calls->vals[i], calls->tupdesc, 2);
		bool		any = false;
		/* an error kept at its longest was cut: a value may end it, cut too */
		bool		cut = strlen(error) >= SQUADSTACK_MAX_ERROR_TEXT - 4;
		uint64		v;

		CHECK_FOR_INTERRUPTS();
		for (v = 0; v < nvalues; v++)
		{
			char	   *value = SPI_getvalue(values->vals[v], values->tupdesc, 3);
			bool		changed;
			char	   *erased = squadstack_replace_words(error, value, ERASED, cut, &changed);

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
			squadstack_exec("UPDATE squadstack.api_calls SET error = $2 WHERE id = $1",
					 2, uargtypes, uargs, NULL, SPI_OK_UPDATE);
		}
		pfree(error);
	}
}

/*
 * What erasing means for an outcome: no phone, name, recording or
 * responses.  The UPDATE of squadstack.lead_outcomes below erases the same
 * columns of a stored outcome.
 */
void
squadstack_erase_outcome(SquadstackOutcome *o)
{
	o->erased = true;
	o->fields[SQUADSTACK_FIELD_PHONE_NUMBER] = NULL;
	o->fields[SQUADSTACK_FIELD_CONTACT_NAME] = NULL;
	o->fields[SQUADSTACK_FIELD_LATEST_RECORDING_URL] = NULL;
	o->lead_responses = NULL;
}

/*
 * {"campaign_id": ..., "lead_id": ..., "erased": true}: what the erasure
 * after an accepted delete leaves of a webhook payload.
 */
Jsonb *
squadstack_erased_inbox_payload(const char *campaign_id, const char *lead_id)
{
	JsonbParseState *state = NULL;
	JsonbValue	erased;

	erased.type = jbvBool;
	erased.val.boolean = true;
	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	squadstack_push_string_pair(&state, "campaign_id", campaign_id);
	squadstack_push_string_pair(&state, "lead_id", lead_id);
	squadstack_push_pair(&state, "erased", &erased);
	return JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL));
}

/* The inbox keeps only what squadstack_erased_inbox_payload() leaves. */
static void
erase_inbox(Datum delete_ids)
{
	Oid			argtypes[3] = {INT8ARRAYOID, TEXTOID, TEXTOID};
	Datum		args[3];
	SPITupleTable *leads;
	uint64		n;
	uint64		i;

	args[0] = delete_ids;
	squadstack_exec("SELECT DISTINCT campaign_id, lead_id FROM squadstack.outbox WHERE id = ANY ($1)",
			 1, argtypes, args, NULL, SPI_OK_SELECT);
	leads = SPI_tuptable;
	n = SPI_processed;
	for (i = 0; i < n; i++)
	{
		char	   *campaign = SPI_getvalue(leads->vals[i], leads->tupdesc, 1);
		char	   *lead = SPI_getvalue(leads->vals[i], leads->tupdesc, 2);

		args[0] = JsonbPGetDatum(squadstack_erased_inbox_payload(campaign, lead));
		args[1] = CStringGetTextDatum(campaign);
		args[2] = CStringGetTextDatum(lead);
		argtypes[0] = JSONBOID;
		squadstack_exec("UPDATE squadstack.webhook_inbox SET payload = $1"
				 " WHERE campaign_id = $2 AND lead_id = $3",
				 3, argtypes, args, NULL, SPI_OK_UPDATE);
	}
}

/*
 * SquadStack accepted the deletes whose outbox ids are given: erase those
 * leads' personal data that the extension itself holds.
 */
void
squadstack_erase_deleted_leads(Datum delete_ids)
{
	static const char *const queries[] = {
		/* operations queued after the delete (a new create) are the new lead's */
		"UPDATE squadstack.outbox o"
		" SET error = CASE WHEN o.id = d.id THEN o.error END,"
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
	if (OidIsValid(squadstack_intake_relid()))
		squadstack_exec("UPDATE squadstack.intake i SET"
				 " payload = jsonb_build_object('lead_id', i.payload->'lead_id') "
				 "FROM squadstack.outbox d "
				 "WHERE d.id = ANY ($1) AND i.campaign_id = d.campaign_id"
				 "  AND i.lead_id = d.lead_id AND i.id <= d.id",
				 1, argtypes, args, NULL, SPI_OK_UPDATE);
	for (i = 0; i < lengthof(queries); i++)
		squadstack_exec(queries[i], 1, argtypes, args, NULL, SPI_OK_UPDATE);
	erase_inbox(delete_ids);
}
