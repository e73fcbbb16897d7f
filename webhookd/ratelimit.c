/*-------------------------------------------------------------------------
 *
 * ratelimit.c
 *		Token buckets, in all and per client address.
 *
 * A bucket holds up to "burst" tokens and gains "rate" tokens a second; a
 * request takes one.  Client buckets live in a fixed table: an address is
 * looked for in WH_CLIENT_PROBES slots from its hash, and a new address
 * takes a free slot there or the one seen longest ago.  The memory is
 * therefore bounded whatever the number of addresses; an address pushed
 * out comes back with a full bucket, and the bucket of all requests still
 * bounds the total.
 *
 *-------------------------------------------------------------------------
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ratelimit.h"

bool
wh_bucket_take(WhBucket *b, double rate, double burst, double now)
{
	if (now > b->last)
	{
		b->tokens += (now - b->last) * rate;
		if (b->tokens > burst)
			b->tokens = burst;
		b->last = now;
	}
	if (b->tokens >= 1.0)
	{
		b->tokens -= 1.0;
		return true;
	}
	return false;
}

static int
seconds_until_token(const WhBucket *b, double rate)
{
	double		s = ceil((1.0 - b->tokens) / rate);

	return s < 1.0 ? 1 : s > 3600.0 ? 3600 : (int) s;
}

bool
wh_rate_init(WhRateLimiter *rl, double rate, double burst,
			 double client_rate, double client_burst, double now)
{
	memset(rl, 0, sizeof(*rl));
	rl->rate = rate;
	rl->burst = burst;
	rl->client_rate = client_rate;
	rl->client_burst = client_burst;
	rl->all.tokens = burst;
	rl->all.last = now;
	if (client_rate > 0)
	{
		rl->clients = calloc(WH_CLIENT_SLOTS, sizeof(WhClientBucket));
		if (rl->clients == NULL)
			return false;
	}
	return true;
}

void
wh_rate_free(WhRateLimiter *rl)
{
	free(rl->clients);
	rl->clients = NULL;
}

/* FNV-1a */
static uint32_t
hash_address(const char *s)
{
	uint32_t	h = 2166136261u;

	for (; *s; s++)
	{
		h ^= (unsigned char) *s;
		h *= 16777619u;
	}
	return h;
}

static WhClientBucket *
client_bucket(WhRateLimiter *rl, const char *address, double now)
{
	uint32_t	h = hash_address(address);
	WhClientBucket *victim = NULL;
	int			i;

	for (i = 0; i < WH_CLIENT_PROBES; i++)
	{
		WhClientBucket *c = &rl->clients[(h + i) % WH_CLIENT_SLOTS];

		if (c->address[0] != '\0' && strcmp(c->address, address) == 0)
			return c;
		if (victim == NULL ||
			(victim->address[0] != '\0' &&
			 (c->address[0] == '\0' || c->bucket.last < victim->bucket.last)))
			victim = c;
	}
	strncpy(victim->address, address, WH_ADDRESS_LEN - 1);
	victim->address[WH_ADDRESS_LEN - 1] = '\0';
	victim->bucket.tokens = rl->client_burst;
	victim->bucket.last = now;
	return victim;
}

WhRateResult
wh_rate_take(WhRateLimiter *rl, const char *address, double now,
			 int *retry_after)
{
	if (rl->clients != NULL)
	{
		WhClientBucket *c = client_bucket(rl, address, now);

		if (!wh_bucket_take(&c->bucket, rl->client_rate, rl->client_burst, now))
		{
			*retry_after = seconds_until_token(&c->bucket, rl->client_rate);
			return WH_RATE_CLIENT;
		}
	}
	if (rl->rate > 0 && !wh_bucket_take(&rl->all, rl->rate, rl->burst, now))
	{
		*retry_after = seconds_until_token(&rl->all, rl->rate);
		return WH_RATE_ALL;
	}
	return WH_RATE_OK;
}
