/*-------------------------------------------------------------------------
 *
 * erase.h
 *		Erasing a deleted lead's personal data (erase.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQS_ERASE_H
#define SQS_ERASE_H

#include "postgres.h"

extern void sqs_erase_deleted_leads(Datum delete_ids);
extern char *sqs_replace_words(const char *text, const char *word,
							   const char *with, bool cut_tail, bool *changed);

#endif							/* SQS_ERASE_H */
