/*-------------------------------------------------------------------------
 *
 * spi_util.h
 *		Helpers for the extension's own SQL statements (spi_util.c).  They
 *		know nothing of leads or campaigns.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQUADSTACK_SPI_UTIL_H
#define SQUADSTACK_SPI_UTIL_H

#include "postgres.h"

#include "executor/spi.h"

/* statements kept for the life of the process, always with a generic plan */
extern SPIPlanPtr squadstack_prepare_kept(const char *sql, int nargs, Oid *argtypes);
extern void squadstack_exec_plan(SPIPlanPtr plan, Datum *args, const char *nulls,
						  int expected);

/*
 * Run one of the extension's own statements with a plan kept for the life
 * of the process, prepared at the first use at each place it is written.
 */
extern void squadstack_exec_kept(SPIPlanPtr *plan, const char *sql, int nargs,
								 Oid *argtypes, Datum *args, const char *nulls,
								 int expected);

#define SQUADSTACK_EXEC_KEPT(sql, nargs, argtypes, args, nulls, expected) \
	do { \
		static SPIPlanPtr kept_plan_ = NULL; \
		squadstack_exec_kept(&kept_plan_, (sql), (nargs), (argtypes), (args), \
							 (nulls), (expected)); \
	} while (0)

/* run one statement inside SPI; an unexpected result is an internal error */
extern void squadstack_exec(const char *sql, int nargs, Oid *argtypes, Datum *args,
					 const char *nulls, int expected);

/* one short transaction with SPI, in a process outside any */
extern void squadstack_begin_step(const char *activity);
extern void squadstack_end_step(void);

/*
 * Run what follows as another role with a given search_path, as a SECURITY
 * DEFINER function with SET search_path would; an error undoes both with
 * the (sub)transaction.
 */
typedef struct SquadstackRunAs
{
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
} SquadstackRunAs;

extern void squadstack_run_as(Oid userid, const char *search_path, SquadstackRunAs *ctx);
extern void squadstack_end_run_as(SquadstackRunAs *ctx);
extern Oid	squadstack_function_owner(Oid fn_oid);

/*
 * Run fn(arg) in a subtransaction.  If it raises an ERROR, the
 * subtransaction is rolled back, *error (if given) gets the message, and
 * false is returned; the caller's transaction goes on.
 */
extern bool squadstack_try(void (*fn) (void *arg), void *arg, char **error);

/* text from outside fit for a text column: valid, at most max bytes */
extern char *squadstack_clean_text(const char *s, size_t len, size_t max);

#endif							/* SQUADSTACK_SPI_UTIL_H */
