/*-------------------------------------------------------------------------
 *
 * spi_util.h
 *		Helpers for the extension's own SQL statements (spi_util.c).  They
 *		know nothing of leads or campaigns.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQS_SPI_UTIL_H
#define SQS_SPI_UTIL_H

#include "postgres.h"

/* run one statement inside SPI; an unexpected result is an internal error */
extern void sqs_exec(const char *sql, int nargs, Oid *argtypes, Datum *args,
					 const char *nulls, int expected);

/* one short transaction with SPI, in a process outside any */
extern void sqs_begin_step(const char *activity);
extern void sqs_end_step(void);

/* text from outside fit for a text column: valid, at most max bytes */
extern char *sqs_clean_text(const char *s, size_t len, size_t max);

#endif							/* SQS_SPI_UTIL_H */
