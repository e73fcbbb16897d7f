/*-------------------------------------------------------------------------
 *
 * pool.c
 *		A small pool of libpq connections: never more than its size,
 *		connected on demand and again after the database restarted.
 *
 * A request takes a free slot, waiting a short time when all are in use,
 * and connects the slot if it has no connection.  A connection that broke
 * is closed when it is given back.  While the database cannot be reached,
 * connecting is tried at most once a second: the other requests of that
 * second are answered 503 at once instead of each waiting for a timeout.
 * The log says once that the database went away and once that it is back.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pool.h"
#include "wlog.h"

#define RETRY_INTERVAL_S 1.0

struct WhPool
{
	int			size;
	PGconn	  **conns;
	bool	   *busy;
	int			nfree;
	pthread_mutex_t lock;
	pthread_cond_t freed;
	char	   *conninfo;
	char		connect_timeout[16];
	char		options[64];
	bool		down;			/* the last attempt to connect failed */
	double		next_attempt;	/* while down: monotonic seconds */
};

static double
monotonic_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

WhPool *
wh_pool_create(int size, const char *conninfo, long connect_timeout_s,
			   long statement_timeout_ms)
{
	WhPool	   *pool = calloc(1, sizeof(WhPool));
	pthread_condattr_t attr;

	if (pool == NULL)
		return NULL;
	pool->size = size;
	pool->nfree = size;
	pool->conns = calloc(size, sizeof(PGconn *));
	pool->busy = calloc(size, sizeof(bool));
	pool->conninfo = strdup(conninfo);
	if (pool->conns == NULL || pool->busy == NULL || pool->conninfo == NULL)
		goto fail;
	snprintf(pool->connect_timeout, sizeof(pool->connect_timeout), "%ld",
			 connect_timeout_s);
	snprintf(pool->options, sizeof(pool->options),
			 "-c statement_timeout=%ld", statement_timeout_ms);
	if (pthread_mutex_init(&pool->lock, NULL) != 0)
		goto fail;
	if (pthread_condattr_init(&attr) != 0 ||
		pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) != 0 ||
		pthread_cond_init(&pool->freed, &attr) != 0)
	{
		pthread_mutex_destroy(&pool->lock);
		goto fail;
	}
	pthread_condattr_destroy(&attr);
	return pool;

fail:
	free(pool->conns);
	free(pool->busy);
	free(pool->conninfo);
	free(pool);
	return NULL;
}

void
wh_pool_destroy(WhPool *pool)
{
	int			i;

	if (pool == NULL)
		return;
	for (i = 0; i < pool->size; i++)
		if (pool->conns[i] != NULL)
			PQfinish(pool->conns[i]);
	pthread_cond_destroy(&pool->freed);
	pthread_mutex_destroy(&pool->lock);
	/* the connection string may hold a password */
	memset(pool->conninfo, 0, strlen(pool->conninfo));
	free(pool->conninfo);
	free(pool->conns);
	free(pool->busy);
	free(pool);
}

/*
 * Connect.  Settings given here come before the connection string, so the
 * connection string can override them, but libpq's environment (PGAPPNAME,
 * PGOPTIONS, PGCONNECT_TIMEOUT) cannot.
 */
static PGconn *
connect_db(WhPool *pool)
{
	const char *const keywords[] = {"connect_timeout", "options",
	"application_name", "dbname", NULL};
	const char *values[] = {pool->connect_timeout, pool->options,
	"squadstack-webhookd", pool->conninfo, NULL};
	PGconn	   *conn;

	conn = PQconnectdbParams(keywords, values, 1);
	if (conn != NULL && PQstatus(conn) == CONNECTION_OK)
		return conn;

	pthread_mutex_lock(&pool->lock);
	if (!pool->down)
	{
		pool->down = true;
		pthread_mutex_unlock(&pool->lock);
		/* libpq's message names the server, never the password */
		wh_log(WH_WARNING, "could not connect to the database: %s",
			   conn != NULL ? PQerrorMessage(conn) : "out of memory");
	}
	else
		pthread_mutex_unlock(&pool->lock);
	if (conn != NULL)
		PQfinish(conn);
	return NULL;
}

WhPoolResult
wh_pool_acquire(WhPool *pool, long wait_ms, WhPoolConn *pc)
{
	struct timespec deadline;
	int			slot = -1;
	int			i;
	bool		was_down;

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += wait_ms / 1000;
	deadline.tv_nsec += (wait_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L)
	{
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}

	pthread_mutex_lock(&pool->lock);
	while (pool->nfree == 0)
	{
		int			rc = pthread_cond_timedwait(&pool->freed, &pool->lock,
												&deadline);

		if (rc == ETIMEDOUT && pool->nfree == 0)
		{
			pthread_mutex_unlock(&pool->lock);
			return WH_POOL_BUSY;
		}
	}
	/* prefer a slot that is connected */
	for (i = 0; i < pool->size; i++)
	{
		if (pool->busy[i])
			continue;
		if (slot < 0 || (pool->conns[slot] == NULL && pool->conns[i] != NULL))
			slot = i;
	}
	pool->busy[slot] = true;
	pool->nfree--;
	pc->slot = slot;
	pc->conn = pool->conns[slot];
	pc->fresh = false;
	if (pc->conn != NULL)
	{
		pthread_mutex_unlock(&pool->lock);
		return WH_POOL_OK;
	}

	/* no connection in this slot: connect, unless that failed just now */
	was_down = pool->down;
	if (was_down && monotonic_now() < pool->next_attempt)
	{
		pool->busy[slot] = false;
		pool->nfree++;
		pthread_cond_signal(&pool->freed);
		pthread_mutex_unlock(&pool->lock);
		return WH_POOL_DOWN;
	}
	if (was_down)
		pool->next_attempt = monotonic_now() + RETRY_INTERVAL_S;
	pthread_mutex_unlock(&pool->lock);

	pc->conn = connect_db(pool);

	pthread_mutex_lock(&pool->lock);
	if (pc->conn == NULL)
	{
		pool->next_attempt = monotonic_now() + RETRY_INTERVAL_S;
		pool->busy[slot] = false;
		pool->nfree++;
		pthread_cond_signal(&pool->freed);
		pthread_mutex_unlock(&pool->lock);
		return WH_POOL_DOWN;
	}
	pool->conns[slot] = pc->conn;
	pc->fresh = true;
	was_down = pool->down;
	pool->down = false;
	pthread_mutex_unlock(&pool->lock);
	if (was_down)
		wh_log(WH_LOG, "connected to the database again");
	return WH_POOL_OK;
}

void
wh_pool_release(WhPool *pool, WhPoolConn *pc, bool broken)
{
	PGconn	   *to_close = NULL;

	pthread_mutex_lock(&pool->lock);
	if (broken)
	{
		to_close = pool->conns[pc->slot];
		pool->conns[pc->slot] = NULL;
	}
	pool->busy[pc->slot] = false;
	pool->nfree++;
	pthread_cond_signal(&pool->freed);
	pthread_mutex_unlock(&pool->lock);
	if (to_close != NULL)
		PQfinish(to_close);
	pc->conn = NULL;
	pc->slot = -1;
}
