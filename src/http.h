/*-------------------------------------------------------------------------
 *
 * http.h
 *		The HTTP client (libcurl) and response checks (json-c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQUADSTACK_HTTP_H
#define SQUADSTACK_HTTP_H

#include "version.h"

#include "postgres.h"

struct SquadstackHttpResult;
typedef struct SquadstackHttpResult
{
	long		status;			/* HTTP status, 0 if there was no answer */
	char	   *body;			/* palloc'd, NUL-terminated; may be cut short */
	size_t		body_len;
	char	   *error;			/* why there was no answer, or NULL */
	bool		timed_out;
	int64		retry_after_ms; /* from Retry-After, -1 if absent or invalid */
	double		duration_ms;
} SquadstackHttpResult;

/*
 * Make one HTTP call.  Never raises an ERROR for a network problem (those
 * are reported in *res); a query cancel or termination request aborts the
 * transfer at once and is then raised as usual.
 */
extern void squadstack_http_call(const char *method, const char *url,
						  const char *token, const char *body,
						  int timeout_ms, SquadstackHttpResult *res);

/* Whether buf holds exactly one JSON value (json-c's parser decides). */
extern bool squadstack_json_is_valid(const char *buf, size_t len);

#endif
