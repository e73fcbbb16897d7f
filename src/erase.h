/*-------------------------------------------------------------------------
 *
 * erase.h
 *		Erasing a deleted lead's personal data (erase.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQUADSTACK_ERASE_H
#define SQUADSTACK_ERASE_H

#include "postgres.h"

#include "outcome.h"

extern void squadstack_erase_deleted_leads(Datum delete_ids);
extern void squadstack_erase_outcome(SquadstackOutcome *o);
extern Jsonb *squadstack_erased_inbox_payload(const char *campaign_id, const char *lead_id);
extern char *squadstack_replace_words(const char *text, const char *word,
							   const char *with, bool cut_tail, bool *changed);

#endif							/* SQUADSTACK_ERASE_H */
