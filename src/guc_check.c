/*-------------------------------------------------------------------------
 *
 * guc_check.c
 *		The check and assign hooks of the extension's settings: what values
 *		guc.c accepts, and the tokens squadstack.token_file held when it was
 *		last read.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"


#include "catalog/pg_collation_d.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgtime.h"
#include "regex/regex.h"

#include "guc_check.h"

/* what squadstack.token_file held when it was last read (the GUC's extra) */
static SquadstackTokenFile *file_tokens = NULL;
/* changes whenever file_tokens does */
static uint64 file_generation = 0;

/*
 * The token goes wherever api_url points, so only http and https URLs of a
 * sane length are accepted.
 */
bool
squadstack_check_api_url(char **newval, void **extra, GucSource source)
{
	const char *url = *newval;

	if (url == NULL)
		return true;
	if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
	{
		GUC_check_errdetail("The URL must start with \"http://\" or \"https://\".");
		return false;
	}
	if (strlen(url) >= SQUADSTACK_URL_MAX - 128)
	{
		GUC_check_errdetail("The URL must be shorter than %d bytes.",
							SQUADSTACK_URL_MAX - 128);
		return false;
	}
	return true;
}

/*
 * A secret in a setting reaches the server log: PostgreSQL logs a changed
 * setting's new value at reload, and a setting stored with ALTER ROLE or
 * ALTER DATABASE is readable by every role.  The deprecated secret settings
 * still work, with a warning that names the safer way: in the postmaster
 * (at start and reload, once each) and where a session sets them.
 */
static void
warn_deprecated_secret(const char *name, const char *value, GucSource source,
					   const char *instead)
{
	if (value == NULL || value[0] == '\0' || source == PGC_S_DEFAULT ||
		source == PGC_S_TEST)
		return;
	if (IsUnderPostmaster && source < PGC_S_GLOBAL)
		return;
	ereport(WARNING,
			(errcode(ERRCODE_WARNING_DEPRECATED_FEATURE),
			 errmsg("setting \"%s\" is deprecated", name),
			 errdetail("PostgreSQL writes a changed setting's value to the server log at reload."),
			 errhint("%s", instead)));
}

bool
squadstack_check_token(char **newval, void **extra, GucSource source)
{
	const char *problem;

	if (*newval == NULL)
		return true;
	problem = squadstack_token_problem(*newval);
	if (problem != NULL)
	{
		/* the default message would quote the rejected value: the token */
		GUC_check_errmsg("invalid value for parameter \"%s\"", "squadstack.token");
		GUC_check_errdetail("%s", problem);
		return false;
	}
	warn_deprecated_secret("squadstack.token", *newval, source,
						   "Use squadstack_set_token('*', token) or squadstack.token_file instead.");
	return true;
}

bool
squadstack_check_webhook_secret(char **newval, void **extra, GucSource source)
{
	warn_deprecated_secret("squadstack.webhook_secret", *newval, source,
						   "Use squadstack_set_webhook_secret('*', secret) instead.");
	return true;
}

/*
 * The token file is read here, at start and at every reload, so that a
 * file that cannot be used is refused with the reason and the tokens read
 * before stay in force, as with ssl_key_file.
 */
bool
squadstack_check_token_file(char **newval, void **extra, GucSource source)
{
	char		problem[MAXPGPATH + 256];
	SquadstackTokenFile *tf;

	tf = squadstack_token_file_read(*newval, problem, sizeof(problem));
	if (tf == NULL)
	{
		GUC_check_errdetail("%s", problem);
		return false;
	}
	*extra = tf;
	return true;
}

void
squadstack_assign_token_file(const char *newval, void *extra)
{
	file_tokens = (SquadstackTokenFile *) extra;
	file_generation++;
}

uint64
squadstack_file_generation(void)
{
	return file_generation;
}

const char *
squadstack_file_token(const char *campaign)
{
	return squadstack_token_file_lookup(file_tokens, campaign);
}

const char *
squadstack_file_business(int i, const char **token)
{
	return squadstack_token_file_business(file_tokens, i, token);
}

/*
 * A proxy URL may carry a user name and password, so no message quotes it.
 * Only http and https proxies are accepted: the call is tunnelled through
 * them with CONNECT.
 */
bool
squadstack_check_http_proxy(char **newval, void **extra, GucSource source)
{
	const char *url = *newval;
	const char *p;

	if (url == NULL || url[0] == '\0')
		return true;
	GUC_check_errmsg("invalid value for parameter \"%s\"", "squadstack.http_proxy");
	if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
	{
		GUC_check_errdetail("The proxy URL must start with \"http://\" or \"https://\".");
		return false;
	}
	if (strlen(url) >= SQUADSTACK_URL_MAX)
	{
		GUC_check_errdetail("The proxy URL must be shorter than %d bytes.", SQUADSTACK_URL_MAX);
		return false;
	}
	for (p = url; *p; p++)
		if ((unsigned char) *p <= 0x20 || *p == 0x7f)
		{
			GUC_check_errdetail("The proxy URL must not contain spaces or control characters.");
			return false;
		}
	return true;
}

/* a list of host names, domains or addresses, as libcurl's NOPROXY takes it */
bool
squadstack_check_no_proxy(char **newval, void **extra, GucSource source)
{
	const char *p;

	if (*newval == NULL)
		return true;
	if (strlen(*newval) >= SQUADSTACK_URL_MAX)
	{
		GUC_check_errdetail("The list must be shorter than %d bytes.", SQUADSTACK_URL_MAX);
		return false;
	}
	for (p = *newval; *p; p++)
		if ((unsigned char) *p < 0x20 || *p == 0x7f)
		{
			GUC_check_errdetail("The list must not contain control characters.");
			return false;
		}
	return true;
}

bool
squadstack_check_ca_file(char **newval, void **extra, GucSource source)
{
	if (*newval != NULL && strlen(*newval) >= MAXPGPATH)
	{
		GUC_check_errdetail("The path must be shorter than %d bytes.", MAXPGPATH);
		return false;
	}
	return true;
}

bool
squadstack_check_webhook_timezone(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || pg_tzset(*newval) == NULL)
	{
		GUC_check_errdetail("The time zone must be a name such as \"UTC\" or \"Asia/Kolkata\".");
		return false;
	}
	return true;
}

/*
 * The pattern must compile as the answers will be matched: an advanced
 * regular expression, ignoring case, in the C collation.
 */
bool
squadstack_check_duplicate_pattern(char **newval, void **extra, GucSource source)
{
	const char *pattern = *newval;
	size_t		len;
	pg_wchar   *wide;
	regex_t		re;
	int			rc;

	if (pattern == NULL)
		return true;
	len = strlen(pattern);
	if (len == 0 || len >= SQUADSTACK_PATTERN_MAX)
	{
		GUC_check_errdetail("The pattern must have 1 to %d bytes.", SQUADSTACK_PATTERN_MAX - 1);
		return false;
	}
	wide = (pg_wchar *) malloc((len + 1) * sizeof(pg_wchar));
	if (wide == NULL)
		return false;
	len = pg_mb2wchar_with_len(pattern, wide, (int) len);
	rc = pg_regcomp(&re, wide, len, REG_ADVANCED | REG_ICASE | REG_NOSUB, C_COLLATION_OID);
	free(wide);
	if (rc != REG_OKAY)
	{
		char		msg[128];

		pg_regerror(rc, &re, msg, sizeof(msg));
		GUC_check_errdetail("The pattern is not a valid regular expression: %s.", msg);
		return false;
	}
	pg_regfree(&re);
	return true;
}
