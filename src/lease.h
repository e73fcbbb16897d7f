/*-------------------------------------------------------------------------
 *
 * lease.h
 *		Leasing one call's operations of a campaign (lease.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQUADSTACK_LEASE_H
#define SQUADSTACK_LEASE_H

#include "postgres.h"

#include "datatype/timestamp.h"

#include "op.h"
#include "squadstack.h"

/*
 * One claimed call: its operations, leased here, and its admission
 * (call_id, campaign, token), filled in by the claim (claim.c).
 */
typedef struct SquadstackBatch
{
	int64		call_id;		/* 0 until the call is admitted */
	char	   *campaign;
	SquadstackOp		op;
	const char *method;
	char	   *url;
	char	   *token;
	char	   *token_id;
	char	   *body;
	int			n;
	Datum	   *ids;			/* int8 datums */
	int		   *attempts;
	bool	   *uncertain;
} SquadstackBatch;

/*
 * Lease one call's operations of campaign into b; false if none can go now
 * (*linger_until: until when a partial batch waits for more, or 0).
 */
extern bool squadstack_lease(const SquadstackConfig *cfg, const char *campaign, bool scarce,
							 MemoryContext cxt, SquadstackBatch *b, TimestampTz *linger_until);

#endif							/* SQUADSTACK_LEASE_H */
