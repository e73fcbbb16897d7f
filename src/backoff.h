/*-------------------------------------------------------------------------
 *
 * backoff.h
 *		Retry delays and the arithmetic of the rate limiter (pure C).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQUADSTACK_BACKOFF_H
#define SQUADSTACK_BACKOFF_H

#include <stdint.h>

/*
 * Exponential backoff with full jitter: a delay drawn uniformly from
 * [0, min(max_ms, base_ms * 2^(attempt - 1))].  rnd is in [0, 1).
 */
extern int64_t squadstack_backoff_ms(int attempt, int base_ms, int max_ms, double rnd);

/*
 * The window the limiter enforces: the configured one plus a margin for the
 * time between admitting a call and its arrival at the API.
 */
extern int64_t squadstack_window_with_margin_ms(int window_ms);

/*
 * Parse a Retry-After value given in seconds ("120").  Returns the delay in
 * milliseconds, or -1 if the value is not a number of seconds.
 */
extern int64_t squadstack_retry_after_seconds_ms(const char *value);

#endif
