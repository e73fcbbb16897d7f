/*-------------------------------------------------------------------------
 *
 * ratelimit.h
 *		Token buckets, in all and per client address.
 *
 * Pure C with no locking and no clock of its own: the caller passes the
 * time and serialises calls, so the arithmetic can be tested alone.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WH_RATELIMIT_H
#define WH_RATELIMIT_H

#include <stdbool.h>

typedef struct WhBucket
{
	double		tokens;
	double		last;			/* seconds, on the caller's clock */
} WhBucket;

/* addresses remembered; a new one replaces the longest unseen */
#define WH_CLIENT_SLOTS 4096
#define WH_CLIENT_PROBES 8
#define WH_ADDRESS_LEN 64

typedef struct WhClientBucket
{
	char		address[WH_ADDRESS_LEN];
	WhBucket	bucket;
} WhClientBucket;

typedef struct WhRateLimiter
{
	double		rate;			/* per second, 0 = no limit */
	double		burst;
	double		client_rate;
	double		client_burst;
	WhBucket	all;
	WhClientBucket *clients;	/* WH_CLIENT_SLOTS, NULL without client_rate */
} WhRateLimiter;

typedef enum WhRateResult
{
	WH_RATE_OK,
	WH_RATE_CLIENT,				/* the client's bucket is empty */
	WH_RATE_ALL					/* the bucket of all requests is empty */
} WhRateResult;

/* returns false when out of memory */
extern bool wh_rate_init(WhRateLimiter *rl, double rate, double burst,
						 double client_rate, double client_burst, double now);
extern void wh_rate_free(WhRateLimiter *rl);

/*
 * Take one token for a request from "address" at time "now" (seconds).
 * When refused, *retry_after is the whole seconds (at least 1) until a
 * token is there again.
 */
extern WhRateResult wh_rate_take(WhRateLimiter *rl, const char *address,
								 double now, int *retry_after);

/* one bucket: refill for the time passed, then take a token if there is one */
extern bool wh_bucket_take(WhBucket *b, double rate, double burst, double now);

#endif							/* WH_RATELIMIT_H */
