/*-------------------------------------------------------------------------
 *
 * guc.c
 *		Every setting of the extension (GUCs), and the snapshot of them a
 *		delivery or a job works with.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "catalog/pg_collation_d.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgtime.h"
#include "regex/regex.h"
#include "utils/guc.h"

#include "guc.h"

char	   *squadstack_api_url = NULL;
char	   *squadstack_token = NULL;
int			squadstack_rate_limit = 100;
int			squadstack_rate_window_ms = 60000;
int			squadstack_batch_size = 100;
int			squadstack_request_timeout_ms = 30000;
int			squadstack_max_attempts = 12;
int			squadstack_retry_base_ms = 1000;
int			squadstack_retry_max_ms = 3600000;
int			squadstack_phone_format = SQUADSTACK_PHONE_E164;
char	   *squadstack_webhook_secret = NULL;
char	   *squadstack_webhook_timezone = NULL;
int			squadstack_retention_s = 7 * 86400;
char	   *squadstack_database_name = NULL;
char	   *squadstack_token_file = NULL;

/* what squadstack.token_file held when it was last read (the GUC's extra) */
static SquadstackTokenFile *file_tokens = NULL;
int			squadstack_max_lead_bytes = 64 * 1024;
int			squadstack_max_request_bytes = 512 * 1024;
int			squadstack_lock_timeout_ms = 5000;
char	   *squadstack_duplicate_create_pattern = NULL;
char	   *squadstack_http_proxy = NULL;
char	   *squadstack_no_proxy = NULL;
char	   *squadstack_ca_file = NULL;
int			squadstack_tls_min_version = SQUADSTACK_TLS_1_2;

static const struct config_enum_entry phone_format_options[] = {
	{"e164", SQUADSTACK_PHONE_E164, false},
	{"national", SQUADSTACK_PHONE_NATIONAL, false},
	{"as_given", SQUADSTACK_PHONE_AS_GIVEN, false},
	{NULL, 0, false}
};

static const struct config_enum_entry tls_version_options[] = {
	{"TLSv1.2", SQUADSTACK_TLS_1_2, false},
	{"TLSv1.3", SQUADSTACK_TLS_1_3, false},
	{NULL, 0, false}
};




/*
 * The token goes wherever api_url points, so only http and https URLs of a
 * sane length are accepted.
 */
static bool
check_api_url(char **newval, void **extra, GucSource source)
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

static bool
check_token(char **newval, void **extra, GucSource source)
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

static bool
check_webhook_secret(char **newval, void **extra, GucSource source)
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
static bool
check_token_file(char **newval, void **extra, GucSource source)
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

static void
assign_token_file(const char *newval, void *extra)
{
	file_tokens = (SquadstackTokenFile *) extra;
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
static bool
check_http_proxy(char **newval, void **extra, GucSource source)
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
static bool
check_no_proxy(char **newval, void **extra, GucSource source)
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

static bool
check_ca_file(char **newval, void **extra, GucSource source)
{
	if (*newval != NULL && strlen(*newval) >= MAXPGPATH)
	{
		GUC_check_errdetail("The path must be shorter than %d bytes.", MAXPGPATH);
		return false;
	}
	return true;
}

static bool
check_webhook_timezone(char **newval, void **extra, GucSource source)
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
static bool
check_duplicate_pattern(char **newval, void **extra, GucSource source)
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

void
squadstack_config_from_gucs(SquadstackConfig *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	strlcpy(cfg->api_url, squadstack_api_url ? squadstack_api_url : "", sizeof(cfg->api_url));
	strlcpy(cfg->token, squadstack_token ? squadstack_token : "", sizeof(cfg->token));
	cfg->rate_limit = squadstack_rate_limit;
	cfg->rate_window_ms = squadstack_rate_window_ms;
	cfg->batch_size = squadstack_batch_size;
	cfg->request_timeout_ms = squadstack_request_timeout_ms;
	cfg->max_attempts = squadstack_max_attempts;
	cfg->retry_base_ms = squadstack_retry_base_ms;
	cfg->retry_max_ms = Max(squadstack_retry_max_ms, squadstack_retry_base_ms);
	cfg->max_request_bytes = squadstack_max_request_bytes;
	cfg->lock_timeout_ms = squadstack_lock_timeout_ms;
	strlcpy(cfg->duplicate_create_pattern,
			squadstack_duplicate_create_pattern ? squadstack_duplicate_create_pattern : "",
			sizeof(cfg->duplicate_create_pattern));
	strlcpy(cfg->webhook_timezone,
			squadstack_webhook_timezone ? squadstack_webhook_timezone : "UTC",
			sizeof(cfg->webhook_timezone));
	cfg->phone_format = squadstack_phone_format;
	cfg->max_lead_bytes = squadstack_max_lead_bytes;
	strlcpy(cfg->http_proxy, squadstack_http_proxy ? squadstack_http_proxy : "",
			sizeof(cfg->http_proxy));
	strlcpy(cfg->no_proxy, squadstack_no_proxy ? squadstack_no_proxy : "",
			sizeof(cfg->no_proxy));
	strlcpy(cfg->ca_file, squadstack_ca_file ? squadstack_ca_file : "",
			sizeof(cfg->ca_file));
	cfg->tls_min_version = squadstack_tls_min_version;
}

void
squadstack_http_options(const SquadstackConfig *cfg, SquadstackHttpOptions *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->timeout_ms = cfg->request_timeout_ms;
	opts->proxy = cfg->http_proxy;
	opts->no_proxy = cfg->no_proxy;
	opts->ca_file = cfg->ca_file;
	opts->tls_1_3_only = (cfg->tls_min_version == SQUADSTACK_TLS_1_3);
}

/*
 * Make a job's session use the settings of the session that asked for it
 * where they are read by code other than the delivery's: outcomes stored
 * from the responses endpoint read the webhook time zone.
 */
void
squadstack_config_to_session(const SquadstackConfig *cfg)
{
	char		bytes[32];

	SetConfigOption("squadstack.webhook_timezone", cfg->webhook_timezone,
					PGC_SUSET, PGC_S_SESSION);
	SetConfigOption("squadstack.phone_format",
					phone_format_options[cfg->phone_format].name,
					PGC_USERSET, PGC_S_SESSION);
	snprintf(bytes, sizeof(bytes), "%d", cfg->max_lead_bytes);
	SetConfigOption("squadstack.max_lead_bytes", bytes, PGC_SUSET, PGC_S_SESSION);
}

/*
 * Define the settings.  The background worker's database is a postmaster
 * setting, which can only be defined while the library is preloaded.
 */
void
squadstack_define_gucs(void)
{
	DefineCustomStringVariable("squadstack.api_url",
							   "Base URL of the SquadStack API.",
							   "Every call, and with it the access token, goes to this URL.",
							   &squadstack_api_url,
							   "https://api.squadstack.com/api/v4",
							   PGC_SUSET,
							   0,
							   check_api_url, NULL, NULL);

	DefineCustomStringVariable("squadstack.token",
							   "Deprecated: access token used by campaigns without a token of their own.",
							   "Use squadstack_set_token('*', token) or squadstack.token_file: a changed setting's value is written to the server log.",
							   &squadstack_token,
							   "",
							   PGC_SUSET,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   check_token, NULL, NULL);

	DefineCustomIntVariable("squadstack.rate_limit",
							"Most API calls per rate window for one business.",
							"A token is a business of its own unless squadstack_set_token() names one. "
							"Set for the whole server: every process that sends counts in the same budget.",
							&squadstack_rate_limit,
							100, 1, 100000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("squadstack.rate_window",
							"Length of the rate limit window.",
							NULL,
							&squadstack_rate_window_ms,
							60000, 100, 86400000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("squadstack.batch_size",
							"Most leads in one create or disable call.",
							NULL,
							&squadstack_batch_size,
							100, 1, 10000,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("squadstack.request_timeout",
							"Longest time one HTTP call may take.",
							"Connecting gets at most 10 seconds of it.",
							&squadstack_request_timeout_ms,
							30000, 100, 3600000,
							PGC_SUSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("squadstack.max_attempts",
							"Tries for an operation whose calls fail in a retryable way.",
							"After that many tries the operation is marked failed.",
							&squadstack_max_attempts,
							12, 1, 1000,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("squadstack.retry_base",
							"First retry delay; it doubles with every further attempt.",
							"Each delay is drawn at random between zero and the doubled value (full jitter).",
							&squadstack_retry_base_ms,
							1000, 1, 86400000,
							PGC_SUSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("squadstack.retry_max",
							"Longest retry delay.",
							NULL,
							&squadstack_retry_max_ms,
							3600000, 1, 86400000,
							PGC_SUSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("squadstack.max_lead_bytes",
							"Largest lead that may be queued, as JSON.",
							"A lead larger than this is refused when it is queued.",
							&squadstack_max_lead_bytes,
							64 * 1024, 1024, 16 * 1024 * 1024,
							PGC_SUSET,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("squadstack.max_request_bytes",
							"Largest body of one API call.",
							"A batch is cut to fit; an operation larger than this is not sent and is marked failed.",
							&squadstack_max_request_bytes,
							512 * 1024, 1024, 64 * 1024 * 1024,
							PGC_SUSET,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("squadstack.lock_timeout",
							"Longest wait for a lock in the processes that deliver.",
							"A step that waits longer is given up and tried again later, so that a user's open transaction cannot stop delivery.",
							&squadstack_lock_timeout_ms,
							5000, 10, 600000,
							PGC_SUSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomStringVariable("squadstack.duplicate_create_pattern",
							   "Regular expression that recognises the API's answer to a create of a lead that exists.",
							   "Matched, ignoring case, against the body of a 400 answer to a create of one lead that was re-sent after an uncertain attempt; a match records the create as delivered.",
							   &squadstack_duplicate_create_pattern,
							   "already exists",
							   PGC_SUSET,
							   0,
							   check_duplicate_pattern, NULL, NULL);

	DefineCustomStringVariable("squadstack.http_proxy",
							   "Proxy through which every API call is made.",
							   "An http:// or https:// URL, which may carry a user name and password; calls are tunnelled with CONNECT.  Empty means a direct connection: proxy variables of the server's environment are never used.",
							   &squadstack_http_proxy,
							   "",
							   PGC_SUSET,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   check_http_proxy, NULL, NULL);

	DefineCustomStringVariable("squadstack.no_proxy",
							   "Hosts reached directly although squadstack.http_proxy is set.",
							   "A comma-separated list of host names, domain names and IP addresses, as in libcurl's NOPROXY; \"*\" matches every host.",
							   &squadstack_no_proxy,
							   "",
							   PGC_SUSET,
							   0,
							   check_no_proxy, NULL, NULL);

	DefineCustomStringVariable("squadstack.ca_file",
							   "File of CA certificates that the API's (and an https proxy's) certificate is checked against.",
							   "Empty means the system's CA store.  A relative path is taken relative to the data directory.",
							   &squadstack_ca_file,
							   "",
							   PGC_SUSET,
							   0,
							   check_ca_file, NULL, NULL);

	DefineCustomEnumVariable("squadstack.tls_min_version",
							 "Oldest TLS version accepted for API calls: TLSv1.2 or TLSv1.3.",
							 NULL,
							 &squadstack_tls_min_version,
							 SQUADSTACK_TLS_1_2,
							 tls_version_options,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomEnumVariable("squadstack.phone_format",
							 "How phone numbers are sent: e164, national or as_given.",
							 NULL,
							 &squadstack_phone_format,
							 SQUADSTACK_PHONE_E164,
							 phone_format_options,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("squadstack.webhook_secret",
							   "Deprecated: secret a webhook delivery must present to squadstack_receive_webhook().",
							   "Use squadstack_set_webhook_secret(): a changed setting's value is written to the server log.  Empty means none.",
							   &squadstack_webhook_secret,
							   "",
							   PGC_SUSET,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   check_webhook_secret, NULL, NULL);

	DefineCustomStringVariable("squadstack.webhook_timezone",
							   "Time zone of webhook timestamps that carry no offset.",
							   NULL,
							   &squadstack_webhook_timezone,
							   "UTC",
							   PGC_SUSET,
							   0,
							   check_webhook_timezone, NULL, NULL);

	DefineCustomIntVariable("squadstack.retention",
							"How long sent operations and API call records are kept.",
							"The background worker deletes older ones in small batches.",
							&squadstack_retention_s,
							7 * 86400, 3600, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomStringVariable("squadstack.token_file",
							   "File of access tokens: lines \"campaign token\", or \"* token\" for the default token.",
							   "Read at start and at every reload; it must be readable by the database user only (or owned by root and readable by its group).  A relative path is taken relative to the data directory.",
							   &squadstack_token_file,
							   "",
							   PGC_SIGHUP,
							   0,
							   check_token_file, assign_token_file, NULL);

	/* a postmaster setting can only be defined while preloading */
	if (process_shared_preload_libraries_in_progress)
		DefineCustomStringVariable("squadstack.database_name",
								   "Database the background worker delivers from.",
								   "The extension must be created in this database.",
								   &squadstack_database_name,
								   "postgres",
								   PGC_POSTMASTER,
								   0,
								   NULL, NULL, NULL);
}
