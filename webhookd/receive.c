/*-------------------------------------------------------------------------
 *
 * receive.c
 *		Hand one webhook to squadstack_receive_webhook() and say what to
 *		answer.
 *
 * One parameterised statement does the work: it refuses a payload whose
 * campaign_id (when it is a string) differs from the campaign in the URL,
 * and otherwise returns what squadstack_receive_webhook() returns.  The
 * function is named with its schema: the extension is installed in public
 * and cannot be moved, and no other schema on the role's search_path can
 * then put a function of the same name in its way.
 *
 * A body that is not JSON is stored too, as a JSON string, which the
 * function rejects ("the payload is not a JSON object") but keeps in
 * webhook_inbox, behind the same secret check.  Only a body that is not
 * even text in the database's encoding (or holds a NUL byte) is answered
 * 400 without being stored.
 *
 * Database errors are logged by SQLSTATE only: their messages may quote
 * the payload.
 *
 *-------------------------------------------------------------------------
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "receive.h"
#include "wlog.h"

/* -1: the campaign in the URL and in the payload differ */
static const char *const receive_sql =
"SELECT CASE WHEN pg_catalog.jsonb_typeof(p -> 'campaign_id') = 'string'"
" AND p ->> 'campaign_id' <> $3::pg_catalog.text THEN -1"
" ELSE public.squadstack_receive_webhook(p, $2::pg_catalog.text) END"
" FROM (SELECT $1::pg_catalog.jsonb AS p) AS body";

static const char *const is_json_sql =
"SELECT $1::pg_catalog.jsonb IS NOT NULL";

static const char *const receive_text_sql =
"SELECT public.squadstack_receive_webhook("
"pg_catalog.to_jsonb($1::pg_catalog.text), $2::pg_catalog.text)";

typedef enum QueryOutcome
{
	QUERY_OK,					/* *value is set */
	QUERY_BROKEN,				/* the connection broke */
	QUERY_DATA_ERROR,			/* SQLSTATE class 22: the input */
	QUERY_RETRYABLE,			/* the server is going away, busy, ... */
	QUERY_ERROR					/* anything else */
} QueryOutcome;

static bool
retryable_sqlstate(const char *s)
{
	return strncmp(s, "08", 2) == 0 ||	/* connection exception */
		strncmp(s, "53", 2) == 0 || /* insufficient resources */
		strncmp(s, "57P", 3) == 0 ||	/* shutdown, cannot connect now */
		strcmp(s, "40001") == 0 ||	/* serialization failure */
		strcmp(s, "40P01") == 0 ||	/* deadlock detected */
		strcmp(s, "55P03") == 0 ||	/* lock not available */
		strcmp(s, "57014") == 0 ||	/* query canceled: statement_timeout */
		strcmp(s, "25006") == 0;	/* read-only transaction: a standby */
}

static QueryOutcome
run_query(PGconn *conn, const char *sql, int nparams,
		  const char *const *params, int *value)
{
	PGresult   *res;
	QueryOutcome outcome;

	res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
	if (res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK &&
		PQntuples(res) == 1 && PQnfields(res) == 1)
	{
		const char *v = PQgetvalue(res, 0, 0);

		if (PQgetisnull(res, 0, 0))
			*value = 0;
		else if (strcmp(v, "t") == 0)
			*value = 1;
		else if (strcmp(v, "f") == 0)
			*value = 0;
		else
			*value = atoi(v);
		PQclear(res);
		return QUERY_OK;
	}

	if (PQstatus(conn) == CONNECTION_BAD)
		outcome = QUERY_BROKEN;
	else
	{
		const char *sqlstate = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

		if (sqlstate == NULL)
		{
			wh_log(WH_WARNING, "unexpected result from the database: %s",
				   res ? PQresStatus(PQresultStatus(res)) : "out of memory");
			outcome = QUERY_ERROR;
		}
		else if (strncmp(sqlstate, "22", 2) == 0)
			outcome = QUERY_DATA_ERROR;
		else
		{
			outcome = retryable_sqlstate(sqlstate) ? QUERY_RETRYABLE : QUERY_ERROR;
			wh_log(WH_WARNING, "squadstack_receive_webhook() failed with SQLSTATE %s",
				   sqlstate);
		}
	}
	PQclear(res);
	return outcome;
}

static WhAnswer
answer(int status, const char *reason)
{
	WhAnswer	a;

	a.status = status;
	a.reason = reason;
	return a;
}

static WhAnswer
function_answer(int value, bool not_json)
{
	switch (value)
	{
		case 201:
			return answer(201, NULL);
		case 400:
			return answer(400, not_json ? "not_json" : "rejected");
		case 403:
			return answer(403, "wrong_secret");
		case -1:
			return answer(400, "campaign_mismatch");
	}
	wh_log(WH_WARNING, "squadstack_receive_webhook() returned %d", value);
	return answer(500, "database_error");
}

/* the body was refused by jsonb's input: is it JSON at all? */
static WhAnswer
receive_not_json(PGconn *conn, const char *const *params, bool *broken)
{
	int			value;

	switch (run_query(conn, is_json_sql, 1, params, &value))
	{
		case QUERY_OK:
			/* it is JSON: the data error came from elsewhere */
			wh_log(WH_WARNING, "squadstack_receive_webhook() failed with a data exception");
			return answer(500, "database_error");
		case QUERY_DATA_ERROR:
			break;
		case QUERY_BROKEN:
			*broken = true;
			return answer(503, "database_unavailable");
		case QUERY_RETRYABLE:
			return answer(503, "database_error");
		case QUERY_ERROR:
			return answer(500, "database_error");
	}
	switch (run_query(conn, receive_text_sql, 2, params, &value))
	{
		case QUERY_OK:
			return function_answer(value, true);
		case QUERY_DATA_ERROR:
			/* not even text in the database's encoding */
			return answer(400, "not_text");
		case QUERY_BROKEN:
			*broken = true;
			return answer(503, "database_unavailable");
		case QUERY_RETRYABLE:
			return answer(503, "database_error");
		case QUERY_ERROR:
			break;
	}
	return answer(500, "database_error");
}

WhAnswer
wh_receive(WhPool *pool, long pool_wait_ms, const char *campaign,
		   const char *secret, const char *body, size_t len)
{
	const char *params[3] = {body, secret, campaign};
	int			attempts;

	/* a text parameter ends at a NUL byte, which JSON never holds */
	if (memchr(body, '\0', len) != NULL)
		return answer(400, "not_text");

	/*
	 * After the database restarted, every pooled connection is broken but
	 * only shows it when used: go on with the next one, or a new one.
	 */
	for (attempts = 0;; attempts++)
	{
		WhPoolConn	pc;
		WhAnswer	a;
		int			value;
		bool		broken = false;

		switch (wh_pool_acquire(pool, pool_wait_ms, &pc))
		{
			case WH_POOL_OK:
				break;
			case WH_POOL_BUSY:
				return answer(503, "pool_exhausted");
			case WH_POOL_DOWN:
				return answer(503, "database_unavailable");
		}

		switch (run_query(pc.conn, receive_sql, 3, params, &value))
		{
			case QUERY_OK:
				a = function_answer(value, false);
				break;
			case QUERY_DATA_ERROR:
				a = receive_not_json(pc.conn, params, &broken);
				break;
			case QUERY_BROKEN:
				broken = true;
				a = answer(503, "database_unavailable");
				break;
			case QUERY_RETRYABLE:
				a = answer(503, "database_error");
				break;
			case QUERY_ERROR:
			default:
				a = answer(500, "database_error");
				break;
		}
		wh_pool_release(pool, &pc, broken);
		if (broken && !pc.fresh && attempts < 64)
			continue;
		return a;
	}
}
