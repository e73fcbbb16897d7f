/*-------------------------------------------------------------------------
 *
 * claim.c
 *		Step 1 of a call: claim one call's worth of due operations.
 *
 * In one short transaction: give back leases of senders that died, pick a
 * campaign with due work that is not backed off and whose token is
 * neither paused nor out of rate budget (limiter.c), move its oldest
 * operations from the intake into the outbox, lease the operations of the
 * call, as many as fit in squadstack.max_request_bytes (lease.c), and
 * admit the call by writing its api_calls row.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "grants.h"
#include "intake.h"
#include "lease.h"
#include "limiter.h"
#include "outbox.h"
#include "spi_util.h"
#include "token.h"

/* what lease_operations() found for a campaign */
typedef enum LeaseResult
{
	LEASE_NONE,					/* nothing sendable now */
	LEASE_LEASED,				/* a call's worth, in the batch */
	LEASE_LINGER				/* a partial batch, worth waiting for more */
} LeaseResult;

/* the time a lease runs beyond the call's timeout */
#define LEASE_SLACK_MS 60000
/* most operations moved from the intake for one call */
#define MAX_INTAKE_MOVE 10000

/* Note a time when something may become sendable, and why. */
static void
consider(SquadstackDeliveryResult *r, TimestampTz when, SquadstackWait why)
{
	if (r->next_wakeup == 0 || when < r->next_wakeup)
	{
		r->next_wakeup = when;
		r->waiting_for = why;
	}
}

/* Note a campaign with due work that cannot be sent before a time. */
static void
note_blocked(SquadstackDeliveryResult *r, const char *campaign, TimestampTz until)
{
	if (r->nblocked == SQUADSTACK_MAX_BLOCKED)
	{
		r->blocked_overflow = true;
		return;
	}
	strlcpy(r->blocked[r->nblocked].campaign, campaign, sizeof(r->blocked[0].campaign));
	r->blocked[r->nblocked].until = until;
	r->nblocked++;
}

/*
 * Give back the operations of calls whose sender is gone: its process no
 * longer runs (or is a newer one with the same pid), or its lease ran out.
 * Such a call may or may not have reached the API: its operations are
 * marked uncertain and re-sent one lead per call, so a lead the API
 * already accepted is recognised alone (OUTCOME_ALREADY_DONE).
 */
static void
recover_leases(void)
{
	SQUADSTACK_EXEC_KEPT("WITH r AS ("
			 "  UPDATE squadstack.outbox o"
			 "  SET state = 'queued', batch_limit = 1, next_attempt_at = now(), uncertain = true,"
			 "      lease_pid = NULL, leased_at = NULL, lease_expires_at = NULL"
			 "  WHERE o.state = 'sending'"
			 "    AND (o.lease_expires_at < now()"
			 "         OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity a"
			 "                        WHERE a.pid = o.lease_pid"
			 "                          AND a.backend_start <= o.leased_at))"
			 "  RETURNING o.call_id)"
			 "UPDATE squadstack.api_calls c"
			 "   SET error = 'no answer recorded: the sender stopped during the call'"
			 "  FROM (SELECT DISTINCT call_id FROM r) r"
			 " WHERE c.id = r.call_id AND c.http_status IS NULL AND c.error IS NULL",
			 0, NULL, NULL, NULL, SPI_OK_UPDATE);
}

/*
 * Lease one call's operations of the campaign (lease.c).  A partial batch
 * left to wait for more is noted in r, as a campaign that waits.
 */
static LeaseResult
lease_operations(const SquadstackConfig *cfg, const char *campaign, SquadstackBatch *b,
				 bool scarce, SquadstackDeliveryResult *r, MemoryContext cxt)
{
	TimestampTz linger_until;

	if (squadstack_lease(cfg, campaign, scarce, cxt, b, &linger_until))
		return LEASE_LEASED;
	if (linger_until == 0)
		return LEASE_NONE;
	consider(r, linger_until, SQUADSTACK_WAIT_FULLER_BATCH);
	note_blocked(r, campaign, linger_until);
	return LEASE_LINGER;
}

/* Write the api_calls row that admits the call, and lease its operations. */
static void
start_call(const SquadstackConfig *cfg, SquadstackBatch *b)
{
	Oid			largtypes[3] = {INT8OID, INT8ARRAYOID, INT8OID};
	Datum		largs[3];

	b->call_id = squadstack_log_call_start(b->token_id, b->campaign, squadstack_op_name(b->op),
								   b->method, b->n);

	largs[0] = Int64GetDatum(b->call_id);
	largs[1] = PointerGetDatum(construct_array_builtin(b->ids, b->n, INT8OID));
	largs[2] = Int64GetDatum((int64) cfg->request_timeout_ms + LEASE_SLACK_MS);
	SQUADSTACK_EXEC_KEPT("UPDATE squadstack.outbox SET state = 'sending', call_id = $1,"
			 " lease_pid = pg_backend_pid(), leased_at = now(),"
			 " lease_expires_at = clock_timestamp() + $3 * interval '1 millisecond' "
			 "WHERE id = ANY ($2)",
			 3, largtypes, largs, NULL, SPI_OK_UPDATE);
}

/* a token refused in this claim, and until when */
typedef struct Refused
{
	char	   *token_id;
	SquadstackAdmit	admit;
} Refused;

static SquadstackWait
admission_wait(SquadstackAdmission a)
{
	switch (a)
	{
		case SQUADSTACK_NO_RATE_SLOT:
			return SQUADSTACK_WAIT_RATE_SLOT;
		case SQUADSTACK_TOKEN_PAUSED:
			return SQUADSTACK_WAIT_PAUSED_TOKEN;
		case SQUADSTACK_TOKEN_REFUSED:
			return SQUADSTACK_WAIT_TOKEN_CHANGE;
		case SQUADSTACK_ADMITTED:
			break;
	}
	return SQUADSTACK_WAIT_WORK;
}

/*
 * Claim one call's worth of work.  Campaigns are tried least recently
 * served first, so one with a large backlog does not starve the others on
 * the same token; a backed-off campaign waits its turn.  Returns false
 * when nothing can be sent now; r then says when something may become
 * sendable (0 if unknown), why, and which campaigns wait for what.
 */
bool
squadstack_claim(const SquadstackConfig *cfg, SquadstackBatch *b, SquadstackDeliveryResult *r, MemoryContext cxt,
		  char *campaign_out, size_t campaign_size)
{
	uint64		ncampaigns;
	SPITupleTable *found;
	List	   *refused = NIL;
	uint64		i;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	MemoryContext old;
	Oid			roletype[1] = {OIDOID};
	Datum		roleargs[1];

	roleargs[0] = ObjectIdGetDatum(cfg->only_role);
	squadstack_lock_intake();
	recover_leases();

	SQUADSTACK_EXEC_KEPT("WITH RECURSIVE q(campaign_id) AS ("
			 "  (SELECT campaign_id FROM squadstack.outbox WHERE state = 'queued'"
			 "   ORDER BY campaign_id LIMIT 1)"
			 "  UNION ALL"
			 "  SELECT (SELECT o.campaign_id FROM squadstack.outbox o"
			 "          WHERE o.state = 'queued' AND o.campaign_id > q.campaign_id"
			 "          ORDER BY o.campaign_id LIMIT 1)"
			 "  FROM q WHERE q.campaign_id IS NOT NULL),"
			 "i(campaign_id) AS ("
			 "  (SELECT campaign_id FROM squadstack.intake ORDER BY campaign_id LIMIT 1)"
			 "  UNION ALL"
			 "  SELECT (SELECT n.campaign_id FROM squadstack.intake n"
			 "          WHERE n.campaign_id > i.campaign_id"
			 "          ORDER BY n.campaign_id LIMIT 1)"
			 "  FROM i WHERE i.campaign_id IS NOT NULL),"
			 "c AS (SELECT campaign_id FROM q WHERE campaign_id IS NOT NULL"
			 "      UNION SELECT campaign_id FROM i WHERE campaign_id IS NOT NULL) "
			 "SELECT c.campaign_id,"
			 "  CASE WHEN EXISTS (SELECT 1 FROM squadstack.intake n"
			 "                    WHERE n.campaign_id = c.campaign_id) THEN now()"
			 "  ELSE (SELECT min(o.next_attempt_at) FROM squadstack.outbox o"
			 "        WHERE o.state = 'queued' AND o.campaign_id = c.campaign_id) END,"
			 "  s.backoff_until "
			 "FROM c LEFT JOIN squadstack.campaign_state s ON s.campaign_id = c.campaign_id "
			 "WHERE $1 = 0 OR " SQUADSTACK_GRANTED_SQL("c.campaign_id", "$1") " "
			 "ORDER BY (SELECT max(a.started_at) FROM squadstack.api_calls a"
			 "          WHERE a.campaign_id = c.campaign_id) NULLS FIRST, c.campaign_id",
			 1, roletype, roleargs, NULL, SPI_OK_SELECT);
	found = SPI_tuptable;
	ncampaigns = SPI_processed;

	for (i = 0; i < ncampaigns; i++)
	{
		HeapTuple	tup = found->vals[i];
		bool		isnull;
		char	   *campaign = SPI_getvalue(tup, found->tupdesc, 1);
		TimestampTz due = DatumGetTimestampTz(SPI_getbinval(tup, found->tupdesc, 2, &isnull));
		Datum		backoff = SPI_getbinval(tup, found->tupdesc, 3, &isnull);
		char	   *token;
		char	   *token_id;
		SquadstackAdmit	admit;
		ListCell   *lc;
		Refused    *was_refused = NULL;
		LeaseResult leased;
		bool		scarce;

		CHECK_FOR_INTERRUPTS();
		strlcpy(campaign_out, campaign, campaign_size);
		if (!isnull && DatumGetTimestampTz(backoff) > now)
		{
			consider(r, DatumGetTimestampTz(backoff), SQUADSTACK_WAIT_BACKOFF);
			note_blocked(r, campaign, DatumGetTimestampTz(backoff));
			continue;
		}
		if (due > now)
		{
			consider(r, due, SQUADSTACK_WAIT_RETRY);
			continue;
		}
		token = squadstack_campaign_token(campaign, cfg);
		if (token == NULL)
		{
			/* shown as paused in queue_status; a new token wakes the worker */
			note_blocked(r, campaign, 0);
			continue;
		}
		token_id = squadstack_token_id(token);

		/*
		 * A token refused once stays refused in this claim: a slot that
		 * frees meanwhile goes to the campaign whose turn it was, next time.
		 */
		foreach(lc, refused)
		{
			Refused    *rf = lfirst(lc);

			if (strcmp(rf->token_id, token_id) == 0)
				was_refused = rf;
		}
		if (was_refused != NULL)
		{
			note_blocked(r, campaign, was_refused->admit.until);
			continue;
		}
		if (squadstack_admit_call(cfg, token_id, &admit) != SQUADSTACK_ADMITTED)
		{
			Refused    *rf = palloc(sizeof(Refused));

			rf->token_id = token_id;
			rf->admit = admit;
			refused = lappend(refused, rf);
			if (admit.until != 0)
				consider(r, admit.until, admission_wait(admit.result));
			else if (r->next_wakeup == 0)
				r->waiting_for = admission_wait(admit.result);
			note_blocked(r, campaign, admit.until);
			continue;
		}

		/*
		 * The intake's oldest operations join the outbox as calls need them:
		 * what this call needs while the budget is scarce, what the calls
		 * of the next moments need while it is not (each move reads the
		 * campaign's whole intake to find its oldest rows).
		 */
		scarce = admit.used * 2 >= cfg->rate_limit;
		squadstack_absorb_intake(campaign,
								 Min(Max(cfg->batch_size * (scarce ? 2 : 20), 100),
									 MAX_INTAKE_MOVE));

		leased = lease_operations(cfg, campaign, b, scarce, r, cxt);
		if (leased != LEASE_LEASED)
			continue;

		old = MemoryContextSwitchTo(cxt);
		b->campaign = pstrdup(campaign);
		b->token = pstrdup(token);
		b->token_id = pstrdup(token_id);
		MemoryContextSwitchTo(old);
		start_call(cfg, b);
		return true;
	}
	campaign_out[0] = '\0';
	return false;
}
