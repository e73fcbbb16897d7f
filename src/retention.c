/*-------------------------------------------------------------------------
 *
 * retention.c
 *		Delete sent operations and old call records in small batches.
 *
 * Each batch is its own short transaction, so neither the outbox nor
 * api_calls is locked for long and vacuum can keep up.  Campaign grants of
 * roles dropped since are removed here too.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "miscadmin.h"

#include "grants.h"
#include "retention.h"
#include "spi_util.h"

#define RETENTION_BATCH 1000
/* bounded: a huge backlog of old rows is worked off over several runs */
#define RETENTION_MAX_BATCHES 100

static uint64
delete_batch(const char *sql, int retention_s)
{
	Oid			argtypes[2] = {INT4OID, INT4OID};
	Datum		args[2];
	uint64		n;

	args[0] = Int32GetDatum(retention_s);
	args[1] = Int32GetDatum(RETENTION_BATCH);

	squadstack_begin_step("squadstack: deleting old rows");
	squadstack_exec(sql, 2, argtypes, args, NULL, SPI_OK_DELETE);
	n = SPI_processed;
	squadstack_end_step();
	return n;
}

static void
forget_dropped_roles_step(void *arg)
{
	squadstack_forget_dropped_roles();
}

void
squadstack_retention_run(int retention_s, int rate_window_ms)
{
	char	   *error = NULL;

	static const char *const queries[] = {
		"DELETE FROM squadstack.outbox WHERE id IN ("
		"  SELECT id FROM squadstack.outbox"
		"  WHERE state = 'sent' AND sent_at < now() - $1 * interval '1 second'"
		"  ORDER BY sent_at LIMIT $2)",
		"DELETE FROM squadstack.api_calls WHERE id IN ("
		"  SELECT id FROM squadstack.api_calls"
		"  WHERE started_at < now() - $1 * interval '1 second'"
		"  ORDER BY started_at LIMIT $2)"
	};
	size_t		q;

	for (q = 0; q < lengthof(queries); q++)
	{
		int			i;

		/* the limiter counts api_calls within the window: keep at least that */
		int			keep_s = q == 0 ? retention_s :
			Max(retention_s, rate_window_ms / 1000 * 2 + 60);

		for (i = 0; i < RETENTION_MAX_BATCHES; i++)
		{
			CHECK_FOR_INTERRUPTS();
			if (delete_batch(queries[q], keep_s) < RETENTION_BATCH)
				break;
		}
	}

	/*
	 * Campaign grants of dropped roles, in a subtransaction: a user's lock on
	 * a grant row (up to the lock timeout) must not stop the worker.  They
	 * are tried again at the next run.
	 */
	squadstack_begin_step("squadstack: removing grants of dropped roles");
	if (!squadstack_try(forget_dropped_roles_step, NULL, &error))
		ereport(LOG,
				(errmsg("squadstack: could not remove the grants of dropped roles: %s", error)));
	squadstack_end_step();
}
