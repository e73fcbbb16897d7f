/*-------------------------------------------------------------------------
 *
 * pool.h
 *		A small pool of libpq connections: never more than its size,
 *		connected on demand and again after the database restarted.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WH_POOL_H
#define WH_POOL_H

#include <stdbool.h>

#include "libpq-fe.h"

typedef struct WhPool WhPool;

typedef enum WhPoolResult
{
	WH_POOL_OK,
	WH_POOL_BUSY,				/* no connection came free in time */
	WH_POOL_DOWN				/* the database cannot be reached */
} WhPoolResult;

typedef struct WhPoolConn
{
	int			slot;
	PGconn	   *conn;
	bool		fresh;			/* connected for this request */
} WhPoolConn;

extern WhPool *wh_pool_create(int size, const char *conninfo,
							  long connect_timeout_s,
							  long statement_timeout_ms);
extern void wh_pool_destroy(WhPool *pool);

/* a connection for one request, waiting up to wait_ms for a free slot */
extern WhPoolResult wh_pool_acquire(WhPool *pool, long wait_ms,
									WhPoolConn *pc);

/* give it back; "broken" closes it (the next user connects anew) */
extern void wh_pool_release(WhPool *pool, WhPoolConn *pc, bool broken);

#endif							/* WH_POOL_H */
