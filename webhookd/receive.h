/*-------------------------------------------------------------------------
 *
 * receive.h
 *		Hand one webhook to squadstack_receive_webhook() and say what to
 *		answer.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WH_RECEIVE_H
#define WH_RECEIVE_H

#include <stddef.h>

#include "pool.h"

typedef struct WhAnswer
{
	int			status;			/* HTTP status */
	const char *reason;			/* one word for the log, NULL for 201 */
} WhAnswer;

/* body is NUL-terminated at body[len] */
extern WhAnswer wh_receive(WhPool *pool, long pool_wait_ms,
						   const char *campaign, const char *secret,
						   const char *body, size_t len);

#endif							/* WH_RECEIVE_H */
