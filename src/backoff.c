/*-------------------------------------------------------------------------
 *
 * backoff.c
 *		Retry delays and the arithmetic of the rate limiter.
 *
 * Kept free of PostgreSQL state so it can be tested on its own.
 *
 *-------------------------------------------------------------------------
 */
#include <ctype.h>
#include <stdlib.h>

#include "backoff.h"

int64_t
squadstack_backoff_ms(int attempt, int base_ms, int max_ms, double rnd)
{
	int64_t		cap = base_ms;
	int			i;

	if (attempt < 1)
		attempt = 1;
	/* doubling stops at max_ms, so this cannot overflow */
	for (i = 1; i < attempt && cap < max_ms; i++)
		cap *= 2;
	if (cap > max_ms)
		cap = max_ms;
	if (rnd < 0.0)
		rnd = 0.0;
	if (rnd >= 1.0)
		rnd = 0.999999;
	return (int64_t) (rnd * (double) (cap + 1));
}

int64_t
squadstack_window_with_margin_ms(int window_ms)
{
	/*
	 * 1/64 of the window, at least 50 ms and at most 2 s: enough to absorb
	 * the delay between admission and arrival, small enough to keep more
	 * than 97% of the budget usable.
	 */
	int64_t		margin = window_ms / 64;

	if (margin < 50)
		margin = 50;
	if (margin > 2000)
		margin = 2000;
	return (int64_t) window_ms + margin;
}

int64_t
squadstack_retry_after_seconds_ms(const char *value)
{
	const char *p = value;
	int64_t		secs = 0;

	while (*p == ' ' || *p == '\t')
		p++;
	if (!isdigit((unsigned char) *p))
		return -1;
	while (isdigit((unsigned char) *p))
	{
		secs = secs * 10 + (*p - '0');
		if (secs > 86400 * 7)
			secs = 86400 * 7;	/* a week is plenty; avoids overflow */
		p++;
	}
	while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
		p++;
	if (*p != '\0')
		return -1;
	return secs * 1000;
}
