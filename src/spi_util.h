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

/*
 * Run what follows as another role with a given search_path, as a SECURITY
 * DEFINER function with SET search_path would; an error undoes both with
 * the (sub)transaction.
 */
typedef struct SqsRunAs
{
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
} SqsRunAs;

extern void sqs_run_as(Oid userid, const char *search_path, SqsRunAs *ctx);
extern void sqs_end_run_as(SqsRunAs *ctx);
extern Oid	sqs_function_owner(Oid fn_oid);

/*
 * Run fn(arg) in a subtransaction.  If it raises an ERROR, the
 * subtransaction is rolled back, *error (if given) gets the message, and
 * false is returned; the caller's transaction goes on.
 */
extern bool sqs_try(void (*fn) (void *arg), void *arg, char **error);

/* text from outside fit for a text column: valid, at most max bytes */
extern char *sqs_clean_text(const char *s, size_t len, size_t max);

#endif							/* SQS_SPI_UTIL_H */
