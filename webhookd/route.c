/*-------------------------------------------------------------------------
 *
 * route.c
 *		The webhook path: PREFIX/{campaign}/{secret}, and its form for
 *		the log, with the secret replaced by "***".
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include "route.h"

bool
wh_valid_campaign(const char *s, size_t len)
{
	size_t		i;

	if (len < 1 || len > WH_CAMPAIGN_MAX)
		return false;
	for (i = 0; i < len; i++)
	{
		char		c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '_' || c == '-'))
			return false;
	}
	return true;
}

/* "path" begins with "prefix" followed by a slash: the rest, else NULL */
static const char *
after_prefix(const char *prefix, const char *path)
{
	size_t		plen = strlen(prefix);

	if (strncmp(path, prefix, plen) != 0 || path[plen] != '/')
		return NULL;
	return path + plen + 1;
}

bool
wh_route_parse(const char *prefix, const char *path,
			   char *campaign, char *secret)
{
	const char *cstart = after_prefix(prefix, path);
	const char *rest;
	const char *slash;
	size_t		clen;
	size_t		slen;

	if (cstart == NULL)
		return false;
	slash = strchr(cstart, '/');
	if (slash == NULL)
		return false;
	clen = slash - cstart;
	if (!wh_valid_campaign(cstart, clen))
		return false;
	rest = slash + 1;
	slen = strcspn(rest, "/");
	/* one trailing slash is allowed, nothing after it */
	if (rest[slen] == '/' && rest[slen + 1] != '\0')
		return false;
	if (slen < 1 || slen > WH_SECRET_MAX)
		return false;
	memcpy(campaign, cstart, clen);
	campaign[clen] = '\0';
	memcpy(secret, rest, slen);
	secret[slen] = '\0';
	return true;
}

/* append s[0..len) to out, escaping; returns false when out is full */
static bool
append_escaped(char *out, size_t outlen, size_t *pos, const char *s, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t		i;

	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c > 0x20 && c < 0x7f && c != '%' && c != '"' && c != '\\')
		{
			if (*pos + 1 >= outlen)
			{
				out[*pos] = '\0';
				return false;
			}
			out[(*pos)++] = c;
		}
		else
		{
			if (*pos + 3 >= outlen)
			{
				out[*pos] = '\0';
				return false;
			}
			out[(*pos)++] = '%';
			out[(*pos)++] = hex[c >> 4];
			out[(*pos)++] = hex[c & 15];
		}
	}
	out[*pos] = '\0';
	return true;
}

void
wh_route_redact(const char *prefix, const char *path, char *out, size_t outlen)
{
	const char *rest = after_prefix(prefix, path);
	const char *kept_end;
	size_t		pos = 0;

	if (outlen == 0)
		return;
	out[0] = '\0';
	if (rest == NULL)
	{
		/* outside the prefix: keep the first segment */
		rest = path[0] == '/' ? path + 1 : path;
	}
	kept_end = rest + strcspn(rest, "/");
	if (!append_escaped(out, outlen, &pos, path, kept_end - path))
		return;
	if (*kept_end == '/' && kept_end[1] != '\0')
		append_escaped(out, outlen, &pos, "/***", 4);
	else if (*kept_end == '/')
		append_escaped(out, outlen, &pos, "/", 1);
}
