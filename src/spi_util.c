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

#include "access/xact.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "pgstat.h"
#include "utils/snapmgr.h"

#include "spi_util.h"

void
sqs_begin_step(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

void
sqs_end_step(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * Run one statement with parameters inside SPI; an unexpected result is an
 * internal error (the statements are the extension's own).
 */
void
sqs_exec(const char *sql, int nargs, Oid *argtypes, Datum *args,
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
sqs_clean_text(const char *s, size_t len, size_t max)
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
