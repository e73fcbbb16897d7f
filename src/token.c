/*-------------------------------------------------------------------------
 *
 * token.c
 *		Access tokens: which one a campaign uses, the digest that stands for
 *		it in tables, and whether it is paused.
 *
 * The token itself is never stored outside squadstack.tokens (readable by
 * the extension owner only) and never appears in a message.  Tables that
 * need to tell tokens apart (api_calls, token_state) keep a SHA-256 digest.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "digest.h"
#include "grants.h"
#include "guc.h"
#include "spi_util.h"
#include "token.h"
#include "token_file.h"

/* Hex digits of the digest kept; 128 bits tell tokens apart well enough. */
#define TOKEN_ID_HEX 32

PG_FUNCTION_INFO_V1(squadstack_token_status);


/*
 * The token a campaign's calls use, the most specific first: the
 * campaign's own (squadstack.tokens, then squadstack.token_file), then the
 * default for all campaigns (the row "*" of squadstack.tokens, then the
 * file's default), then the deprecated squadstack.token; NULL if there is
 * none.  Must be called inside SPI.
 */
char *
squadstack_campaign_token(const char *campaign, const SquadstackConfig *cfg)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	char	   *own = NULL;
	char	   *all = NULL;
	const char *from_file;
	uint64		i;

	args[0] = CStringGetTextDatum(campaign);
	squadstack_exec("SELECT campaign_id, token FROM squadstack.tokens"
					" WHERE campaign_id = $1 OR campaign_id = '" SQUADSTACK_ALL_CAMPAIGNS "'",
					1, argtypes, args, NULL, SPI_OK_SELECT);
	for (i = 0; i < SPI_processed; i++)
	{
		char	   *c = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		char	   *t = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);

		if (strcmp(c, SQUADSTACK_ALL_CAMPAIGNS) == 0)
			all = t;
		else
			own = t;
	}
	if (own != NULL)
		return own;
	from_file = squadstack_file_token(campaign);
	if (from_file != NULL)
		return pstrdup(from_file);
	if (all != NULL)
		return all;
	from_file = squadstack_file_token(SQUADSTACK_ALL_CAMPAIGNS);
	if (from_file != NULL)
		return pstrdup(from_file);
	if (cfg->token[0] != '\0')
		return pstrdup(cfg->token);
	return NULL;
}

/*
 * Set (token not NULL) or remove the access token of campaign ("*": the
 * default token).  business groups tokens into one rate budget; it belongs
 * to the token, so it is set on every campaign's row of the same token.
 * Without one, a token another campaign's row puts in a business stays in
 * it (a two-argument call never takes a token out of its business), and a
 * token never given one is a business of its own.  Inside SPI.
 */
void
squadstack_token_set(const char *campaign, char *token, const char *business)
{
	Datum		args[4];
	Oid			argtypes[4] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	char		nulls[4] = {' ', ' ', ' ', ' '};
	const char *problem;

	args[0] = CStringGetTextDatum(campaign);
	if (token == NULL)
	{
		if (business != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid business for campaign \"%s\"", campaign),
					 errdetail("A business is given with a token; removing a token takes none.")));
		squadstack_exec("DELETE FROM squadstack.tokens WHERE campaign_id = $1",
						1, argtypes, args, NULL, SPI_OK_DELETE);
		return;
	}
	problem = token[0] == '\0' ?
		"A token is not empty; use NULL to remove a campaign's token." :
		squadstack_token_problem(token);
	if (problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid access token for campaign \"%s\"", campaign),
				 errdetail_internal("%s", problem)));
	if (business != NULL && (problem = squadstack_business_problem(business)) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid business for campaign \"%s\"", campaign),
				 errdetail_internal("%s", problem)));
	args[1] = CStringGetTextDatum(token);
	args[2] = CStringGetTextDatum(squadstack_token_id(token));
	if (business != NULL)
		args[3] = CStringGetTextDatum(business);
	else
		nulls[3] = 'n';
	squadstack_exec("INSERT INTO squadstack.tokens AS t (campaign_id, token, token_id, business) "
					"VALUES ($1, $2, $3, $4) ON CONFLICT (campaign_id) "
					"DO UPDATE SET token = excluded.token, token_id = excluded.token_id,"
					" business = excluded.business, updated_at = now()",
					4, argtypes, args, nulls, SPI_OK_INSERT);
	if (business != NULL)
		squadstack_exec("UPDATE squadstack.tokens SET business = $4, updated_at = now()"
						" WHERE token_id = $3 AND campaign_id <> $1"
						" AND business IS DISTINCT FROM $4",
						4, argtypes, args, nulls, SPI_OK_UPDATE);
}

/* the businesses squadstack.token_file gives tokens, by digest */
typedef struct FileBusiness
{
	char		token_id[TOKEN_ID_HEX + 1];
	char	   *business;
} FileBusiness;

static FileBusiness *file_businesses = NULL;
static int	n_file_businesses = 0;
static uint64 file_businesses_generation = 0;

/*
 * The digests of the file's tokens that have a business, made once each
 * time the file is read (inside a transaction: digests may need one).
 */
static void
load_file_businesses(void)
{
	const char *business;
	const char *token;
	int			i;
	int			n = 0;
	MemoryContext old;

	if (file_businesses_generation == squadstack_file_generation())
		return;
	for (i = 0; i < n_file_businesses; i++)
		pfree(file_businesses[i].business);
	if (file_businesses != NULL)
		pfree(file_businesses);
	file_businesses = NULL;
	n_file_businesses = 0;

	for (i = 0; squadstack_file_business(i, &token) != NULL; i++)
		n++;
	old = MemoryContextSwitchTo(TopMemoryContext);
	if (n > 0)
		file_businesses = palloc(n * sizeof(FileBusiness));
	for (i = 0; (business = squadstack_file_business(i, &token)) != NULL; i++)
	{
		char	   *id;

		if (business[0] == '\0')
			continue;
		id = squadstack_token_id(token);
		strlcpy(file_businesses[n_file_businesses].token_id, id, TOKEN_ID_HEX + 1);
		pfree(id);
		file_businesses[n_file_businesses].business = pstrdup(business);
		n_file_businesses++;
	}
	MemoryContextSwitchTo(old);
	file_businesses_generation = squadstack_file_generation();
}

/*
 * The rate budget the calls of a token (by digest) count in:
 * "business:NAME" for a token of a business, else "token:DIGEST".  The
 * business set with squadstack_set_token() comes first, then the one
 * squadstack.token_file gives the token.  Inside SPI.
 */
char *
squadstack_token_budget(const char *token_id)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	int			i;

	args[0] = CStringGetTextDatum(token_id);
	SQUADSTACK_EXEC_KEPT("SELECT business FROM squadstack.tokens"
						 " WHERE token_id = $1 AND business IS NOT NULL"
						 " ORDER BY updated_at DESC LIMIT 1",
						 1, argtypes, args, NULL, SPI_OK_SELECT);
	if (SPI_processed == 1)
		return psprintf("business:%s",
						SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
	load_file_businesses();
	for (i = 0; i < n_file_businesses; i++)
		if (strcmp(file_businesses[i].token_id, token_id) == 0)
			return psprintf("business:%s", file_businesses[i].business);
	return psprintf("token:%s", token_id);
}

/* Hex SHA-256 digest of the token, shortened to TOKEN_ID_HEX digits. */
char *
squadstack_token_id(const char *token)
{
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	char	   *hex = palloc(TOKEN_ID_HEX + 1);
	int			i;

	squadstack_sha256(token, digest);

	for (i = 0; i < TOKEN_ID_HEX / 2; i++)
		snprintf(hex + 2 * i, 3, "%02x", digest[i]);
	hex[TOKEN_ID_HEX] = '\0';
	return hex;
}

/*
 * squadstack.token_status(campaign): whether the campaign's token is paused
 * now, until when, and why.
 */
Datum
squadstack_token_status(PG_FUNCTION_ARGS)
{
	char	   *campaign = text_to_cstring(PG_GETARG_TEXT_PP(0));
	TupleDesc	tupdesc;
	Datum		values[3];
	bool		nulls[3] = {false, true, true};
	SquadstackConfig	cfg;
	char	   *token;
	MemoryContext callercxt = CurrentMemoryContext;
	HeapTuple	result;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);

	squadstack_require_campaign(campaign, squadstack_calling_role());
	squadstack_config_from_gucs(&cfg);
	SPI_connect();
	token = squadstack_campaign_token(campaign, &cfg);
	if (token == NULL)
	{
		values[0] = BoolGetDatum(true);
		values[2] = CStringGetTextDatum("no access token configured");
		nulls[2] = false;
	}
	else
	{
		Oid			argtypes[2] = {TEXTOID, TEXTOID};
		Datum		args[2];
		char	   *token_id = squadstack_token_id(token);

		/* its own pause, or its business's after a 429 */
		args[0] = CStringGetTextDatum(token_id);
		args[1] = CStringGetTextDatum(squadstack_token_budget(token_id));
		squadstack_exec("SELECT paused_until, pause_reason FROM squadstack.token_state "
				 "WHERE token_id IN ($1, $2) AND paused_until > now()"
				 " ORDER BY paused_until DESC LIMIT 1",
				 2, argtypes, args, NULL, SPI_OK_SELECT);
		values[0] = BoolGetDatum(SPI_processed > 0);
		if (SPI_processed > 0)
		{
			HeapTuple	tup = SPI_tuptable->vals[0];
			TupleDesc	td = SPI_tuptable->tupdesc;
			bool		isnull;
			Datum		until = SPI_getbinval(tup, td, 1, &isnull);
			char	   *reason = SPI_getvalue(tup, td, 2);

			/* a token paused until it changes is shown without an end */
			if (!isnull && !TIMESTAMP_NOT_FINITE(DatumGetTimestampTz(until)))
			{
				values[1] = until;
				nulls[1] = false;
			}
			if (reason != NULL)
			{
				values[2] = CStringGetTextDatum(reason);
				nulls[2] = false;
			}
		}
	}

	/* the tuple must outlive SPI's memory */
	MemoryContextSwitchTo(callercxt);
	result = heap_form_tuple(tupdesc, values, nulls);
	SPI_finish();
	PG_RETURN_DATUM(HeapTupleGetDatum(result));
}
