/*-------------------------------------------------------------------------
 *
 * responses.c
 *		squadstack_sync_responses(): pull outcomes from the API's responses
 *		endpoint, for webhooks that never arrived.
 *
 * GET /leads/responses/{campaign_id}/ is paged; every page is one call
 * under the same rate limit as everything else, and every result goes
 * through squadstack.webhook_inbox exactly like a webhook delivery.  Where
 * the last complete sync got to (the latest processed_at seen) is kept in
 * squadstack.response_sync, and the next sync asks for what was processed
 * from then on.  Runs in a background worker for the caller (flush.c), so
 * no transaction is open during a call.
 *
 * The "next" links of the answers are only read as "there is more": the
 * pages are requested from squadstack.api_url, so the token goes nowhere
 * else.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "limiter.h"
#include "responses.h"
#include "spi_util.h"
#include "token.h"


#define PAGE_SIZE 100
#define MAX_PAGES 100000
/* the longest a sync waits for rate budget before giving up */
#define MAX_BUDGET_WAIT_MS (10 * 60 * 1000)

/* seconds since the Unix epoch, as the endpoint's filters want them */
static double
unix_seconds(TimestampTz ts)
{
	return (double) (ts + ((POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY)) /
		USECS_PER_SEC;
}

/* Where to start: the given time, else where the last sync got to. */
static bool
start_cursor(const SquadstackResponsesRequest *job, TimestampTz *cursor)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	bool		isnull;

	if (job->has_since)
	{
		*cursor = job->since;
		return true;
	}
	args[0] = CStringGetTextDatum(job->campaign);
	SQUADSTACK_EXEC_KEPT("SELECT last_processed_at FROM squadstack.response_sync"
			 " WHERE campaign_id = $1",
			 1, argtypes, args, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return false;
	*cursor = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0],
												SPI_tuptable->tupdesc, 1, &isnull));
	return !isnull;
}

/*
 * Wait for rate budget and log the call; returns its api_calls id.  A
 * token paused until it changes ends the sync.
 */
static int64
reserve_call(const SquadstackConfig *cfg, const char *token_id, const char *campaign)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   MAX_BUDGET_WAIT_MS);

	for (;;)
	{
		SquadstackAdmit	admit;
		int64		call_id = 0;
		long		secs;
		int			usecs;

		squadstack_begin_step("squadstack: waiting for rate budget");
		if (squadstack_admit_call(cfg, token_id, &admit) == SQUADSTACK_ADMITTED)
			call_id = squadstack_log_call_start(token_id, campaign, "responses", "GET", 0);
		squadstack_end_step();
		if (call_id != 0)
			return call_id;

		if (admit.until == 0 || admit.until > deadline)
			ereport(ERROR,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("could not sync responses for campaign \"%s\": waiting for %s",
							campaign, squadstack_admission_wait_text(admit.result)),
					 errhint("See squadstack.queue_status; the next sync continues where this one stopped.")));
		TimestampDifference(GetCurrentTimestamp(), admit.until, &secs, &usecs);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 secs * 1000 + usecs / 1000 + 1, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * Store one page's results through the inbox.  Returns how many were
 * stored; *latest is advanced to the latest valid processed_at, *more says
 * whether the answer links a next page.
 */
static int64
store_page(const char *body, TimestampTz *latest, bool *has_latest, bool *more)
{
	Datum		page = DirectFunctionCall1(jsonb_in, CStringGetDatum(body));
	Oid			argtypes[1] = {JSONBOID};
	Datum		args[1] = {page};
	bool		isnull;
	Datum		d;
	int64		stored;

	SQUADSTACK_EXEC_KEPT("SELECT jsonb_typeof($1) = 'object'"
			 " AND jsonb_typeof($1->'results') = 'array',"
			 " coalesce(jsonb_typeof($1->'next') NOT IN ('null'), false)",
			 1, argtypes, args, NULL, SPI_OK_SELECT);
	if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_JSON_TEXT),
				 errmsg("unexpected answer from the responses endpoint"),
				 errdetail("Expected an object with a \"results\" array.")));
	*more = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));

	SQUADSTACK_EXEC_KEPT("WITH ins AS ("
			 "  INSERT INTO squadstack.webhook_inbox (payload)"
			 "  SELECT r FROM jsonb_array_elements($1->'results') AS r"
			 "  RETURNING processed_at) "
			 "SELECT count(*), max(processed_at) FROM ins",
			 1, argtypes, args, NULL, SPI_OK_SELECT);
	stored = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	if (!isnull && (!*has_latest || DatumGetTimestampTz(d) > *latest))
	{
		*latest = DatumGetTimestampTz(d);
		*has_latest = true;
	}
	return stored;
}

static void
save_cursor(const char *campaign, TimestampTz latest, bool has_latest, int64 stored)
{
	Oid			argtypes[3] = {TEXTOID, TIMESTAMPTZOID, INT8OID};
	Datum		args[3];
	char		nulls[3] = {' ', ' ', ' '};

	args[0] = CStringGetTextDatum(campaign);
	args[1] = TimestampTzGetDatum(latest);
	if (!has_latest)
		nulls[1] = 'n';
	args[2] = Int64GetDatum(stored);
	SQUADSTACK_EXEC_KEPT("INSERT INTO squadstack.response_sync AS s"
			 " (campaign_id, last_processed_at, last_synced_at, last_stored)"
			 " VALUES ($1, $2, now(), $3)"
			 " ON CONFLICT (campaign_id) DO UPDATE SET"
			 "  last_processed_at = GREATEST(s.last_processed_at, excluded.last_processed_at),"
			 "  last_synced_at = now(), last_stored = excluded.last_stored",
			 3, argtypes, args, nulls, SPI_OK_INSERT);
}

int64
squadstack_sync_responses_run(const SquadstackConfig *cfg, const SquadstackResponsesRequest *job)
{
	char	   *token;
	char	   *token_id = NULL;
	TimestampTz cursor = 0;
	bool		has_cursor;
	TimestampTz latest = 0;
	bool		has_latest = false;
	int64		stored = 0;
	int			page;
	size_t		len = strlen(cfg->api_url);
	MemoryContext pagecxt = AllocSetContextCreate(TopMemoryContext,
												  "squadstack responses page",
												  ALLOCSET_DEFAULT_SIZES);

	while (len > 0 && cfg->api_url[len - 1] == '/')
		len--;

	squadstack_begin_step("squadstack: starting a response sync");
	token = squadstack_campaign_token(job->campaign, cfg);
	if (token != NULL)
	{
		token = MemoryContextStrdup(TopMemoryContext, token);
		token_id = MemoryContextStrdup(TopMemoryContext, squadstack_token_id(token));
	}
	has_cursor = start_cursor(job, &cursor);
	squadstack_end_step();
	if (token == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("no access token configured for campaign \"%s\"", job->campaign),
				 errhint("Set squadstack.token or call squadstack_set_token().")));

	for (page = 1; page <= MAX_PAGES; page++)
	{
		int64		call_id;
		char	   *url;
		SquadstackHttpResult res;
		const char *failure = NULL;
		bool		more = false;

		CHECK_FOR_INTERRUPTS();
		MemoryContextReset(pagecxt);
		call_id = reserve_call(cfg, token_id, job->campaign);
		MemoryContextSwitchTo(pagecxt);

		if (has_cursor)
			url = psprintf("%.*s/leads/responses/%s/?page=%d&page_size=%d&processed_after=%.6f",
						   (int) len, cfg->api_url, job->campaign, page, PAGE_SIZE,
						   unix_seconds(cursor));
		else
			url = psprintf("%.*s/leads/responses/%s/?page=%d&page_size=%d",
						   (int) len, cfg->api_url, job->campaign, page, PAGE_SIZE);
		squadstack_http_call("GET", url, token, NULL, cfg->request_timeout_ms, &res);
		MemoryContextSwitchTo(TopMemoryContext);

		squadstack_begin_step("squadstack: storing responses");
		if (res.status == 200 && squadstack_json_is_valid(res.body, res.body_len))
		{
			squadstack_log_call_end(call_id, &res, NULL);
			stored += store_page(res.body, &latest, &has_latest, &more);
		}
		else
		{
			char	   *error = res.status == 0 ?
				(res.error ? res.error : "no answer") :
				psprintf("HTTP %ld: %s", res.status,
						 squadstack_clean_text(res.body, res.body_len, 500));

			squadstack_log_call_end(call_id, &res, error);
			(void) squadstack_pause_token_if_needed(cfg, token_id, &res);
			if (page > 1 && res.status == 404)
				;				/* past the last page */
			else
				failure = MemoryContextStrdup(pagecxt, error);	/* outlives SPI */
		}
		squadstack_end_step();

		if (failure != NULL)
		{
			if (res.status == 404 || res.status == 405)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("the SquadStack responses endpoint is not available for this account"),
						 errdetail("GET /leads/responses/%s/ answered %s.", job->campaign, failure),
						 errhint("Outcomes arrive only through the webhook (squadstack_receive_webhook).")));
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("could not fetch page %d of responses for campaign \"%s\"",
							page, job->campaign),
					 errdetail("%s", failure),
					 errhint("The next sync continues where the last complete one stopped.")));
		}
		if (!more)
			break;
	}

	/* only a complete sync moves the cursor, so an interrupted one loses nothing */
	squadstack_begin_step("squadstack: saving the response sync state");
	save_cursor(job->campaign, has_latest ? latest : cursor, has_latest || has_cursor, stored);
	squadstack_end_step();
	return stored;
}
