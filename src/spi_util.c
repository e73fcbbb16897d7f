/*-------------------------------------------------------------------------
 *
 * spi_util.c
 *		Helpers for the extension's own SQL statements: running one with
 *		parameters, a short transaction of its own in a background worker,
 *		and text from outside made fit for a text column.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_proc.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "spi_util.h"

void
squadstack_begin_step(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

void
squadstack_end_step(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * Prepare a statement and keep its plan for the life of the process.
 * Always the generic plan: given arrays, custom plans look cheaper to the
 * plan cache, which then plans every call again, and planning is most of
 * what a call with one lead (a sync trigger's row) costs.
 */
SPIPlanPtr
squadstack_prepare_kept(const char *sql, int nargs, Oid *argtypes)
{
	SPIPlanPtr	plan = SPI_prepare_cursor(sql, nargs, argtypes,
										  CURSOR_OPT_GENERIC_PLAN);

	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	return plan;
}

/*
 * Run a kept plan; an unexpected result is an internal error.
 */
void
squadstack_exec_plan(SPIPlanPtr plan, Datum *args, const char *nulls, int expected)
{
	int			rc = SPI_execute_plan(plan, args, nulls, false, 0);

	if (rc != expected)
		elog(ERROR, "squadstack statement failed: %s", SPI_result_code_string(rc));
}

void
squadstack_exec_kept(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes,
					 Datum *args, const char *nulls, int expected)
{
	int			rc;

	if (*plan == NULL)
		*plan = squadstack_prepare_kept(sql, nargs, argtypes);
	rc = SPI_execute_plan(*plan, args, nulls, false, 0);
	if (rc != expected)
		elog(ERROR, "squadstack query failed (%s): %s",
			 SPI_result_code_string(rc), sql);
}

/*
 * Run one statement with parameters inside SPI; an unexpected result is an
 * internal error (the statements are the extension's own).
 */
void
squadstack_exec(const char *sql, int nargs, Oid *argtypes, Datum *args,
		 const char *nulls, int expected)
{
	int			rc = SPI_execute_with_args(sql, nargs, argtypes, args, nulls, false, 0);

	if (rc != expected)
		elog(ERROR, "squadstack query failed (%s): %s",
			 SPI_result_code_string(rc), sql);
}

/*
 * Text from the API fit for a text column: at most max bytes, cut at a
 * character boundary, with bytes that are not valid in the database
 * encoding replaced by '?'.
 */
char *
squadstack_clean_text(const char *s, size_t len, size_t max)
{
	char	   *out = palloc(Min(len, max) + 1);
	size_t		i = 0;
	size_t		n = 0;

	while (i < len && s[i] != '\0')
	{
		int			l = pg_encoding_verifymbchar(GetDatabaseEncoding(), s + i, len - i);

		if (l < 1)
		{
			if (n + 1 > max)
				break;
			out[n++] = '?';
			i++;
			continue;
		}
		if (n + l > max)
			break;
		memcpy(out + n, s + i, l);
		n += l;
		i += l;
	}
	out[n] = '\0';
	return out;
}

void
squadstack_run_as(Oid userid, const char *search_path, SquadstackRunAs *ctx)
{
	GetUserIdAndSecContext(&ctx->save_userid, &ctx->save_sec_context);
	SetUserIdAndSecContext(userid, ctx->save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
	ctx->save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", search_path,
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
}

void
squadstack_end_run_as(SquadstackRunAs *ctx)
{
	AtEOXact_GUC(true, ctx->save_nestlevel);
	SetUserIdAndSecContext(ctx->save_userid, ctx->save_sec_context);
}

/* The owner of a function: the extension's own functions run as it. */
Oid
squadstack_function_owner(Oid fn_oid)
{
	HeapTuple	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn_oid));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for function %u", fn_oid);
	owner = ((Form_pg_proc) GETSTRUCT(tup))->proowner;
	ReleaseSysCache(tup);
	return owner;
}

bool
squadstack_try(void (*fn) (void *arg), void *arg, char **error)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	volatile bool done = false;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
		done = true;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
		if (error != NULL)
			*error = pstrdup(edata->message ? edata->message : "unknown error");
		FreeErrorData(edata);
	}
	PG_END_TRY();
	return done;
}
