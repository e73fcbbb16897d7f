/*-------------------------------------------------------------------------
 *
 * lead_list.h
 *		A call's leads, validated into the arrays its queueing statement
 *		takes (lead_list.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQUADSTACK_LEAD_LIST_H
#define SQUADSTACK_LEAD_LIST_H

#include "postgres.h"

#include "utils/jsonb.h"

/*
 * The operations of one call, validated, as the arrays its queueing
 * statement takes: built in place, one lead at a time.
 */
typedef struct SquadstackLeadArrays
{
	int			n;				/* operations */
	Datum		lead_ids;		/* text[] */
	Datum		payloads;		/* jsonb[] */
} SquadstackLeadArrays;

extern SquadstackLeadArrays *squadstack_parse_create_leads(Jsonb *leads);
extern SquadstackLeadArrays *squadstack_parse_disable_leads(Jsonb *lead_ids);

#endif							/* SQUADSTACK_LEAD_LIST_H */
