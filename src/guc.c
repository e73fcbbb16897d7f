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

#include "miscadmin.h"

#include "guc.h"
#include "guc_check.h"

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
							   squadstack_check_api_url, NULL, NULL);

	DefineCustomStringVariable("squadstack.token",
							   "Deprecated: access token used by campaigns without a token of their own.",
							   "Use squadstack_set_token('*', token) or squadstack.token_file: a changed setting's value is written to the server log.",
							   &squadstack_token,
							   "",
							   PGC_SUSET,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   squadstack_check_token, NULL, NULL);

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
							   squadstack_check_duplicate_pattern, NULL, NULL);

	DefineCustomStringVariable("squadstack.http_proxy",
							   "Proxy through which every API call is made.",
							   "An http:// or https:// URL, which may carry a user name and password; calls are tunnelled with CONNECT.  Empty means a direct connection: proxy variables of the server's environment are never used.",
							   &squadstack_http_proxy,
							   "",
							   PGC_SUSET,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   squadstack_check_http_proxy, NULL, NULL);

	DefineCustomStringVariable("squadstack.no_proxy",
							   "Hosts reached directly although squadstack.http_proxy is set.",
							   "A comma-separated list of host names, domain names and IP addresses, as in libcurl's NOPROXY; \"*\" matches every host.",
							   &squadstack_no_proxy,
							   "",
							   PGC_SUSET,
							   0,
							   squadstack_check_no_proxy, NULL, NULL);

	DefineCustomStringVariable("squadstack.ca_file",
							   "File of CA certificates that the API's (and an https proxy's) certificate is checked against.",
							   "Empty means the system's CA store.  A relative path is taken relative to the data directory.",
							   &squadstack_ca_file,
							   "",
							   PGC_SUSET,
							   0,
							   squadstack_check_ca_file, NULL, NULL);

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
							   squadstack_check_webhook_secret, NULL, NULL);

	DefineCustomStringVariable("squadstack.webhook_timezone",
							   "Time zone of webhook timestamps that carry no offset.",
							   NULL,
							   &squadstack_webhook_timezone,
							   "UTC",
							   PGC_SUSET,
							   0,
							   squadstack_check_webhook_timezone, NULL, NULL);

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
							   squadstack_check_token_file, squadstack_assign_token_file, NULL);

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
