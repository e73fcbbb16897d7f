/*-------------------------------------------------------------------------
 *
 * route.h
 *		The webhook path: PREFIX/{campaign}/{secret}, and its form for
 *		the log, with the secret replaced by "***".
 *
 * Pure C with no server state, so that it can be tested alone.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WH_ROUTE_H
#define WH_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

#define WH_CAMPAIGN_MAX 64
#define WH_SECRET_MAX 256

/* 1 to 64 letters, digits, underscores or dashes, like campaign_id */
extern bool wh_valid_campaign(const char *s, size_t len);

/*
 * Whether "path" is PREFIX/{campaign}/{secret} (one trailing slash
 * allowed).  On success the campaign (NUL-terminated, at most
 * WH_CAMPAIGN_MAX characters) and the secret (at most WH_SECRET_MAX) are
 * copied out.
 */
extern bool wh_route_parse(const char *prefix, const char *path,
						   char *campaign, char *secret);

/*
 * The path as it may be logged: the prefix and the segment after it (the
 * first segment of a path outside the prefix), then a slash and "***" for whatever
 * follows; bytes outside printable ASCII as %XX; cut at "outlen".
 */
extern void wh_route_redact(const char *prefix, const char *path,
							char *out, size_t outlen);

#endif							/* WH_ROUTE_H */
