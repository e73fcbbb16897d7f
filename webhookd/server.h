/*-------------------------------------------------------------------------
 *
 * server.h
 *		The HTTP side of squadstack-webhookd (libmicrohttpd).
 *
 *-------------------------------------------------------------------------
 */
#ifndef WH_SERVER_H
#define WH_SERVER_H

#include <stdbool.h>
#include <sys/socket.h>

#include "pool.h"
#include "ratelimit.h"
#include "settings.h"

typedef struct WhServer WhServer;

extern WhServer *wh_server_start(const WhSettings *settings, WhPool *pool,
								 WhRateLimiter *limiter,
								 const struct sockaddr *addr);

/* the port listened on (useful with port 0) */
extern int	wh_server_port(WhServer *server);

/*
 * Stop accepting, let the requests in flight finish (up to timeout_ms),
 * close every connection and free the server.
 */
extern void wh_server_stop(WhServer *server, long timeout_ms);

#endif							/* WH_SERVER_H */
